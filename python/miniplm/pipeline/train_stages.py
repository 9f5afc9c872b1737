"""The stages that train a model of the run (a teacher for smoke runs, the reference
LM), and the one training call every training stage, students included, goes through."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miniplm.pipeline.config import RunConfig, TrainSpec
from miniplm.pipeline.corpus_stages import DataOut, ModelOut, SplitOut
from miniplm.pipeline.stage import Inputs, Stage


@dataclass
class TrainOut(ModelOut):
    """``model`` (= ``final``) and ``run`` are recorded paths; the rest is summary.json."""

    run: str
    final: str
    steps: int
    tokens: int
    final_loss: float | None
    parameters: int
    elapsed_s: float


def teacher_name(cfg: RunConfig) -> str:
    """The stage whose ``model`` (a ``ModelOut``) is the teacher."""
    return "teacher_model" if cfg.teacher.train is None else "teacher"


def torchrun(inp: Inputs, args: list[str]) -> None:
    """Run a ``miniplm`` subcommand under torchrun with ``nproc_per_node`` processes."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={inp.cfg.nproc_per_node}",
        "-m",
        "miniplm",
        *args,
    ]
    inp.log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True)


def train_params(cfg: RunConfig, spec: TrainSpec) -> dict[str, Any]:
    """What a training stage's output depends on besides its inputs."""
    common = {"seed": cfg.seed, "device": cfg.device, "seq_len": cfg.corpus.seq_len}
    return {**dataclasses.asdict(spec), **common}


def train(
    inp: Inputs,
    spec: TrainSpec,
    out: Path,
    selection: str | None,
    *,
    data: str | None = None,
    max_steps: int | None = None,
    kd_teacher: str | None = None,
    kd_ratio: float = 0.5,
) -> TrainOut:
    """Train on recorded ``selection`` of the run's dataset (or on all of recorded
    ``data``, a dataset of another stage) into ``out/run``."""
    from miniplm.training.trainer import TrainOptions
    from miniplm.training.trainer import train as train_model

    cfg = inp.cfg
    opt = TrainOptions(
        data=inp.resolve(data or inp.get("data", DataOut).dataset),
        out=str(out / "run"),
        selection=None if selection is None else inp.resolve(selection),
        preset=spec.preset,
        arch=spec.arch,
        seq_len=cfg.corpus.seq_len,
        epochs=None if max_steps else spec.epochs,
        max_steps=max_steps,
        seed=cfg.seed,
        lr=spec.lr,
        warmup_steps=spec.warmup_steps,
        micro_batch_size=spec.micro_batch_size,
        global_batch_size=spec.global_batch_size,
        device=cfg.device,
        log_every=1,
        save_every=50,
        resume=True,
        kd_teacher=kd_teacher,
        kd_ratio=kd_ratio,
        progress=False if inp.quiet else None,
    )
    if cfg.nproc_per_node > 1:
        from miniplm.training.cli import to_argv

        torchrun(inp, to_argv(opt))
        summary: dict[str, Any] = json.loads((out / "run" / "summary.json").read_text())
    else:
        summary = train_model(opt)
    final = inp.record(out / "run" / "final")
    return TrainOut(
        model=final,
        run=inp.record(out / "run"),
        final=final,
        steps=int(summary["steps"]),
        tokens=int(summary["tokens"]),
        final_loss=summary.get("final_loss"),
        parameters=int(summary["parameters"]),
        elapsed_s=float(summary["elapsed_s"]),
    )


class TeacherStage(Stage[TrainOut]):
    """A teacher trained here on everything but the held-out slice (smoke runs)."""

    outputs = TrainOut

    def __init__(self, cfg: RunConfig) -> None:
        assert cfg.teacher.train is not None
        self.spec = cfg.teacher.train
        super().__init__("teacher", ("data", "split"), train_params(cfg, self.spec))

    def run(self, sdir: Path, inp: Inputs) -> TrainOut:
        return train(inp, self.spec, sdir, inp.get("split", SplitOut).pool)


class ReferenceStage(Stage[TrainOut]):
    """The reference LM, trained on D_ref."""

    outputs = TrainOut

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__("reference", ("data", "split"), train_params(cfg, cfg.reference))

    def run(self, sdir: Path, inp: Inputs) -> TrainOut:
        return train(inp, inp.cfg.reference, sdir, inp.get("split", SplitOut).ref)
