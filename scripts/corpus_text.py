"""Text cleaning and cutting shared by the corpus builder's sources
(``build_default_corpus.py``): normalising, cutting at headings, packing sections into
documents of a bounded size, removing Project Gutenberg's header and footer."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

MIN_DOC = 1500  # bytes: smaller sections are merged with the next one
MAX_DOC = 16000  # bytes: larger sections are cut at paragraph (or line) boundaries
TARGET_DOC = 12000  # bytes: the size that long sections are cut towards


def normalize(text: str) -> str:
    text = text.replace("\ufeff", "").replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{4,}", "\n\n\n", text)
    if "\f" in text:
        raise ValueError("text contains a form feed")
    return text.strip("\n")


def split_before(text: str, heading: str) -> list[str]:
    """Cut ``text`` before every line that matches ``heading``."""
    rx = re.compile(heading, re.MULTILINE)
    starts = [0] + [m.start() for m in rx.finditer(text) if m.start() > 0]
    return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)])]


def _cut_long(section: str) -> list[str]:
    size = len(section.encode())
    if size <= MAX_DOC:
        return [section]
    target = size / math.ceil(size / TARGET_DOC)
    lines = section.split("\n")
    parts: list[str] = []
    cur: list[str] = []
    cur_size = 0
    for i, line in enumerate(lines):
        good_cut = i > 0 and (lines[i - 1] == "" or (line.startswith("  ") and line.strip()))
        if (cur and good_cut and cur_size >= target) or cur_size >= MAX_DOC:
            parts.append("\n".join(cur))
            cur, cur_size = [], 0
        cur.append(line)
        cur_size += len(line.encode()) + 1
    if cur:
        parts.append("\n".join(cur))
    return parts


def pack(sections: Iterable[str]) -> list[str]:
    """Sections of one work -> documents: long ones cut, short ones merged forward."""
    pieces = [p.strip("\n") for s in sections for p in _cut_long(s.strip("\n"))]
    docs: list[str] = []
    buf = ""
    for piece in pieces:
        if not piece.strip():
            continue
        buf = f"{buf}\n\n\n{piece}" if buf else piece
        if len(buf.encode()) >= MIN_DOC:
            docs.append(buf)
            buf = ""
    if buf:
        if docs:
            docs[-1] = f"{docs[-1]}\n\n\n{buf}"
        else:
            docs.append(buf)
    return docs


def strip_gutenberg(text: str) -> str:
    """The text between Project Gutenberg's START and END markers."""
    start = re.search(r"^\*\*\* ?START OF (THIS|THE) PROJECT GUTENBERG.*$", text, re.MULTILINE)
    end = re.search(
        r"^(\*\*\* ?END OF (THIS|THE) PROJECT GUTENBERG|End of (the )?Project Gutenberg)",
        text,
        re.MULTILINE | re.IGNORECASE,
    )
    if start is None or end is None:
        raise ValueError("Project Gutenberg markers not found")
    return text[start.end() : end.start()]
