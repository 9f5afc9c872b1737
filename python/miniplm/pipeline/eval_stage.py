"""The stage that evaluates every student and the reference LM: held-out NLL (all, no
noise, per source) and, when asked, multiple-choice tasks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miniplm._progress import progress_bar, show_progress
from miniplm.pipeline.config import RunConfig
from miniplm.pipeline.corpus_stages import ModelOut
from miniplm.pipeline.stage import Inputs, Outputs, Stage, write_json
from miniplm.pipeline.student_corpus import HELDOUT, bits_per_byte, eval_slices, own_tokenizer
from miniplm.pipeline.student_stages import student_label, student_stage_name, student_variants
from miniplm.pipeline.target_stage import TARGET, TargetOut, has_target


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
        reads += (HELDOUT,) if own_tokenizer(cfg) else ()
        reads += (TARGET,) if has_target(cfg) else ()
        params = {**dataclasses.asdict(cfg.eval), "device": cfg.device}
        super().__init__("eval", reads, params)

    def run(self, sdir: Path, inp: Inputs) -> EvalOut:
        from miniplm.evaluation import evaluate
        from miniplm.evaluation.model import load_eval_model

        cfg, e = inp.cfg, inp.cfg.eval
        results: dict[str, Any] = {}
        # One bar over the models (each takes a while: held-out, per source, target set,
        # zero-shot), none for the evaluations inside it.
        show = show_progress(False if inp.quiet else None)
        bar = progress_bar(len(self.models), "model", "eval", show)
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
                        progress=False,
                    )
                    h = r[which]["heldout"]
                    h["bits_per_byte"] = bits_per_byte(h, sl.bytes, not e.max_instances)
            r["per_source"] = {}
            for src, sl in slices["per_source"].items():
                h = evaluate(
                    pair,
                    data=sl.data,
                    selection=sl.selection,
                    batch_size=e.batch_size,
                    progress=False,
                )
                h["heldout"]["bits_per_byte"] = bits_per_byte(h["heldout"], sl.bytes, True)
                r["per_source"][src] = h["heldout"]
            if e.mc_files or e.tasks:
                r["tasks"] = evaluate(
                    pair,
                    mc_files=e.mc_files,
                    tasks=e.tasks,
                    include_path=e.include_path or None,
                    batch_size=e.batch_size,
                    progress=False,
                )
            if has_target(cfg):
                r.update(_target(inp, pair))
            results[name] = r
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        write_json(sdir / "results.json", results)
        return EvalOut(inp.record(sdir / "results.json"))


def _target(inp: Inputs, pair: tuple[Any, Any]) -> dict[str, Any]:
    """LM loss on the text outside the corpus (in windows of the corpus's length, the
    length the students trained at) and zero-shot accuracy on the tasks made from it."""
    from miniplm.evaluation import evaluate

    cfg, t = inp.cfg, inp.get(TARGET, TargetOut)
    out: dict[str, Any] = {}
    out["target"] = {}
    for i, f in enumerate(t.texts):  # each file its own set: "target" is the bundled works
        bundled = i == 0 and bool(t.works)
        name = "target" if bundled else str(Path(f).name)
        out["target"][name] = evaluate(
            pair,
            texts=inp.resolve(f),
            texts_group=t.group if bundled else None,
            seq_len=cfg.corpus.seq_len,
            batch_size=cfg.eval.batch_size,
            progress=False,
        )["texts"]
    if t.mc_files:
        out["zero_shot"] = evaluate(
            pair, mc_files=t.mc_files, batch_size=cfg.eval.batch_size, progress=False
        )["tasks"]
    return out
