"""Token datasets (Megatron shards) as numpy: zero-copy instance views, batch gathers,
and views through a selection without copying anything."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from miniplm import _core
from miniplm._atomic import atomic_dir
from miniplm.errors import InputError
from miniplm.reports import ShardInfo

PathLike = Union[str, "os.PathLike[str]"]
IdArray = npt.NDArray[np.integer[Any]]
DataSpec = Union[PathLike, Sequence[PathLike]]
"""A dataset as users name it: a prefix, a directory, a glob of prefixes, or a list."""


def _index(i: object) -> int:
    """``i`` as an instance index: Python or numpy integers, never bools or floats."""
    if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
        raise TypeError(f"instance index must be an integer, got {type(i).__name__} {i!r}")
    return int(i)


def _id_array(ids: object) -> npt.NDArray[Any]:
    """``ids`` as an integer array; floats and bools are refused, not truncated."""
    raw = np.asarray(ids)
    if raw.size == 0:
        return raw.astype(np.int64)
    if raw.dtype == np.bool_ or not np.issubdtype(raw.dtype, np.integer):
        raise TypeError(f"instance ids must be integers, got {raw.dtype}")
    return raw


def _memmap(path: PathLike, dtype: str, offset: int, count: int) -> npt.NDArray[Any]:
    # np.memmap refuses empty files and zero-length maps; an empty shard is still valid.
    if count == 0:
        empty = np.empty(0, dtype=dtype)
        empty.flags.writeable = False
        return empty
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(count,))


class _Shard:
    """numpy views of one shard's files; the native reader has validated them already."""

    def __init__(self, info: ShardInfo) -> None:
        n = int(info["len"])
        self.first = int(info["first_id"])
        self.sizes = _memmap(info["idx"], "<i4", int(info["sizes_offset"]), n)
        self.pointers = _memmap(info["idx"], "<i8", int(info["pointers_offset"]), n)
        dtype = np.dtype(info["dtype"]).newbyteorder("<")
        self.itemsize = dtype.itemsize
        self.tokens = _memmap(info["bin"], dtype.str, 0, int(info["num_tokens"]))

    def view(self, local: int) -> npt.NDArray[Any]:
        start = int(self.pointers[local]) // self.itemsize
        return self.tokens[start : start + int(self.sizes[local])]


class TokenDataset:
    """A Megatron ``MMIDIDX`` dataset (one prefix, or shards ``<name>_0, _1, ...``).

    ``ds[i]`` is a read-only zero-copy numpy view of instance ``i``'s tokens;
    ``ds.gather(ids, seq_len)`` fills a padded (B, L) batch in Rust.
    """

    def __init__(self, path: DataSpec) -> None:
        given = (
            os.fspath(path)
            if isinstance(path, (str, os.PathLike))
            else [os.fspath(p) for p in path]
        )
        self._native = _core.Dataset(given)
        #: The dataset as given (paths joined by ", " for a list), for messages.
        self.path = Path(self._native.path)
        #: The paths the dataset was opened from, as given.
        self.paths = [Path(p) for p in self._native.paths()]
        self._shards = [_Shard(s) for s in self._native.shards()]
        self._starts = np.array([s.first for s in self._shards], dtype=np.int64)

    def __len__(self) -> int:
        return len(self._native)

    @property
    def num_tokens(self) -> int:
        return self._native.num_tokens

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(self._native.dtype)

    def fingerprint(self) -> str:
        """xxh3 over every byte of every shard file (``xxh3c:...``; cached per file)."""
        return self._native.fingerprint()

    def record(self) -> str | list[str]:
        """The dataset as given, with absolute paths, for manifests: one path (or glob),
        or the list of paths."""
        paths = [os.path.abspath(p) for p in self.paths]
        return paths[0] if len(paths) == 1 else paths

    def token_range(self) -> tuple[int, int] | None:
        """``(min, max)`` token id over all instances (``None`` without tokens)."""
        return self._native.token_range()

    def check_vocab(self, vocab_size: int) -> None:
        """Raise ``InputError`` naming the dataset, the first instance holding a token id
        outside ``[0, vocab_size)`` and that id."""
        self._native.check_vocab(vocab_size)

    def lengths(self) -> npt.NDArray[np.int32]:
        """Token count of every instance (a copy, concatenated over shards)."""
        if not self._shards:
            return np.empty(0, dtype=np.int32)
        return np.concatenate([np.asarray(s.sizes, dtype=np.int32) for s in self._shards])

    def __getitem__(self, i: int) -> npt.NDArray[Any]:
        n = len(self)
        i = _index(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"instance {i} out of range for {self.path} with {n} instances")
        k = int(np.searchsorted(self._starts, i, side="right")) - 1
        shard = self._shards[k]
        return shard.view(i - shard.first)

    def __iter__(self) -> Iterator[npt.NDArray[Any]]:
        for i in range(len(self)):
            yield self[i]

    def gather(
        self,
        ids: IdArray,
        seq_len: int | None = None,
        *,
        pad_id: int = 0,
        out: npt.NDArray[Any] | None = None,
    ) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint32]]:
        """Copy instances ``ids`` into a (B, seq_len) int64 array (or into ``out``, int64 or
        int32, C-contiguous), truncating long ones and padding short ones with ``pad_id``.
        Returns the batch and the number of real tokens per row."""
        raw = _id_array(ids)
        if raw.size and np.issubdtype(raw.dtype, np.signedinteger) and int(raw.min()) < 0:
            raise IndexError(f"negative instance id {int(raw.min())} for {self.path}")
        ids64: npt.NDArray[np.uint64] = np.ascontiguousarray(raw, dtype=np.uint64)
        if out is None:
            if seq_len is None:
                raise TypeError("gather needs seq_len or out")
            out = np.empty((len(ids64), seq_len), dtype=np.int64)
        lengths = self._native.gather(ids64, out, pad_id)
        return out, lengths

    def write_selection(
        self, out: PathLike, ids: IdArray, what: str, *, overwrite: bool = False
    ) -> Path:
        """Write ``ids`` of this dataset (sorted, deduplicated) as a selection directory
        (``ids.npy`` + ``selection.json`` with ``mode: "given"``, the dataset's count and
        fingerprint), the way ``miniplm-sample select`` writes its own."""
        raw = _id_array(ids)
        if raw.size and int(raw.min()) < 0:
            raise InputError(f"negative instance id {int(raw.min())} for {self.path}")
        self._native.write_selection(
            os.fspath(out), np.ascontiguousarray(raw, dtype=np.uint64), what, overwrite
        )
        return Path(out)

    def select(self, selection: PathLike | IdArray) -> DatasetView:
        """A view of the instances kept by a selection (a directory with ``ids.npy``, or
        an id array), without copying tokens."""
        return DatasetView(self, selection)


class DatasetView:
    """Instances ``ids[0], ids[1], ...`` of a base dataset; what training reads."""

    def __init__(self, base: TokenDataset, selection: PathLike | IdArray) -> None:
        if isinstance(selection, (str, os.PathLike)):
            # ids.npy and selection.json checked in the core, against this dataset.
            ids: npt.NDArray[Any] = base._native.read_selection(os.fspath(selection))
        else:
            ids = np.asarray(selection)
            if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
                raise ValueError(
                    f"selection ids must be a 1-D integer array, got {ids.dtype}{ids.shape}"
                )
            if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= len(base)):
                raise IndexError(
                    f"selection ids range over [{int(ids.min())}, {int(ids.max())}] "
                    f"but {base.path} has {len(base)} instances"
                )
            steps = np.diff(ids.astype(np.int64))
            if steps.size and int(steps.min()) <= 0:
                at = int(np.argmax(steps <= 0)) + 1
                raise InputError(
                    f"selection ids must be strictly ascending (no duplicates): "
                    f"position {at} holds {int(ids[at])} after {int(ids[at - 1])}"
                )
        self.base = base
        self.ids = ids.astype(np.uint64, copy=False)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, j: int) -> npt.NDArray[Any]:
        return self.base[int(self.ids[_index(j)])]

    def gather(
        self,
        positions: IdArray,
        seq_len: int | None = None,
        *,
        pad_id: int = 0,
        out: npt.NDArray[Any] | None = None,
    ) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint32]]:
        """``gather`` of the base dataset at ``ids[positions]`` (positions in
        ``[0, len(view))``: a negative one is refused, not counted from the end)."""
        raw = _id_array(positions)
        if raw.size and np.issubdtype(raw.dtype, np.signedinteger) and int(raw.min()) < 0:
            raise IndexError(
                f"negative position {int(raw.min())} in a view of {len(self)} instances "
                f"of {self.base.path}"
            )
        return self.base.gather(self.ids[raw], seq_len, pad_id=pad_id, out=out)


def _token_array(seq: npt.ArrayLike, k: int) -> npt.NDArray[np.int64]:
    """Sequence ``k`` as int64 token ids; floats and bools are refused, not truncated."""
    raw = np.asarray(seq)
    if raw.size and (raw.dtype == np.bool_ or not np.issubdtype(raw.dtype, np.integer)):
        raise InputError(
            f"write_dataset: sequence {k} holds {raw.dtype} values, not integer token ids"
        )
    return raw.astype(np.int64).reshape(-1)


def write_dataset(
    out_dir: PathLike,
    sequences: Iterable[npt.ArrayLike],
    *,
    vocab_size: int | None = None,
    dtype: str | None = None,
    name: str = "corpus",
    max_shard_bytes: int | None = None,
    overwrite: bool = False,
    batch: int = 4096,
) -> TokenDataset:
    """Write token sequences as Megatron shards ``out_dir/<name>_<k>.bin/.idx`` (uint16
    when ``vocab_size`` fits, else int32; or ``dtype``). The directory appears complete or
    not at all (temporary sibling + rename)."""
    if dtype is None:
        dtype = "uint16" if vocab_size is not None and vocab_size <= 65536 else "int32"
    out = Path(out_dir)
    with atomic_dir(out, overwrite) as tmp:
        writer = _core.DatasetWriter(os.fspath(tmp), name, dtype, max_shard_bytes)
        pending: list[npt.NDArray[np.int64]] = []

        def flush() -> None:
            if pending:
                lengths = np.array([len(p) for p in pending], dtype=np.int64)
                writer.add_batch(np.concatenate(pending).astype(np.int64), lengths)
                pending.clear()

        for k, seq in enumerate(sequences):
            pending.append(_token_array(seq, k))
            if len(pending) >= batch:
                flush()
        flush()
        writer.finish()
    return TokenDataset(out)
