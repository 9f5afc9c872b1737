"""The stages that score the pool with the teacher and the reference and select from
it: Difference Sampling, and the baselines of equal size."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miniplm.pipeline.config import RunConfig
from miniplm.pipeline.corpus_stages import DataOut, ModelOut, SplitOut
from miniplm.pipeline.stage import Inputs, Outputs, Stage
from miniplm.pipeline.train_stages import teacher_name, torchrun


@dataclass
class ScoreOut(Outputs):
    teacher: str  # score folders
    reference: str
    summaries: list[dict[str, Any]]  # the scoring summaries, teacher's first


@dataclass
class SelectOut(Outputs):
    """Difference Sampling's selection folder (a recorded path), its size and report."""

    miniplm: str
    k: int
    report: dict[str, Any]  # Difference Sampling's selection report


@dataclass
class BaselineOut(Outputs):
    """A baseline's selection folder (a recorded path), of Difference Sampling's size."""

    selection: str


def selection_stage(variant: str) -> str:
    """The stage whose selection student ``variant`` trains on (Vanilla KD: the random
    subset's, with the online teacher). Each baseline is a stage of its own, so adding
    one leaves the other students' inputs, and so the students, as they were."""
    return {"miniplm": "select", "random": "select-random", "kd": "select-random"}.get(
        variant, f"select-{variant}"
    )


def training_set(inp: Inputs, variant: str) -> str:
    """The recorded selection student ``variant`` trains on."""
    stage = selection_stage(variant)
    if stage == "select":
        return inp.get(stage, SelectOut).miniplm
    return inp.get(stage, BaselineOut).selection


def _score(inp: Inputs, model: str, out: Path) -> dict[str, Any]:
    """Score D - D_ref - held-out with ``model`` into run ``out`` (resuming one left
    unfinished); its summary. Every model of a run leaves out the positions whose input is
    the corpus's document separator (the original rule, pad = EOS), not each its own pad
    id: a chat teacher's pad (<|im_end|>) would have it score the separators the reference
    skips, and r would compare means over different positions."""
    from miniplm.dataset_meta import read_dataset_meta
    from miniplm.errors import InternalError
    from miniplm.scoring.runner import ScoreOptions, score

    cfg = inp.cfg
    data = inp.resolve(inp.get("data", DataOut).dataset)
    eos = read_dataset_meta(data).eos_id
    if eos is None:
        raise InternalError(f"{data}: the corpus `miniplm tokenize` wrote records no eos_id")
    opt = ScoreOptions(
        batch_size=cfg.teacher.batch_size,
        device=cfg.device,
        ignore_id=eos,
        skip_ids=inp.resolve(inp.get("split", SplitOut).exclude),
        progress=False if inp.quiet or cfg.nproc_per_node > 1 else None,
    )
    if cfg.nproc_per_node > 1:
        from miniplm.scoring.cli import to_argv

        torchrun(inp, to_argv([model], data, [str(out)], opt))
        summary: dict[str, Any] = json.loads((out / "manifest.json").read_text())["summary"]
        return summary
    return score([model], data, [str(out)], opt)[0]


def _score_params(cfg: RunConfig) -> dict[str, Any]:
    return {"batch_size": cfg.teacher.batch_size, "device": cfg.device, "ignore": "eos"}


@dataclass
class TeacherScoreOut(Outputs):
    run: str  # the teacher's score folder
    summary: dict[str, Any]


class TeacherScoreStage(Stage[TeacherScoreOut]):
    """The teacher's pass over D - D_ref - held-out: the costly one, in a stage of its
    own, so that another reference (an ablation of its size or data) does not pay it
    again."""

    outputs = TeacherScoreOut

    def __init__(self, cfg: RunConfig) -> None:
        self.teacher = teacher_name(cfg)
        super().__init__("score-teacher", ("data", "split", self.teacher), _score_params(cfg))

    def run(self, sdir: Path, inp: Inputs) -> TeacherScoreOut:
        model = inp.resolve(inp.get(self.teacher, ModelOut).model)
        summary = _score(inp, model, sdir / "teacher")
        return TeacherScoreOut(inp.record(sdir / "teacher"), summary)


class ScoreStage(Stage[ScoreOut]):
    """The reference's pass, beside the teacher's: both score runs of the selection."""

    outputs = ScoreOut

    def __init__(self, cfg: RunConfig) -> None:
        reads = ("data", "split", "reference", "score-teacher")
        super().__init__("score", reads, _score_params(cfg))

    def run(self, sdir: Path, inp: Inputs) -> ScoreOut:
        t = inp.get("score-teacher", TeacherScoreOut)
        summary = _score(inp, inp.resolve(inp.get("reference", ModelOut).model), sdir / "reference")
        return ScoreOut(t.run, inp.record(sdir / "reference"), [t.summary, summary])


class SelectStage(Stage[SelectOut]):
    """Difference Sampling: the top alpha by r of the eligible instances."""

    outputs = SelectOut

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__("select", ("data", "split", "score"), {"alpha": cfg.selection.alpha})

    def run(self, sdir: Path, inp: Inputs) -> SelectOut:
        import miniplm

        sc = inp.get("score", ScoreOut)
        main = miniplm.select(
            sdir / "miniplm",
            teacher=inp.resolve(sc.teacher),
            reference=inp.resolve(sc.reference),
            ratio=inp.cfg.selection.alpha,
            exclude=inp.resolve(inp.get("split", SplitOut).exclude),
            overwrite=True,
        )
        return SelectOut(inp.record(sdir / "miniplm"), int(main["num_selected"]), dict(main))


class RandomSelectStage(Stage[BaselineOut]):
    """A uniform random subset of Difference Sampling's size (w/o KD, and Vanilla KD's
    data): the same eligible pool, the run's seed."""

    outputs = BaselineOut

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__("select-random", ("data", "split", "select"), {"seed": cfg.seed})

    def run(self, sdir: Path, inp: Inputs) -> BaselineOut:
        import miniplm

        miniplm.select(
            sdir / "random",
            random=True,
            count=inp.get("select", SelectOut).k,
            exclude=inp.resolve(inp.get("split", SplitOut).exclude),
            data=inp.resolve(inp.get("data", DataOut).dataset),
            seed=inp.cfg.seed,
            overwrite=True,
        )
        return BaselineOut(inp.record(sdir / "random"))


class PplSelectStage(Stage[BaselineOut]):
    """Perplexity filtering: the instances the teacher finds most likely, as many as
    Difference Sampling keeps."""

    outputs = BaselineOut

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__("select-ppl", ("split", "score-teacher", "select"), {})

    def run(self, sdir: Path, inp: Inputs) -> BaselineOut:
        import miniplm

        miniplm.select(
            sdir / "ppl",
            by="teacher",
            keep="lowest",
            teacher=inp.resolve(inp.get("score-teacher", TeacherScoreOut).run),
            count=inp.get("select", SelectOut).k,
            exclude=inp.resolve(inp.get("split", SplitOut).exclude),
            overwrite=True,
        )
        return BaselineOut(inp.record(sdir / "ppl"))


def selection_stages(cfg: RunConfig) -> list[Stage[Any]]:
    """Difference Sampling and the baselines the run compares it with."""
    b = cfg.selection.baselines
    return [
        SelectStage(cfg),
        *([RandomSelectStage(cfg)] if "random" in b or "kd" in b else []),
        *([PplSelectStage(cfg)] if "ppl" in b else []),
    ]
