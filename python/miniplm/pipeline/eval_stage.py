"""The stage that evaluates every student and the reference LM: held-out NLL (all, no
noise, per source) and, when asked, multiple-choice tasks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miniplm.pipeline.config import RunConfig
from miniplm.pipeline.corpus_stages import ModelOut
from miniplm.pipeline.stage import Inputs, Outputs, Stage, write_json
from miniplm.pipeline.student_corpus import HELDOUT, bits_per_byte, eval_slices, own_tokenizer
from miniplm.pipeline.student_stages import student_stage_name, student_variants


@dataclass
class EvalOut(Outputs):
    results: str  # results.json: model name -> its evaluations


class EvalStage(Stage[EvalOut]):
    outputs = EvalOut

    def __init__(self, cfg: RunConfig) -> None:
        self.models = {v: student_stage_name(v) for v in student_variants(cfg)}
        self.models["reference"] = "reference"
        reads = ("data", "split", *self.models.values())
        reads += (HELDOUT,) if own_tokenizer(cfg) else ()
        params = {**dataclasses.asdict(cfg.eval), "device": cfg.device}
        super().__init__("eval", reads, params)

    def run(self, sdir: Path, inp: Inputs) -> EvalOut:
        from miniplm.evaluation import evaluate
        from miniplm.evaluation.model import load_eval_model

        cfg, e = inp.cfg, inp.cfg.eval
        results: dict[str, Any] = {}
        for name, stage in self.models.items():
            path = inp.resolve(inp.get(stage, ModelOut).model)
            # Loaded once for all the evaluations, with its own tokenizer (and pad-token
            # ignore id).
            em = load_eval_model(path, device=cfg.device, need_tokenizer=True)
            pair = (em.model, em.tokenizer)
            # In its own tokens where it has its own tokenizer, then with bits per byte.
            slices = eval_slices(inp, student=name != "reference")
            r: dict[str, Any] = {}
            for which in ("heldout", "heldout_clean"):
                sl = slices[which]
                r[which] = {"heldout": {"mean_nll": None}}  # empty in the students' tokens
                if sl is not None:
                    r[which] = evaluate(
                        pair,
                        data=sl.data,
                        selection=sl.selection,
                        batch_size=e.batch_size,
                        max_instances=e.max_instances or None,
                    )
                    h = r[which]["heldout"]
                    h["bits_per_byte"] = bits_per_byte(h, sl.bytes, not e.max_instances)
            r["per_source"] = {}
            for src, sl in slices["per_source"].items():
                h = evaluate(pair, data=sl.data, selection=sl.selection, batch_size=e.batch_size)
                h["heldout"]["bits_per_byte"] = bits_per_byte(h["heldout"], sl.bytes, True)
                r["per_source"][src] = h["heldout"]
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
