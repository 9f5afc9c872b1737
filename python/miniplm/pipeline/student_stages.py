"""The students: one trained on each selection (MiniPLM's and the baselines'), with
equal optimizer steps, so equal instances, for every student."""

from __future__ import annotations

import math
from pathlib import Path

from miniplm.pipeline.config import RunConfig
from miniplm.pipeline.corpus_stages import ModelOut
from miniplm.pipeline.select_stages import SelectOut
from miniplm.pipeline.stage import Inputs, Stage
from miniplm.pipeline.train_stages import TrainOut, teacher_name, train, train_params


def student_variants(cfg: RunConfig) -> list[str]:
    names = ["miniplm"]
    for b in ("random", "kd", "ppl"):
        if b in cfg.selection.baselines:
            names.append(b)
    return names


def student_stage_name(variant: str) -> str:
    return f"student-{variant}"


def student_steps(cfg: RunConfig, k: int) -> int:
    """Equal optimizer steps (so equal instances) for every student."""
    return max(1, math.ceil(cfg.students.epochs * k / cfg.students.global_batch_size))


class StudentStage(Stage[TrainOut]):
    """Student ``variant`` trained on its selection; Vanilla KD adds the online teacher."""

    outputs = TrainOut

    def __init__(self, cfg: RunConfig, variant: str) -> None:
        self.variant, self.teacher = variant, teacher_name(cfg)
        reads = ("data", "select") + ((self.teacher,) if variant == "kd" else ())
        params = {**train_params(cfg, cfg.students), "variant": variant}
        super().__init__(student_stage_name(variant), reads, params)

    def run(self, sdir: Path, inp: Inputs) -> TrainOut:
        cfg, sel = inp.cfg, inp.get("select", SelectOut)
        steps = student_steps(cfg, sel.k)
        selection = sel.training_set(self.variant)
        if self.variant == "kd":  # Vanilla KD: the random subset with the online teacher
            return train(
                inp,
                cfg.students,
                sdir,
                selection,
                max_steps=steps,
                kd_teacher=inp.resolve(inp.get(self.teacher, ModelOut).model),
                kd_ratio=cfg.students.kd_ratio,
            )
        return train(inp, cfg.students, sdir, selection, max_steps=steps)
