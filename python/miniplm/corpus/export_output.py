"""The files ``miniplm export`` writes: the formats (parquet; JSON lines plain, gzip or
zstd) and the partial output a stopped export is continued from (docs/FORMATS.md,
"Export").

An export is built in ``.<name>.partial/`` beside OUT, a chunk of instances at a time:

- JSON lines go to one file, appended, so a checkpoint is a size to cut back to. gzip
  writes one member per chunk (a cut at a chunk end is again a whole gzip file; every
  gzip reader reads all members). zstd writes one frame per chunk there and is
  recompressed into one frame at the end: zstandard's ``stream_reader``, which fsspec and
  so ``datasets`` use, stops at the end of the first frame.
- parquet goes to part files, one closed (with its footer) at each checkpoint; at the end
  their row groups are copied into OUT, which is byte for byte the file one writer would
  have written."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from miniplm._deps import require
from miniplm.errors import FormatError, InputError

SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".jsonl.zst")
_GZIP_LEVEL = 6  # zlib's default; Python's 9 took 2.3x the time for a 1% smaller file
_COPY_BYTES = 1 << 20


def output_format(out: Path) -> str:
    """The format of ``out`` from its suffix (one of ``SUFFIXES``)."""
    name = out.name.lower()
    for suffix in (".jsonl.gz", ".jsonl.zst", ".jsonl", ".parquet"):
        if name.endswith(suffix):
            return suffix
    raise InputError(f"{out}: unknown output format; the name must end in {', '.join(SUFFIXES)}")


def _text_array(pa: Any, ids: npt.NDArray[Any], offsets: npt.NDArray[Any], data: bytes) -> Any:
    text = pa.LargeStringArray.from_buffers(len(ids), pa.py_buffer(offsets), pa.py_buffer(data))
    text.validate(full=True)  # every row is UTF-8 (a failure is a bug of ours)
    return text.cast(pa.string())


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


class Output:
    """Rows -> the partial output in ``work``; ``state`` (what :meth:`checkpoint` returned
    before a stop) continues it. :meth:`finish` leaves the whole file as ``final``."""

    def __init__(self, work: Path, suffix: str, score_names: list[str]) -> None:
        self.work = work
        self.suffix = suffix
        self.score_names = score_names
        self.pa = require("pyarrow")

    def write(
        self,
        ids: npt.NDArray[Any],
        offsets: npt.NDArray[Any],
        data: bytes,
        sources: list[str],
        scores: dict[str, Any],
    ) -> None:
        """One chunk's rows: instance ids, offsets into ``data`` (their UTF-8 text), source
        names and score columns."""
        raise NotImplementedError

    def checkpoint(self) -> dict[str, Any]:
        """Make what is written durable; the state that continues it."""
        raise NotImplementedError

    def finish(self, final: Path) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Let go of open files (a stopped run; what was checkpointed stays)."""


def open_output(
    work: Path, suffix: str, score_names: list[str], state: dict[str, Any] | None
) -> Output:
    """The writer of a fresh partial output in ``work`` (``state`` None) or of the one a
    checkpoint left there (FormatError when the files do not match it)."""
    if suffix == ".parquet":
        return _ParquetParts(work, suffix, score_names, state)
    return _JsonLines(work, suffix, score_names, state)


class _JsonLines(Output):
    def __init__(
        self, work: Path, suffix: str, score_names: list[str], state: dict[str, Any] | None
    ) -> None:
        super().__init__(work, suffix, score_names)
        self.path = work / f"rows{suffix}"
        self.zstd: Any = require("zstandard") if suffix == ".jsonl.zst" else None
        if state is None:
            self.file: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 (closed by finish / close)
            return
        size = int(state["size"])
        self.file = open(self.path, "r+b")  # noqa: SIM115
        if os.fstat(self.file.fileno()).st_size < size:
            self.file.close()
            raise FormatError(f"{self.path}: shorter than its checkpoint records ({size} bytes)")
        self.file.truncate(size)  # what was written after the checkpoint is written again
        self.file.seek(size)

    def write(
        self,
        ids: npt.NDArray[Any],
        offsets: npt.NDArray[Any],
        data: bytes,
        sources: list[str],
        scores: dict[str, Any],
    ) -> None:
        if not len(ids):
            return
        text = _text_array(self.pa, ids, offsets, data)
        # One f-string per row around the C string encoder: 3x json.dumps of a dict.
        enc = json.encoder.encode_basestring
        quoted = {n: enc(n) for n in set(sources)}
        parts = [
            [f'{{"id": {i}, "source": {quoted[s]}, "text": ' for i, s in zip(ids.tolist(), sources)]
        ]
        parts.append([enc(t) for t in text.to_pylist()])
        for name, values in scores.items():
            finite = np.isfinite(values)
            shown = np.where(finite, values, 0.0).tolist()
            parts.append(
                [
                    f', "{name}": {v!r}' if ok else f', "{name}": null'
                    for v, ok in zip(shown, finite.tolist())
                ]
            )
        block = "".join("".join(p) + "}\n" for p in zip(*parts)).encode("utf-8")
        if self.suffix == ".jsonl.gz":
            block = gzip.compress(block, compresslevel=_GZIP_LEVEL, mtime=0)
        elif self.zstd is not None:
            block = self.zstd.ZstdCompressor().compress(block)
        self.file.write(block)

    def checkpoint(self) -> dict[str, Any]:
        self.file.flush()
        os.fsync(self.file.fileno())
        return {"size": self.file.tell()}

    def finish(self, final: Path) -> None:
        if self.file.tell() == 0:  # no rows: the compressed formats still need a member
            if self.suffix == ".jsonl.gz":
                self.file.write(gzip.compress(b"", compresslevel=_GZIP_LEVEL, mtime=0))
            elif self.zstd is not None:
                self.file.write(self.zstd.ZstdCompressor().compress(b""))
        self.file.close()
        if self.zstd is None:
            os.replace(self.path, final)
            return
        from miniplm.corpus.readers import ZstdFrames

        # One frame: the chunks' frames decompressed and compressed again as one stream.
        compressor = self.zstd.ZstdCompressor().compressobj()
        with ZstdFrames(self.path) as frames, open(final, "wb") as f:
            while piece := frames.read(_COPY_BYTES):
                f.write(compressor.compress(piece))
            f.write(compressor.flush())
        self.path.unlink()

    def close(self) -> None:
        self.file.close()


_PART = "part-{:05d}.parquet"


class _ParquetParts(Output):
    def __init__(
        self, work: Path, suffix: str, score_names: list[str], state: dict[str, Any] | None
    ) -> None:
        super().__init__(work, suffix, score_names)
        self.pq = require("pyarrow.parquet")
        fields = [("id", self.pa.uint64()), ("source", self.pa.string())]
        fields += [("text", self.pa.string())]
        fields += [(n, self.pa.float64()) for n in score_names]
        self.schema = self.pa.schema(fields)
        self.parts: list[str] = [] if state is None else [str(p) for p in state["parts"]]
        for name in self.parts:
            if not (work / name).is_file():
                raise FormatError(f"{work / name}: a part its checkpoint records is missing")
        for path in work.glob("part-*.parquet"):  # begun after the checkpoint
            if path.name not in self.parts:
                path.unlink()
        self.writer: Any = None

    def write(
        self,
        ids: npt.NDArray[Any],
        offsets: npt.NDArray[Any],
        data: bytes,
        sources: list[str],
        scores: dict[str, Any],
    ) -> None:
        if self.writer is None:
            path = self.work / _PART.format(len(self.parts))
            self.writer = self.pq.ParquetWriter(os.fspath(path), self.schema)
        text = _text_array(self.pa, ids, offsets, data)
        columns = {"id": ids.astype(np.uint64), "source": sources, "text": text, **scores}
        self.writer.write_table(self.pa.table(columns, schema=self.schema))

    def checkpoint(self) -> dict[str, Any]:
        if self.writer is not None:  # the open part gets its footer and is done
            self.writer.close()
            self.writer = None
            name = _PART.format(len(self.parts))
            _fsync(self.work / name)
            self.parts.append(name)
        return {"parts": list(self.parts)}

    def finish(self, final: Path) -> None:
        self.checkpoint()
        if len(self.parts) == 1:
            os.replace(self.work / self.parts[0], final)
            return
        # Row group by row group: memory is one chunk's rows, and the file is the one a
        # single writer of the same tables writes (tested byte for byte).
        writer = self.pq.ParquetWriter(os.fspath(final), self.schema)
        try:
            for name in self.parts:
                part = self.pq.ParquetFile(self.work / name)
                for g in range(part.num_row_groups):
                    writer.write_table(part.read_row_group(g))
                part.close()
        finally:
            writer.close()
        for name in self.parts:
            (self.work / name).unlink()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
