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

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from miniplm.pipeline.config import RunConfig
from miniplm.pipeline.corpus_stages import DataOut, SplitOut, spec_tokenizer
from miniplm.pipeline.select_stages import selection_stage, training_set
from miniplm.pipeline.stage import Inputs, Outputs, Stage

KD_LEFT_OUT = (
    "Vanilla KD is left out: it matches the student's next-token distribution to the "
    "teacher's over one vocabulary, and these students have their own tokenizer"
)
TOKENIZER = "student_tokenizer"
HELDOUT = "student_heldout"


def own_tokenizer(cfg: RunConfig) -> bool:
    """Whether the students have a tokenizer of their own (``[students.tokenizer]``)."""
    t = cfg.students.tokenizer
    return bool(t.path or t.train_bpe_vocab)


def corpus_stage_name(variant: str) -> str:
    return f"student_corpus-{variant}"


@dataclass
class StudentTokenizerOut(Outputs):
    tokenizer: str  # recorded path
    spec: str
    vocab_size: int
    eos_token: str
    eos_id: int


@dataclass
class RetokenizedOut(Outputs):
    """A re-tokenized subset: the dataset (recorded) and its counts; ``bytes`` is the
    UTF-8 size of its text."""

    dataset: str
    instances: int
    tokens: int
    bytes: int
    rows: int
    documents: int
    dropped_short: int


@dataclass
class StudentHeldoutOut(Outputs):
    """The held-out slices re-tokenized (``RetokenizedOut`` records; None: empty): all,
    noise removed, each shown source's (``pipeline.sources``) and the pooled rest's."""

    heldout: dict[str, Any] | None
    heldout_clean: dict[str, Any] | None
    per_source: dict[str, dict[str, Any] | None]
    per_source_other: dict[str, Any] | None


class StudentTokenizerStage(Stage[StudentTokenizerOut]):
    """The students' tokenizer: ``path``, or a byte-level BPE trained on the corpus text
    (keyed through its read of ``data``, whose settings shape that text). First checks
    that the corpus can be exported at all (lossless tokenizer, EOS not in the text), so
    a run that cannot re-tokenize stops here, before any student."""

    outputs = StudentTokenizerOut

    def __init__(self, cfg: RunConfig) -> None:
        from miniplm.pipeline.corpus_stages import tokenizer_fingerprints

        spec = cfg.students.tokenizer
        params = {**dataclasses.asdict(spec), **tokenizer_fingerprints(spec.path)}
        reads = ("data",) + (("text",) if not cfg.corpus.inputs else ())
        super().__init__(TOKENIZER, reads, params)

    def run(self, sdir: Path, inp: Inputs) -> StudentTokenizerOut:
        from miniplm.corpus.export import check_exportable
        from miniplm.corpus.tokenizer import load_tokenizer
        from miniplm.errors import InternalError

        check_exportable(inp.resolve(inp.get("data", DataOut).dataset))
        path = spec_tokenizer(inp, inp.cfg.students.tokenizer, sdir)
        if path is None:  # the stage is only built when the table is set
            raise InternalError("student_tokenizer stage without [students.tokenizer]")
        info = load_tokenizer(path)
        return StudentTokenizerOut(
            inp.record(path), info.spec, info.vocab_size, info.eos_token, info.eos_id
        )


def _retok_params(cfg: RunConfig) -> dict[str, Any]:
    c = cfg.corpus
    return {"seq_len": c.seq_len, "packing": c.packing, "min_tokens": c.min_tokens}


def _retokenize(inp: Inputs, out: Path, selection: str) -> RetokenizedOut:
    from miniplm.corpus.retokenize import retokenize

    c = inp.cfg.corpus
    info = retokenize(
        inp.resolve(inp.get("data", DataOut).dataset),
        out,
        inp.resolve(inp.get(TOKENIZER, StudentTokenizerOut).tokenizer),
        selection=inp.resolve(selection),
        seq_len=c.seq_len,
        packing=c.packing,
        min_tokens=c.min_tokens,
        batch_docs=c.batch_docs,
        workers=c.workers or None,
        overwrite=True,
        progress=False if inp.quiet else None,
    )
    keep = [f.name for f in dataclasses.fields(RetokenizedOut) if f.name != "dataset"]
    return RetokenizedOut(inp.record(out), **{k: int(info[k]) for k in keep})


class StudentCorpusStage(Stage[RetokenizedOut]):
    """The subset student ``variant`` trains on, exported and re-tokenized with the
    students' tokenizer (same seq_len, packing and min_tokens as the corpus)."""

    outputs = RetokenizedOut

    def __init__(self, cfg: RunConfig, variant: str) -> None:
        self.variant = variant
        reads = ("data", selection_stage(variant), TOKENIZER)
        params = {**_retok_params(cfg), "variant": variant}
        super().__init__(corpus_stage_name(variant), reads, params)

    def run(self, sdir: Path, inp: Inputs) -> RetokenizedOut:
        selection = training_set(inp, self.variant)
        return _retokenize(inp, sdir / "corpus", selection)


class StudentHeldoutStage(Stage[StudentHeldoutOut]):
    """The held-out slices (all, noise removed, each of the ``eval.top_sources`` largest
    sources and the pooled rest), re-tokenized; an empty slice (held-out clean of a
    corpus of noise only) is recorded as None."""

    outputs = StudentHeldoutOut

    def __init__(self, cfg: RunConfig) -> None:
        params = {**_retok_params(cfg), "top_sources": cfg.eval.top_sources}
        super().__init__(HELDOUT, ("data", "split", TOKENIZER), params)

    def run(self, sdir: Path, inp: Inputs) -> StudentHeldoutOut:
        from miniplm import TokenDataset
        from miniplm.dataset_meta import read_sources
        from miniplm.pipeline.corpus_stages import write_ids
        from miniplm.pipeline.sources import by_source, corpus_shown

        split, d = inp.get("split", SplitOut), inp.get("data", DataOut)
        data = inp.resolve(d.dataset)

        def one(out: Path, selection: str) -> dict[str, Any] | None:
            ids = np.load(Path(inp.resolve(selection)) / "ids.npy", mmap_mode="r")
            return _retokenize(inp, out, selection).to_json() if len(ids) else None

        heldout = np.load(Path(inp.resolve(split.heldout)) / "ids.npy").astype(np.int64)
        src = read_sources(data, split.instances).ids[heldout]
        groups = by_source(src, len(d.sources))
        shown = corpus_shown(d.sources, d.counts, inp.cfg.eval.top_sources)
        ds = TokenDataset(data)

        def part(key: str, ids: np.ndarray, what: str) -> dict[str, Any] | None:
            sel = write_ids(inp, ds, sdir / "selections" / key, np.sort(ids), what)
            return one(sdir / "heldout-by-source" / key, sel)

        per_source = {
            d.sources[k]: part(str(k), heldout[groups[k]], f"held-out {d.sources[k]}")
            for k in shown.ids
            if len(groups[k])
        }
        pooled = np.concatenate([heldout[groups[k]] for k in shown.pooled] or [heldout[:0]])
        return StudentHeldoutOut(
            heldout=one(sdir / "heldout", split.heldout),
            heldout_clean=one(sdir / "heldout-clean", split.heldout_clean),
            per_source=per_source,
            per_source_other=part("other", pooled, shown.pooled_label()) if len(pooled) else None,
        )


def own_stages(cfg: RunConfig, variants: list[str]) -> list[Stage[Any]]:
    """The stages of the students' own tokenizer and data (none without one)."""
    if not own_tokenizer(cfg):
        return []
    corpora: list[Stage[Any]] = [StudentCorpusStage(cfg, v) for v in variants]
    return [StudentTokenizerStage(cfg), *corpora, StudentHeldoutStage(cfg)]


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
    """A held-out slice in the students' own tokens, and its text's size."""

    def __init__(self, data: str, nbytes: int) -> None:
        self.data, self.bytes = data, nbytes


def own_slices(inp: Inputs) -> dict[str, Any]:
    """The re-tokenized held-out slices a student with its own tokenizer is evaluated on:
    ``heldout``, ``heldout_clean``, ``per_source_other`` (a Slice, or None where empty)
    and ``per_source`` (source -> Slice)."""
    theirs = inp.get(HELDOUT, StudentHeldoutOut)

    def one(retok: dict[str, Any] | None) -> Slice | None:
        if retok is None:
            return None
        return Slice(inp.resolve(retok["dataset"]), int(retok["bytes"]))

    return {
        "heldout": one(theirs.heldout),
        "heldout_clean": one(theirs.heldout_clean),
        "per_source": {src: s for src, r in theirs.per_source.items() if (s := one(r))},
        "per_source_other": one(theirs.per_source_other),
    }


def bits_per_byte(result: dict[str, Any], nbytes: int | None, whole: bool) -> float | None:
    """Bits per byte of a held-out result over a slice of ``nbytes`` bytes of text; None
    when the bytes are unknown or only part of the slice was scored (``whole`` False)."""
    if not nbytes or not whole or result.get("nll_sum") is None:
        return None
    return float(result["nll_sum"]) / math.log(2) / nbytes
