"""The metadata `miniplm tokenize` writes beside a dataset: ``tokenizer.json`` (the
tokenizer its ids come from) and ``tokenize.json`` (vocabulary size, EOS, sources).
Training, scoring, evaluation and export all find them here, by the same rule."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

from miniplm._deps import require

TOKENIZER_JSON = "tokenizer.json"
TOKENIZE_JSON = "tokenize.json"


def dataset_dir(data: str | os.PathLike[str]) -> Path:
    """The directory a dataset's metadata lies in: the dataset directory itself, or the
    directory of a shard prefix."""
    p = Path(data)
    return p if p.is_dir() else p.parent


def dataset_tokenizer_file(data: str | os.PathLike[str]) -> Path | None:
    """The ``tokenizer.json`` saved beside a tokenized dataset (a directory or a shard
    prefix), if any."""
    f = dataset_dir(data) / TOKENIZER_JSON
    return f if f.is_file() else None


class DatasetMeta(NamedTuple):
    """What is known of a dataset's tokenizer; None where nothing beside it says."""

    vocab_size: int | None
    eos_token: str | None
    eos_id: int | None
    tokenizer_file: Path | None


def read_dataset_meta(data: str | os.PathLike[str]) -> DatasetMeta:
    """The vocabulary size, EOS token and id from ``tokenize.json``, the vocabulary size
    from ``tokenizer.json`` when ``tokenize.json`` does not give it."""
    meta = dataset_dir(data) / TOKENIZE_JSON
    tok = dataset_tokenizer_file(data)
    vocab = eos = eos_id = None
    if meta.is_file():
        info = json.loads(meta.read_text()).get("tokenizer", {})
        vocab, eos, eos_id = info.get("vocab_size"), info.get("eos_token"), info.get("eos_id")
    if vocab is None and tok is not None:
        vocab = require("tokenizers").Tokenizer.from_file(str(tok)).get_vocab_size(True)
    return DatasetMeta(vocab, eos, eos_id, tok)
