"""The stages that score the pool with the teacher and the reference and select from
it: Difference Sampling, and the baselines of equal size."""

from __future__ import annotations

import dataclasses
import json
import os
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


class ScoreStage(Stage[ScoreOut]):
    """Teacher and reference in one pass over D - D_ref - held-out."""

    outputs = ScoreOut

    def __init__(self, cfg: RunConfig) -> None:
        self.teacher = teacher_name(cfg)
        # Both models leave out the positions whose input is the corpus's document
        # separator (the original rule, pad = EOS), not each its own pad id: a chat
        # teacher's pad (<|im_end|>) would leave it scoring the separators the reference
        # skips, and r would compare means over different positions.
        params = {"batch_size": cfg.teacher.batch_size, "device": cfg.device, "ignore": "eos"}
        super().__init__("score", ("data", "split", "reference", self.teacher), params)

    def run(self, sdir: Path, inp: Inputs) -> ScoreOut:
        from miniplm.dataset_meta import read_dataset_meta
        from miniplm.errors import InternalError
        from miniplm.scoring.runner import ScoreOptions, score

        cfg = inp.cfg
        models = [
            inp.resolve(inp.get(self.teacher, ModelOut).model),
            inp.resolve(inp.get("reference", ModelOut).model),
        ]
        outs: list[str | os.PathLike[str]] = [str(sdir / "teacher"), str(sdir / "reference")]
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

            torchrun(inp, to_argv(models, data, outs, opt))
            summaries = [
                json.loads((Path(o) / "manifest.json").read_text())["summary"] for o in outs
            ]
        else:
            summaries = score(models, data, outs, opt)
        return ScoreOut(inp.record(outs[0]), inp.record(outs[1]), summaries)


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
