"""Text corpora to token shards: readers, tokenizers, packing (``miniplm tokenize``)."""
