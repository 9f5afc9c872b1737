"""Outputs never destroy inputs and are replaced whole whatever stood there: retokenize
refuses an output that is or holds its corpus or selection; replacing a file or a link
with a score run leaves neither debris nor an error (and a link's target untouched);
export writes a valid empty file in every format, refuses a directory up front, and
reads score runs with empty parts as the core does."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import zstandard

import miniplm
from miniplm.corpus.bpe import train_bpe
from miniplm.corpus.export import export
from miniplm.corpus.retokenize import retokenize
from miniplm.corpus.tokenize import tokenize_corpus
from miniplm.errors import InputError
from miniplm.sampling import select
from miniplm.scores import mean_nll, write_score_run

from tiny_lm import write_docs

TEXTS = [
    "The cat sat on the mat. Where is the dog?\n",
    "Ünïcödé täxt, naïve café — «quotes» and 日本語のテキスト。",
    "Emoji 😀🎉 and astral letters, Ελληνικά, русский текст.",
]


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bpe")
    return train_bpe(
        [write_docs(d / "train.jsonl", [("a", t) for t in TEXTS * 20])], d / "tok", 400
    )


def _corpus(tmp: Path, tok: Path, docs: int = 9) -> Path:
    src = write_docs(tmp / "docs.jsonl", [("ab"[i % 2], TEXTS[i % 3]) for i in range(docs)])
    out = tmp / "data" / "corpus"
    opts: dict[str, Any] = {"seq_len": 8, "workers": 1, "progress": False, "min_tokens": 1}
    tokenize_corpus(src, out, tok, source_field="source", **opts)
    return out


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# ---- retokenize never replaces its inputs ----------------------------------------------


def test_retokenize_refuses_an_output_that_is_or_holds_its_inputs(
    tok: Path, tmp_path: Path
) -> None:
    corpus = _corpus(tmp_path, tok)
    sel = miniplm.TokenDataset(corpus).write_selection(tmp_path / "sel", np.array([0, 2]), "t")
    before = _tree(tmp_path)
    opts: dict[str, Any] = {"workers": 1, "progress": False, "seq_len": 8, "overwrite": True}
    for out in (corpus, corpus.parent, tmp_path, sel):
        with pytest.raises(InputError, match=str(out)):
            retokenize(corpus, out, tok, selection=sel, **opts)
        assert _tree(tmp_path) == before, out
        assert not list(tmp_path.parent.glob(f".{tmp_path.name}.*"))
    # Still a dataset that retokenizes.
    info = retokenize(corpus, tmp_path / "out", tok, selection=sel, **opts)
    assert info["instances"] > 0


# ---- replacing whatever stands at the output -------------------------------------------


def _debris(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


def test_a_score_run_replaces_a_file(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.write_text("old")
    write_score_run(out, np.arange(5.0), np.ones(5), overwrite=True)
    assert out.is_dir() and mean_nll(miniplm.load_scores(out)).tolist() == [0, 1, 2, 3, 4]
    assert _debris(tmp_path) == [".run.lock"] or _debris(tmp_path) == []


@pytest.mark.parametrize("dangling", [False, True])
def test_a_score_run_replaces_a_link_and_leaves_its_target(tmp_path: Path, dangling: bool) -> None:
    other = write_score_run(tmp_path / "other", np.ones(3), np.ones(3))
    target = _tree(other)
    out = tmp_path / "run"
    out.symlink_to(tmp_path / "gone" if dangling else other, target_is_directory=True)
    with pytest.raises(FileExistsError, match="run: output exists"):
        write_score_run(out, np.arange(5.0), np.ones(5))
    write_score_run(out, np.arange(5.0), np.ones(5), overwrite=True)
    assert out.is_dir() and not out.is_symlink()
    assert mean_nll(miniplm.load_scores(out)).tolist() == [0, 1, 2, 3, 4]
    assert _tree(other) == target
    assert not any(".old-" in n or ".tmp-" in n for n in _debris(tmp_path))


# ---- export ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_an_empty_selection_exports_a_valid_empty_file(
    tok: Path, tmp_path: Path, suffix: str
) -> None:
    corpus = _corpus(tmp_path, tok)
    sel = miniplm.TokenDataset(corpus).write_selection(
        tmp_path / "sel", np.array([], dtype=np.uint64), "none"
    )
    out = tmp_path / f"e{suffix}"
    info = export(corpus, out, sel, progress=False)
    assert (info["instances"], info["rows"], info["bytes"]) == (0, 0, 0)
    raw = out.read_bytes()
    if suffix == ".parquet":
        table = pq.read_table(out)
        assert table.num_rows == 0 and table.schema.names == ["id", "source", "text"]
    elif suffix == ".jsonl":
        assert raw == b""
    elif suffix == ".jsonl.gz":
        assert raw and gzip.decompress(raw) == b""
    else:
        assert raw and zstandard.ZstdDecompressor().stream_reader(raw).read() == b""
    assert not list(tmp_path.glob(".e*"))


def test_export_refuses_a_directory_output_up_front(
    tok: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = _corpus(tmp_path, tok)
    out = tmp_path / "out.jsonl"
    out.mkdir()
    (out / "keep").write_text("keep")
    from miniplm.corpus import export as export_mod

    def no_work(*a: Any) -> Any:
        raise AssertionError("export read the corpus before refusing its output")

    monkeypatch.setattr(export_mod, "_chunk_rows", no_work)
    with pytest.raises(InputError, match=rf"{out}: .*directory"):
        export(corpus, out, overwrite=True, progress=False)
    assert (out / "keep").read_text() == "keep" and sorted(p.name for p in out.iterdir()) == [
        "keep"
    ]
    assert not list(tmp_path.glob(".out.jsonl.*"))


def test_export_reads_a_score_run_with_an_empty_part_as_the_core_does(
    tok: Path, tmp_path: Path
) -> None:
    corpus = _corpus(tmp_path, tok, docs=12)
    ds = miniplm.TokenDataset(corpus)
    n = len(ds)
    assert n > 9
    binding = {"path": str(corpus), "fingerprint": ds.fingerprint()}
    rng = np.random.default_rng(0)
    runs = []
    for name in ("teacher", "reference"):
        run = write_score_run(
            tmp_path / name, rng.random(n) * 5, np.ones(n), part_size=4, dataset=binding
        )
        # An empty part [8, 8) listed after the part [8, 12): the core sorts (start, end).
        empty = run / "part-empty"
        empty.mkdir()
        np.save(empty / "nll_sum.npy", np.zeros(0))
        np.save(empty / "n_scored.npy", np.zeros(0, dtype=np.uint32))
        man = json.loads((run / "manifest.json").read_text())
        man["parts"].append({"name": "part-empty", "start": 8, "end": 8, "complete": True})
        (run / "manifest.json").write_text(json.dumps(man))
        runs.append(run)
    sel = tmp_path / "sel"
    select(sel, teacher=runs[0], reference=runs[1], ratio=1.0, data=corpus)
    out = tmp_path / "s.jsonl"
    export(corpus, out, sel, progress=False)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    t = mean_nll(miniplm.load_scores(runs[0]))
    r = mean_nll(miniplm.load_scores(runs[1]))
    assert {x["id"] for x in rows} == set(range(n))
    for x in rows:
        assert (x["nll_teacher"], x["nll_reference"]) == (t[x["id"]], r[x["id"]])
