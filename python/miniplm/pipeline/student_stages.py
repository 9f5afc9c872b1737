"""The students: one trained on each selection (MiniPLM's and the baselines'), with
equal optimizer steps, so equal instances, for every student; with their own tokenizer
(student_corpus.py), each on its re-tokenized subset, for equal numbers of own tokens.
Each is trained ``[students] seeds`` times, every (variant, seed) its own stage."""

from __future__ import annotations

import math
from pathlib import Path

from miniplm.pipeline.config import RunConfig
from miniplm.pipeline.corpus_stages import ModelOut
from miniplm.pipeline.seeds import student_seed
from miniplm.pipeline.select_stages import SelectOut, selection_stage, training_set
from miniplm.pipeline.stage import Inputs, Stage
from miniplm.pipeline.student_corpus import (
    TOKENIZER,
    RetokenizedOut,
    corpus_stage_name,
    own_token_steps,
    own_tokenizer,
)
from miniplm.pipeline.train_stages import TrainOut, teacher_name, train, train_params


def student_variants(cfg: RunConfig) -> list[str]:
    names = ["miniplm"]
    for b in ("random", "kd", "ppl"):
        if b in cfg.selection.baselines and not (b == "kd" and own_tokenizer(cfg)):
            names.append(b)  # KD needs the teacher's vocabulary (student_corpus.KD_LEFT_OUT)
    return names


def student_label(variant: str, i: int = 0) -> str:
    """Student ``variant``'s ``i``-th seed as eval's results.json names it."""
    return variant if i == 0 else f"{variant}-seed{i}"


def student_stage_name(variant: str, i: int = 0) -> str:
    """Its stage (seed 0 keeps the name a one-seed run has always had)."""
    return f"student-{student_label(variant, i)}"


def student_steps(cfg: RunConfig, k: int) -> int:
    """Equal optimizer steps (so equal instances) for every student."""
    return max(1, math.ceil(cfg.students.epochs * k / cfg.students.global_batch_size))


class StudentStage(Stage[TrainOut]):
    """Student ``variant`` trained on its selection with its ``i``-th seed (for model
    initialisation and data order); Vanilla KD adds the online teacher."""

    outputs = TrainOut

    def __init__(self, cfg: RunConfig, variant: str, i: int = 0) -> None:
        self.variant, self.teacher = variant, teacher_name(cfg)
        self.seed = student_seed(cfg.seed, i)
        self.own = own_tokenizer(cfg)
        # Difference Sampling's size (the step budget) and its own subset's selection.
        own_set = selection_stage(variant)
        reads: tuple[str, ...] = ("data", "select") + ((own_set,) if own_set != "select" else ())
        reads += (self.teacher,) if variant == "kd" else ()
        if self.own:  # every student's corpus: the budget is the smallest's
            reads += (TOKENIZER, *(corpus_stage_name(v) for v in student_variants(cfg)))
        params = {**train_params(cfg, cfg.students), "variant": variant, "seed": self.seed}
        del params["seeds"]  # how many seeds there are does not change this one
        if variant != "kd":
            del params["kd_ratio"]  # only Vanilla KD mixes in the teacher
        if not self.own:
            del params["tokenizer"]  # unset: the keys of runs made before the table existed
        super().__init__(student_stage_name(variant, i), reads, params)

    def run(self, sdir: Path, inp: Inputs) -> TrainOut:
        cfg, sel = inp.cfg, inp.get("select", SelectOut)
        if self.own:  # its own re-tokenized subset, equal budgets of own tokens
            s = cfg.students
            corpora = {
                v: inp.get(corpus_stage_name(v), RetokenizedOut).to_json()
                for v in student_variants(cfg)
            }
            steps = own_token_steps(corpora, s.epochs, s.global_batch_size)[self.variant]
            data = corpora[self.variant]["dataset"]
            return train(inp, s, sdir, None, data=data, max_steps=steps, seed=self.seed)
        steps = student_steps(cfg, sel.k)
        selection = training_set(inp, self.variant)
        if self.variant == "kd":  # Vanilla KD: the random subset with the online teacher
            return train(
                inp,
                cfg.students,
                sdir,
                selection,
                max_steps=steps,
                kd_teacher=inp.resolve(inp.get(self.teacher, ModelOut).model),
                kd_ratio=cfg.students.kd_ratio,
                seed=self.seed,
            )
        return train(inp, cfg.students, sdir, selection, max_steps=steps, seed=self.seed)


def student_stages(cfg: RunConfig) -> list[StudentStage]:
    """Every (variant, seed) of the run, seed-major so each seed's set completes early."""
    variants = student_variants(cfg)
    return [StudentStage(cfg, v, i) for i in range(cfg.students.seeds) for v in variants]
