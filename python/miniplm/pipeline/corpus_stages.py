"""The stages that prepare the corpus: its text, the teacher's model, the tokenizer, the
tokenized dataset and its split into D_ref, a held-out slice and what selection skips."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from miniplm.pipeline.config import RunConfig, TokenizerSpec, corpus_files
from miniplm.pipeline.stage import Inputs, Outputs, Stage

if TYPE_CHECKING:
    from miniplm.data import TokenDataset


@dataclass
class TextOut(Outputs):
    inputs: list[str]  # jsonl files


@dataclass
class ModelOut(Outputs):
    model: str  # an HF directory or a .gguf file


@dataclass
class TokenizerOut(Outputs):
    tokenizer: str


@dataclass
class DataOut(Outputs):
    dataset: str
    counts: dict[str, Any]  # tokenize.json's counts
    sources: list[str]  # source names, by source id


@dataclass
class SplitOut(Outputs):
    """Selection folders (recorded paths) of the split, and its counts. Per source there
    are none: the evaluation groups the held-out slice by ``sources.npy``
    (``pipeline.sources``)."""

    instances: int
    ref: str
    heldout: str
    heldout_clean: str
    pool: str
    exclude: str  # ids.npy of D_ref + held-out
    counts: dict[str, int]


class TextStage(Stage[TextOut]):
    """The bundled default corpus, as jsonl (only when ``corpus.inputs`` is empty)."""

    outputs = TextOut

    def __init__(self, cfg: RunConfig) -> None:
        from miniplm.default_corpus import default_sources

        params: dict[str, Any] = {"seed": cfg.seed, "max_bytes": cfg.corpus.max_bytes}
        params["sources"] = [s.get("sha256") for s in default_sources()]
        # The works held out of the corpus as the target set: another choice is another corpus.
        params["target_works"] = [[s["name"], s.get("target_works", [])] for s in default_sources()]
        super().__init__("text", (), params)

    def run(self, sdir: Path, inp: Inputs) -> TextOut:
        from miniplm.default_corpus import write_default_corpus

        c = inp.cfg.corpus
        path = write_default_corpus(sdir, seed=inp.cfg.seed, max_bytes=c.max_bytes or None)
        return TextOut([inp.record(path)])


class TeacherModelStage(Stage[ModelOut]):
    """A pretrained teacher, named by its fingerprint (so a changed file reruns)."""

    outputs = ModelOut

    def __init__(self, cfg: RunConfig) -> None:
        from miniplm.models import model_fingerprint

        if cfg.teacher.model == "smollm2":
            from miniplm.bundled import smollm2_gguf

            fp = model_fingerprint(str(smollm2_gguf()))  # clear error if not installed
        else:
            fp = model_fingerprint(cfg.teacher.model)
        super().__init__("teacher_model", (), {"model": cfg.teacher.model, "fingerprint": fp})

    def run(self, sdir: Path, inp: Inputs) -> ModelOut:
        model = inp.cfg.teacher.model
        if model == "smollm2":
            from miniplm.bundled import smollm2_checkpoint

            model = str(smollm2_checkpoint())
        return ModelOut(inp.record(model))


class TokenizerStage(Stage[TokenizerOut]):
    """The given tokenizer, a BPE trained on the corpus, or the teacher's."""

    outputs = TokenizerOut

    def __init__(self, cfg: RunConfig) -> None:
        t = cfg.tokenizer
        reads: tuple[str, ...] = ()
        params = {**dataclasses.asdict(t), **tokenizer_fingerprints(t.path)}
        if t.train_bpe_vocab and not t.path:  # trained on the corpus text
            reads = ("text",) if not cfg.corpus.inputs else ()
            if cfg.corpus.inputs:
                c = cfg.corpus
                text = {"text_field": c.text_field, "text_split": c.text_split}
                params["corpus"] = {**corpus_fingerprints(cfg), **text}
        elif not t.path:
            reads = ("teacher_model",)
            params.update(teacher_tokenizer_fingerprints(cfg.teacher.model))
        super().__init__("tokenizer", reads, params)

    def run(self, sdir: Path, inp: Inputs) -> TokenizerOut:
        path = spec_tokenizer(inp, inp.cfg.tokenizer, sdir)
        if path is not None:
            return TokenizerOut(inp.record(path))
        return TokenizerOut(inp.get("teacher_model", ModelOut).model)  # already recorded


def spec_tokenizer(inp: Inputs, spec: TokenizerSpec, sdir: Path) -> str | None:
    """The tokenizer a ``[tokenizer]``-shaped table names: its ``path``, or a byte-level
    BPE of ``train_bpe_vocab`` entries trained here on the corpus text into
    ``sdir/tokenizer``; None when neither is set."""
    if spec.path:
        return spec.path
    if not spec.train_bpe_vocab:
        return None
    from miniplm.corpus.bpe import train_bpe

    c = inp.cfg.corpus
    out = train_bpe(
        corpus_inputs(inp),
        sdir / "tokenizer",
        spec.train_bpe_vocab,
        text_field=c.text_field,
        text_split=c.text_split,
        overwrite=True,
    )
    return str(out)


def corpus_inputs(inp: Inputs) -> list[str]:
    """The corpus's input files: ``corpus.inputs``, else the bundled text stage's."""
    c = inp.cfg.corpus
    return c.inputs or [inp.resolve(f) for f in inp.get("text", TextOut).inputs]


def tokenizer_fingerprints(path: str) -> dict[str, Any]:
    """A tokenizer given by path (a file or directory) as stage settings: its files'
    fingerprints, so a tokenizer changed in place re-runs what used it."""
    if not path:
        return {}
    from miniplm import _core

    tok = Path(path)
    files = sorted(tok.iterdir()) if tok.is_dir() else [tok]
    return {"fingerprints": [_core.file_fingerprint(str(f)) for f in files if f.is_file()]}


def _is_tokenizer_file(name: str) -> bool:
    return name.startswith(("tokenizer", "vocab", "merges")) or name in (
        "special_tokens_map.json",
        "added_tokens.json",
    )


def teacher_tokenizer_fingerprints(model: str) -> dict[str, Any]:
    """The tokenizer files of a teacher given as a Hugging Face directory, as settings
    of the stage that takes the teacher's tokenizer: the teacher's fingerprint (its
    resume identity in scoring) covers only its config and weights. None for a GGUF
    file, whose fingerprint covers its tokenizer, or the bundled teacher."""
    d = Path(model)
    if model == "smollm2" or not d.is_dir():
        return {}
    from miniplm import _core

    files = sorted(f for f in d.iterdir() if f.is_file() and _is_tokenizer_file(f.name))
    return {"teacher_tokenizer": [[f.name, _core.file_fingerprint(str(f))] for f in files]}


def corpus_fingerprints(cfg: RunConfig) -> dict[str, Any]:
    """The fingerprints of ``corpus.inputs`` as stage settings (none for the bundled
    text, which its stage stands for)."""
    if not cfg.corpus.inputs:
        return {}
    from miniplm import _core

    files = corpus_files(cfg.corpus)
    return {
        "fingerprints": [
            [os.fspath(f.path), _core.file_fingerprint(os.fspath(f.path))] for f in files
        ]
    }


class DataStage(Stage[DataOut]):
    """The corpus tokenized into a TokenDataset (with D_ref drawn by tokenize)."""

    outputs = DataOut

    def __init__(self, cfg: RunConfig) -> None:
        reads = ("tokenizer",) + (("text",) if not cfg.corpus.inputs else ())
        # The number of workers does not change the output, nor does the number of
        # documents encoded at a time (tokenize.json does not record it either), nor the
        # sources limit (it only fails or not), nor max_bytes with corpus.inputs (it caps
        # the bundled corpus only, whose text stage this reads). shard_size stays: the
        # shard layout is part of the dataset's fingerprint, which selections record.
        unread = ["heldout_fraction", "workers", "batch_docs", "max_sources"]
        if cfg.corpus.inputs:
            unread.append("max_bytes")
        params = {k: v for k, v in dataclasses.asdict(cfg.corpus).items() if k not in unread}
        params["seed"] = cfg.seed
        params.update(corpus_fingerprints(cfg))
        super().__init__("data", reads, params)

    def run(self, sdir: Path, inp: Inputs) -> DataOut:
        from miniplm.corpus.tokenize import tokenize_corpus

        cfg, c = inp.cfg, inp.cfg.corpus
        dataset = sdir / "corpus"
        info = tokenize_corpus(
            corpus_inputs(inp),
            dataset,
            inp.resolve(inp.get("tokenizer", TokenizerOut).tokenizer),
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
            max_sources=c.max_sources,
            overwrite=True,
            progress=False if inp.quiet else None,
        )
        return DataOut(inp.record(dataset), info["counts"], list(info["sources"]))


def write_ids(inp: Inputs, ds: TokenDataset, d: Path, ids: np.ndarray, what: str) -> str:
    """A selection folder for ``ids`` of ``ds``, written by the core's selection writer
    (so it carries the dataset's count and fingerprint like ``select``'s own)."""
    d.parent.mkdir(parents=True, exist_ok=True)
    ds.write_selection(d, ids, what, overwrite=True)
    return inp.record(d)


class SplitStage(Stage[SplitOut]):
    """D_ref (drawn by tokenize), a held-out slice of the rest, and what selection
    excludes (both); ``heldout-clean`` drops the labelled noise sources. O(instances),
    whatever the number of sources."""

    outputs = SplitOut

    def __init__(self, cfg: RunConfig) -> None:
        params = {"heldout_fraction": cfg.corpus.heldout_fraction, "seed": cfg.seed}
        super().__init__("split", ("data",), params)

    def run(self, sdir: Path, inp: Inputs) -> SplitOut:
        from miniplm import TokenDataset
        from miniplm.dataset_meta import read_sources
        from miniplm.pipeline.sources import noise_mask

        cfg, d = inp.cfg, inp.get("data", DataOut)
        data = Path(inp.resolve(d.dataset))
        ds = TokenDataset(data)
        n = len(ds)
        ref = np.load(data / "ref_ids.npy").astype(np.int64)
        rest = np.setdiff1d(np.arange(n), ref)
        rng = np.random.default_rng([cfg.seed, 1])
        k = max(1, int(cfg.corpus.heldout_fraction * n))
        heldout = np.sort(rng.choice(rest, size=min(k, len(rest)), replace=False))
        names = d.sources
        noisy = noise_mask(names)
        sources = read_sources(data, n).ids  # memory-mapped: only the held-out's are read
        clean = heldout[~noisy[sources[heldout]]] if len(names) else heldout
        exclude = np.union1d(ref, heldout)
        np.save(sdir / "exclude.npy", exclude.astype(np.uint64))
        pool = np.setdiff1d(np.arange(n), heldout)
        return SplitOut(
            instances=n,
            ref=write_ids(inp, ds, sdir / "ref", ref, "reference training slice D_ref"),
            heldout=write_ids(inp, ds, sdir / "heldout", heldout, "held-out evaluation slice"),
            heldout_clean=write_ids(
                inp, ds, sdir / "heldout-clean", clean, "held-out, noise removed"
            ),
            pool=write_ids(inp, ds, sdir / "pool", pool, "all but held-out"),
            exclude=inp.record(sdir / "exclude.npy"),
            counts={"ref": len(ref), "heldout": len(heldout), "heldout_clean": len(clean)},
        )
