"""The target set: whole works of the bundled sources held out of the default corpus."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

import pytest

from miniplm import default_corpus as dc

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
import build_default_corpus as build
from corpus_records import sources_json, sources_md

ASSETS = Path(str(resources.files("miniplm") / "assets"))

# A leak is a shared substring of SHARED characters or more. The longest text the corpus
# and the target set share by nature is 71 characters (Paul's greeting "Grace to you and
# peace from God our Father and the Lord Jesus Christ.", in Romans and I Corinthians);
# scripture and verse repeat phrases, never whole passages across works, while a leaked
# document or paragraph shares thousands. Corpus windows of SHARED // 2 characters at a
# stride of SHARED // 2 lie inside any shared substring of SHARED - 1 characters or more.
SHARED = 200

# The first line of each work's first document: work_documents puts the cuts where the
# text says the works begin.
OPENINGS = {
    "austen": ["PRIDE AND PREJUDICE", "Persuasion", "NORTHANGER ABBEY"],
    "melville": ["MOBY DICK; OR THE WHALE"],
    "shakespeare": [
        "HAMLET, PRINCE OF DENMARK",
        "MACBETH",
        "ROMEO AND JULIET",
        "THE TRAGEDY OF KING LEAR",
        "JULIUS CAESAR",
        "A MIDSUMMER NIGHT'S DREAM",
        "TWELFTH NIGHT; OR, WHAT YOU WILL",
        "THE TEMPEST",
        "THE SONNETS",
    ],
    "milton": ["PARADISE LOST", "AREOPAGITICA"],
}


def test_sources_json_and_md_are_what_the_builder_writes_of_the_records() -> None:
    meta = json.loads((ASSETS / "sources.json").read_text(encoding="utf-8"))
    records = meta["sources"]
    assert (ASSETS / "sources.json").read_text(encoding="utf-8") == sources_json(records)
    assert (ASSETS / "SOURCES.md").read_text(encoding="utf-8") == sources_md(records)
    # ... and the builder's table says what the records say.
    for src, rec in zip(build.SOURCES, records, strict=True):
        assert (src.name, src.works, src.target_works) == (
            rec["name"],
            rec["works"],
            rec["target_works"],
        )


def test_work_documents_cut_where_the_works_begin() -> None:
    for s in dc.default_sources():
        name = s["name"]
        docs, works = dc.real_documents(name), dc.document_works(name)
        assert len(works) == len(docs) == sum(s["work_documents"])
        firsts = [i for i in range(len(docs)) if i == 0 or works[i] != works[i - 1]]
        assert [works[i] for i in firsts] == s["works"]
        expected = OPENINGS.get(name) or [f"{w} 1" for w in s["works"]]  # Bible: "Ruth 1"
        assert [docs[i].split("\n", 1)[0] for i in firsts] == expected, name


def test_target_works_are_named_and_sized() -> None:
    assert dc.target_works() == [
        ("shakespeare", "The Tempest"),
        ("web-bible", "Ruth"),
        ("web-bible", "Ecclesiastes"),
        ("web-bible", "Romans"),
        ("milton", "Areopagitica (1644)"),
    ]
    rows = dc.target_documents()
    size = sum(len(r["text"].encode()) for r in rows)
    assert size == sum(s["target_text_bytes"] for s in dc.default_sources())
    total = sum(s["text_bytes"] for s in dc.default_sources())
    assert 150_000 <= size <= 400_000 and size < total * 0.1
    assert {(r["source"], r["work"]) for r in rows} == set(dc.target_works())
    # Whole works: every document of each target work, in order.
    for source, work in dc.target_works():
        docs = [
            d for d, w in zip(dc.real_documents(source), dc.document_works(source)) if w == work
        ]
        assert [r["text"] for r in rows if (r["source"], r["work"]) == (source, work)] == docs


def test_write_target_set(tmp_path: Path) -> None:
    path = dc.write_target_set(tmp_path / "t")
    assert path == tmp_path / "t" / dc.TARGET_FILE
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows == dc.target_documents()
    assert all(set(r) == {"text", "source", "work"} for r in rows)
    assert [p.name for p in path.parent.iterdir()] == [dc.TARGET_FILE]


@pytest.fixture(scope="module")
def target_windows() -> set[str]:
    k = SHARED // 2
    return {
        t[p : p + k]
        for r in dc.target_documents()
        for t in [r["text"]]
        for p in range(len(t) - k + 1)
    }


@pytest.mark.parametrize("max_bytes", [None, 20_000, 400_000])
def test_no_corpus_text_overlaps_the_target(
    tmp_path: Path, target_windows: set[str], max_bytes: int | None
) -> None:
    path = dc.write_default_corpus(tmp_path, seed=0, max_bytes=max_bytes)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    target_texts = {r["text"] for r in dc.target_documents()}
    k = SHARED // 2
    for row in rows:
        text = row["text"]
        assert text not in target_texts
        leaks = [
            text[q : q + k]
            for q in range(0, len(text) - k + 1, k)
            if text[q : q + k] in target_windows
        ]
        assert not leaks, (row["source"], leaks[:1])


def test_the_overlap_check_finds_a_leak(target_windows: set[str]) -> None:
    # The check above is not vacuous: a corpus text quoting SHARED characters of a
    # target work, at any offset, is caught.
    quote = dc.target_documents()[7]["text"][1234 : 1234 + SHARED]
    k = SHARED // 2
    for shift in range(0, k, 17):
        text = "x" * shift + quote
        assert any(text[q : q + k] in target_windows for q in range(0, len(text) - k + 1, k))
