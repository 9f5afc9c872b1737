"""Stubs of the native module built from rust/python (checked by mypy.stubtest)."""

from typing import Any, final

import numpy as np
import numpy.typing as npt
from typing_extensions import Self

__version__: str

@final
class Dataset:
    def __new__(cls, path: str) -> Self: ...
    def __len__(self) -> int: ...
    @property
    def num_tokens(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def path(self) -> str: ...
    def shards(self) -> list[dict[str, Any]]: ...
    def instance_len(self, id: int) -> int: ...
    def tokens(self, id: int) -> npt.NDArray[np.int64]: ...
    def gather(
        self, ids: npt.NDArray[np.uint64], out: npt.NDArray[Any], pad_id: int
    ) -> npt.NDArray[np.uint32]: ...
    def fingerprint(self) -> str: ...

@final
class DatasetWriter:
    def __new__(
        cls, dir: str, name: str, dtype: str, max_shard_bytes: int | None = None
    ) -> Self: ...
    def add_batch(self, tokens: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]) -> None: ...
    def finish(self) -> list[dict[str, Any]]: ...

@final
class OutputLock:
    def __new__(cls, out: str) -> Self: ...
    @property
    def path(self) -> str: ...
    @property
    def held(self) -> bool: ...
    def release(self) -> None: ...

def check_spares_inputs(out: str, inputs: list[str]) -> None: ...
def load_scores(run_dir: str) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint32]]: ...
def select(
    *,
    out: str,
    teacher: str | None = None,
    reference: str | None = None,
    teacher_nll: str | None = None,
    reference_nll: str | None = None,
    ratio: float | None = None,
    count: int | None = None,
    exclude: str | None = None,
    data: str | None = None,
    by: str = "diff",
    keep: str | None = None,
    random: bool = False,
    temperature: float | None = None,
    seed: int = 0,
    overwrite: bool = False,
    threads: int = 0,
    progress: bool = False,
) -> str: ...
def build(
    *,
    data: str,
    selection: str,
    out: str,
    shuffle: bool = False,
    seed: int = 0,
    shard_size: int | None = None,
    name: str | None = None,
    overwrite: bool = False,
    threads: int = 0,
    progress: bool = False,
) -> str: ...
def inspect(path: str, threads: int = 0, progress: bool = False) -> str: ...
def sample_main(argv: list[str]) -> int: ...
def file_fingerprint(path: str) -> str: ...
