"""The dicts the native module returns. The reports of ``select``, ``build`` and
``inspect`` are built from their Rust structs (``rust/core/src/select/mod.rs``
``SelectionReport``, ``build.rs`` ``BuildReport``, ``inspect.rs`` ``Report``) with the
keys, values and key order of the JSON they also write (docs/FORMATS.md): paths are
strings, non-finite numbers ``None``. The shard records of ``_core.Dataset.shards()`` and
``_core.DatasetWriter.finish()`` come last."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypedDict, Union

# ``path`` of a dataset as it was given: one path (directory, prefix or glob), or a list.
GivenPath = Union[str, list[str]]


class Histogram(TypedDict):
    edges: list[float]
    counts: list[int]


class ScoreStats(TypedDict):
    min: float
    max: float
    mean: float
    num_negative: int


class InputInfo(TypedDict):
    path: str
    kind: str
    fingerprint: str


class SelectionInputs(TypedDict):
    teacher: InputInfo | None
    reference: InputInfo | None
    exclude: InputInfo | None


class DatasetBinding(TypedDict):
    num_instances: int
    fingerprint: str | None
    path: GivenPath | None


class SelectionReport(TypedDict):
    """``selection.json``."""

    format: Literal["miniplm.selection"]
    version: int
    by: Literal["diff", "teacher", "reference"]
    keep: Literal["highest", "lowest"]
    mode: Literal["top", "random", "gumbel"]
    temperature: float | None
    seed: int | None
    ratio: float | None
    count: int | None
    num_instances: int
    num_excluded: int
    num_nan: int
    num_eligible: int
    k: int
    num_selected: int
    threshold: float | None
    ties_at_threshold: int
    ties_kept: int
    score_stats: ScoreStats | None
    histogram: Histogram | None
    inputs: SelectionInputs
    dataset: DatasetBinding
    passes: int
    elapsed_s: float


class BuildDataset(TypedDict):
    path: GivenPath
    fingerprint: str


class BuildSelection(TypedDict):
    path: str
    fingerprint: str


class ShardSummary(TypedDict):
    prefix: str
    num_sequences: int
    num_tokens: int
    num_bytes: int


class BuildReport(TypedDict):
    """``build.json``."""

    format: Literal["miniplm.refined_dataset"]
    version: int
    dataset: BuildDataset
    selection: BuildSelection
    shuffle_seed: int | None
    num_instances: int
    num_tokens: int
    num_bytes: int
    dtype: str
    shards: list[ShardSummary]
    elapsed_s: float


class Summary(TypedDict):
    count: int
    min: float
    max: float
    mean: float


class DatasetInfo(TypedDict):
    kind: Literal["dataset"]
    path: str
    num_instances: int
    num_tokens: int
    dtype: str
    num_shards: int
    fingerprint: str
    length: Summary | None
    # [lo, hi, count]: instances of lo <= length < hi tokens.
    length_histogram: list[list[int]]


class ScoresInfo(TypedDict):
    kind: Literal["score_run", "score_array"]
    path: str
    num_instances: int
    num_nan: int
    mean_nll: Summary | None
    histogram: Histogram | None
    fingerprint: str


class SelectionInfo(TypedDict):
    kind: Literal["selection"]
    path: str
    num_ids: int
    problems: list[str]
    selection: dict[str, Any]


InspectReport = Union[DatasetInfo, ScoresInfo, SelectionInfo]


class ShardInfo(TypedDict):
    """One shard of ``_core.Dataset.shards()``: its files and where its arrays start."""

    bin: Path
    idx: Path
    dtype: str
    len: int
    num_tokens: int
    first_id: int
    sizes_offset: int
    pointers_offset: int


class WrittenShard(TypedDict):
    """One shard of ``_core.DatasetWriter.finish()``."""

    prefix: Path
    num_instances: int
    num_tokens: int
