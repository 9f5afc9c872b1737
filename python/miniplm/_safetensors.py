"""A cheap whole-file check of ``.safetensors`` weights before a library loads them: a
truncated or garbled file is a FormatError naming the file, not the library's nameless
"incomplete metadata" or "header too large". Reads the header only."""

from __future__ import annotations

import json
import os
from pathlib import Path

from miniplm.errors import FormatError

# The format caps the JSON header at 100 MB (safetensors' own limit).
_MAX_HEADER = 100_000_000


def check_safetensors(path: str | os.PathLike[str]) -> None:
    """Check ``path`` (a ``.safetensors`` file, or a directory: each of its
    ``*.safetensors``): an 8-byte little-endian header size, that many bytes of JSON, and
    every tensor's ``data_offsets`` inside the file, whose data part must end exactly at
    the last tensor's end."""
    p = Path(path)
    files = sorted(p.glob("*.safetensors")) if p.is_dir() else [p]
    for f in files:
        if f.is_file():
            _check_file(f)


def _check_file(f: Path) -> None:
    size = f.stat().st_size
    with open(f, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise FormatError(f"{f}: bad header: truncated safetensors file ({size} bytes)")
        n = int.from_bytes(head, "little")
        if n > _MAX_HEADER or 8 + n > size:
            raise FormatError(
                f"{f}: bad header: a {n}-byte header in a {size}-byte file "
                "(truncated or not a safetensors file)"
            )
        try:
            meta = json.loads(fh.read(n))
            ends = [int(v["data_offsets"][1]) for k, v in meta.items() if k != "__metadata__"]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
            raise FormatError(f"{f}: bad header: not safetensors JSON ({e})") from e
    data = size - 8 - n
    need = max(ends, default=0)
    if need != data:
        what = "truncated" if need > data else "trailing bytes"
        raise FormatError(
            f"{f}: bad data: the tensors need {need} bytes after the header, the file has "
            f"{data} ({what})"
        )
