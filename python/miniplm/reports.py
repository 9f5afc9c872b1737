"""The reports ``select``, ``build`` and ``inspect`` return: the dicts the native module
builds from its Rust structs (``rust/core/src/select/mod.rs`` ``SelectionReport``,
``build.rs`` ``BuildReport``, ``inspect.rs`` ``Report``), with the keys and values of the
JSON files they also write (docs/FORMATS.md). Non-finite numbers are ``None``, as in JSON."""

from __future__ import annotations

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
