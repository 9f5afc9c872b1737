"""The stages of ``miniplm run``, each writing into its own folder under the run dir.

A stage is skipped when its ``stage.json`` says it completed with the same key: a hash
of its settings and of the completion stamps of the stages it reads. A stage whose key
changed is redone from scratch (and so are the stages after it, whose keys include its
new stamp); a stage interrupted mid-way (same key, not complete) is run again and picks
up where it stopped through its own resume support (training checkpoints, score parts).

Paths in a stage's outputs are recorded relative to the run directory (``record``) and
resolved against it on read (``path``/``resolve``), so a run directory can be moved and
continued from any working directory; paths outside it are recorded absolute."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from miniplm._atomic import atomic_write_text
from miniplm.pipeline.config import RunConfig, TrainSpec, corpus_files
from miniplm.pipeline.student_corpus import (
    bits_per_byte,
    corpus_inputs,
    eval_slices,
    own_token_steps,
    own_tokenizer,
    student_corpus_stage,
    student_heldout_stage,
    student_tokenizer_stage,
)

if TYPE_CHECKING:
    from miniplm.data import TokenDataset


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True))


@dataclass
class Stage:
    name: str
    reads: tuple[str, ...]
    params: dict[str, Any]
    fn: Callable[[Path, Context], dict[str, Any]]


# Marks a record whose output paths are run-relative; a record without it (written by an
# older version, paths relative to that run's cwd) is not trusted and its stage reruns.
PATHS = "run-relative"


@dataclass
class Context:
    cfg: RunConfig
    root: Path
    quiet: bool = False
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> its stage.json
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def out(self, stage: str) -> dict[str, Any]:
        outputs: dict[str, Any] = self.done[stage]["outputs"]
        return outputs

    def record(self, p: str | os.PathLike[str]) -> str:
        """``p`` as a stage output records it: relative to the run dir when inside it."""
        full, root = os.path.abspath(p), os.path.abspath(self.root)
        if os.path.commonpath([full, root]) == root:
            return Path(os.path.relpath(full, root)).as_posix()
        return full

    def resolve(self, recorded: str) -> str:
        """The path a stage output recorded with ``record`` names, from any cwd."""
        return recorded if os.path.isabs(recorded) else str(self.root / recorded)

    def path(self, stage: str, key: str) -> str:
        """The path output ``key`` of ``stage``, resolved."""
        return self.resolve(self.out(stage)[key])

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(f"[miniplm run] {msg}", file=sys.stderr, flush=True)


def stage_key(stage: Stage, ctx: Context) -> str:
    from miniplm import __version__

    blob = {
        "miniplm": __version__,  # another release may write a stage differently
        "stage": stage.name,
        "params": stage.params,
        "reads": {r: ctx.done[r]["stamp"] for r in stage.reads},
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def run_stage(stage: Stage, ctx: Context) -> None:
    sdir = ctx.root / stage.name
    meta_path = sdir / "stage.json"
    key = stage_key(stage, ctx)
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    if (
        meta is not None
        and meta.get("key") == key
        and meta.get("complete")
        and meta.get("paths") == PATHS  # else an older record: paths from its cwd
    ):
        ctx.done[stage.name] = meta
        ctx.skipped.append(stage.name)
        ctx.log(f"{stage.name}: complete, inputs unchanged: skipped")
        return
    if sdir.exists() and (meta is None or meta.get("key") != key):
        shutil.rmtree(sdir)  # other inputs (or no record of them): start over
    resuming = sdir.exists()
    sdir.mkdir(parents=True, exist_ok=True)
    _write_json(meta_path, {"key": key, "complete": False, "params": stage.params})
    ctx.log(f"{stage.name}: {'resuming' if resuming else 'running'}")
    t0 = time.perf_counter()
    outputs = stage.fn(sdir, ctx)
    meta = {
        "key": key,
        "complete": True,
        "stamp": uuid.uuid4().hex,
        "params": stage.params,
        "elapsed_s": round(time.perf_counter() - t0, 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "paths": PATHS,
        "outputs": outputs,
    }
    _write_json(meta_path, meta)
    ctx.done[stage.name] = meta
    ctx.ran.append(stage.name)
    ctx.log(f"{stage.name}: done in {meta['elapsed_s']:.1f} s")


# ---- helpers ------------------------------------------------------------------------
def _torchrun(ctx: Context, args: list[str]) -> None:
    """Run a ``miniplm`` subcommand under torchrun with ``nproc_per_node`` processes."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={ctx.cfg.nproc_per_node}",
        "-m",
        "miniplm",
        *args,
    ]
    ctx.log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True)


def _write_ids(ctx: Context, ds: TokenDataset, d: Path, ids: np.ndarray, what: str) -> str:
    """A selection folder for ``ids`` of ``ds``, written by the core's selection writer
    (so it carries the dataset's count and fingerprint like ``select``'s own)."""
    d.parent.mkdir(parents=True, exist_ok=True)
    ds.write_selection(d, ids, what, overwrite=True)
    return ctx.record(d)


def _train(
    ctx: Context,
    spec: TrainSpec,
    out: Path,
    selection: str | None,
    *,
    data: str | None = None,
    max_steps: int | None = None,
    kd_teacher: str | None = None,
    kd_ratio: float = 0.5,
) -> dict[str, Any]:
    from miniplm.training.trainer import TrainOptions, train

    cfg = ctx.cfg
    data = data or ctx.path("data", "dataset")
    opt = TrainOptions(
        data=data,
        out=str(out / "run"),
        selection=None if selection is None else ctx.resolve(selection),
        preset=spec.preset,
        arch=spec.arch,
        seq_len=cfg.corpus.seq_len,
        epochs=None if max_steps else spec.epochs,
        max_steps=max_steps,
        seed=cfg.seed,
        lr=spec.lr,
        warmup_steps=spec.warmup_steps,
        micro_batch_size=spec.micro_batch_size,
        global_batch_size=spec.global_batch_size,
        device=cfg.device,
        log_every=1,
        save_every=50,
        resume=True,
        kd_teacher=kd_teacher,
        kd_ratio=kd_ratio,
        progress=False if ctx.quiet else None,
    )
    if cfg.nproc_per_node > 1:
        from miniplm.training.cli import to_argv

        _torchrun(ctx, to_argv(opt))
        summary: dict[str, Any] = json.loads((out / "run" / "summary.json").read_text())
    else:
        summary = train(opt)
    paths = {k: ctx.record(out / "run" / p) for k, p in (("model", "final"), ("run", ""))}
    return {**summary, "final": paths["model"], **paths, "data": ctx.record(data)}


# ---- stage bodies ---------------------------------------------------------------------
def text_stage(sdir: Path, ctx: Context) -> dict[str, Any]:
    from miniplm.default_corpus import write_default_corpus

    c = ctx.cfg.corpus
    path = write_default_corpus(sdir, seed=ctx.cfg.seed, max_bytes=c.max_bytes or None)
    return {"inputs": [ctx.record(path)]}


def teacher_model_stage(sdir: Path, ctx: Context) -> dict[str, Any]:
    model = ctx.cfg.teacher.model
    if model == "smollm2":
        from miniplm.bundled import smollm2_checkpoint

        model = str(smollm2_checkpoint())
    return {"model": ctx.record(model)}


def tokenizer_stage(sdir: Path, ctx: Context) -> dict[str, Any]:
    cfg = ctx.cfg
    if cfg.tokenizer.path:
        return {"tokenizer": ctx.record(cfg.tokenizer.path)}
    if cfg.tokenizer.train_bpe_vocab:
        from miniplm.corpus.bpe import train_bpe

        c = cfg.corpus
        out = train_bpe(
            corpus_inputs(ctx),
            sdir / "tokenizer",
            cfg.tokenizer.train_bpe_vocab,
            text_field=c.text_field,
            text_split=c.text_split,
            overwrite=True,
        )
        return {"tokenizer": ctx.record(out)}
    return {"tokenizer": ctx.out("teacher_model")["model"]}  # already recorded


def data_stage(sdir: Path, ctx: Context) -> dict[str, Any]:
    from miniplm.corpus.tokenize import tokenize_corpus

    cfg, c = ctx.cfg, ctx.cfg.corpus
    dataset = sdir / "corpus"
    info = tokenize_corpus(
        corpus_inputs(ctx),
        dataset,
        ctx.path("tokenizer", "tokenizer"),
        seq_len=c.seq_len,
        packing=c.packing,
        text_field=c.text_field,
        source_field=c.source_field or None,
        sources=c.sources or None,
        text_split=c.text_split,
        min_tokens=c.min_tokens,
        shard_size=c.shard_size or None,
        batch_docs=c.batch_docs,
        workers=c.workers or None,
        reference_fraction=c.reference_fraction,
        seed=cfg.seed,
        eos_token=c.eos_token or None,
        eos_id=None if c.eos_id < 0 else c.eos_id,
        overwrite=True,
        progress=False if ctx.quiet else None,
    )
    return {"dataset": ctx.record(dataset), "counts": info["counts"], "sources": info["sources"]}


def split_stage(sdir: Path, ctx: Context) -> dict[str, Any]:
    """D_ref (drawn by tokenize), a held-out slice of the rest, and what selection
    excludes (both); ``heldout-clean`` drops the labelled noise sources."""
    from miniplm import TokenDataset
    from miniplm.default_corpus import NOISE_PREFIX

    cfg = ctx.cfg
    data = Path(ctx.path("data", "dataset"))
    ds = TokenDataset(data)
    n = len(ds)
    ref = np.load(data / "ref_ids.npy").astype(np.int64)
    rest = np.setdiff1d(np.arange(n), ref)
    rng = np.random.default_rng([cfg.seed, 1])
    k = max(1, int(cfg.corpus.heldout_fraction * n))
    heldout = np.sort(rng.choice(rest, size=min(k, len(rest)), replace=False))
    sources = np.load(data / "sources.npy").astype(np.int64)
    names = ctx.out("data")["sources"]
    noisy = np.array([str(s).startswith(NOISE_PREFIX) for s in names], dtype=bool)
    clean = heldout[~noisy[sources[heldout]]] if len(names) else heldout
    exclude = np.union1d(ref, heldout)
    np.save(sdir / "exclude.npy", exclude.astype(np.uint64))
    by_source = {
        str(name): _write_ids(
            ctx,
            ds,
            sdir / "heldout-by-source" / str(k),
            heldout[sources[heldout] == k],
            f"held-out {name}",
        )
        for k, name in enumerate(names)
        if (sources[heldout] == k).any()
    }
    return {
        "heldout_by_source": by_source,
        "instances": n,
        "ref": _write_ids(ctx, ds, sdir / "ref", ref, "reference training slice D_ref"),
        "heldout": _write_ids(ctx, ds, sdir / "heldout", heldout, "held-out evaluation slice"),
        "heldout_clean": _write_ids(
            ctx, ds, sdir / "heldout-clean", clean, "held-out, noise removed"
        ),
        "pool": _write_ids(
            ctx, ds, sdir / "pool", np.setdiff1d(np.arange(n), heldout), "all but held-out"
        ),
        "exclude": ctx.record(sdir / "exclude.npy"),
        "counts": {"ref": len(ref), "heldout": len(heldout), "heldout_clean": len(clean)},
    }


def teacher_stage(sdir: Path, ctx: Context) -> dict[str, Any]:
    """A teacher trained here on everything but the held-out slice (smoke runs)."""
    spec = ctx.cfg.teacher.train
    assert spec is not None
    return _train(ctx, spec, sdir, ctx.out("split")["pool"])


def reference_stage(sdir: Path, ctx: Context) -> dict[str, Any]:
    return _train(ctx, ctx.cfg.reference, sdir, ctx.out("split")["ref"])


def teacher_path(ctx: Context) -> str:
    if "teacher" in ctx.done:
        return ctx.path("teacher", "model")
    return ctx.path("teacher_model", "model")


def score_stage(sdir: Path, ctx: Context) -> dict[str, Any]:
    """Teacher and reference in one pass over D - D_ref - held-out."""
    from miniplm.scoring.runner import ScoreOptions, score

    cfg = ctx.cfg
    models = [teacher_path(ctx), ctx.path("reference", "model")]
    outs: list[str | os.PathLike[str]] = [str(sdir / "teacher"), str(sdir / "reference")]
    data = ctx.path("data", "dataset")
    skip = ctx.path("split", "exclude")
    opt = ScoreOptions(
        batch_size=cfg.teacher.batch_size,
        device=cfg.device,
        skip_ids=skip,
        progress=False if ctx.quiet or cfg.nproc_per_node > 1 else None,
    )
    if cfg.nproc_per_node > 1:
        from miniplm.scoring.cli import to_argv

        _torchrun(ctx, to_argv(models, data, outs, opt))
        summaries = [json.loads((Path(o) / "manifest.json").read_text())["summary"] for o in outs]
    else:
        summaries = score(models, data, outs, opt)
    return {
        "teacher": ctx.record(outs[0]),
        "reference": ctx.record(outs[1]),
        "summaries": summaries,
    }


def select_stage(sdir: Path, ctx: Context) -> dict[str, Any]:
    """Difference Sampling, and the baselines of equal size."""
    import miniplm

    cfg = ctx.cfg
    ex = ctx.path("split", "exclude")
    main = miniplm.select(
        sdir / "miniplm",
        teacher=ctx.path("score", "teacher"),
        reference=ctx.path("score", "reference"),
        ratio=cfg.selection.alpha,
        exclude=ex,
        overwrite=True,
    )
    k = int(main["num_selected"])
    out = {"miniplm": ctx.record(sdir / "miniplm"), "k": k, "report": main}
    if "random" in cfg.selection.baselines or "kd" in cfg.selection.baselines:
        data = ctx.path("data", "dataset")
        miniplm.select(
            sdir / "random",
            random=True,
            count=k,
            exclude=ex,
            data=data,
            seed=cfg.seed,
            overwrite=True,
        )
        out["random"] = ctx.record(sdir / "random")
    if "ppl" in cfg.selection.baselines:
        # Perplexity filtering: keep the instances the teacher finds most likely.
        miniplm.select(
            sdir / "ppl",
            by="teacher",
            keep="lowest",
            teacher=ctx.path("score", "teacher"),
            count=k,
            exclude=ex,
            overwrite=True,
        )
        out["ppl"] = ctx.record(sdir / "ppl")
    return out


def student_variants(cfg: RunConfig) -> list[str]:
    names = ["miniplm"]
    for b in ("random", "kd", "ppl"):
        if b in cfg.selection.baselines and not (b == "kd" and own_tokenizer(cfg)):
            names.append(b)  # KD needs the teacher's vocabulary (student_corpus.KD_LEFT_OUT)
    return names


def student_steps(cfg: RunConfig, k: int) -> int:
    """Equal optimizer steps (so equal instances) for every student."""
    return max(1, math.ceil(cfg.students.epochs * k / cfg.students.global_batch_size))


def make_student_stage(variant: str) -> Callable[[Path, Context], dict[str, Any]]:
    def body(sdir: Path, ctx: Context) -> dict[str, Any]:
        sel = ctx.out("select")
        if own_tokenizer(ctx.cfg):  # its own re-tokenized subset, equal own-token budgets
            s = ctx.cfg.students
            corpora = {v: ctx.out(f"student_corpus-{v}") for v in student_variants(ctx.cfg)}
            steps = own_token_steps(corpora, s.epochs, s.global_batch_size)[variant]
            data = ctx.path(f"student_corpus-{variant}", "dataset")
            return _train(ctx, s, sdir, None, data=data, max_steps=steps)
        steps = student_steps(ctx.cfg, int(sel["k"]))
        if variant == "kd":  # Vanilla KD: the random subset with the online teacher
            return _train(
                ctx,
                ctx.cfg.students,
                sdir,
                sel["random"],
                max_steps=steps,
                kd_teacher=teacher_path(ctx),
                kd_ratio=ctx.cfg.students.kd_ratio,
            )
        return _train(ctx, ctx.cfg.students, sdir, sel[variant], max_steps=steps)

    return body


def eval_stage(sdir: Path, ctx: Context) -> dict[str, Any]:
    from miniplm.evaluation import evaluate
    from miniplm.evaluation.model import load_eval_model

    cfg = ctx.cfg
    e = cfg.eval
    models = {v: ctx.path(f"student-{v}", "model") for v in student_variants(cfg)}
    models["reference"] = ctx.path("reference", "model")
    results: dict[str, Any] = {}
    for name, path in models.items():
        # Loaded once for all the evaluations, with its own tokenizer (and pad-token ignore id).
        em = load_eval_model(path, device=cfg.device, need_tokenizer=True)
        pair = (em.model, em.tokenizer)
        # The student's own tokens where it has its own tokenizer, then with bits per byte.
        slices = eval_slices(ctx, student=name != "reference")
        r: dict[str, Any] = {}
        for which in ("heldout", "heldout_clean"):
            sl = slices[which]
            r[which] = {"heldout": {"mean_nll": None}}  # empty under the student tokenizer
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
    _write_json(sdir / "results.json", results)
    return {"results": ctx.record(sdir / "results.json")}


def tokenizer_fingerprints(path: str) -> dict[str, Any]:
    """The fingerprints of a tokenizer given by path (a file or directory), as a stage
    setting: a tokenizer changed in place re-runs what used it."""
    if not path:
        return {}
    from miniplm import _core

    tok = Path(path)
    files = sorted(tok.iterdir()) if tok.is_dir() else [tok]
    return {"fingerprints": [_core.file_fingerprint(str(f)) for f in files if f.is_file()]}


def bpe_text_params(cfg: RunConfig) -> dict[str, Any]:
    """What a BPE trained on the corpus text depends on beyond the text stage (none for
    the bundled corpus, whose stage it reads)."""
    if not cfg.corpus.inputs:
        return {}
    c = cfg.corpus
    return {
        "corpus": {**corpus_params(cfg), "text_field": c.text_field, "text_split": c.text_split}
    }


def corpus_params(cfg: RunConfig) -> dict[str, Any]:
    """The fingerprints of ``corpus.inputs`` (none for the bundled text: its stage's)."""
    if not cfg.corpus.inputs:
        return {}
    from miniplm import _core

    files = corpus_files(cfg.corpus)
    return {
        "fingerprints": [
            [os.fspath(f.path), _core.file_fingerprint(os.fspath(f.path))] for f in files
        ]
    }


def build_stages(cfg: RunConfig) -> list[Stage]:
    """The stages of a run, in order, with the settings each depends on."""
    c = asdict(cfg)
    stages: list[Stage] = []
    if not cfg.corpus.inputs:
        from miniplm.default_corpus import default_sources

        text_params: dict[str, Any] = {"seed": cfg.seed, "max_bytes": cfg.corpus.max_bytes}
        text_params["sources"] = [s.get("sha256") for s in default_sources()]
        stages.append(Stage("text", (), text_params, text_stage))
    pretrained = cfg.teacher.train is None
    if pretrained:
        from miniplm.models import model_fingerprint

        if cfg.teacher.model == "smollm2":
            from miniplm.bundled import smollm2_gguf

            fp = model_fingerprint(str(smollm2_gguf()))  # clear error if not installed
        else:
            fp = model_fingerprint(cfg.teacher.model)
        stages.append(
            Stage(
                "teacher_model",
                (),
                {"model": cfg.teacher.model, "fingerprint": fp},
                teacher_model_stage,
            )
        )
    bundled = ("text",) if not cfg.corpus.inputs else ()
    tok_reads = bundled if cfg.tokenizer.train_bpe_vocab else ()
    if not cfg.tokenizer.path and not cfg.tokenizer.train_bpe_vocab:
        tok_reads = ("teacher_model",)
    tok_params = {**c["tokenizer"], **tokenizer_fingerprints(cfg.tokenizer.path)}
    if cfg.tokenizer.train_bpe_vocab:
        tok_params.update(bpe_text_params(cfg))
    stages.append(Stage("tokenizer", tok_reads, tok_params, tokenizer_stage))
    data_reads = ("tokenizer",) + (("text",) if not cfg.corpus.inputs else ())
    # The number of workers does not change the output.
    unread = ("heldout_fraction", "workers")
    data_params = {k: v for k, v in c["corpus"].items() if k not in unread}
    data_params["seed"] = cfg.seed
    data_params.update(corpus_params(cfg))
    stages.append(Stage("data", data_reads, data_params, data_stage))
    split_params = {"heldout_fraction": cfg.corpus.heldout_fraction, "seed": cfg.seed}
    stages.append(Stage("split", ("data",), split_params, split_stage))
    train_common = {"seed": cfg.seed, "device": cfg.device, "seq_len": cfg.corpus.seq_len}
    teacher_reads: tuple[str, ...] = ("teacher_model",)
    if not pretrained:
        stages.append(
            Stage(
                "teacher",
                ("data", "split"),
                {**c["teacher"]["train"], **train_common},
                teacher_stage,
            )
        )
        teacher_reads = ("teacher",)
    stages.append(
        Stage("reference", ("data", "split"), {**c["reference"], **train_common}, reference_stage)
    )
    score_params = {"batch_size": cfg.teacher.batch_size, "device": cfg.device}
    stages.append(
        Stage("score", ("data", "split", "reference", *teacher_reads), score_params, score_stage)
    )
    sel_params = {**c["selection"], "seed": cfg.seed}
    stages.append(Stage("select", ("data", "split", "score"), sel_params, select_stage))
    own: tuple[str, ...] = ()  # the students' own tokenizer and their re-tokenized data
    if own_tokenizer(cfg):
        spec = cfg.students.tokenizer
        # A BPE is trained on the corpus text: "data" is keyed by all that shapes it.
        st_params = {**c["students"]["tokenizer"], **tokenizer_fingerprints(spec.path)}
        st_reads = ("data", *bundled)
        stages.append(Stage("student_tokenizer", st_reads, st_params, student_tokenizer_stage))
        retok = {k: c["corpus"][k] for k in ("seq_len", "packing", "min_tokens")}
        retok_reads = ("data", "select", "student_tokenizer")
        for v in student_variants(cfg):
            body = student_corpus_stage(v)
            stages.append(Stage(f"student_corpus-{v}", retok_reads, {**retok, "variant": v}, body))
        held_reads = ("data", "split", "student_tokenizer")
        stages.append(Stage("student_heldout", held_reads, retok, student_heldout_stage))
        own = ("student_tokenizer", *(f"student_corpus-{v}" for v in student_variants(cfg)))
    students = dict(c["students"])
    if not own:
        del students["tokenizer"]  # unset: the keys of runs made before the table existed
    for v in student_variants(cfg):
        reads = ("data", "select", *own) + (teacher_reads if v == "kd" else ())
        student_params = {**students, **train_common, "variant": v}
        stages.append(Stage(f"student-{v}", reads, student_params, make_student_stage(v)))
    eval_reads = ("data", "split", "reference", *(f"student-{v}" for v in student_variants(cfg)))
    eval_reads += ("student_heldout",) if own else ()
    stages.append(Stage("eval", eval_reads, {**c["eval"], "device": cfg.device}, eval_stage))
    return stages
