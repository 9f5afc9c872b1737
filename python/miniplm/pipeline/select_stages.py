"""The stages that score the pool with the teacher and the reference and select from
it: Difference Sampling, and the baselines of equal size."""

from __future__ import annotations

import dataclasses
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
    """Selection folders (recorded paths); a baseline not asked for is None."""

    miniplm: str
    k: int
    report: dict[str, Any]  # Difference Sampling's selection report
    random: str | None
    ppl: str | None

    def training_set(self, variant: str) -> str:
        """The selection a student ``variant`` trains on (Vanilla KD: the random one)."""
        sel = {"miniplm": self.miniplm, "random": self.random, "kd": self.random}
        got = {**sel, "ppl": self.ppl}.get(variant)
        if got is None:
            raise KeyError(f"no selection for student {variant!r}")
        return got


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
    """Difference Sampling, and the baselines of equal size."""

    outputs = SelectOut

    def __init__(self, cfg: RunConfig) -> None:
        params = {**dataclasses.asdict(cfg.selection), "seed": cfg.seed}
        super().__init__("select", ("data", "split", "score"), params)

    def run(self, sdir: Path, inp: Inputs) -> SelectOut:
        import miniplm

        cfg, sc = inp.cfg, inp.get("score", ScoreOut)
        ex = inp.resolve(inp.get("split", SplitOut).exclude)
        teacher = inp.resolve(sc.teacher)
        main = miniplm.select(
            sdir / "miniplm",
            teacher=teacher,
            reference=inp.resolve(sc.reference),
            ratio=cfg.selection.alpha,
            exclude=ex,
            overwrite=True,
        )
        k = int(main["num_selected"])
        out = SelectOut(inp.record(sdir / "miniplm"), k, dict(main), None, None)
        if "random" in cfg.selection.baselines or "kd" in cfg.selection.baselines:
            miniplm.select(
                sdir / "random",
                random=True,
                count=k,
                exclude=ex,
                data=inp.resolve(inp.get("data", DataOut).dataset),
                seed=cfg.seed,
                overwrite=True,
            )
            out.random = inp.record(sdir / "random")
        if "ppl" in cfg.selection.baselines:
            # Perplexity filtering: keep the instances the teacher finds most likely.
            miniplm.select(
                sdir / "ppl",
                by="teacher",
                keep="lowest",
                teacher=teacher,
                count=k,
                exclude=ex,
                overwrite=True,
            )
            out.ppl = inp.record(sdir / "ppl")
        return out
