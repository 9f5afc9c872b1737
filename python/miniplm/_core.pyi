"""Stubs of the native module built from rust/python (checked by mypy.stubtest)."""

import os
from collections.abc import Sequence
from typing import Any, Literal, final

import numpy as np
import numpy.typing as npt
from typing_extensions import Self, TypeAlias

from miniplm.reports import (
    BuildReport,
    InspectReport,
    SelectionReport,
    ShardInfo,
    WrittenShard,
)

_Path: TypeAlias = str | os.PathLike[str]

__version__: str

@final
class Dataset:
    def __new__(cls, path: str | list[str]) -> Self: ...
    def __len__(self) -> int: ...
    @property
    def num_tokens(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def path(self) -> str: ...
    def paths(self) -> list[str]: ...
    def shards(self) -> list[ShardInfo]: ...
    def instance_len(self, id: int) -> int: ...
    def tokens(self, id: int) -> npt.NDArray[np.int64]: ...
    def gather(
        self, ids: npt.NDArray[np.uint64], out: npt.NDArray[Any], pad_id: int
    ) -> npt.NDArray[np.uint32]: ...
    def fingerprint(self) -> str: ...
    def read_selection(self, dir: str) -> npt.NDArray[np.uint64]: ...
    def write_selection(
        self, out: str, ids: npt.NDArray[np.uint64], what: str, overwrite: bool = False
    ) -> None: ...
    def token_range(self) -> tuple[int, int] | None: ...
    def check_vocab(self, vocab_size: int) -> None: ...

@final
class DatasetWriter:
    def __new__(
        cls,
        dir: str,
        name: str,
        dtype: str,
        max_shard_bytes: int | None = None,
        resume: _WriterCheckpoint | None = None,
    ) -> Self: ...
    def add_batch(self, tokens: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]) -> None: ...
    def checkpoint(self) -> _WriterCheckpoint: ...
    def finish(self) -> list[WrittenShard]: ...

# (instances, bytes) of each finished shard, and of the open one.
_WriterCheckpoint: TypeAlias = tuple[list[tuple[int, int]], tuple[int, int] | None]

@final
class OutputLock:
    def __new__(cls, out: str) -> Self: ...
    @property
    def path(self) -> str: ...
    @property
    def held(self) -> bool: ...
    def release(self) -> None: ...

@final
class ScoreReader:
    def __new__(cls, path: _Path, kind: Literal["run", "npy"] = "run") -> Self: ...
    def __len__(self) -> int: ...
    def mean_nll(self, start: int, count: int) -> npt.NDArray[np.float64]: ...

def check_spares_inputs(out: str, inputs: list[str]) -> None: ...
def load_scores(run_dir: str) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint32]]: ...
def select(
    out: _Path,
    *,
    teacher: _Path | None = None,
    reference: _Path | None = None,
    teacher_nll: _Path | None = None,
    reference_nll: _Path | None = None,
    ratio: float | None = None,
    count: int | None = None,
    exclude: _Path | None = None,
    data: _Path | None = None,
    by: Literal["diff", "teacher", "reference"] = "diff",
    keep: Literal["highest", "lowest"] | None = None,
    random: bool = False,
    temperature: float | None = None,
    seed: int = 0,
    overwrite: bool = False,
    threads: int = 0,
    progress: bool = False,
) -> SelectionReport: ...
def build(
    data: _Path | Sequence[_Path],
    selection: _Path,
    out: _Path,
    *,
    shuffle: bool = False,
    seed: int = 0,
    shard_size: int | None = None,
    name: str | None = None,
    overwrite: bool = False,
    threads: int = 0,
    progress: bool = False,
) -> BuildReport: ...
def inspect(path: _Path, *, threads: int = 0, progress: bool = False) -> InspectReport: ...
def sample_main(argv: list[str]) -> int: ...
def file_fingerprint(path: str) -> str: ...
def score_fingerprint(path: str, kind: str) -> str: ...
def _internal_error_for_test(panic: bool) -> None: ...
