"""scripts/rdata_xdr.py (the corpus builder's R reader) against objects serialised here,
byte by byte, from R Internals' "Serialization Formats": no R, no committed fixture."""

from __future__ import annotations

import gzip
import struct
import sys
import zlib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
from rdata_xdr import RReader, read_r_lazyload

NIL, SYM, LIST, CHAR, LGL, INT, STR, VEC, REF = 254, 1, 2, 9, 10, 13, 16, 19, 255
ATTR, TAG = 1 << 9, 1 << 10
UTF8, LATIN1 = 8 << 12, 4 << 12


def i32(*v: int) -> bytes:
    return struct.pack(f">{len(v)}i", *v)


def header(version: int = 3) -> bytes:
    out = b"X\n" + i32(version, 0x040201, 0x030500)
    return out + (i32(5) + b"UTF-8" if version == 3 else b"")


def char(s: str | None, enc: str = "utf-8") -> bytes:
    if s is None:
        return i32(CHAR, -1)  # NA_STRING
    raw = s.encode(enc)
    return i32(CHAR | (LATIN1 if enc == "latin-1" else UTF8), len(raw)) + raw


def sym(name: str) -> bytes:
    return i32(SYM) + char(name)


def strs(*v: str | None) -> bytes:
    return i32(STR, len(v)) + b"".join(char(s) for s in v)


def ints(*v: int, kind: int = INT, flags: int = 0) -> bytes:
    return i32(kind | flags, len(v), *v)


def names_attr(first_symbol: bytes, *names: str) -> bytes:
    """The attribute pairlist ``names = c(...)``; ``first_symbol`` is the tag's bytes
    (the symbol itself the first time, a reference to it after)."""
    return i32(LIST | TAG) + first_symbol + strs(*names) + i32(NIL)


def named_list(items: dict[str, bytes], names_sym: bytes) -> bytes:
    body = b"".join(items.values())
    return i32(VEC | ATTR, len(items)) + body + names_attr(names_sym, *items)


def test_vectors_strings_and_encodings() -> None:
    data = header() + strs("café", None, "") + ints(1, -2, 3)
    r = RReader(data)
    assert r.item() == ["café", None, ""]
    assert r.item() == [1, -2, 3]
    assert r.p == len(data)
    latin = header(2) + i32(STR, 1) + char("naïve", "latin-1")
    assert RReader(latin).item() == ["naïve"]
    assert RReader(header() + ints(1, 0, kind=LGL)).item() == [1, 0]


def test_named_list_pairlist_symbol_references() -> None:
    # list(a = "x", b = 1:2, c = list(d = 7L)): items come before a vector's attributes,
    # so the inner list's "names" tag defines the symbol and the outer one refers to it
    # (REFSXP, reference index 1), as R writes it.
    ref1 = i32((1 << 8) | REF)
    inner = named_list({"d": ints(7)}, sym("names"))
    data = header() + i32(VEC | ATTR, 3) + strs("x") + ints(1, 2) + inner
    data += names_attr(ref1, "a", "b", "c")
    assert RReader(data).item() == {"a": ["x"], "b": [1, 2], "c": {"d": [7]}}
    # A tagged pairlist of two cells: a dict by tag.
    pl = header() + i32(LIST | TAG) + sym("u") + ints(1) + i32(LIST | TAG) + sym("v")
    pl += strs("w") + i32(NIL)
    assert RReader(pl).item() == {"u": [1], "v": ["w"]}
    # A long vector's length: -1 then two words.
    assert RReader(header() + i32(INT, -1, 0, 2, 5, 6)).item() == [5, 6]


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="not an XDR"):
        RReader(b"A\n" + header()[2:])
    with pytest.raises(ValueError, match="unsupported R SEXP type 14"):
        RReader(header() + i32(14, 1) + struct.pack(">d", 1.0)).item()


def _rdb_blob(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + zlib.compress(payload)


def test_lazyload_database(tmp_path: Path) -> None:
    objs = {"emma": header() + strs("Chapter 1", "It was"), "n": header() + ints(42)}
    rdb, offsets = b"", {}
    for name, payload in objs.items():
        blob = _rdb_blob(payload)
        offsets[name] = (len(rdb), len(blob))
        rdb += blob
    ref1 = i32((1 << 8) | REF)
    variables = named_list({k: ints(*v) for k, v in offsets.items()}, sym("names"))
    index = header() + i32(VEC | ATTR, 1) + variables + names_attr(ref1, "variables")
    base = tmp_path / "Rdata"
    base.with_suffix(".rdx").write_bytes(gzip.compress(index))
    base.with_suffix(".rdb").write_bytes(rdb)
    assert read_r_lazyload(base) == {"emma": ["Chapter 1", "It was"], "n": [42]}
    # A blob whose stated length is not its inflated length is refused, naming it.
    bad = struct.pack(">I", 99) + zlib.compress(objs["n"])
    base.with_suffix(".rdb").write_bytes(rdb[: offsets["n"][0]] + bad)
    offsets["n"] = (offsets["n"][0], len(bad))
    variables = named_list({k: ints(*v) for k, v in offsets.items()}, sym("names"))
    index = header() + i32(VEC | ATTR, 1) + variables + names_attr(ref1, "variables")
    base.with_suffix(".rdx").write_bytes(gzip.compress(index))
    with pytest.raises(ValueError, match="Rdata: n: bad length"):
        read_r_lazyload(base)
