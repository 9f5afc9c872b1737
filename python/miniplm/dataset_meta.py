"""The metadata `miniplm tokenize` writes beside a dataset: ``tokenizer.json`` (the
tokenizer its ids come from), ``tokenize.json`` (vocabulary size, EOS, sources) and
``sources.npy`` (the source of every instance).
Training, scoring, evaluation and export all find them here, by the same rule."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from miniplm._deps import require
from miniplm.errors import FormatError

if TYPE_CHECKING:
    import numpy.typing as npt

TOKENIZER_JSON = "tokenizer.json"
TOKENIZE_JSON = "tokenize.json"
_JSON_TYPES = {
    dict: "object", list: "array", str: "string", int: "number", float: "number",
    bool: "boolean", type(None): "null",
}  # fmt: skip


def json_type(value: Any) -> str:
    """The JSON name of a ``json.loads`` value's type (for messages)."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


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
        vocab, eos, eos_id = _tokenizer_entry(meta)
    if vocab is None and tok is not None:
        try:
            vocab = require("tokenizers").Tokenizer.from_file(str(tok)).get_vocab_size(True)
        except Exception as e:  # tokenizers raises a bare Exception for a broken file
            raise FormatError(f"{tok}: not a tokenizers JSON file ({e})") from None
    return DatasetMeta(vocab, eos, eos_id, tok)


def _tokenizer_entry(meta: Path) -> tuple[int | None, str | None, int | None]:
    """``(vocab_size, eos_token, eos_id)`` of a ``tokenize.json``'s ``tokenizer`` entry,
    each None where it is not given; a malformed file is a FormatError naming it."""
    try:
        data = json.loads(meta.read_bytes())
    except ValueError as e:  # UnicodeDecodeError included
        raise FormatError(f"{meta}: not a JSON file ({e})") from None
    if not isinstance(data, dict):
        raise FormatError(f"{meta}: a JSON {json_type(data)}, not a miniplm tokenize.json")
    info = data.get("tokenizer", {})
    if not isinstance(info, dict):
        raise FormatError(
            f"{meta}: its 'tokenizer' entry is a JSON {json_type(info)}, not an object"
        )
    out: list[Any] = []
    for key, kind in (("vocab_size", int), ("eos_token", str), ("eos_id", int)):
        value = info.get(key)
        if value is not None and type(value) is not kind:
            what = "an integer" if kind is int else "a string"
            raise FormatError(f"{meta}: tokenizer.{key} is {value!r}, not {what}")
        out.append(value)
    return out[0], out[1], out[2]


SOURCES_NPY = "sources.npy"


class DatasetSources(NamedTuple):
    """A tokenized corpus's sources: their names (``tokenize.json``, by index) and the
    source index of every instance (``sources.npy``, memory-mapped)."""

    names: list[str]
    ids: npt.NDArray[Any]


def read_sources(data: str | os.PathLike[str], instances: int) -> DatasetSources:
    """The sources of a corpus of ``instances`` instances written by ``miniplm
    tokenize``, checked: one entry per instance, each naming a source."""
    import numpy as np

    from miniplm.errors import FormatError

    directory = dataset_dir(data)
    meta_path, ids_path = directory / TOKENIZE_JSON, directory / SOURCES_NPY
    for p in (meta_path, ids_path):
        if not p.is_file():
            raise FormatError(
                f"{os.fspath(data)}: no {p.name} beside the shards; sources are known only "
                "for a corpus written by `miniplm tokenize`"
            )
    try:
        names = [str(s) for s in json.loads(meta_path.read_text())["sources"]]
    except (ValueError, KeyError, TypeError) as e:
        raise FormatError(f"{meta_path}: not a miniplm tokenize.json ({e!r})") from None
    try:
        ids = np.load(ids_path, mmap_mode="r")
    except ValueError as e:
        raise FormatError(f"{ids_path}: not a .npy array ({e})") from None
    if ids.shape != (instances,) or ids.dtype.kind != "u":
        raise FormatError(
            f"{ids_path}: {ids.shape} entries of {ids.dtype} for {instances} instances "
            "(one unsigned source index per instance)"
        )
    if instances and int(ids.max()) >= len(names):
        raise FormatError(f"{ids_path}: a source index beyond {meta_path}'s sources")
    return DatasetSources(names, ids)
