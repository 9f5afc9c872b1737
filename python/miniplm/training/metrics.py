"""What a training run writes while it runs: ``metrics.jsonl`` (and TensorBoard)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from miniplm._atomic import atomic_write_text
from miniplm._deps import require
from miniplm.errors import FormatError


def _read_lines(path: Path) -> list[tuple[str, int]]:
    """The lines of ``metrics.jsonl`` with their steps. An unparseable last line is a
    write cut short by a crash (or a full disk) and is dropped; a bad line before it is
    damage that a resume must not paper over."""
    lines = [(i, ln) for i, ln in enumerate(path.read_text().splitlines(), 1) if ln.strip()]
    out = []
    for k, (i, ln) in enumerate(lines):
        try:
            rec = json.loads(ln)
            step = rec["step"]
            if not isinstance(step, int) or isinstance(step, bool):
                raise TypeError(f"step {step!r} is not an integer")
        except (ValueError, KeyError, TypeError) as e:
            if k == len(lines) - 1:
                print(f"{path}: dropping its cut-off last line {i}", file=sys.stderr)
                break
            raise FormatError(
                f"{path}: line {i} is not a metrics record ({e}); repair or delete the "
                "file to resume"
            ) from e
        out.append((ln, step))
    return out


class MetricsLog:
    """``metrics.jsonl`` (one object per logged step); on resume, lines past the resumed
    step are dropped so the file is the curve of one uninterrupted run."""

    def __init__(self, out: Path, step: int, active: bool, tensorboard: bool):
        self.active = active
        self.path = out / "metrics.jsonl"
        self.tb = None
        if not active:
            return
        if self.path.exists():
            keep = [ln for ln, rec_step in _read_lines(self.path) if rec_step <= step]
            atomic_write_text(self.path, [ln + "\n" for ln in keep])
        self.f = open(self.path, "a")  # noqa: SIM115 (kept open across steps)
        if tensorboard:
            sw = require("torch.utils.tensorboard", extra="tensorboard").SummaryWriter
            self.tb = sw(str(out / "tensorboard"), purge_step=step + 1)

    def write(self, rec: dict[str, Any]) -> None:
        if not self.active:
            return
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()
        if self.tb is not None:
            for k, v in rec.items():
                if k != "step":
                    self.tb.add_scalar(f"train/{k}", v, rec["step"])

    def close(self) -> None:
        if self.active:
            self.f.close()
            if self.tb is not None:
                self.tb.close()
