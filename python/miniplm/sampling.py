"""Difference Sampling and refined-corpus building: the same code paths as the
``miniplm-sample`` CLI, run in Rust with the GIL released."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from miniplm import _core
from miniplm.data import PathLike
from miniplm.errors import FormatError


def _path(p: PathLike | None) -> str | None:
    return None if p is None else os.fspath(p)


def select(
    out: PathLike,
    *,
    teacher: PathLike | None = None,
    reference: PathLike | None = None,
    teacher_nll: PathLike | None = None,
    reference_nll: PathLike | None = None,
    ratio: float | None = None,
    count: int | None = None,
    exclude: PathLike | None = None,
    data: PathLike | None = None,
    by: Literal["diff", "teacher", "reference"] = "diff",
    keep: Literal["highest", "lowest"] | None = None,
    random: bool = False,
    temperature: float | None = None,
    seed: int = 0,
    overwrite: bool = False,
    threads: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Select instances and write ``out/ids.npy`` + ``out/selection.json``; returns the
    latter as a dict. Scores come from score runs (``teacher``/``reference``) or plain
    per-instance mean-NLL ``.npy`` files (``teacher_nll``/``reference_nll``). Exactly one of
    ``ratio`` / ``count``. ``keep`` defaults to highest for ``by="diff"``, else lowest."""
    report = _core.select(
        out=os.fspath(out),
        teacher=_path(teacher),
        reference=_path(reference),
        teacher_nll=_path(teacher_nll),
        reference_nll=_path(reference_nll),
        ratio=ratio,
        count=count,
        exclude=_path(exclude),
        data=_path(data),
        by=by,
        keep=keep,
        random=random,
        temperature=temperature,
        seed=seed,
        overwrite=overwrite,
        threads=threads,
        progress=progress,
    )
    result: dict[str, Any] = json.loads(report)
    return result


def build(
    data: PathLike,
    selection: PathLike,
    out: PathLike,
    *,
    shuffle: bool = False,
    seed: int = 0,
    shard_size: int | None = None,
    name: str = "refined",
    overwrite: bool = False,
    threads: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Copy the selected instances of ``data`` into new Megatron shards under ``out``
    (plus ``source_ids.npy`` and ``build.json``); returns the build report."""
    report = _core.build(
        data=os.fspath(data),
        selection=os.fspath(selection),
        out=os.fspath(out),
        shuffle=shuffle,
        seed=seed,
        shard_size=shard_size,
        name=name,
        overwrite=overwrite,
        threads=threads,
        progress=progress,
    )
    result: dict[str, Any] = json.loads(report)
    return result


def inspect(path: PathLike, *, threads: int = 0, progress: bool = False) -> dict[str, Any]:
    """Summary of a dataset, score run, score array or selection (``kind`` says which)."""
    result: dict[str, Any] = json.loads(
        _core.inspect(os.fspath(path), threads=threads, progress=progress)
    )
    return result


def load_selection(path: PathLike) -> tuple[npt.NDArray[np.uint64], dict[str, Any]]:
    """``(ids, info)``: the kept ids (memory-mapped) and selection.json, unchecked against
    any dataset (``TokenDataset.select`` checks them)."""
    d = Path(path)
    meta = d / "selection.json"
    try:
        info = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"{meta}: bad JSON: {e}") from None
    if not isinstance(info, dict) or info.get("format") != "miniplm.selection":
        raise FormatError(f'{meta}: bad format: not "miniplm.selection"; not a selection')
    ids: npt.NDArray[np.uint64] = np.load(d / "ids.npy", mmap_mode="r")
    return ids, info
