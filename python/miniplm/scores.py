"""Score runs: per-instance ``nll_sum`` / ``n_scored`` arrays in parts plus a manifest
(layout in docs/FORMATS.md). The native core reads and validates them; this module adds
the writer used by scorers and tests."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from miniplm import _core
from miniplm._atomic import atomic_dir, fsync_dir
from miniplm.data import PathLike
from miniplm.errors import InputError, InternalError

FORMAT = "miniplm.score_run"
VERSION = 1
CHUNK = 1 << 20  # instances per read when streaming scores: 8 MiB of float64


def part_ranges(n: int, part_size: int) -> list[tuple[str, int, int]]:
    """``(name, start, end)`` of the parts tiling ``[0, n)``; independent of the number
    of processes, so any world size writes the same run."""
    return [
        (f"part-{k:06d}", s, min(n, s + part_size)) for k, s in enumerate(range(0, n, part_size))
    ]


def score_run_manifest(
    header: dict[str, Any],
    parts: list[tuple[str, int, int]],
    complete: bool,
    summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The one builder of a score run's ``manifest.json`` (layout in docs/FORMATS.md):
    format and version, then ``header`` (num_instances, model, dataset, ...), the parts."""
    m: dict[str, Any] = {"format": FORMAT, "version": VERSION, **header}
    m["parts"] = [
        {"name": name, "start": s, "end": e, "complete": complete} for name, s, e in parts
    ]
    if summary is not None:
        m["summary"] = summary
    return m


def load_scores(run_dir: PathLike) -> dict[str, npt.NDArray[Any]]:
    """``{"nll_sum": float64|float32 array, "n_scored": uint32 array}`` aligned with
    instance ids, concatenated over the run's parts (validated like ``select`` does)."""
    nll_sum, n_scored = _core.load_scores(os.fspath(run_dir))
    return {"nll_sum": nll_sum, "n_scored": n_scored}


def mean_nll(scores: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.float64]:
    """Per-instance mean NLL, NaN where nothing was scored (the rule ``select`` uses)."""
    nll = scores["nll_sum"].astype(np.float64)
    n = scores["n_scored"]
    out = np.full(nll.shape, np.nan)
    np.divide(nll, n, out=out, where=n > 0)
    return out


def diff_chunks(
    teacher: PathLike, reference: PathLike, chunk: int = CHUNK
) -> Iterator[tuple[int, npt.NDArray[np.float64]]]:
    """``(start, r)`` for consecutive ranges of instances, ``r`` = mean NLL of the
    reference minus the teacher's (what ``select(by="diff")`` ranks), NaN where either
    scored nothing: two score runs streamed in O(chunk) memory by the reader ``select``
    uses, for figures over billions of instances."""
    if chunk < 1:
        raise InternalError(f"diff_chunks: chunk {chunk} < 1")
    t = _core.ScoreReader(os.fspath(teacher))
    r = _core.ScoreReader(os.fspath(reference))
    if len(t) != len(r):
        raise InputError(
            f"{os.fspath(teacher)} scores {len(t)} instances, {os.fspath(reference)} {len(r)}: "
            "not runs over one dataset"
        )
    for start in range(0, len(t), chunk):
        n = min(chunk, len(t) - start)
        yield start, r.mean_nll(start, n) - t.mean_nll(start, n)


def write_score_run(
    run_dir: PathLike,
    nll_sum: npt.ArrayLike,
    n_scored: npt.ArrayLike,
    *,
    part_size: int | None = None,
    model: dict[str, Any] | None = None,
    tokenizer: str | None = None,
    dataset: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a complete score run from whole arrays (float32/float64 ``nll_sum``, integer
    ``n_scored``), split into parts of ``part_size`` instances. Written under a temporary
    name and renamed, so a reader never sees half a run."""
    out = Path(run_dir)
    nll = np.asarray(nll_sum)
    cnt = np.asarray(n_scored)
    if nll.ndim != 1 or cnt.ndim != 1 or len(nll) != len(cnt):
        raise InputError(
            f"nll_sum and n_scored must be 1-D of one length, got {nll.shape} and {cnt.shape}"
        )
    if nll.dtype not in (np.float32, np.float64):
        nll = nll.astype(np.float64)
    if cnt.size and (cnt.min() < 0 or cnt.max() > np.iinfo(np.uint32).max):
        raise InputError("n_scored must lie in [0, 2**32)")
    cnt = cnt.astype(np.uint32)
    n = len(nll)
    step = max(1, part_size or n or 1)

    def save(path: Path, values: npt.NDArray[Any]) -> None:
        with open(path, "wb") as f:
            np.save(f, values)
            f.flush()
            os.fsync(f.fileno())

    # Every file and directory entry durable before the rename publishes the run: a
    # crash after it finds the whole run, never empty or short arrays.
    with atomic_dir(out, overwrite) as tmp:
        parts = part_ranges(n, step)
        for name, start, end in parts:
            (tmp / name).mkdir()
            save(tmp / name / "nll_sum.npy", nll[start:end])
            save(tmp / name / "n_scored.npy", cnt[start:end])
            fsync_dir(tmp / name)
        header = {
            "num_instances": n,
            "normalization": "mean_nll_per_scored_token",
            "model": model or {},
            "tokenizer": tokenizer,
            "dataset": dataset or {},
            "settings": settings or {},
        }
        manifest = score_run_manifest(header, parts, complete=True)
        with open(tmp / "manifest.json", "w", encoding="utf-8") as f:
            f.write(json.dumps(manifest, indent=1))
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(tmp)
    return out
