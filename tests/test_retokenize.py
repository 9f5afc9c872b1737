"""``retokenize`` (export + tokenize with a student's tokenizer) and the shared BPE trainer:
a re-tokenized selection decodes, per source, to exactly the export's text of that
selection; the trained BPE has the asked size, is lossless, and refuses sizes it cannot
honour; bad inputs write nothing."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from stops import export_stopped_at, tokenize_stopped_at
from tokenizers import Tokenizer

import miniplm
from miniplm.corpus import tokenize as tokenize_mod
from miniplm.corpus.bpe import EOS, check_bpe_vocab, train_bpe
from miniplm.corpus.bytelevel import token_bytes
from miniplm.corpus.export import export
from miniplm.corpus.retokenize import retokenize
from miniplm.corpus.tokenize import tokenize_corpus
from miniplm.errors import InputError

from tiny_lm import write_docs

TEXTS = [
    "The cat sat on the mat. Where is the dog?\n",
    "Ünïcödé täxt, naïve café — «quotes» and 日本語のテキスト。",
    "Emoji 😀🎉 and astral \U0001d518\U0001d52b letters, Ελληνικά, русский текст.",
    "  leading and trailing whitespace \t\n",
]


@pytest.fixture(scope="module")
def toks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A corpus tokenizer and a smaller student one, both from the shared trainer."""
    d = tmp_path_factory.mktemp("bpe")
    text = write_docs(d / "train.jsonl", [("a", t) for t in TEXTS * 20])
    rev = write_docs(d / "rev.jsonl", [("a", t) for t in TEXTS[::-1] * 20])
    return train_bpe([text], d / "corpus-tok", 420), train_bpe([rev], d / "student-tok", 300)


def test_train_bpe_has_the_asked_size_and_is_lossless(toks: tuple[Path, Path]) -> None:
    from transformers import AutoTokenizer

    for path, size in zip(toks, (420, 300)):
        tok = AutoTokenizer.from_pretrained(path)
        assert len(tok) == size and tok.eos_token == EOS
        spec = (path / "tokenizer.json").read_text()
        assert token_bytes(spec, str(path)).bad.keys() <= {tok.eos_token_id}
        for t in TEXTS:
            assert tok.decode(tok(t, add_special_tokens=False)["input_ids"]) == t


def test_train_bpe_reads_any_input_format(tmp_path: Path) -> None:
    """It reads the corpus as tokenize does, not only JSON lines (parquet here)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"body": TEXTS * 10}), f)
    out = train_bpe([f], tmp_path / "tok", 280, text_field="body")
    assert Tokenizer.from_file(str(out / "tokenizer.json")).get_vocab_size() == 280


def test_train_bpe_refuses_a_vocabulary_below_the_byte_alphabet(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"students\.tokenizer\.train_bpe_vocab: 100 .* 257"):
        check_bpe_vocab(100, "students.tokenizer.train_bpe_vocab")
    with pytest.raises(InputError, match="at least 257"):
        train_bpe([write_docs(tmp_path / "t.jsonl", [("a", "x")])], tmp_path / "tok", 256)
    assert not (tmp_path / "tok").exists()


def _student_bytes(directory: Path) -> dict[str, bytes]:
    """The student corpus's tokens as bytes, per source in id order, EOS dropped."""
    meta = json.loads((directory / "tokenize.json").read_text())
    table = token_bytes((directory / "tokenizer.json").read_text(), "student")
    eos = int(meta["tokenizer"]["eos_id"])
    sources = np.load(directory / "sources.npy")
    ds = miniplm.TokenDataset(directory)
    out: dict[str, bytearray] = defaultdict(bytearray)
    for i in range(len(ds)):
        name = meta["sources"][int(sources[i])]
        for t in np.asarray(ds[i]).tolist():
            if t != eos:
                out[name] += table.data[table.offsets[t] : table.offsets[t + 1]].tobytes()
    return {k: bytes(v) for k, v in out.items()}


def _export_bytes(path: Path) -> dict[str, bytes]:
    out: dict[str, bytearray] = defaultdict(bytearray)
    # Lines end at "\n" only: str.splitlines() would also split a text at \x85 or \r,
    # which JSON leaves unescaped.
    for line in path.read_text(encoding="utf-8").split("\n")[:-1]:
        row = json.loads(line)
        out[row["source"]] += row["text"].encode()
    return {k: bytes(v) for k, v in out.items()}


DOC = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@example(  # found by hypothesis: \x85 and \r inside a text (not line ends in JSONL)
    docs=[
        ("web", "000\x80\x80\x80\x80\U00010000"),
        ("web", "0000\x80\x85"),
        ("books", "0\x80\x80\U00010000\r00000\x80"),
    ],
    picks=[True] * 60,
    seq_len=4,
    packing="boundary",
)
@given(
    docs=st.lists(st.tuples(st.sampled_from(["web", "books", "code"]), DOC), max_size=25),
    picks=st.lists(st.booleans(), min_size=60, max_size=60),
    seq_len=st.integers(4, 24),
    packing=st.sampled_from(["boundary", "fixed"]),
)
def test_a_retokenized_selection_decodes_to_the_exports_text_per_source(
    toks: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
    docs: list[tuple[str, str]],
    picks: list[bool],
    seq_len: int,
    packing: str,
) -> None:
    tmp = tmp_path_factory.mktemp("rt")
    docs = [("web", "always some text"), *docs]
    opts: dict[str, Any] = {"workers": 1, "progress": False, "min_tokens": 1}
    corpus = tmp / "corpus"
    tokenize_corpus(
        write_docs(tmp / "docs.jsonl", docs),
        corpus,
        toks[0],
        source_field="source",
        seq_len=8,
        **opts,
    )
    ds = miniplm.TokenDataset(corpus)
    ids = [i for i in range(len(ds)) if picks[i % len(picks)]] or [0]
    sel = ds.write_selection(tmp / "sel", np.array(ids), "test")
    export(corpus, tmp / "sel.jsonl", sel)
    want = _export_bytes(tmp / "sel.jsonl")
    if not any(want.values()):  # only EOS-only instances picked: nothing to re-tokenize
        with pytest.raises(InputError, match="holds no text to re-tokenize"):
            retokenize(corpus, tmp / "student", toks[1], selection=sel, seq_len=seq_len, **opts)
        assert not (tmp / "student").exists()
        return
    info = retokenize(
        corpus, tmp / "student", toks[1], selection=sel, seq_len=seq_len, packing=packing, **opts
    )
    got = _student_bytes(tmp / "student")
    assert got == {k: v for k, v in want.items() if v}
    assert info["bytes"] == sum(len(v) for v in want.values())
    student_tok = json.loads((tmp / "student" / "tokenize.json").read_text())["tokenizer"]
    assert student_tok["vocab_size"] == 300 and info["tokenizer"] == student_tok
    assert not list(tmp.glob(".student*"))  # the text in between is gone, and the locks


def test_retokenize_refuses_an_existing_output_and_a_foreign_selection(
    toks: tuple[Path, Path], tmp_path: Path
) -> None:
    src = write_docs(tmp_path / "docs.jsonl", [("a", t) for t in TEXTS])
    opts: dict[str, Any] = {"workers": 1, "progress": False, "seq_len": 8}
    tokenize_corpus(src, tmp_path / "c1", toks[0], source_field="source", **opts)
    tokenize_corpus(src, tmp_path / "c2", toks[1], source_field="source", **opts)
    other = miniplm.TokenDataset(tmp_path / "c2").write_selection(
        tmp_path / "sel2", np.array([0]), "other"
    )
    with pytest.raises(InputError):
        retokenize(tmp_path / "c1", tmp_path / "out", toks[1], selection=other, **opts)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError, match="--overwrite"):
        retokenize(tmp_path / "c1", tmp_path / "out", toks[1], **opts)


def test_retokenize_needs_only_the_ids_of_a_selection_made_from_score_runs(
    toks: tuple[Path, Path], tmp_path: Path
) -> None:
    """A selection from score runs that are gone (a run dir moved: its selection.json
    names them relative to another cwd) re-tokenizes: only the ids are read."""
    import shutil

    from miniplm.sampling import select
    from miniplm.scores import write_score_run

    src = write_docs(tmp_path / "docs.jsonl", [("a", t) for t in TEXTS * 3])
    opts: dict[str, Any] = {"workers": 1, "progress": False, "seq_len": 8}
    corpus = tmp_path / "corpus"
    tokenize_corpus(src, corpus, toks[0], source_field="source", **opts)
    ds = miniplm.TokenDataset(corpus)
    n, rng = len(ds), np.random.default_rng(0)
    binding = {"path": str(corpus), "fingerprint": ds.fingerprint()}
    runs = [
        write_score_run(tmp_path / k, rng.random(n), np.ones(n), dataset=binding)
        for k in ("teacher", "reference")
    ]
    select(tmp_path / "sel", teacher=runs[0], reference=runs[1], ratio=0.5, data=corpus)
    for r in runs:
        shutil.rmtree(r)
    info = retokenize(corpus, tmp_path / "out", toks[1], selection=tmp_path / "sel", **opts)
    assert info["instances"] > 0


# ---------------------------------------------------------------- resume after a stop
def _dir_bytes(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.name != "tokenize.json"}


@pytest.fixture()
def selected(toks: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A corpus of 40 documents and a selection of two thirds of its instances."""
    docs = [("ab"[i % 2], f"{TEXTS[i % 4]} number {i}") for i in range(40)]
    corpus = tmp_path / "corpus"
    opts: dict[str, Any] = {"workers": 1, "progress": False, "seq_len": 8}
    tokenize_corpus(write_docs(tmp_path / "docs.jsonl", docs), corpus, toks[0], **opts)
    ds = miniplm.TokenDataset(corpus)
    ids = np.array([i for i in range(len(ds)) if i % 3])
    return corpus, ds.write_selection(tmp_path / "sel", ids, "test")


_RT: dict[str, Any] = {"workers": 1, "progress": False, "batch_docs": 5, "checkpoint_every": 0}


def test_a_stopped_retokenize_continues_reusing_its_export(
    toks: tuple[Path, Path],
    selected: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Stopped in the middle of tokenizing, the exported text and the tokenizer's partial
    output are kept; the same call then exports nothing again, continues the tokenizer
    from its checkpoint, and ends with the bytes of a run that never stopped."""
    from miniplm.corpus import retokenize as mod
    from miniplm.corpus.retokenize import work_dir

    corpus, sel = selected
    clean = retokenize(corpus, tmp_path / "clean", toks[1], selection=sel, **_RT)
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        m.setattr(tokenize_mod._Run, "add", tokenize_stopped_at(4))
        with pytest.raises(KeyboardInterrupt):
            retokenize(corpus, out, toks[1], selection=sel, **_RT)
    assert not out.exists()
    assert (work_dir(out) / "text.jsonl").is_file() and (tmp_path / ".out.partial").is_dir()
    assert "retokenize: stopped; the work so far is kept in" in capsys.readouterr().err
    exports = [0]
    real_export = mod.export

    def counted(*a: Any, **k: Any) -> dict[str, Any]:
        exports[0] += 1
        return real_export(*a, **k)

    monkeypatch.setattr(mod, "export", counted)
    info = retokenize(corpus, out, toks[1], selection=sel, **_RT)
    err = capsys.readouterr().err
    assert exports[0] == 0 and "reusing the text exported to" in err and "resuming" in err
    assert _dir_bytes(out) == _dir_bytes(tmp_path / "clean")
    assert json.loads((out / "tokenize.json").read_text())["resumed"] == 1
    assert {k: info[k] for k in ("bytes", "rows", "instances", "tokens")} == {
        k: clean[k] for k in ("bytes", "rows", "instances", "tokens")
    }
    assert not list(tmp_path.glob(".out*"))  # the text, the partial and the locks are gone


def test_a_changed_selection_or_no_resume_exports_again(
    toks: tuple[Path, Path],
    selected: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The kept export is reused only for the corpus and selection it was made from, and
    not with ``resume=False``; a damaged one is exported again, never used."""
    from miniplm.corpus.retokenize import work_dir

    corpus, sel = selected
    out = tmp_path / "out"

    def stopped(selection: Path) -> None:
        with monkeypatch.context() as m:
            m.setattr(tokenize_mod._Run, "add", tokenize_stopped_at(2))
            with pytest.raises(KeyboardInterrupt):
                retokenize(corpus, out, toks[1], selection=selection, overwrite=True, **_RT)
        assert (work_dir(out) / "export.json").is_file()
        capsys.readouterr()

    stopped(sel)
    ds = miniplm.TokenDataset(corpus)
    other = ds.write_selection(tmp_path / "sel-other", np.arange(0, len(ds), 2), "other")
    retokenize(corpus, out, toks[1], selection=other, overwrite=True, **_RT)
    err = capsys.readouterr().err
    assert "exporting again, not reusing" in err and "corpus or selection changed" in err
    assert "discarding the partial output" in err  # the tokenizer's input changed too
    want = _dir_bytes(out)
    retokenize(corpus, tmp_path / "fresh", toks[1], selection=other, **_RT)
    assert want == _dir_bytes(tmp_path / "fresh")

    stopped(other)
    info = retokenize(corpus, out, toks[1], selection=other, overwrite=True, resume=False, **_RT)
    err = capsys.readouterr().err
    assert "reusing" not in err and "discarding the partial output" in err
    assert _dir_bytes(out) == want and info["rows"] > 0

    stopped(other)
    text = work_dir(out) / "text.jsonl"
    text.write_bytes(text.read_bytes()[:-10])  # cut short behind the job's back
    retokenize(corpus, out, toks[1], selection=other, overwrite=True, **_RT)
    assert "its text changed" in capsys.readouterr().err
    assert _dir_bytes(out) == want


def test_retokenize_stopped_while_exporting_or_by_bad_input_keeps_nothing(
    toks: tuple[Path, Path],
    selected: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing is kept from a stop before the export's first checkpoint, nor after bad
    input (here a tokenizer that is not one), which ends the job."""
    from miniplm.corpus import retokenize as mod

    corpus, sel = selected

    def interrupted(*a: Any, **k: Any) -> dict[str, Any]:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(mod, "export", interrupted)
        with pytest.raises(KeyboardInterrupt):
            retokenize(corpus, tmp_path / "out", toks[1], selection=sel, **_RT)
    assert not list(tmp_path.glob(".out*")) and not (tmp_path / "out").exists()
    bad = tmp_path / "not-a-tokenizer.json"
    bad.write_text("{}")
    with pytest.raises(InputError):
        retokenize(corpus, tmp_path / "out", bad, selection=sel, **_RT)
    assert not list(tmp_path.glob(".out*")) and not (tmp_path / "out").exists()


def test_a_retokenize_stopped_while_exporting_continues_the_export(
    toks: tuple[Path, Path],
    selected: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Stopped half way through the export (one instance per chunk, checkpointed after
    each), the export's partial output is kept; the same call continues the export from
    its checkpoint and ends with the bytes of a run that never stopped."""
    from miniplm.corpus import export as export_mod
    from miniplm.corpus.retokenize import work_dir

    corpus, sel = selected
    monkeypatch.setattr(export_mod, "_CHUNK_TOKENS", 9)  # seq_len 8: one instance a chunk
    clean = retokenize(corpus, tmp_path / "clean", toks[1], selection=sel, **_RT)
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        m.setattr(export_mod, "_chunk_rows", export_stopped_at(6))
        with pytest.raises(KeyboardInterrupt):
            retokenize(corpus, out, toks[1], selection=sel, **_RT)
    partial = work_dir(out) / ".text.jsonl.partial"
    assert (partial / "checkpoint.json").is_file()
    assert json.loads((partial / "checkpoint.json").read_text())["chunks"] == 5
    assert "retokenize: stopped; the work so far is kept in" in capsys.readouterr().err
    calls = [0]
    real = export_mod._chunk_rows

    def counted(*a: Any) -> Any:
        calls[0] += 1
        return real(*a)

    monkeypatch.setattr(export_mod, "_chunk_rows", counted)
    info = retokenize(corpus, out, toks[1], selection=sel, **_RT)
    assert "export: resuming" in capsys.readouterr().err
    assert calls[0] == len(np.load(sel / "ids.npy")) - 5  # only the chunks not yet done
    assert _dir_bytes(out) == _dir_bytes(tmp_path / "clean")
    assert {k: info[k] for k in ("bytes", "rows", "instances", "tokens")} == {
        k: clean[k] for k in ("bytes", "rows", "instances", "tokens")
    }
    assert not list(tmp_path.glob(".out*"))
