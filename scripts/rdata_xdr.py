"""A reader of R's XDR serialization, for the lazy-load data bases (``Rdata.rdx`` +
``Rdata.rdb``) of the R packages that ``build_default_corpus.py`` takes texts from.

The format is R Internals, "Serialization Formats": after ``X\n``, big-endian 32-bit
integers; each item starts with a flags word (type in the low byte, bit 9 "has
attributes", bit 10 "has tag", bits 12+ the CHARSXP encoding level), then its payload.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Any


class RReader:
    """Just enough of R's XDR serialization format to read the data sets used here:
    character vectors, integer vectors, lists, pairlists, symbols and references."""

    def __init__(self, data: bytes) -> None:
        if data[:2] != b"X\n":
            raise ValueError("not an XDR R serialization")
        self.d = data
        self.p = 2
        version = self.i32()
        self.i32()  # writer's R version
        self.i32()  # minimal reader version
        if version == 3:
            n = self.i32()
            self.p += n  # native encoding name
        self.refs: list[Any] = []

    def i32(self) -> int:
        (v,) = struct.unpack_from(">i", self.d, self.p)
        self.p += 4
        return int(v)

    def length(self) -> int:
        n = self.i32()
        if n == -1:
            hi, lo = self.i32(), self.i32()
            n = (hi << 32) + lo
        return n

    def item(self) -> Any:
        flags = self.i32()
        kind = flags & 0xFF
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))
        if kind == 254:  # NILVALUE_SXP
            return None
        if kind == 255:  # REFSXP
            return self.refs[(flags >> 8) - 1]
        if kind == 1:  # SYMSXP
            name = self.item()
            self.refs.append(name)
            return name
        if kind == 9:  # CHARSXP
            n = self.i32()
            if n == -1:
                return None
            raw = self.d[self.p : self.p + n]
            self.p += n
            latin1 = bool((flags >> 12) & 4)
            return raw.decode("latin-1" if latin1 else "utf-8")
        if kind == 2:  # LISTSXP (pairlist): attributes, tag, car, cdr
            out: dict[str, Any] = {}
            while True:
                if has_attr:
                    self.item()
                tag = self.item() if has_tag else None
                out[str(tag)] = self.item()
                nxt = self.i32()
                if nxt & 0xFF == 254:
                    return out
                if nxt & 0xFF != 2:
                    raise ValueError("unsupported pairlist tail")
                has_attr = bool(nxt & (1 << 9))
                has_tag = bool(nxt & (1 << 10))
        value: Any
        if kind == 16:  # STRSXP
            value = [self.item() for _ in range(self.length())]
        elif kind in (10, 13):  # LGLSXP, INTSXP
            n = self.length()
            value = list(struct.unpack_from(f">{n}i", self.d, self.p))
            self.p += 4 * n
        elif kind == 19:  # VECSXP
            value = [self.item() for _ in range(self.length())]
        else:
            raise ValueError(f"unsupported R SEXP type {kind}")
        if has_attr:
            attrs = self.item()
            names = attrs.get("names") if isinstance(attrs, dict) else None
            if kind == 19 and names is not None:
                value = dict(zip(names, value))
        return value


def read_r_lazyload(base: Path) -> dict[str, Any]:
    """All objects of an R package's lazy-load data base (``Rdata.rdx`` + ``.rdb``)."""
    index = RReader(gzip.decompress(base.with_suffix(".rdx").read_bytes())).item()
    rdb = base.with_suffix(".rdb").read_bytes()
    out: dict[str, Any] = {}
    for name, (off, size) in index["variables"].items():
        blob = rdb[off : off + size]
        (n,) = struct.unpack_from(">I", blob)
        data = zlib.decompress(blob[4:])
        if len(data) != n:
            raise ValueError(f"{base}: {name}: bad length")
        out[name] = RReader(data).item()
    return out
