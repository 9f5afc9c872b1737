"""Difference Sampling and refined-corpus building: the same code paths as the
``miniplm-sample`` CLI, run in Rust with the GIL released."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from miniplm import _core
from miniplm.data import PathLike
from miniplm.errors import FormatError

# The native functions themselves (their signatures and docs are in rust/python/src/lib.rs
# and _core.pyi); they return the reports of miniplm.reports as dicts.
select = _core.select
build = _core.build
inspect = _core.inspect


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
