"""The configuration of ``miniplm run``: presets, TOML loading, validation up front.

A config is a TOML file whose tables mirror :class:`RunConfig`; any key left out takes
the value of the chosen preset (``default`` unless ``--preset``). Unknown keys, wrong
types and impossible values are refused before any work starts, naming the key."""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miniplm.corpus import MAX_SOURCES
from miniplm.errors import InputError

BASELINES = ("random", "kd", "ppl")
TARGET = "target"  # the bundled target works' stage, and their key in eval results


@dataclass
class CorpusSpec:
    """What ``miniplm tokenize`` takes (same names; "" / -1 / 0 for its unset options)."""

    inputs: list[str] = field(default_factory=list)  # empty: the bundled default corpus
    sources: list[str] = field(default_factory=list)  # --source: one name per input
    max_bytes: int = 0  # bundled corpus only: cap on its size (0: all of it)
    text_field: str = "text"
    source_field: str = "source"  # "": one source per input
    max_sources: int = MAX_SOURCES  # the most distinct sources (each packed apart)
    text_split: str = "document"  # .txt files: document, lines or blank-lines
    seq_len: int = 256
    packing: str = "boundary"
    min_tokens: int = 2
    shard_size: str = ""  # largest .bin per shard, e.g. "500M" ("": one shard)
    batch_docs: int = 1000
    workers: int = 0  # encoding processes (0: min(cpus, 8)); the output is the same
    reference_fraction: float = 0.1
    heldout_fraction: float = 0.05
    # The document separator by its text ("": the tokenizer's own EOS); e.g.
    # "<|endoftext|>" for a chat-tuned teacher whose EOS is "<|im_end|>".
    eos_token: str = ""
    eos_id: int = -1  # the separator by id instead (-1: unset)


@dataclass
class TokenizerSpec:
    path: str = ""  # default: the teacher's tokenizer
    train_bpe_vocab: int = 0  # > 0: train a byte-level BPE of this size on the corpus


@dataclass
class TrainSpec:
    preset: str = "tiny"
    arch: str = "qwen2"
    epochs: float = 1.0
    lr: float = 1e-3
    warmup_steps: int = 10
    micro_batch_size: int = 8
    global_batch_size: int = 32


@dataclass
class TeacherSpec:
    model: str = "smollm2"  # "smollm2" (the bundled GGUF), an HF directory or a .gguf file
    train: TrainSpec | None = None  # train a teacher here instead (smoke tests)
    batch_size: int = 16  # scoring batch


@dataclass
class SelectionSpec:
    alpha: float = 0.5
    baselines: list[str] = field(default_factory=lambda: ["random"])


@dataclass
class StudentSpec(TrainSpec):
    kd_ratio: float = 0.5
    seeds: int = 1  # trainings of every student (initialisation and data order)
    # The students' own tokenizer (both unset: the corpus's); when set, every student
    # trains on its subset exported and re-tokenized with it (pipeline/student_corpus.py).
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)


@dataclass
class EvalSpec:
    # Text outside the corpus for LM loss (nats/token, bits/byte): files of documents in
    # any format `miniplm tokenize` reads (e.g. a DCLM sample).
    texts: list[str] = field(default_factory=list)
    # With the bundled corpus: also its target works (held out of it) and the zero-shot
    # task made from them (`miniplm.bundled`).
    target: bool = True
    mc_files: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    include_path: str = ""
    batch_size: int = 16
    # Held-out instances per slice and model (0: all): past it, a seeded uniform sample of
    # that many, the same for every model (bits per byte then left out).
    max_instances: int = 0
    # Per-source figures (held-out, keep rates, plots, examples) for this many of the
    # largest sources, the rest pooled into one "other" row (0: every source).
    top_sources: int = 32


@dataclass
class RunConfig:
    seed: int = 0
    device: str = "auto"
    nproc_per_node: int = 1
    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    teacher: TeacherSpec = field(default_factory=TeacherSpec)
    reference: TrainSpec = field(default_factory=TrainSpec)
    selection: SelectionSpec = field(default_factory=SelectionSpec)
    students: StudentSpec = field(default_factory=StudentSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Presets are partial configs over the dataclass defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # The embedded demo: real SmolLM2-135M teacher, bundled corpus, about 7 min on 2 cores.
    "default": {
        # D_ref is 30% here, not the paper's 5%: on 100k tokens a reference trained on 5%
        # stays near unigram statistics, and r then merely follows the teacher's NLL (it
        # kept all the web boilerplate; see benches/README.md, "The default miniplm run").
        "corpus": {"max_bytes": 400_000, "seq_len": 128, "reference_fraction": 0.3},
        "teacher": {"model": "smollm2", "batch_size": 16},
        # Small batches and a high learning rate: tiny models with SmolLM2's 49k vocabulary
        # need many updates to get past unigram statistics in a CPU-sized token budget.
        "reference": {
            "preset": "tiny",
            "epochs": 8.0,
            "lr": 5e-3,
            "warmup_steps": 5,
            "global_batch_size": 8,
            "micro_batch_size": 8,
        },
        "selection": {"alpha": 0.5, "baselines": ["random", "ppl"]},
        # Students with their own 4,096-entry byte-level BPE (trained on the corpus text):
        # preset mini then holds 0.8M parameters in its layers and 0.5M in its (tied)
        # embedding, where SmolLM2's 49k vocabulary would put 6.3M in the embedding.
        # Three seeds each, for mean ± std (benches/README.md, the pre-registered protocol).
        "students": {
            "preset": "mini",
            "epochs": 2.0,
            "lr": 5e-3,
            "warmup_steps": 5,
            "global_batch_size": 8,
            "micro_batch_size": 8,
            "seeds": 3,
            "tokenizer": {"train_bpe_vocab": 4096},
        },
    },
    # The whole pipeline with tiny random models, in under a minute on 2 cores (CI).
    "smoke": {
        "corpus": {"max_bytes": 150_000, "seq_len": 64, "reference_fraction": 0.2},
        "tokenizer": {"train_bpe_vocab": 512},
        "teacher": {
            "model": "",
            "train": {"preset": "tiny", "epochs": 1.0, "lr": 3e-3, "global_batch_size": 16},
            "batch_size": 32,
        },
        "reference": {"preset": "tiny", "epochs": 1.0, "lr": 3e-3, "global_batch_size": 16},
        "selection": {"alpha": 0.5, "baselines": ["random", "kd", "ppl"]},
        "students": {"preset": "tiny", "epochs": 1.0, "lr": 3e-3, "global_batch_size": 16},
    },
    # A GPU: the whole bundled corpus at L = 1024, paper-shaped reference and student.
    "demo-gpu": {
        "device": "cuda",
        "corpus": {"max_bytes": 0, "seq_len": 1024, "reference_fraction": 0.1},
        "teacher": {"model": "smollm2", "batch_size": 32},
        "reference": {
            "preset": "small",
            "epochs": 4.0,
            "lr": 1e-3,
            "warmup_steps": 20,
            "micro_batch_size": 16,
            "global_batch_size": 64,
        },
        "selection": {"alpha": 0.5, "baselines": ["random", "kd", "ppl"]},
        "students": {
            "preset": "ref-104M",
            "epochs": 4.0,
            "lr": 6e-4,
            "warmup_steps": 20,
            "micro_batch_size": 16,
            "global_batch_size": 64,
        },
    },
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _build(cls: Any, data: dict[str, Any], where: str) -> Any:
    """Dataclass ``cls`` from ``data``, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a table, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(fields)})"
        )
    kw: dict[str, Any] = {}
    defaults = cls()
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        default = getattr(defaults, name)
        if dataclasses.is_dataclass(default) or name == "train":
            sub = TrainSpec if name == "train" else type(default)
            kw[name] = None if value is None else _build(sub, value, key)
            continue
        want = type(default)
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(default, list):
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise InputError(f"{key}: expected a list of strings, got {value!r}")
        elif not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise InputError(f"{key}: expected {want.__name__}, got {value!r}")
        kw[name] = value
    return cls(**kw)


def _check_train(t: TrainSpec, where: str) -> None:
    from miniplm.training.presets import check_preset

    check_preset(t.preset, t.arch, f"{where}.preset", f"{where}.arch")
    if t.epochs <= 0 or t.lr <= 0 or t.warmup_steps < 0:
        raise InputError(f"{where}: epochs and lr must be positive, warmup_steps >= 0")
    if t.micro_batch_size < 1 or t.global_batch_size % t.micro_batch_size:
        raise InputError(
            f"{where}: global_batch_size {t.global_batch_size} must be a multiple of "
            f"micro_batch_size {t.micro_batch_size}"
        )


def _check_tokenizer(t: TokenizerSpec, where: str) -> None:
    from miniplm.corpus.bpe import check_bpe_vocab

    if t.train_bpe_vocab and t.path:
        raise InputError(f"{where}: give path or train_bpe_vocab, not both")
    if t.train_bpe_vocab:
        check_bpe_vocab(t.train_bpe_vocab, f"{where}.train_bpe_vocab")
    if t.path and not Path(t.path).exists():
        raise InputError(f"{where}.path: {t.path} does not exist")


def corpus_files(c: CorpusSpec) -> list[Any]:
    """The files of ``corpus.inputs``, expanded as ``miniplm tokenize`` expands its
    arguments (globs, directories), with their source names."""
    from miniplm.corpus.readers import discover

    return discover(c.inputs, c.sources or None)


def _check_corpus_inputs(c: CorpusSpec) -> None:
    """The ``miniplm tokenize`` checks of the corpus options, made before any stage runs."""
    from miniplm.corpus.readers import TEXT_SPLITS, check_columns
    from miniplm.corpus.tokenize import check_options, check_sources, parse_size

    if c.sources and not c.inputs:
        raise InputError("corpus.sources: names the sources of corpus.inputs, which is empty")
    if c.text_split not in TEXT_SPLITS:
        raise InputError(
            f"corpus.text_split: {c.text_split!r} is not one of {', '.join(TEXT_SPLITS)}"
        )
    if c.eos_id >= 0 and c.eos_token:
        raise InputError("corpus: give eos_id or eos_token, not both")
    if c.workers < 0:
        raise InputError(f"corpus.workers: must be >= 0 (0: the default), got {c.workers}")
    if c.max_sources < 1:
        raise InputError(f"corpus.max_sources: must be >= 1, got {c.max_sources}")
    try:
        check_options(c.seq_len, c.packing, c.batch_docs, c.min_tokens, None, c.workers or 1)
    except InputError as e:
        raise InputError(f"corpus: {e}") from None
    try:
        if c.shard_size:
            parse_size(c.shard_size)
    except InputError as e:
        raise InputError(f"corpus.shard_size: {e}") from None
    if not c.inputs:
        return
    try:
        files = corpus_files(c)
        check_columns(files, c.text_field, c.source_field or None)
        check_sources(files, c.source_field or None, c.max_sources)
    except (OSError, InputError) as e:
        key = "sources" if c.sources and "source names" in str(e) else "inputs"
        raise InputError(f"corpus.{key}: {e}") from None
    _check_first_records(files, c)


def _check_first_records(files: list[Any], c: CorpusSpec) -> None:
    """The first record of each jsonl input read as tokenize will read it, so that a
    missing text or source field fails now, not minutes into the run (``source_field``
    defaults to "source", the bundled corpus's field; "" takes one source per input)."""
    from miniplm.corpus.readers import read_documents
    from miniplm.errors import FormatError

    for f in files:
        if f.kind != "jsonl" or f.path.stat().st_size == 0:
            continue
        docs = read_documents([f], c.text_field, c.source_field or None)
        try:
            next(docs, None)
        except FormatError as e:
            if c.source_field and "no source field" in str(e):
                raise InputError(
                    f"corpus.source_field: {e} (corpus.source_field is {c.source_field!r}; "
                    'set source_field = "" for one source per input file, or name the '
                    "field that holds each document's source)"
                ) from None
            raise InputError(f"corpus.inputs: {e}") from None
        except OSError as e:
            raise InputError(f"corpus.inputs: {e}") from None
        finally:
            docs.close()


DEVICES = "auto, cpu, cuda, cuda:N, mps"


def check_device(device: str, key: str = "device") -> None:
    """Refuse a device name torch would reject only once a stage runs."""
    n = device[5:] if device.startswith("cuda:") else ""
    if device not in ("auto", "cpu", "cuda", "mps") and not (n.isdigit() and n.isascii()):
        raise InputError(f"{key}: {device!r} is not a device (one of {DEVICES})")


def _check_texts(texts: list[str]) -> None:
    """``eval.texts`` files are reported by base name: two with the same one, or one
    named like the bundled target works' entry, would overwrite another's results."""
    seen: dict[str, str] = {}
    for f in texts:
        name = Path(f).name
        if name == TARGET:
            raise InputError(
                f"eval.texts: {f}: the base name {name!r} is reserved for the bundled "
                "target works' results; rename the file"
            )
        if name in seen:
            raise InputError(
                f"eval.texts: {seen[name]} and {f} have the same base name {name!r}, which "
                "names each file's results; rename one"
            )
        seen[name] = f


def validate(cfg: RunConfig) -> RunConfig:
    if not 0 <= cfg.seed < 2**63:
        raise InputError(f"seed: must lie in [0, 2**63), got {cfg.seed}")
    check_device(cfg.device)
    c = cfg.corpus
    if c.seq_len < 8:
        raise InputError("corpus.seq_len must be at least 8")
    if c.packing not in ("boundary", "fixed"):
        raise InputError(f"corpus.packing: {c.packing!r} is not 'boundary' or 'fixed'")
    if not 0 < c.reference_fraction < 1 or not 0 < c.heldout_fraction < 1:
        raise InputError("corpus.reference_fraction and heldout_fraction must lie in (0, 1)")
    if c.reference_fraction + c.heldout_fraction >= 0.9:
        raise InputError("corpus.reference_fraction + heldout_fraction leave too little to select")
    _check_corpus_inputs(c)
    if c.max_bytes < 0:
        raise InputError("corpus.max_bytes must be >= 0")
    t = cfg.teacher
    if (t.train is None) == (not t.model):
        raise InputError("teacher: give exactly one of teacher.model and [teacher.train]")
    if t.model and t.model != "smollm2" and not Path(t.model.split("::")[0]).exists():
        raise InputError(f"teacher.model: {t.model} does not exist")
    if t.train is not None:
        _check_train(t.train, "teacher.train")
        if not cfg.tokenizer.path and not cfg.tokenizer.train_bpe_vocab:
            raise InputError(
                "a teacher trained here needs tokenizer.path or tokenizer.train_bpe_vocab"
            )
    if t.batch_size < 1:
        raise InputError("teacher.batch_size must be at least 1")
    _check_tokenizer(cfg.tokenizer, "tokenizer")
    if cfg.tokenizer.train_bpe_vocab and t.model:
        raise InputError("tokenizer.train_bpe_vocab: a pretrained teacher brings its own tokenizer")
    _check_tokenizer(cfg.students.tokenizer, "students.tokenizer")
    if cfg.students.tokenizer.path:
        from miniplm.corpus.tokenizer import load_tokenizer

        try:
            load_tokenizer(cfg.students.tokenizer.path)
        except InputError as e:
            raise InputError(f"students.tokenizer.path: {e}") from None
    _check_train(cfg.reference, "reference")
    _check_train(cfg.students, "students")
    if not 0 < cfg.selection.alpha < 1:
        raise InputError("selection.alpha must lie in (0, 1)")
    bad = sorted(set(cfg.selection.baselines) - set(BASELINES))
    if bad:
        raise InputError(f"selection.baselines: unknown {bad} (known: {', '.join(BASELINES)})")
    if not 0 <= cfg.students.kd_ratio <= 1:
        raise InputError("students.kd_ratio must lie in [0, 1]")
    if cfg.students.seeds < 1:
        raise InputError("students.seeds must be at least 1")
    if cfg.eval.top_sources < 0:
        raise InputError(f"eval.top_sources: must be >= 0 (0: all), got {cfg.eval.top_sources}")
    if cfg.eval.max_instances < 0:
        raise InputError(f"eval.max_instances: must be >= 0 (0: all), got {cfg.eval.max_instances}")
    if cfg.eval.batch_size < 1:
        raise InputError(f"eval.batch_size: must be at least 1, got {cfg.eval.batch_size}")
    for key, files in (("mc_files", cfg.eval.mc_files), ("texts", cfg.eval.texts)):
        for f in files:
            if not Path(f).is_file():
                raise InputError(f"eval.{key}: {f} does not exist")
    _check_texts(cfg.eval.texts)
    if cfg.eval.include_path and not Path(cfg.eval.include_path).is_dir():
        raise InputError(f"eval.include_path: {cfg.eval.include_path} is not a directory")
    if cfg.nproc_per_node < 1:
        raise InputError("nproc_per_node must be at least 1")
    return cfg


def load_config(path: str | None, preset: str | None = None) -> RunConfig:
    """The preset (``default`` unless named) overlaid with the TOML file, validated."""
    name = preset or "default"
    if name not in PRESETS:
        raise InputError(f"--preset {name!r}: unknown (known: {', '.join(PRESETS)})")
    data = copy.deepcopy(PRESETS[name])
    if path is not None:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib
        try:
            over = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: not valid TOML ({e})") from e
        if "preset" in over:
            raise InputError(f"{path}: give the preset with --preset, not in the file")
        data = _merge(_yield_to(data, over), over)
        corpus = over.get("corpus")
        if isinstance(corpus, dict) and corpus.get("inputs") and "max_bytes" in corpus:
            print(
                f"miniplm run: {path}: corpus.max_bytes is ignored with corpus.inputs "
                "(it caps the bundled corpus only)",
                file=sys.stderr,
            )
    where = path or "preset " + name
    try:
        cfg = _build(RunConfig, data, "")
    except InputError as e:
        raise InputError(f"{where}: {e}") from None
    try:
        return validate(cfg)
    except InputError as e:
        if type(e) is not InputError:  # a subclass (a missing dependency) as it is
            raise
        raise InputError(f"{where}: {e}") from None


def _yield_to(preset: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """The preset without the settings the file's own replace: its way of making the
    teacher (a file's ``teacher.model`` or ``[teacher.train]``; the file's train keys
    still merge over the preset's), a ``[tokenizer]``-shaped table's other way of making
    the tokenizer (``path`` or ``train_bpe_vocab``), and the BPE a pretrained teacher
    given by the file makes needless (it brings its own tokenizer). What the file gives
    itself is kept, so a file that gives both ways is still refused."""
    data = copy.deepcopy(preset)
    teacher = over.get("teacher")
    if isinstance(teacher, dict) and ("model" in teacher or "train" in teacher):
        pt = data.setdefault("teacher", {})
        pt["model"] = ""
        if teacher.get("model"):
            pt.pop("train", None)
            tok = over.get("tokenizer")
            if not (isinstance(tok, dict) and "train_bpe_vocab" in tok):
                data.get("tokenizer", {}).pop("train_bpe_vocab", None)
    for keys in (("tokenizer",), ("students", "tokenizer")):
        mine: Any = over
        theirs: Any = data
        for k in keys:
            mine = mine.get(k) if isinstance(mine, dict) else None
            theirs = theirs.get(k) if isinstance(theirs, dict) else None
        if not isinstance(mine, dict) or not isinstance(theirs, dict):
            continue
        for given, other in (("path", "train_bpe_vocab"), ("train_bpe_vocab", "path")):
            if given in mine and other not in mine:
                theirs.pop(other, None)
    return data


def dump(cfg: RunConfig) -> str:
    return json.dumps(cfg.to_dict(), indent=1, sort_keys=True)
