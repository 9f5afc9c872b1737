"""A score run being written: the manifest that pins what is scored, completed parts as
directories renamed into place, and in-part checkpoints. Layout in docs/FORMATS.md.

Crash safety: every file is written under a temporary name, fsynced and renamed, so after
``kill -9`` a part either exists complete or not at all, and a checkpoint is either the
previous or the next one. The manifest is written once at the start (every part
``complete: false``) and once at the end (all ``true``): the native reader refuses a run
until it is finished."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from miniplm._atomic import atomic_write_text, fsync_dir
from miniplm.errors import InputError
from miniplm.scores import part_ranges, score_run_manifest

# Manifest entries that must match for a resume to continue (anything else may change).
_IDENTITY = ("num_instances", "model", "dataset", "settings")


@dataclass
class PartState:
    """Results of one part so far, in id order within the part."""

    nll_sum: npt.NDArray[np.float64]
    n_scored: npt.NDArray[np.uint32]
    done: npt.NDArray[np.bool_]

    @classmethod
    def empty(cls, n: int) -> PartState:
        return cls(np.zeros(n), np.zeros(n, np.uint32), np.zeros(n, bool))


def _save_npy(path: Path, a: npt.NDArray[Any]) -> None:
    with open(path, "wb") as f:
        np.save(f, a)
        f.flush()
        os.fsync(f.fileno())


class RunDir:
    """One score run directory (one model over one dataset)."""

    def __init__(self, path: Path, header: dict[str, Any], part_size: int):
        self.path = path
        self.header = header
        self.parts = part_ranges(int(header["num_instances"]), part_size)

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def manifest(self, complete: bool, summary: dict[str, Any] | None = None) -> dict[str, Any]:
        return score_run_manifest(self.header, self.parts, complete, summary)

    def prepare(self, overwrite: bool) -> bool:
        """Create the run, or check that the existing one is this run (same model, data
        and settings) so it can be resumed. Returns whether it is already complete.
        Called by one process only."""
        if self.path.exists() and overwrite:
            shutil.rmtree(self.path)
        if self.manifest_path.is_file():
            try:
                old = json.loads(self.manifest_path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise InputError(f"{self.manifest_path}: unreadable manifest ({e})") from e
            diff = [k for k in _IDENTITY if old.get(k) != self.header.get(k)]
            if diff:
                detail = "; ".join(
                    f"{k}: run has {json.dumps(old.get(k))}, now {json.dumps(self.header.get(k))}"
                    for k in diff
                )
                raise InputError(
                    f"{self.path}: refusing to resume a score run made with a different "
                    f"{', '.join(diff)} ({detail}); use another --out or --overwrite"
                )
            # Debris of a killed writer (this one holds the run's lock): temporary files,
            # and the checkpoint of a part killed between its publication and the unlink.
            for tmp in self.path.glob(".*.tmp-*"):
                shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
            for k in range(len(self.parts)):
                if self.is_done(k):
                    self.checkpoint_path(k).unlink(missing_ok=True)
            parts = old.get("parts", [])
            return bool(parts) and all(p.get("complete") for p in parts)
        if self.path.exists() and any(self.path.iterdir()):
            raise InputError(
                f"{self.path}: exists and is not a score run (no manifest.json); "
                "use another --out or --overwrite"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.manifest_path, json.dumps(self.manifest(complete=False), indent=1))
        return False

    def part_dir(self, k: int) -> Path:
        return self.path / self.parts[k][0]

    def is_done(self, k: int) -> bool:
        d = self.part_dir(k)
        return (d / "nll_sum.npy").is_file() and (d / "n_scored.npy").is_file()

    def checkpoint_path(self, k: int) -> Path:
        return self.path / f"{self.parts[k][0]}.checkpoint.npz"

    def load_state(self, k: int) -> PartState:
        """The part's checkpoint, or an empty state."""
        n = self.parts[k][2] - self.parts[k][1]
        f = self.checkpoint_path(k)
        if not f.is_file():
            return PartState.empty(n)
        with np.load(f, allow_pickle=False) as z:
            st = PartState(z["nll_sum"], z["n_scored"], z["done"])
        if not (len(st.nll_sum) == len(st.n_scored) == len(st.done) == n):
            raise InputError(f"{f}: checkpoint does not match part size {n}; delete it")
        return st

    def save_checkpoint(self, k: int, st: PartState) -> None:
        f = self.checkpoint_path(k)
        tmp = f.with_name(f".{f.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, nll_sum=st.nll_sum, n_scored=st.n_scored, done=st.done)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(f)
        except BaseException:  # disk full, say: no partial file left
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(self.path)

    def write_part(self, k: int, st: PartState) -> None:
        """Publish a finished part (directory rename) and drop its checkpoint."""
        final = self.part_dir(k)
        tmp = self.path / f".{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            _save_npy(tmp / "nll_sum.npy", st.nll_sum)
            _save_npy(tmp / "n_scored.npy", st.n_scored)
            fsync_dir(tmp)
            tmp.rename(final)
        except BaseException:  # disk full, say: no partial part left
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(self.path)
        self.checkpoint_path(k).unlink(missing_ok=True)

    def finish(self, summary: dict[str, Any]) -> None:
        missing = [name for k, (name, _, _) in enumerate(self.parts) if not self.is_done(k)]
        if missing:
            raise InputError(f"{self.path}: parts not written: {', '.join(missing[:5])}")
        atomic_write_text(
            self.manifest_path, json.dumps(self.manifest(complete=True, summary=summary), indent=1)
        )

    def totals(self) -> tuple[float, int]:
        """(sum of nll_sum, sum of n_scored) over the written parts, part by part."""
        total, count = 0.0, 0
        for k in range(len(self.parts)):
            d = self.part_dir(k)
            total += float(np.load(d / "nll_sum.npy", mmap_mode="r").sum(dtype=np.float64))
            count += int(np.load(d / "n_scored.npy", mmap_mode="r").sum(dtype=np.uint64))
        return total, count
