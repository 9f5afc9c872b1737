"""Students with their own tokenizer in ``miniplm run`` (``[students.tokenizer]``).

A selection is a list of instance ids of the corpus's token shards, so a student with
another tokenizer cannot read it. Here every subset a student trains on (MiniPLM's
selection and each baseline's) and every held-out evaluation slice is exported to text
and re-tokenized with the students' tokenizer (``miniplm.corpus.retokenize``: same
``seq_len``, packing and ``min_tokens`` as the corpus), each as a stage of its own whose
key includes the students' tokenizer stage: changing ``train_bpe_vocab`` re-runs these,
the students and the evaluation, never the scoring.

Budgets: re-tokenized subsets differ in size and in mean instance length, so equal steps
would not mean equal tokens. Every student gets ``epochs x T_min`` of its own tokens, T_min
the trained tokens (targets) of the smallest re-tokenized subset: ``steps = ceil(epochs x
T_min / (global_batch_size x mean targets per instance))`` (within one batch of it).

Held-out NLL per token is not comparable across tokenizers, so the evaluation adds bits
per byte, ``nll_sum / ln 2 / bytes`` over the slice's UTF-8 text, for the students (their
own tokens) and the reference (the corpus's tokens) alike. Vanilla KD matches the
student's distribution to the teacher's over one vocabulary, so it is left out."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from miniplm.pipeline.config import RunConfig

if TYPE_CHECKING:
    from miniplm.pipeline.stages import Context

KD_LEFT_OUT = (
    "Vanilla KD is left out: it matches the student's next-token distribution to the "
    "teacher's over one vocabulary, and these students have their own tokenizer"
)


def own_tokenizer(cfg: RunConfig) -> bool:
    """Whether the students have a tokenizer of their own (``[students.tokenizer]``)."""
    t = cfg.students.tokenizer
    return bool(t.path or t.train_bpe_vocab)


def corpus_inputs(ctx: Context) -> list[str]:
    """The corpus's input files: ``corpus.inputs``, else the bundled text stage's."""
    c = ctx.cfg.corpus
    return c.inputs or [ctx.resolve(f) for f in ctx.out("text")["inputs"]]


def student_tokenizer_stage(sdir: Path, ctx: Context) -> dict[str, Any]:
    """The students' tokenizer: ``path``, or a byte-level BPE trained on the corpus text.
    First checks that the corpus can be exported at all (lossless tokenizer, EOS not in
    the text), so a run that cannot re-tokenize stops here, before any student."""
    from miniplm.corpus.bpe import train_bpe
    from miniplm.corpus.export import check_exportable
    from miniplm.corpus.tokenizer import load_tokenizer

    check_exportable(ctx.path("data", "dataset"))
    cfg, spec = ctx.cfg, ctx.cfg.students.tokenizer
    if spec.path:
        path = spec.path
    else:
        out = train_bpe(
            corpus_inputs(ctx),
            sdir / "tokenizer",
            spec.train_bpe_vocab,
            text_field=cfg.corpus.text_field,
            text_split=cfg.corpus.text_split,
            overwrite=True,
        )
        path = str(out)
    info = load_tokenizer(path)
    return {"tokenizer": ctx.record(path), **info.describe()}


def _retokenize(ctx: Context, out: Path, selection: str) -> dict[str, Any]:
    from miniplm.corpus.retokenize import retokenize

    c = ctx.cfg.corpus
    info = retokenize(
        ctx.path("data", "dataset"),
        out,
        ctx.path("student_tokenizer", "tokenizer"),
        selection=ctx.resolve(selection),
        seq_len=c.seq_len,
        packing=c.packing,
        min_tokens=c.min_tokens,
        batch_docs=c.batch_docs,
        workers=c.workers or None,
        overwrite=True,
        progress=False if ctx.quiet else None,
    )
    keep = ("instances", "tokens", "bytes", "rows", "documents", "dropped_short")
    return {"dataset": ctx.record(out), **{k: info[k] for k in keep}}


def student_corpus_stage(variant: str) -> Any:
    """The stage body re-tokenizing the subset student ``variant`` trains on."""

    def body(sdir: Path, ctx: Context) -> dict[str, Any]:
        return _retokenize(ctx, sdir / "corpus", ctx.out("select")[variant])

    return body


def _count(ctx: Context, selection: str) -> int:
    return len(np.load(Path(ctx.resolve(selection)) / "ids.npy", mmap_mode="r"))


def student_heldout_stage(sdir: Path, ctx: Context) -> dict[str, Any]:
    """The held-out slices (all, noise removed, per source), re-tokenized; an empty
    slice (held-out clean of a corpus of noise only) is recorded as None."""
    split = ctx.out("split")

    def one(out: Path, selection: str) -> dict[str, Any] | None:
        return _retokenize(ctx, out, selection) if _count(ctx, selection) else None

    return {
        "heldout": one(sdir / "heldout", split["heldout"]),
        "heldout_clean": one(sdir / "heldout-clean", split["heldout_clean"]),
        "per_source": {
            src: one(sdir / "heldout-by-source" / str(k), sel)
            for k, (src, sel) in enumerate(split["heldout_by_source"].items())
        },
    }


def own_token_steps(
    corpora: dict[str, dict[str, Any]], epochs: float, global_batch_size: int
) -> dict[str, int]:
    """Optimizer steps per student for equal budgets of their own tokens: ``epochs x
    T_min`` trained tokens, T_min the smallest corpus's, at each corpus's mean number per
    instance. Trained tokens are the targets, one fewer than an instance's length, as the
    trainer counts them."""
    targets = {v: int(c["tokens"]) - int(c["instances"]) for v, c in corpora.items()}
    t_min = min(targets.values())
    steps = {}
    for variant, c in corpora.items():
        mean = max(1, targets[variant]) / max(1, int(c["instances"]))
        steps[variant] = max(1, math.ceil(epochs * t_min / (global_batch_size * mean)))
    return steps


class Slice:
    """Where a model is evaluated on one held-out slice, and the slice's text size."""

    def __init__(self, data: str, selection: str | None, nbytes: int | None) -> None:
        self.data, self.selection, self.bytes = data, selection, nbytes


def eval_slices(ctx: Context, student: bool) -> dict[str, Any]:
    """The held-out slices a model is evaluated on: ``heldout``, ``heldout_clean`` and
    ``per_source`` (source -> Slice). With the students' own tokenizer a student reads
    the re-tokenized slice, the reference the corpus's, and both carry the text's bytes
    (for bits per byte); otherwise both read the corpus's slice and bytes are None. A
    slice that is empty under the students' tokenizer is left out."""
    split, data = ctx.out("split"), ctx.path("data", "dataset")
    theirs = ctx.out("student_heldout") if own_tokenizer(ctx.cfg) else None

    def one(selection: str, retok: dict[str, Any] | None) -> Slice | None:
        if theirs is None:
            return Slice(data, ctx.resolve(selection), None)
        if retok is None:
            return None
        if student:
            return Slice(ctx.resolve(retok["dataset"]), None, int(retok["bytes"]))
        return Slice(data, ctx.resolve(selection), int(retok["bytes"]))

    out: dict[str, Any] = {
        which: one(split[which], None if theirs is None else theirs[which])
        for which in ("heldout", "heldout_clean")
    }
    out["per_source"] = {
        src: s
        for src, sel in split["heldout_by_source"].items()
        if (s := one(sel, None if theirs is None else theirs["per_source"].get(src)))
    }
    return out


def bits_per_byte(result: dict[str, Any], nbytes: int | None, whole: bool) -> float | None:
    """Bits per byte of a held-out result over a slice of ``nbytes`` bytes of text; None
    when the bytes are unknown or only part of the slice was scored (``whole`` False)."""
    if not nbytes or not whole or result.get("nll_sum") is None:
        return None
    return float(result["nll_sum"]) / math.log(2) / nbytes
