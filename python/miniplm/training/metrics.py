"""What a training run writes while it runs: ``metrics.jsonl`` (and TensorBoard)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from miniplm._deps import require


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
            keep = [
                ln
                for ln in self.path.read_text().splitlines()
                if ln.strip() and json.loads(ln)["step"] <= step
            ]
            self.path.write_text("".join(ln + "\n" for ln in keep))
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
