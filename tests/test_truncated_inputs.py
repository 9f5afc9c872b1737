"""Compressed and columnar inputs end where their format says they end: a cut file gives
every document or a FormatError naming the file, never a silent prefix."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miniplm.corpus.readers import discover, read_documents
from miniplm.errors import FormatError

_texts = st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=30)


def _jsonl(texts: list[str]) -> bytes:
    return b"".join(json.dumps({"text": t}).encode() + b"\n" for t in texts)


def _frames(texts: list[str], frames: int, gz: bool) -> list[tuple[bytes, list[str]]]:
    """``texts`` as ``frames`` zstd frames (gzip members), each with its documents."""
    step = -(-len(texts) // frames)
    parts = [texts[i : i + step] for i in range(0, len(texts), step)]
    compress = gzip.compress if gz else zstandard.ZstdCompressor().compress
    return [(compress(_jsonl(p)), p) for p in parts]


def _read(path: Path) -> list[str]:
    return [t for t, _ in read_documents(discover([path]))]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    texts=_texts,
    frames=st.integers(1, 4),
    cut_at=st.floats(0.0, 1.0),
    gz=st.booleans(),
)
def test_cut_compressed_jsonl_is_complete_or_an_error(
    tmp_path: Path, texts: list[str], frames: int, cut_at: float, gz: bool
) -> None:
    parts = _frames(texts, frames, gz)
    data = b"".join(p for p, _ in parts)
    cut = int(len(data) * cut_at)
    # A cut where a frame ends leaves a complete, shorter stream: nothing can tell.
    ends: dict[int, list[str]] = {0: []}
    offset, whole = 0, list[str]()
    for frame, docs in parts:
        offset, whole = offset + len(frame), whole + docs
        ends[offset] = whole
    path = tmp_path / ("c.jsonl.gz" if gz else "c.jsonl.zst")
    path.write_bytes(data[:cut])
    try:
        got = _read(path)
    except FormatError as e:
        assert str(path) in str(e)
        assert any(w in str(e) for w in ("truncated", "empty", "cannot read"))
        assert cut < len(data)
    else:
        assert got == ends.get(cut), f"{len(got)} of {len(texts)} documents read from a cut file"


def test_cut_zst_says_truncated(tmp_path: Path) -> None:
    data = b"".join(p for p, _ in _frames([f"document {i}" for i in range(200)], 2, gz=False))
    for name, cut in (("one.jsonl.zst", len(data) // 4), ("two.jsonl.zst", 3 * len(data) // 4)):
        path = tmp_path / name
        path.write_bytes(data[:cut])
        with pytest.raises(FormatError, match=rf"{path}: truncated zstd stream"):
            _read(path)
    txt = tmp_path / "t.txt.zst"
    txt.write_bytes(zstandard.ZstdCompressor().compress(b"one document\n" * 500)[:-5])
    with pytest.raises(FormatError, match=rf"{txt}: truncated zstd stream"):
        _read(txt)
    empty = tmp_path / "e.jsonl.zst"
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match=rf"{empty}: .*no zstd frame"):
        _read(empty)
    garbage = tmp_path / "g.jsonl.zst"
    garbage.write_bytes(data + b"not zstd")
    with pytest.raises(FormatError, match=str(garbage)):
        _read(garbage)


def test_complete_multi_frame_zst_with_skippable_frame(tmp_path: Path) -> None:
    texts = [f"doc {i}" for i in range(50)]
    skippable = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"meta"
    path = tmp_path / "s.jsonl.zst"
    frames = b"".join(p for p, _ in _frames(texts, 3, gz=False))
    path.write_bytes(skippable + frames + skippable)
    assert _read(path) == texts


def _table(n: int) -> pa.Table:
    return pa.table({"text": [f"row {i} " * 20 for i in range(n)]})


def _boundaries(data: bytes) -> list[int]:
    """The offsets where an Arrow IPC message ends (a stream cut there parses cleanly)."""
    start = 8 if data.startswith(b"ARROW1") else 0
    source = pa.BufferReader(data[start:])
    ends = []
    while True:
        try:
            if pa.ipc.read_message(source) is None:
                break
        except (pa.ArrowInvalid, OSError, EOFError):
            break
        ends.append(start + source.tell())
    return ends


@pytest.mark.parametrize("kind", ["parquet", "arrow-file", "arrow-stream"])
def test_cut_columnar_file_is_complete_or_an_error(tmp_path: Path, kind: str) -> None:
    table = _table(600)
    full = tmp_path / ("full.parquet" if kind == "parquet" else "full.arrow")
    if kind == "parquet":
        pq.write_table(table, full, row_group_size=100)
    else:
        writer_cls = pa.ipc.new_file if kind == "arrow-file" else pa.ipc.new_stream
        with pa.OSFile(str(full), "wb") as sink, writer_cls(sink, table.schema) as w:
            for batch in table.to_batches(max_chunksize=100):
                w.write_batch(batch)
    data = full.read_bytes()
    expected = table.column("text").to_pylist()
    assert _read(full) == expected
    silent = []
    for cut in sorted({*range(1, len(data), max(1, len(data) // 97)), *_boundaries(data)}):
        path = tmp_path / full.name.replace("full", f"cut{cut}")
        path.write_bytes(data[:cut])
        try:
            got = _read(path)
        except FormatError as e:
            assert str(path) in str(e)
        else:
            if got != expected:
                silent.append((cut, len(got)))
        path.unlink()
    assert not silent, f"cut {kind} files read as a prefix: (cut, rows) {silent}"
