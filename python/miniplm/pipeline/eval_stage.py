"""The stage that evaluates every student and the reference LM: held-out NLL (all, no
noise, per source) and, when asked, multiple-choice tasks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miniplm.pipeline.config import RunConfig
from miniplm.pipeline.corpus_stages import DataOut, ModelOut, SplitOut
from miniplm.pipeline.stage import Inputs, Outputs, Stage, write_json
from miniplm.pipeline.student_stages import student_label, student_stage_name, student_variants


@dataclass
class EvalOut(Outputs):
    results: str  # results.json: model (``student_label``, "reference") -> evaluations


class EvalStage(Stage[EvalOut]):
    outputs = EvalOut

    def __init__(self, cfg: RunConfig) -> None:
        self.models = {
            student_label(v, i): student_stage_name(v, i)
            for i in range(cfg.students.seeds)
            for v in student_variants(cfg)
        }
        self.models["reference"] = "reference"
        reads = ("data", "split", *self.models.values())
        params = {**dataclasses.asdict(cfg.eval), "device": cfg.device}
        super().__init__("eval", reads, params)

    def run(self, sdir: Path, inp: Inputs) -> EvalOut:
        from miniplm.evaluation import evaluate
        from miniplm.evaluation.model import load_eval_model

        cfg, split, e = inp.cfg, inp.get("split", SplitOut), inp.cfg.eval
        data = inp.resolve(inp.get("data", DataOut).dataset)
        results: dict[str, Any] = {}
        for name, stage in self.models.items():
            path = inp.resolve(inp.get(stage, ModelOut).model)
            # Loaded once for all the evaluations, with its own tokenizer (and pad-token
            # ignore id).
            em = load_eval_model(path, device=cfg.device, need_tokenizer=True)
            pair = (em.model, em.tokenizer)
            r: dict[str, Any] = {}
            for which, sel in (("heldout", split.heldout), ("heldout_clean", split.heldout_clean)):
                r[which] = evaluate(
                    pair,
                    data=data,
                    selection=inp.resolve(sel),
                    batch_size=e.batch_size,
                    max_instances=e.max_instances or None,
                )
            r["per_source"] = {
                src: evaluate(pair, data=data, selection=inp.resolve(sel), batch_size=e.batch_size)[
                    "heldout"
                ]
                for src, sel in split.heldout_by_source.items()
            }
            if e.mc_files or e.tasks:
                r["tasks"] = evaluate(
                    pair,
                    mc_files=e.mc_files,
                    tasks=e.tasks,
                    include_path=e.include_path or None,
                    batch_size=e.batch_size,
                )
            results[name] = r
        write_json(sdir / "results.json", results)
        return EvalOut(inp.record(sdir / "results.json"))
