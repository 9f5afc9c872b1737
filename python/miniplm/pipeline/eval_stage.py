"""The stage that evaluates every student and the reference LM: held-out NLL (all, no
noise, per source for the ``eval.top_sources`` largest and the pooled rest, from one
pass in the corpus's tokens), the target set and, when asked, multiple-choice tasks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from miniplm._progress import progress_bar, show_progress
from miniplm.pipeline.config import RunConfig
from miniplm.pipeline.corpus_stages import DataOut, ModelOut, SplitOut
from miniplm.pipeline.sources import corpus_shown, noise_mask
from miniplm.pipeline.stage import Inputs, Outputs, Stage, write_json
from miniplm.pipeline.student_corpus import (
    HELDOUT,
    Slice,
    bits_per_byte,
    own_slices,
    own_tokenizer,
)
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
        params.update(task_fingerprints(cfg))
        super().__init__("eval", reads, params)

    def run(self, sdir: Path, inp: Inputs) -> EvalOut:
        from miniplm.evaluation import evaluate
        from miniplm.evaluation.model import load_eval_model

        cfg, e = inp.cfg, inp.cfg.eval
        results: dict[str, Any] = {}
        # One bar over the models (each takes a while: held-out, target set, zero-shot),
        # none for the evaluations inside it.
        show = show_progress(False if inp.quiet else None)
        bar = progress_bar(len(self.models), "model", "eval", show)
        for name, stage in self.models.items():
            path = inp.resolve(inp.get(stage, ModelOut).model)
            # Loaded once for all the evaluations, with its own tokenizer (and pad-token
            # ignore id).
            em = load_eval_model(path, device=cfg.device, need_tokenizer=True)
            pair = (em.model, em.tokenizer)
            # In its own tokens where it has its own tokenizer (then with bits per byte).
            if own_tokenizer(cfg) and name != "reference":
                r = _own_heldout(inp, sdir, pair)
            else:
                r = _corpus_heldout(inp, sdir, pair)
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


def task_fingerprints(cfg: RunConfig) -> dict[str, Any]:
    """The contents of the task files as eval settings (only those set, so the key of a
    run without them is as before): each ``eval.mc_files`` file's fingerprint, and every
    file under ``eval.include_path`` (task YAMLs and what they load) by relative path,
    so a task edited in place is evaluated again."""
    from miniplm import _core

    e = cfg.eval
    out: dict[str, Any] = {}
    if e.mc_files:
        out["mc_fingerprints"] = [_core.file_fingerprint(f) for f in e.mc_files]
    if e.include_path:
        root = Path(e.include_path)
        files = sorted(
            f
            for f in root.rglob("*")
            if f.is_file()
            and not any(p.startswith(".") or p == "__pycache__" for p in f.relative_to(root).parts)
        )
        out["include_fingerprints"] = [
            [f.relative_to(root).as_posix(), _core.file_fingerprint(str(f))] for f in files
        ]
    return out


def limited_slice(
    data: str, selection: str | None, limit: int, seed: int | list[int], out: Path
) -> tuple[str | None, bool]:
    """The slice (``selection`` of ``data``; None: all of it) a model is evaluated on
    under ``eval.max_instances`` = ``limit``, and whether it is the whole slice. Past the
    limit, a uniform sample of ``limit`` of its instances drawn with ``seed`` (the same
    for every model) and written as a selection to ``out``: the first ``limit`` in id
    order would be the first sources of a corpus written source by source."""
    from miniplm import TokenDataset

    ds = TokenDataset(data)
    if selection is None:
        ids = np.arange(len(ds), dtype=np.int64)
    else:
        ids = np.load(Path(selection) / "ids.npy").astype(np.int64)
    if not limit or len(ids) <= limit:
        return selection, True
    pick = np.sort(np.random.default_rng(seed).choice(ids, size=limit, replace=False))
    what = f"eval.max_instances = {limit} of {len(ids)}, seed {seed}"
    ds.write_selection(out, pick, what, overwrite=True)
    return str(out), False


def _limited(inp: Inputs, sdir: Path, key: str, data: str, sel: str | None) -> tuple[Any, bool]:
    """``limited_slice`` of one held-out slice, its sample under ``sdir/samples/key``
    (seeded by the run's seed and the slice's name)."""
    seed = [inp.cfg.seed, 3, *key.encode()]
    return limited_slice(data, sel, inp.cfg.eval.max_instances, seed, sdir / "samples" / key)


def _corpus_heldout(inp: Inputs, sdir: Path, pair: tuple[Any, Any]) -> dict[str, Any]:
    """Held-out figures in the corpus's tokens, from one pass over the held-out slice:
    ``heldout`` (an ``evaluate`` result), and, added up from its per-source figures,
    ``heldout_clean`` (noise sources left out), ``per_source`` (the shown sources) and
    ``per_source_other`` (the pooled rest; None where none is). With the students' own
    tokenizer each carries bits per byte over its slice's text."""
    from miniplm.evaluation import evaluate
    from miniplm.evaluation.figures import pool

    cfg, e = inp.cfg, inp.cfg.eval
    d, split = inp.get("data", DataOut), inp.get("split", SplitOut)
    data = inp.resolve(d.dataset)
    sel, whole = _limited(inp, sdir, "heldout", data, inp.resolve(split.heldout))
    res = evaluate(
        pair, data=data, selection=sel, batch_size=e.batch_size, by_source=True, progress=False
    )
    groups: dict[str, dict[str, Any]] = res["heldout"].pop("by_source")
    shown = corpus_shown(d.sources, d.counts, e.top_sources)
    names, noisy = d.sources, noise_mask(d.sources)
    clean = pool([g for k, n in enumerate(names) if not noisy[k] and (g := groups.get(n))])
    pooled = [groups[names[k]] for k in shown.pooled if names[k] in groups]
    r: dict[str, Any] = {
        "heldout": res,
        "heldout_clean": {"heldout": clean},
        "per_source": {names[k]: groups[names[k]] for k in shown.ids if names[k] in groups},
        "per_source_other": {**pool(pooled), "sources": len(shown.pooled)} if pooled else None,
    }
    if own_tokenizer(cfg):  # bits per byte beside the students', over the same text
        slices = own_slices(inp)

        def nbytes(sl: Slice | None) -> int | None:
            return None if sl is None else sl.bytes

        for key in ("heldout", "heldout_clean"):
            h = r[key]["heldout"]
            h["bits_per_byte"] = bits_per_byte(h, nbytes(slices[key]), whole)
        for src, h in r["per_source"].items():
            h["bits_per_byte"] = bits_per_byte(h, nbytes(slices["per_source"].get(src)), whole)
        if r["per_source_other"] is not None:
            h = r["per_source_other"]
            h["bits_per_byte"] = bits_per_byte(h, nbytes(slices["per_source_other"]), whole)
    return r


def _own_heldout(inp: Inputs, sdir: Path, pair: tuple[Any, Any]) -> dict[str, Any]:
    """``_corpus_heldout``'s figures for a student with its own tokenizer, one pass per
    re-tokenized slice (the packing mixes documents, so no slice is a sum of others)."""
    from miniplm.evaluation import evaluate

    e = inp.cfg.eval
    slices = own_slices(inp)

    def heldout(sl: Slice, key: str) -> dict[str, Any]:
        sel, whole = _limited(inp, sdir, f"own-{key}", sl.data, None)
        res = evaluate(pair, data=sl.data, selection=sel, batch_size=e.batch_size, progress=False)
        h = res["heldout"]
        h["bits_per_byte"] = bits_per_byte(h, sl.bytes, whole)
        return res

    r: dict[str, Any] = {}
    for key in ("heldout", "heldout_clean"):
        sl = slices[key]
        # An empty slice has no figures in the students' tokens.
        r[key] = heldout(sl, key) if sl else {"heldout": {"mean_nll": None}}
    d = inp.get("data", DataOut)
    index = {name: k for k, name in enumerate(d.sources)}  # names may hold any character
    r["per_source"] = {
        src: heldout(sl, f"source-{index[src]}")["heldout"]
        for src, sl in slices["per_source"].items()
    }
    other = slices["per_source_other"]
    r["per_source_other"] = None
    if other is not None:
        pooled = corpus_shown(d.sources, d.counts, e.top_sources).pooled
        r["per_source_other"] = {**heldout(other, "other")["heldout"], "sources": len(pooled)}
    return r


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
