"""`miniplm export`: the exported rows give back the documents byte for byte (split at
EOS and at instance cuts, characters cut by an instance kept whole), a selection exports
exactly its rows, score columns, every output format, re-tokenizing with another
tokenizer loses nothing, and lossy tokenizers / bad inputs are refused writing nothing."""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from stops import export_stopped_at
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

import miniplm
from miniplm.cli import main
from miniplm.corpus.export import export
from miniplm.corpus.tokenize import tokenize_corpus
from miniplm.errors import FormatError, InputError
from miniplm.sampling import select
from miniplm.scores import mean_nll, write_score_run

from tiny_lm import tiny_bpe, write_docs

TRAIN = [
    "The cat sat on the mat. Where is the dog?\n",
    "Ünïcödé täxt, naïve café — «quotes» and 日本語のテキスト。",
    "Emoji 😀🎉 and astral \U0001d518\U0001d52b\U0001d526 letters, Ελληνικά, русский текст.",
    "  leading and trailing whitespace \t\n",
]


def _bpe(path: Path, vocab: int, texts: list[str]) -> str:
    """A byte-level BPE (EOS ``<eos>``) trained on ``texts``, saved as ``path``."""
    tiny_bpe(texts * 20, vocab, ["<eos>", "<pad>"]).save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def toks(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The corpus tokenizer and a second, smaller one for the student."""
    d = tmp_path_factory.mktemp("tok")
    return _bpe(d / "teacher.json", 420, TRAIN), _bpe(d / "student.json", 300, TRAIN[::-1])


def _corpus(tmp: Path, docs: list[tuple[str, str]], tok: str, **kw: Any) -> Path:
    out = tmp / "corpus"
    opts: dict[str, Any] = {"seq_len": 8, "workers": 1, "progress": False, "min_tokens": 1}
    tokenize_corpus(
        write_docs(tmp / "docs.jsonl", docs),
        out,
        tok,
        source_field="source",
        eos_token="<eos>",
        overwrite=True,
        **{**opts, **kw},
    )
    return out


def _read(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        return list(pq.read_table(path).to_pylist())
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    elif path.name.endswith(".zst"):
        raw = zstandard.ZstdDecompressor().stream_reader(raw).read()
    return [json.loads(line) for line in raw.decode("utf-8").split("\n") if line]


def _by_source(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        out[r["source"]].append(r["text"])
    return out


def _check_pieces(docs: list[tuple[str, str]], rows: list[dict[str, Any]]) -> None:
    """Per source, the rows in id order tile that source's documents exactly, each row
    inside one document."""
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids)
    want: dict[str, list[str]] = defaultdict(list)
    for s, t in docs:
        if t:
            want[s].append(t)
    got = _by_source(rows)
    assert set(got) == set(want)
    for s, texts in want.items():
        d, at = 0, 0
        for piece in got[s]:
            assert piece, "empty rows are not written"
            assert texts[d][at : at + len(piece)] == piece
            at += len(piece)
            if at == len(texts[d]):
                d, at = d + 1, 0
        assert (d, at) == (len(texts), 0)
        assert "".join(got[s]) == "".join(texts)


text = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_categories=("Cs",)),
        st.sampled_from("ä日😀\U0001d518 \t\n.a"),
    ),
    max_size=40,
)
documents = st.lists(
    st.tuples(st.sampled_from(["web", "code", "wiki"]), text.map(lambda t: f" {t} "))
    | st.tuples(st.sampled_from(["web", "code"]), text),
    min_size=1,
    max_size=12,
)


@settings(max_examples=30)
@given(docs=documents, seq_len=st.integers(1, 12), packing=st.sampled_from(["boundary", "fixed"]))
def test_export_gives_the_documents_back(
    tmp_path: Path, toks: tuple[str, str], docs: list[tuple[str, str]], seq_len: int, packing: str
) -> None:
    if not any(t for _, t in docs):
        docs = [*docs, ("web", "x")]
    corpus = _corpus(tmp_path, docs, toks[0], seq_len=seq_len, packing=packing)
    out = tmp_path / "all.jsonl"
    info = export(corpus, out, overwrite=True)
    rows = _read(out)
    assert info["rows"] == len(rows)
    _check_pieces(docs, rows)
    n = len(miniplm.TokenDataset(corpus))
    assert info["instances"] == n
    # A selection exports exactly its ids' rows of the full export, in order.
    ids = np.random.default_rng(seq_len).permutation(n)[: max(1, n // 3)]
    sel = miniplm.TokenDataset(corpus).write_selection(
        tmp_path / "sel", ids, "test", overwrite=True
    )
    export(corpus, tmp_path / "sel.jsonl", sel, overwrite=True)
    part = _read(tmp_path / "sel.jsonl")
    keep = set(ids.tolist())
    assert part == [r for r in rows if r["id"] in keep]


def test_multibyte_cut_is_kept_whole_in_the_row_where_it_starts(
    tmp_path: Path, toks: tuple[str, str]
) -> None:
    # Astral characters become 4 byte tokens; fixed packing of 3 tokens cuts inside them.
    docs = [("web", "a" + "\U0001f9ea" * 5 + "b"), ("web", "\U0001d518\U0001d52b")]
    corpus = _corpus(tmp_path, docs, toks[0], seq_len=2, packing="fixed")
    export(corpus, tmp_path / "x.jsonl")
    rows = _read(tmp_path / "x.jsonl")
    _check_pieces(docs, rows)
    assert len(rows) > len(docs)


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_retokenizing_an_export_loses_nothing(
    tmp_path: Path, toks: tuple[str, str], suffix: str
) -> None:
    docs = [(s, t) for s in ("web", "code") for t in TRAIN] + [("wiki", " x\n" * 30)]
    corpus = _corpus(tmp_path, docs, toks[0], seq_len=6, packing="boundary")
    out = tmp_path / f"export{suffix}"
    assert main(["export", "--data", str(corpus), "--out", str(out), "--quiet"]) == 0
    rows = _read(out)
    _check_pieces(docs, rows)
    student = tmp_path / "student"
    argv = ["tokenize", str(out), "--source-field", "source", "--tokenizer", toks[1]]
    assert main([*argv, "--eos-token", "<eos>", "--min-tokens", "1", "--out", str(student)]) == 0
    tok = Tokenizer.from_file(toks[1])
    eos = tok.token_to_id("<eos>")
    ds = miniplm.TokenDataset(student)
    names = json.loads((student / "tokenize.json").read_text())["sources"]
    sources = np.load(student / "sources.npy")
    decoded: dict[str, list[int]] = defaultdict(list)
    for i in range(len(ds)):
        decoded[names[int(sources[i])]] += [int(t) for t in ds[i] if t != eos]
    exported = {s: "".join(v) for s, v in _by_source(rows).items()}
    assert {s: tok.decode(v) for s, v in decoded.items()} == exported


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_score_columns_from_the_selection_runs(
    tmp_path: Path, toks: tuple[str, str], suffix: str
) -> None:
    docs = [("web", t) for t in TRAIN * 3]
    corpus = _corpus(tmp_path, docs, toks[0])
    ds = miniplm.TokenDataset(corpus)
    n = len(ds)
    rng = np.random.default_rng(0)
    binding = {"path": str(corpus), "fingerprint": ds.fingerprint()}
    runs = []
    for name in ("teacher", "reference"):
        runs.append(
            write_score_run(
                tmp_path / name,
                rng.random(n) * 10,
                rng.integers(0, 4, n),
                part_size=5,
                dataset=binding,
            )
        )
    sel = tmp_path / "sel"
    select(sel, teacher=runs[0], reference=runs[1], ratio=0.5, data=corpus)
    out = tmp_path / f"sel{suffix}"
    info = export(corpus, out, sel)
    assert info["columns"] == ["id", "source", "text", "r", "nll_teacher", "nll_reference"]
    rows = _read(out)
    t = mean_nll(miniplm.load_scores(runs[0]))
    r = mean_nll(miniplm.load_scores(runs[1]))
    ids = np.load(sel / "ids.npy")
    assert sorted({x["id"] for x in rows}) == ids.tolist()
    for x in rows:
        assert x["nll_teacher"] == t[x["id"]]
        assert x["nll_reference"] == r[x["id"]]
        assert x["r"] == r[x["id"]] - t[x["id"]]


def test_score_columns_come_only_from_the_scores_the_selection_was_made_from(
    tmp_path: Path, toks: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """selection.json records its score inputs' absolute paths, so an export from another
    directory finds them; scores changed since the selection are refused (the columns
    would not be what the selection kept by), and --no-scores exports the text alone."""
    docs = [("web", t) for t in TRAIN * 3]
    corpus = _corpus(tmp_path, docs, toks[0])
    n = len(miniplm.TokenDataset(corpus))
    rng = np.random.default_rng(1)
    monkeypatch.chdir(tmp_path)
    np.save("t.npy", rng.random(n))
    np.save("r.npy", rng.random(n) + 1)
    sel = tmp_path / "sel"
    select(sel, teacher_nll="t.npy", reference_nll="r.npy", ratio=0.5, data=corpus)
    info = json.loads((sel / "selection.json").read_text())
    assert info["inputs"]["teacher"]["path"] == str(tmp_path / "t.npy")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    export(corpus, tmp_path / "a.jsonl", sel)
    rows = _read(tmp_path / "a.jsonl")
    t = np.load(tmp_path / "t.npy")
    assert rows and all(x["nll_teacher"] == t[x["id"]] for x in rows)

    np.save(tmp_path / "t.npy", rng.random(n))  # scored again after the selection
    with pytest.raises(InputError, match=r"t\.npy: the teacher scores changed since selection"):
        export(corpus, tmp_path / "b.jsonl", sel)
    assert not list(tmp_path.glob("*b.jsonl*"))
    argv = ["export", "--data", str(corpus), "--selection", str(sel), "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "b.jsonl")]) == 2
    assert main([*argv, "--no-scores", "--out", str(tmp_path / "b.jsonl")]) == 0
    text_only = _read(tmp_path / "b.jsonl")
    assert [set(x) for x in text_only[:1]] == [{"id", "source", "text"}]
    assert [x["text"] for x in text_only] == [x["text"] for x in rows]

    # A selection of an older version holds the path as given: read from the cwd, and
    # when it is not there the message says which scores, and where it looked.
    info["inputs"]["teacher"]["path"] = "t.npy"
    (sel / "selection.json").write_text(json.dumps(info))
    with pytest.raises(
        FileNotFoundError,
        match=r"t\.npy: the teacher scores selection .*sel "
        r"was made from are not there, read from .*elsewhere .*--no-scores",
    ):
        export(corpus, tmp_path / "c.jsonl", sel)
    monkeypatch.chdir(tmp_path)
    np.save("t.npy", t)  # the scores the selection was made from, back again
    export(corpus, tmp_path / "c.jsonl", sel)
    assert _read(tmp_path / "c.jsonl") == rows


def _lossy(path: Path, kind: str) -> str:
    if kind == "normalizer":
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    elif kind == "prefix-space":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    elif kind == "alphabet":  # trained without the byte alphabet: unseen bytes are lost
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.train_from_iterator(
            TRAIN, trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"])
        )
        tok.save(str(path))
        return str(path)
    else:  # a word-level model with an unknown token
        tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer: Any = (
        trainers.WordLevelTrainer(special_tokens=["<eos>", "<unk>"])
        if kind == "unknown"
        else trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<eos>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    )
    tok.train_from_iterator(TRAIN, trainer)
    tok.save(str(path))
    return str(path)


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("normalizer", "NFKC normalizer"),
        ("prefix-space", "adds a space"),
        ("unknown", "WordLevel"),
        ("alphabet", "lacks .* of the 256 byte tokens"),
    ],
)
def test_a_lossy_tokenizer_is_refused(tmp_path: Path, kind: str, says: str) -> None:
    tok = _lossy(tmp_path / "lossy.json", kind)
    # A byte the "alphabet" tokenizer never saw (a control character, as SmolLM2 lacks).
    docs = [*TRAIN, "a bell \x07 here"] if kind == "alphabet" else TRAIN
    corpus = _corpus(tmp_path, [("web", t) for t in docs], tok)
    if kind == "alphabet":
        meta = json.loads((corpus / "tokenize.json").read_text())
        assert meta["counts"]["unencodable_documents"] == 1
        says += ".* 1 document"
    out = tmp_path / "x.jsonl"
    with pytest.raises(InputError, match=f"lossy.json is not lossless: .*{says}"):
        export(corpus, out)
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_missing_byte_tokens_lose_nothing_on_text_without_those_bytes(tmp_path: Path) -> None:
    """SmolLM2's vocabulary lacks 21 byte tokens (13 never in UTF-8, 0xf1, 0xf2, six
    controls): a corpus none of whose documents holds one exports byte for byte; an
    older corpus, tokenized before the count was recorded, is refused."""
    from miniplm.corpus.bytelevel import missing_bytes

    tok = _lossy(tmp_path / "lossy.json", "alphabet")  # trained on TRAIN, no alphabet
    lost = missing_bytes(Path(tok).read_text())
    assert lost and all(b not in t.encode() for t in TRAIN for b in lost)
    corpus = _corpus(tmp_path, [("web", t) for t in TRAIN], tok)
    meta = json.loads((corpus / "tokenize.json").read_text())
    assert meta["counts"]["unencodable_documents"] == 0
    out = tmp_path / "x.jsonl"
    export(corpus, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert "".join(r["text"] for r in rows) == "".join(TRAIN)
    del meta["counts"]["unencodable_documents"]
    (corpus / "tokenize.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="before tokenize recorded how many documents"):
        export(corpus, tmp_path / "y.jsonl")


def test_eos_inside_a_document_and_old_manifests_are_refused(
    tmp_path: Path, toks: tuple[str, str]
) -> None:
    corpus = _corpus(tmp_path, [("web", "a <eos> b"), ("web", "c")], toks[0])
    meta = json.loads((corpus / "tokenize.json").read_text())
    assert meta["counts"]["eos_in_text"] == 1
    with pytest.raises(InputError, match="EOS id 0 occurs 1 time"):
        export(corpus, tmp_path / "x.jsonl")
    del meta["counts"]["eos_in_text"]
    (corpus / "tokenize.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="before tokenize recorded"):
        export(corpus, tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()


def test_bad_inputs_write_nothing(tmp_path: Path, toks: tuple[str, str]) -> None:
    corpus = _corpus(tmp_path, [("web", t) for t in TRAIN], toks[0])
    with pytest.raises(InputError, match=r"x\.csv: unknown output format"):
        export(corpus, tmp_path / "x.csv")
    (tmp_path / "old.jsonl").write_text("keep")
    with pytest.raises(FileExistsError, match=r"old\.jsonl: output exists"):
        export(corpus, tmp_path / "old.jsonl")
    assert (tmp_path / "old.jsonl").read_text() == "keep"
    other = tmp_path / "other"
    miniplm.write_dataset(other, [np.array([5, 6])] * 3, vocab_size=420)
    sel = miniplm.TokenDataset(other).write_selection(tmp_path / "sel", [0, 1], "test")
    with pytest.raises(InputError, match="instances"):
        export(corpus, tmp_path / "y.jsonl", sel)
    with pytest.raises(FormatError, match=r"tokenize\.json"):
        export(other, tmp_path / "y.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "corpus",
        "docs.jsonl",
        "old.jsonl",
        "other",
        "sel",
    ]
    assert main(["export", "--data", str(corpus), "--out", str(tmp_path / "z.txt")]) == 2


def test_chunking_does_not_change_the_export(
    tmp_path: Path, toks: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = [(s, t) for s in ("web", "code") for t in TRAIN] + [("web", "\U0001f9ea" * 9)]
    corpus = _corpus(tmp_path, docs, toks[0], seq_len=2, packing="fixed")
    export(corpus, tmp_path / "one.parquet")
    monkeypatch.setattr("miniplm.corpus.export._CHUNK_TOKENS", 3)  # one instance per chunk
    export(corpus, tmp_path / "many.parquet")
    rows = _read(tmp_path / "many.parquet")
    assert rows == _read(tmp_path / "one.parquet")
    assert pq.ParquetFile(tmp_path / "many.parquet").num_row_groups == len(
        miniplm.TokenDataset(corpus)
    )
    _check_pieces(docs, rows)


def test_a_normalizer_that_changed_no_document_is_exact(tmp_path: Path) -> None:
    # Qwen's tokenizer normalizes to NFC: exact on NFC text, refused once it changed one.
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TRAIN, trainer)
    tok.save(str(tmp_path / "nfc.json"))
    docs = [("web", t) for t in TRAIN]
    corpus = _corpus(tmp_path, docs, str(tmp_path / "nfc.json"))
    assert json.loads((corpus / "tokenize.json").read_text())["counts"]["normalized_documents"] == 0
    export(corpus, tmp_path / "x.jsonl")
    _check_pieces(docs, _read(tmp_path / "x.jsonl"))
    corpus = _corpus(tmp_path, [*docs, ("web", "cafe\u0301")], str(tmp_path / "nfc.json"))
    with pytest.raises(InputError, match=r"NFC normalizer .*changed 1 document"):
        export(corpus, tmp_path / "y.jsonl")


def test_an_added_token_that_strips_whitespace_is_refused_where_used(tmp_path: Path) -> None:
    from tokenizers import AddedToken

    path = Path(_bpe(tmp_path / "strip.json", 300, TRAIN))
    tok = Tokenizer.from_file(str(path))
    tok.add_tokens([AddedToken("<x>", lstrip=True)])
    tok.save(str(path))
    corpus = _corpus(tmp_path, [("web", "plain text")], str(path))
    export(corpus, tmp_path / "ok.jsonl")  # the token is not used: nothing is lost
    corpus = _corpus(tmp_path, [("web", "a  <x> b")], str(path))
    with pytest.raises(InputError, match="absorbs the whitespace"):
        export(corpus, tmp_path / "no.jsonl")
    assert not (tmp_path / "no.jsonl").exists()


def test_progress_bar_counts_instances(
    tmp_path: Path, toks: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = _corpus(tmp_path, [("web", t) for t in TRAIN], toks[0])
    export(corpus, tmp_path / "x.jsonl", progress=True)
    n = len(miniplm.TokenDataset(corpus))
    err = capsys.readouterr().err
    assert f"{n}/{n}" in err and "instances/s" in err


# ---- a stopped export continues ----------------------------------------------------------

SUFFIXES = [".parquet", ".jsonl", ".jsonl.gz", ".jsonl.zst"]


@pytest.fixture()
def chunked(
    tmp_path: Path, toks: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, int]:
    """A corpus exported one instance per chunk (many chunks, many checkpoints), and its
    number of instances."""
    docs = [(s, f"{t} {i}") for i, (s, t) in enumerate((s, t) for s in "ab" for t in TRAIN)]
    corpus = _corpus(tmp_path, docs, toks[0], seq_len=6, packing="fixed")
    monkeypatch.setattr("miniplm.corpus.export._CHUNK_TOKENS", 7)
    return corpus, len(miniplm.TokenDataset(corpus))


def _stop(corpus: Path, out: Path, k: int, error: BaseException | None = None, **kw: Any) -> None:
    """Export ``corpus`` to ``out`` stopped at chunk ``k``; an earlier ``out`` is untouched."""
    from miniplm.corpus import export as mod

    def contents() -> bytes | None:
        return out.read_bytes() if out.exists() else None

    before = contents()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(mod, "_chunk_rows", export_stopped_at(k, error))
        with pytest.raises(KeyboardInterrupt if error is None else type(error)):
            export(corpus, out, checkpoint_every=0, **kw)
    assert contents() == before


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_stopped_export_resumes_to_the_bytes_of_an_unbroken_run(
    tmp_path: Path, chunked: tuple[Path, int], suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stopped (Ctrl-C) after 3 chunks, then again 2 chunks later, the partial output is
    kept; the third run continues it and writes the bytes of a run that never stopped
    (checkpointed once: a parquet of one part, so the resumed file's merged parts must be
    exactly what one writer writes; zstd a single frame)."""
    corpus, n = chunked
    assert n > 8
    clean = tmp_path / f"clean{suffix}"
    info = export(corpus, clean)
    assert info["resumed"] == 0
    out = tmp_path / "out" / f"x{suffix}"
    work = out.parent / f".{out.name}.partial"
    _stop(corpus, out, 4)
    err = capsys.readouterr().err
    assert (work / "checkpoint.json").is_file() and "export: stopped; the work up to" in err
    state = json.loads((work / "checkpoint.json").read_text())
    assert state["chunks"] == 3 and state["instances"] == 3
    _stop(corpus, out, 3)
    assert "export: resuming" in capsys.readouterr().err
    assert json.loads((work / "checkpoint.json").read_text())["chunks"] == 5
    done = export(corpus, out, checkpoint_every=0)
    assert "at instance 5 of" in capsys.readouterr().err
    assert out.read_bytes() == clean.read_bytes()
    assert done["resumed"] == 2
    assert {k: done[k] for k in ("instances", "rows", "bytes")} == {
        k: info[k] for k in ("instances", "rows", "bytes")
    }
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no partial, no lock
    if suffix == ".jsonl.zst":  # one frame: a plain stream_reader (fsspec's) reads it all
        d = zstandard.ZstdDecompressor()
        every = d.stream_reader(out.read_bytes(), read_across_frames=True).read()
        assert d.stream_reader(out.read_bytes()).read() == every
        assert every.count(b"\n") == info["rows"]
    if suffix == ".parquet":
        assert pq.ParquetFile(out).num_row_groups == n


def test_a_partial_export_of_other_inputs_or_damaged_is_done_again(
    tmp_path: Path, chunked: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    """The partial is continued only for the corpus, selection and format it was made
    with: another selection, ``--no-resume`` and a partial cut behind the job's back each
    start from the beginning, and every run ends with the bytes of a fresh export."""
    corpus, n = chunked
    ds = miniplm.TokenDataset(corpus)
    sel = ds.write_selection(tmp_path / "sel", np.arange(0, n, 2), "even")
    other = ds.write_selection(tmp_path / "sel-other", np.arange(1, n, 2), "odd")
    out = tmp_path / "x.jsonl.gz"
    want = {}
    for s in (sel, other):
        export(corpus, tmp_path / f"want-{s.name}.jsonl.gz", s)
        want[s] = (tmp_path / f"want-{s.name}.jsonl.gz").read_bytes()

    _stop(corpus, out, 3, selection=sel)
    capsys.readouterr()
    export(corpus, out, other, checkpoint_every=0)
    assert "made with another selection" in capsys.readouterr().err
    assert out.read_bytes() == want[other]

    _stop(corpus, out, 3, selection=sel, overwrite=True)
    argv = ["export", "--data", str(corpus), "--selection", str(sel), "--out", str(out)]
    assert main([*argv, "--overwrite", "--quiet", "--no-resume", "--checkpoint-every", "0"]) == 0
    err = capsys.readouterr().err
    assert "(no resume)" in err and "resuming" not in err
    assert out.read_bytes() == want[sel]

    _stop(corpus, out, 4, selection=sel, overwrite=True)
    rows = out.parent / f".{out.name}.partial" / "rows.jsonl.gz"
    rows.write_bytes(rows.read_bytes()[:-5])  # shorter than its checkpoint says
    capsys.readouterr()
    export(corpus, out, sel, overwrite=True)
    err = capsys.readouterr().err
    assert "cannot continue" in err and "shorter than its checkpoint" in err
    assert out.read_bytes() == want[sel]

    with pytest.raises(InputError, match="checkpoint interval"):
        export(corpus, tmp_path / "y.jsonl", checkpoint_every=-1)


def test_a_partial_export_is_continued_under_another_spelling_of_its_inputs(
    tmp_path: Path, chunked: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The identity holds resolved paths: stopped with ``corpus`` relative to the working
    directory, the export continues when given its absolute path or a link to it."""
    corpus, n = chunked
    sel = miniplm.TokenDataset(corpus).write_selection(tmp_path / "sel", np.arange(n), "all")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "x.jsonl"
    _stop(Path("corpus"), out, 3, selection=Path("sel"))
    (tmp_path / "link").symlink_to(corpus)
    assert export(tmp_path / "link", out, sel, checkpoint_every=0)["resumed"] == 1
    export(corpus, tmp_path / "fresh.jsonl", sel)
    assert out.read_bytes() == (tmp_path / "fresh.jsonl").read_bytes()


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl.zst"])
def test_a_stop_while_finishing_continues_with_the_finishing(
    tmp_path: Path, chunked: tuple[Path, int], suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stopped while the parts are merged (parquet) or the frames recompressed (zstd),
    the checkpoint is still there: the rerun writes no chunk again and only finishes."""
    from miniplm.corpus import export as mod
    from miniplm.corpus import export_output

    corpus, _ = chunked
    clean = tmp_path / f"clean{suffix}"
    export(corpus, clean)
    out = tmp_path / f"x{suffix}"
    cls = export_output._ParquetParts if suffix == ".parquet" else export_output._JsonLines

    def stopped(self: Any, final: Path) -> None:
        final.write_bytes(b"half a file")
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as m:
        m.setattr(cls, "finish", stopped)
        with pytest.raises(KeyboardInterrupt):
            export(corpus, out, checkpoint_every=0)
    calls = [0]
    real = mod._chunk_rows

    def counted(*a: Any) -> Any:
        calls[0] += 1
        return real(*a)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(mod, "_chunk_rows", counted)
        info = export(corpus, out, checkpoint_every=0)
    # Only the chunks after the last checkpoint (the last one is never checkpointed).
    assert calls[0] == 1 and info["resumed"] == 1
    assert out.read_bytes() == clean.read_bytes()


def test_bad_input_or_a_stop_before_the_first_checkpoint_keeps_nothing(
    tmp_path: Path, chunked: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad input found half way (here a token the corpus tokenizer cannot export) ends
    the job and removes its partial; so does a stop before anything was checkpointed."""
    corpus, _ = chunked
    out = tmp_path / "x.parquet"
    _stop(corpus, out, 4, InputError("bad token"))
    _stop(corpus, out, 1)
    assert "kept in" not in capsys.readouterr().err
    assert not list(tmp_path.glob(".x.parquet*")) and not out.exists()


def test_a_resumed_exports_bar_starts_at_the_instances_done(
    tmp_path: Path, chunked: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    """The bar of a resumed export starts at the instances exported before (so its rate
    is of its own work), not at 0 with a first jump over them."""
    corpus, n = chunked
    out = tmp_path / "x.jsonl"
    _stop(corpus, out, 4)  # chunks of one instance: 3 done
    capsys.readouterr()
    export(corpus, out, progress=True)
    err = capsys.readouterr().err
    frames = [f for f in re.split(r"[\r\n]", err) if f.startswith("export:") and "instances" in f]
    assert f"| 3/{n} [" in frames[0], frames[:3]
    assert f"| {n}/{n} [" in frames[-1], frames[-3:]
