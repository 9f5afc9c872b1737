"""``train_bpe``: the one byte-level BPE trainer, for a corpus tokenizer trained here
(``[tokenizer] train_bpe_vocab``) and for the students' own (``[students.tokenizer]``).

The result is lossless (byte-level, no normalizer, no prefix space), so a corpus written
with it can be exported back to text byte for byte; its only special token is the
document separator ``<|endoftext|>``. The text is read as ``miniplm tokenize`` reads it
(any input format, ``text_field`` / ``text_split``)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from miniplm._atomic import atomic_dir
from miniplm._deps import require
from miniplm.errors import InputError

EOS = "<|endoftext|>"
# Every byte is a token of its own, plus the separator: the smallest possible vocabulary.
MIN_VOCAB = 256 + 1


def check_bpe_vocab(size: int, key: str) -> None:
    """Refuse a vocabulary size the trainer cannot honour (``key`` names the setting)."""
    if size < MIN_VOCAB:
        raise InputError(
            f"{key}: {size} is too small for a byte-level BPE, which holds all 256 bytes "
            f"and {EOS}: give at least {MIN_VOCAB}"
        )


def train_bpe(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    vocab_size: int,
    *,
    text_field: str = "text",
    text_split: str = "document",
    overwrite: bool = False,
) -> Path:
    """Train a byte-level BPE of ``vocab_size`` entries (special token included) on the
    documents of ``inputs`` and save it as a Hugging Face tokenizer directory ``out``
    (written under a temporary name, renamed when complete); returns ``out``."""
    from miniplm.corpus.readers import discover, read_documents

    check_bpe_vocab(vocab_size, "vocab_size")
    tk = require("tokenizers")
    transformers = require("transformers")
    files = discover(inputs)

    def texts() -> Iterator[str]:
        for text, _source in read_documents(files, text_field, None, text_split):
            yield text

    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts(), trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS)
    out_dir = Path(out)
    with atomic_dir(out_dir, overwrite) as tmp:
        fast.save_pretrained(tmp)
    return out_dir
