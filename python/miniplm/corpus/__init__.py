"""Text corpora to token shards: readers, tokenizers, packing (``miniplm tokenize``)."""

# tokenize: seconds between checkpoints of a partial output (at most this much work is
# redone after a kill). Here, so that the CLI can show it without importing numpy.
CHECKPOINT_EVERY_S = 60.0
