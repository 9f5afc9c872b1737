"""The bundled default corpus: its assets, provenance records and the JSONL writer."""

from __future__ import annotations

import hashlib
import json
import lzma
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from miniplm import default_corpus as dc

ASSETS = Path(str(resources.files("miniplm") / "assets"))

# One phrase per real source that its text must contain: the text is the real work.
KNOWN_PHRASES = {
    "austen": [
        "It is a truth universally acknowledged, that a single man in possession",
        "Sir Walter Elliot, of Kellynch Hall, in Somersetshire",
        "No one who had ever seen Catherine Morland in her infancy",
    ],
    "melville": ["Call me Ishmael.", "AND I ONLY AM ESCAPED ALONE TO TELL THEE"],
    "shakespeare": [
        "To be, or not to be,--that is the question:",
        "Is this a dagger which I see before me,",
        "Shall I compare thee to a summer's day?",
    ],
    "web-bible": [
        "In the beginning, God created the heavens and the earth.",
        "For God so loved the world, that he gave his only born Son,",
        "Yahweh is my shepherd; I shall lack nothing.",
    ],
    "milton": ["Of Mans First Disobedience, and the Fruit", "Lords and Commons of England"],
}

REQUIRED_FIELDS = ("name", "file", "title", "author", "origin", "licence", "bytes", "sha256")


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def full_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dc.write_default_corpus(tmp_path_factory.mktemp("full"), seed=0)


# -------------------------------------------------------------------------- assets


def test_sources_json_records_are_complete() -> None:
    sources = dc.default_sources()
    assert len(sources) >= 4
    names = [s["name"] for s in sources]
    assert len(set(names)) == len(names)
    assert set(names) == set(KNOWN_PHRASES)
    for s in sources:
        for key in REQUIRED_FIELDS:
            assert s.get(key), (s["name"], key)
        assert "public domain" in s["licence"].lower()
        for key in ("registry", "package", "version", "path"):
            assert s["origin"].get(key), (s["name"], key)
        assert s["origin"]["registry"].split()[0] in {"Debian", "PyPI"}
        assert not s["name"].startswith(dc.NOISE_PREFIX)


def test_stored_files_match_sources_json() -> None:
    listed = set()
    for s in dc.default_sources():
        path = ASSETS / s["file"]
        assert path.is_file(), path
        blob = path.read_bytes()
        assert len(blob) == s["bytes"]
        assert hashlib.sha256(blob).hexdigest() == s["sha256"]
        text = lzma.decompress(blob)
        assert len(text) == s["text_bytes"]
        assert hashlib.sha256(text).hexdigest() == s["text_sha256"]
        listed.add(path.name)
    # Every stored file is listed: nothing ships without its provenance record.
    assert {p.name for p in (ASSETS / "corpus").iterdir()} == listed


def test_sources_md_lists_every_source_and_hash() -> None:
    md = (ASSETS / "SOURCES.md").read_text(encoding="utf-8")
    for s in dc.default_sources():
        assert f"## {s['name']}:" in md
        assert s["sha256"] in md
        assert s["origin"]["package"] in md


def test_real_text_is_the_real_works() -> None:
    for s in dc.default_sources():
        docs = dc.real_documents(s["name"])
        assert len(docs) == s["documents"]
        text = "\n".join(docs)
        assert s["phrase"] in text
        for phrase in KNOWN_PHRASES[s["name"]]:
            assert phrase in text, (s["name"], phrase)
        assert "gutenberg" not in text.lower(), s["name"]
        sizes = [len(d.encode()) for d in docs]
        assert min(sizes) >= 1000 and max(sizes) <= 20000, s["name"]


def test_total_size_is_a_few_megabytes() -> None:
    sources = dc.default_sources()
    assert 3_000_000 <= sum(s["text_bytes"] for s in sources) <= 6_500_000
    assert sum(s["bytes"] for s in sources) <= 2_500_000


# ------------------------------------------------------------------------ the writer


def test_full_corpus_lines_are_valid_and_labelled(full_corpus: Path) -> None:
    assert full_corpus.name == "corpus.jsonl"
    rows = _lines(full_corpus)
    known = {s["name"] for s in dc.default_sources()} | set(dc.NOISE_SOURCES)
    seen = set()
    for row in rows:
        assert set(row) == {"text", "source"}
        assert isinstance(row["text"], str) and row["text"].strip()
        assert row["source"] in known
        seen.add(row["source"])
    assert seen == known
    assert all(n.startswith(dc.NOISE_PREFIX) for n in dc.NOISE_SOURCES)
    # All real documents but the target works' are there, in their order.
    for s in dc.default_sources():
        got = [r["text"] for r in rows if r["source"] == s["name"]]
        assert got == dc.corpus_documents(s["name"])
    # The noise is a fifth or so of the text.
    size = {True: 0, False: 0}
    for r in rows:
        size[r["source"].startswith(dc.NOISE_PREFIX)] += len(r["text"].encode())
    share = size[True] / (size[True] + size[False])
    assert 0.15 <= share <= 0.25, share
    # No temporary file left behind.
    assert [p.name for p in full_corpus.parent.iterdir()] == ["corpus.jsonl"]


def test_sources_are_interleaved(full_corpus: Path) -> None:
    sources = [r["source"] for r in _lines(full_corpus)]
    head = set(sources[: len(sources) // 20])
    assert head == set(sources)


def test_noise_looks_like_noise(full_corpus: Path) -> None:
    rows = _lines(full_corpus)
    by = {n: [r["text"] for r in rows if r["source"] == n] for n in dc.NOISE_SOURCES}
    boiler = "\n".join(by["noise-boilerplate"]).lower()
    assert "cookies" in boiler and "subscribe" in boiler and "all rights reserved" in boiler
    salad = by["noise-word-salad"][0].split()
    real_words = set("\n".join(dc.real_documents("austen")).split())
    for s in dc.default_sources():
        real_words |= set("\n".join(dc.real_documents(s["name"])).split())
    assert all(w in real_words for w in salad)
    garbage = "\n".join(by["noise-char-garbage"])
    assert sum(c.isdigit() for c in garbage) > len(garbage) // 20


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = dc.write_default_corpus(tmp_path / "a", seed=3, max_bytes=300_000)
    b = dc.write_default_corpus(tmp_path / "b", seed=3, max_bytes=300_000)
    assert a.read_bytes() == b.read_bytes()
    # Writing again over an existing corpus gives the same bytes.
    again = dc.write_default_corpus(tmp_path / "a", seed=3, max_bytes=300_000)
    assert again.read_bytes() == b.read_bytes()


def test_another_seed_changes_the_noise_only(tmp_path: Path) -> None:
    a = _lines(dc.write_default_corpus(tmp_path / "a", seed=0, max_bytes=300_000))
    b = _lines(dc.write_default_corpus(tmp_path / "b", seed=1, max_bytes=300_000))
    real_a = [r for r in a if not r["source"].startswith(dc.NOISE_PREFIX)]
    real_b = [r for r in b if not r["source"].startswith(dc.NOISE_PREFIX)]
    assert real_a == real_b
    for name in dc.NOISE_SOURCES:
        na = [r["text"] for r in a if r["source"] == name]
        nb = [r["text"] for r in b if r["source"] == name]
        assert na and nb and na != nb, name


def test_no_noise(tmp_path: Path) -> None:
    rows = _lines(dc.write_default_corpus(tmp_path, noise=False, max_bytes=200_000))
    assert rows
    assert not any(r["source"].startswith(dc.NOISE_PREFIX) for r in rows)


@pytest.mark.parametrize("max_bytes", [4_000, 20_000, 250_000])
def test_max_bytes_is_respected(tmp_path: Path, max_bytes: int) -> None:
    path = dc.write_default_corpus(tmp_path, seed=0, max_bytes=max_bytes)
    size = path.stat().st_size
    assert 0 < size <= max_bytes
    rows = _lines(path)
    assert all(r["text"].strip() for r in rows)
    if max_bytes >= 20_000:
        # Every source keeps a share: a prefix of its documents.
        assert {r["source"] for r in rows} == {s["name"] for s in dc.default_sources()} | set(
            dc.NOISE_SOURCES
        )
        assert size >= max_bytes * 0.8
    for s in dc.default_sources():
        got = [r["text"] for r in rows if r["source"] == s["name"]]
        docs = dc.corpus_documents(s["name"])
        for i, text in enumerate(got):
            if i < len(got) - 1:
                assert text == docs[i]
            else:  # the last one may be cut short
                assert docs[i].startswith(text)


def test_max_bytes_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        dc.write_default_corpus(tmp_path, max_bytes=0)
