"""The stages of ``miniplm run``, in order: what each is lives in its own module
(``stage.py`` for what a stage is, the bodies by what they do)."""

from __future__ import annotations

from typing import Any

from miniplm.pipeline.config import RunConfig
from miniplm.pipeline.corpus_stages import (
    DataStage,
    SplitStage,
    TeacherModelStage,
    TextStage,
    TokenizerStage,
)
from miniplm.pipeline.eval_stage import EvalStage
from miniplm.pipeline.select_stages import ScoreStage, TeacherScoreStage, selection_stages
from miniplm.pipeline.stage import Context, Stage, run_stage
from miniplm.pipeline.student_corpus import own_stages
from miniplm.pipeline.student_stages import student_stages, student_variants
from miniplm.pipeline.target_stage import TargetStage, has_target
from miniplm.pipeline.train_stages import ReferenceStage, TeacherStage

__all__ = ["Context", "Stage", "build_stages", "run_stage"]


def build_stages(cfg: RunConfig) -> list[Stage[Any]]:
    """The stages of a run, in order (each reads only stages before it)."""
    stages: list[Stage[Any]] = []
    if not cfg.corpus.inputs:
        stages.append(TextStage(cfg))
    if cfg.teacher.train is None:
        stages.append(TeacherModelStage(cfg))
    stages += [TokenizerStage(cfg), DataStage(cfg), SplitStage(cfg)]
    if cfg.teacher.train is not None:
        stages.append(TeacherStage(cfg))
    stages += [TeacherScoreStage(cfg), ReferenceStage(cfg), ScoreStage(cfg)]
    stages += selection_stages(cfg)
    stages += own_stages(cfg, student_variants(cfg))  # students' own tokenizer and data
    stages += student_stages(cfg)
    if has_target(cfg):
        stages.append(TargetStage(cfg))
    stages.append(EvalStage(cfg))
    return stages
