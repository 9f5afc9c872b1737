"""Finding input files and streaming their documents as ``(text, source)``.

Formats, by file name:

- ``.jsonl`` / ``.ndjson``, optionally ``.gz`` / ``.zst`` compressed: one JSON object per
  line; blank lines are skipped.
- ``.parquet``; ``.arrow`` / ``.feather`` (Arrow IPC file or stream): read one record batch
  at a time, only the needed columns (parquet) or memory-mapped (Arrow).
- ``.txt`` (optionally ``.gz`` / ``.zst``): the whole file is one document, unless
  ``text_split`` is ``lines`` (every non-blank line is one) or ``blank-lines`` (blocks of
  lines separated by blank lines are one each).
- A directory: a Hugging Face ``datasets`` directory written by ``save_to_disk``
  (``state.json`` lists its ``.arrow`` files; a ``DatasetDict`` with
  ``dataset_dict.json`` is read split by split), else every file with a known extension
  below it, in sorted path order (other files are ignored).
- A glob pattern (``data/*.jsonl``): each matching file, in sorted order.

Every compressed or columnar file must end where its format says it ends (a cut ``cat
a.zst b.zst`` or Arrow stream parses as a shorter valid one otherwise): else FormatError.

Sources: one per input *argument* unless ``source_field`` names a per-document field: a
file's name without its extensions (``pile/ArXiv.jsonl.zst`` -> ``ArXiv``), a directory's
name (all its files are one source), or the matching name of ``sources``. Files of a glob
are each their own source. Field names may be dotted to reach nested fields
(``meta.pile_set_name``).
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from miniplm._deps import require
from miniplm.errors import FormatError, InputError

TEXT_SPLITS = ("document", "lines", "blank-lines")
_COMPRESSIONS = (".gz", ".zst")
_KINDS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".txt": "txt",
}
KNOWN = ".jsonl, .ndjson, .parquet, .arrow, .feather, .txt (jsonl and txt also .gz or .zst)"

Document = tuple[str, str]


@dataclass(frozen=True)
class InputFile:
    path: Path
    kind: str  # jsonl | parquet | arrow | txt
    compression: str | None  # .gz | .zst | None
    source: str


def _kind(path: Path) -> tuple[str, str | None] | None:
    suffixes = [s.lower() for s in path.suffixes]
    compression = None
    if suffixes and suffixes[-1] in _COMPRESSIONS:
        compression = suffixes.pop()
    kind = _KINDS.get(suffixes[-1]) if suffixes else None
    if kind is None or (compression is not None and kind not in ("jsonl", "txt")):
        return None
    return kind, compression


def _stem(path: Path) -> str:
    name = path.name
    while True:
        base, ext = os.path.splitext(name)
        if not base or ext.lower() not in (*_COMPRESSIONS, *_KINDS):
            return name
        name = base


def _file(path: Path, source: str) -> InputFile:
    kind = _kind(path)
    if kind is None:
        raise InputError(f"{path}: unknown input format (expected {KNOWN}, or a directory)")
    return InputFile(path, kind[0], kind[1], source)


def _hf_dataset_files(directory: Path) -> list[Path] | None:
    """The .arrow files of a ``save_to_disk`` directory, in order; None if it is not one."""
    dict_file = directory / "dataset_dict.json"
    if dict_file.is_file():
        try:
            splits = json.loads(dict_file.read_text())["splits"]
        except (ValueError, KeyError, TypeError) as e:
            raise FormatError(f"{dict_file}: not a datasets dataset_dict.json: {e}") from e
        files: list[Path] = []
        for split in splits:
            found = _hf_dataset_files(directory / str(split))
            if found is None:
                raise FormatError(f"{directory / str(split)}: split directory without state.json")
            files.extend(found)
        return files
    state = directory / "state.json"
    if not state.is_file():
        return None
    try:
        names = [f["filename"] for f in json.loads(state.read_text())["_data_files"]]
    except (ValueError, KeyError, TypeError) as e:
        raise FormatError(f"{state}: not a datasets state.json: {e}") from e
    return [directory / n for n in names]


def _directory(directory: Path, source: str) -> list[InputFile]:
    arrow = _hf_dataset_files(directory)
    if arrow is not None:
        return [InputFile(p, "arrow", None, source) for p in arrow]
    files = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for n in names:
            p = Path(root) / n
            if not n.startswith((".", "_")) and _kind(p) is not None:
                files.append(p)
    if not files:
        raise InputError(f"{directory}: no input files ({KNOWN}) in this directory")
    return [_file(p, source) for p in sorted(files)]


def discover(
    inputs: Sequence[str | os.PathLike[str]], sources: Sequence[str] | None = None
) -> list[InputFile]:
    """The files to read, in order, each with its default source name."""
    if not inputs:
        raise InputError("no inputs given")
    if sources is not None and len(sources) != len(inputs):
        raise InputError(
            f"{len(sources)} source names for {len(inputs)} inputs: give one per input"
        )
    files: list[InputFile] = []
    for k, item in enumerate(inputs):
        name = os.fspath(item)
        path = Path(name)
        given = sources[k] if sources is not None else None
        if path.is_dir():
            files.extend(_directory(path, given or path.resolve().name))
        elif path.is_file():
            files.append(_file(path, given or _stem(path)))
        elif glob.has_magic(name):
            matches = sorted(Path(m) for m in glob.glob(name, recursive=True))
            matches = [m for m in matches if m.is_file()]
            if not matches:
                raise FileNotFoundError(f"{name}: no files match this pattern")
            files.extend(_file(m, given or _stem(m)) for m in matches)
        else:
            raise FileNotFoundError(f"{name}: no such file or directory")
    return files


class ZstdFrames(io.RawIOBase):
    """The decompressed bytes of every frame of a zstd file, which must end where a frame
    ends. (zstandard's ``stream_reader`` returns a cut file's prefix as if it were all.)
    Compressed input is fed in small pieces, so memory stays flat in the file size."""

    _PIECE = 1 << 16

    def __init__(self, path: Path) -> None:
        self._path = path
        self._zstd = require("zstandard")
        self._file = open(path, "rb")  # noqa: SIM115 (closed by close())
        self._frame = self._zstd.ZstdDecompressor().decompressobj()
        self._started = False  # bytes of the current frame have been fed
        self._frames = 0
        self._out, self._at = b"", 0  # decompressed bytes not yet read: _out[_at:]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while self._at == len(self._out):
            piece = self._file.read(self._PIECE)
            if not piece:
                if self._started:
                    raise FormatError(
                        f"{self._path}: truncated zstd stream (the file ends inside frame "
                        f"{self._frames + 1})"
                    )
                if not self._frames:
                    raise FormatError(f"{self._path}: empty file, no zstd frame")
                return 0
            self._out, self._at = self._feed(piece), 0
        n = min(len(view), len(self._out) - self._at)
        view[:n] = self._out[self._at : self._at + n]
        self._at += n
        return n

    def _feed(self, piece: bytes) -> bytes:
        out = []
        while piece:
            self._started = True
            try:
                out.append(self._frame.decompress(piece))
            except self._zstd.ZstdError as e:
                raise FormatError(f"{self._path}: frame {self._frames + 1}: {e}") from e
            if not self._frame.eof:
                break
            self._frames += 1
            piece = self._frame.unused_data
            self._frame = self._zstd.ZstdDecompressor().decompressobj()
            self._started = False
        return b"".join(out)

    def close(self) -> None:
        self._file.close()
        super().close()


def _open_binary(f: InputFile) -> BinaryIO:
    if f.compression is not None and f.path.stat().st_size == 0:
        what = "gzip member" if f.compression == ".gz" else "zstd frame"
        raise FormatError(f"{f.path}: empty file, no {what}")
    if f.compression == ".gz":
        # gzip reads every member and raises EOFError where one is cut.
        return cast(BinaryIO, gzip.open(f.path, "rb"))
    if f.compression == ".zst":
        return cast(BinaryIO, io.BufferedReader(ZstdFrames(f.path), buffer_size=1 << 20))
    return open(f.path, "rb")  # the caller closes it


def _field(obj: Any, parts: list[str]) -> Any:
    for p in parts:
        if not isinstance(obj, dict) or p not in obj:
            return _MISSING
        obj = obj[p]
    return obj


_MISSING = object()


def _read_jsonl(f: InputFile, text_field: str, source_field: str | None) -> Iterator[Document]:
    text_path = text_field.split(".")
    source_path = source_field.split(".") if source_field else None
    with _open_binary(f) as fh:
        for lineno, line in enumerate(fh, 1):
            if line.isspace():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise FormatError(f"{f.path}:{lineno}: not a JSON line ({e})") from e
            text = obj.get(text_field, _MISSING) if type(obj) is dict else _MISSING
            if text is _MISSING:
                text = _field(obj, text_path)
            if not isinstance(text, str):
                raise _bad_text(f, lineno, obj, text, text_field)
            source = f.source
            if source_path is not None:
                value = _field(obj, source_path)
                if value is _MISSING or value is None:
                    raise FormatError(f"{f.path}:{lineno}: no source field {source_field!r}")
                source = str(value)
            yield text, source


def _bad_text(f: InputFile, lineno: int, obj: Any, text: Any, text_field: str) -> FormatError:
    where = f"{f.path}:{lineno}"
    if not isinstance(obj, dict):
        return FormatError(f"{where}: a JSON {type(obj).__name__}, expected an object")
    if text is _MISSING:
        return FormatError(
            f"{where}: no field {text_field!r} (fields: {', '.join(obj)}); "
            "choose one with --text-field"
        )
    return FormatError(f"{where}: field {text_field!r} is a {type(text).__name__}, not a string")


def _read_txt(f: InputFile, split: str) -> Iterator[Document]:
    with io.TextIOWrapper(_open_binary(f), encoding="utf-8") as fh:
        if split == "document":
            yield fh.read(), f.source
            return
        block: list[str] = []
        for line in fh:
            line = line.rstrip("\r\n")
            if split == "lines":
                if line.strip():
                    yield line, f.source
            elif line.strip():
                block.append(line)
            elif block:
                yield "\n".join(block), f.source
                block = []
        if block:
            yield "\n".join(block), f.source


def _no_column(path: Path, name: str, names: list[str]) -> FormatError:
    return FormatError(
        f"{path}: no column {name!r} (columns: {', '.join(names)}); choose one with "
        "--text-field / --source-field"
    )


def _column(batch: Any, name: str, path: Path) -> Any:
    """Column ``name`` of a record batch; dotted names reach into struct columns."""
    names = batch.schema.names
    if name in names:
        return batch.column(names.index(name))
    head, *rest = name.split(".")
    if rest and head in names:
        col = batch.column(names.index(head))
        try:
            for part in rest:
                col = col.field(part)
        except (KeyError, AttributeError, TypeError):
            pass
        else:
            return col
    raise _no_column(path, name, names)


def _batches(f: InputFile, columns: list[str], rows: int) -> Iterator[Any]:
    pa = require("pyarrow")
    if f.kind == "parquet":
        pq = require("pyarrow.parquet")
        pf = pq.ParquetFile(f.path, memory_map=True)
        names = pf.schema_arrow.names
        top = {c if c in names else c.split(".")[0] for c in columns}
        for c in columns:
            if c not in names and c.split(".")[0] not in names:
                raise _no_column(f.path, c, names)
        yield from pf.iter_batches(batch_size=rows, columns=[c for c in names if c in top])
        return
    with pa.memory_map(os.fspath(f.path), "r") as source:
        reader = _arrow_reader(source, f.path)
        if isinstance(reader, pa.ipc.RecordBatchFileReader):
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
            return
        yield from reader
        _check_stream_end(source, f.path)


_ARROW_FILE_MAGIC = b"ARROW1"
_CONTINUATION = b"\xff\xff\xff\xff"


def _arrow_reader(source: Any, path: Path) -> Any:
    """An Arrow IPC file reader, or a stream reader where the file has no file magic."""
    pa = require("pyarrow")
    if source.read(len(_ARROW_FILE_MAGIC)) == _ARROW_FILE_MAGIC:
        source.seek(0)
        try:
            return pa.ipc.open_file(source)
        except pa.ArrowInvalid as e:
            raise FormatError(
                f"{path}: truncated or damaged Arrow IPC file (no valid footer): {e}"
            ) from e
    source.seek(0)
    return pa.ipc.open_stream(source)


def _check_stream_end(source: Any, path: Path) -> None:
    """An Arrow IPC stream read to its end must stop at its end-of-stream marker (the
    reader takes a stream cut between two messages for a shorter complete one)."""
    end = source.tell()
    legacy = source.size() >= 4 and _read_at(source, 0, 4) != _CONTINUATION
    marker = b"\x00" * 4 if legacy else _CONTINUATION + b"\x00" * 4
    if end < len(marker) or _read_at(source, end - len(marker), len(marker)) != marker:
        raise FormatError(
            f"{path}: truncated Arrow IPC stream (it ends after {end} bytes without the "
            "end-of-stream marker)"
        )


def _read_at(source: Any, offset: int, n: int) -> bytes:
    source.seek(offset)
    return bytes(source.read(n))


def check_columns(files: Sequence[InputFile], text_field: str, source_field: str | None) -> None:
    """Fail early (before a slow tokenizer load) when a parquet / Arrow file lacks a field."""
    pa = require("pyarrow")
    for f in files:
        if f.kind not in ("parquet", "arrow"):
            continue
        try:
            if f.kind == "parquet":
                names = require("pyarrow.parquet").read_schema(f.path).names
            else:
                with pa.memory_map(os.fspath(f.path), "r") as source:
                    names = _arrow_reader(source, f.path).schema.names
        except (OSError, pa.ArrowException) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise FormatError(f"{f.path}: cannot read this {f.kind} file: {e}") from e
        for c in (text_field, source_field):
            if c and c not in names and c.split(".")[0] not in names:
                raise _no_column(f.path, c, names)


def _read_arrow(
    f: InputFile, text_field: str, source_field: str | None, rows: int
) -> Iterator[Document]:
    columns = [text_field] + ([source_field] if source_field else [])
    row = 0
    for batch in _batches(f, columns, rows):
        text_col = _column(batch, text_field, f.path)
        if text_col.null_count:
            first = row + next(i for i, v in enumerate(text_col.is_valid().to_pylist()) if not v)
            raise FormatError(f"{f.path}: row {first}: {text_field!r} is null")
        texts = text_col.to_pylist()
        if texts and not isinstance(texts[0], str):
            raise FormatError(f"{f.path}: column {text_field!r} holds {text_col.type}, not strings")
        if source_field:
            src_col = _column(batch, source_field, f.path)
            if src_col.null_count:
                raise FormatError(f"{f.path}: rows from {row}: {source_field!r} has nulls")
            yield from zip(texts, map(str, src_col.to_pylist()))
        else:
            for t in texts:
                yield t, f.source
        row += batch.num_rows


def read_documents(
    files: Sequence[InputFile],
    text_field: str = "text",
    source_field: str | None = None,
    text_split: str = "document",
    rows: int = 1024,
) -> Iterator[Document]:
    """Every document of ``files`` in order, as ``(text, source)``. Read errors name the
    file (and line or row)."""
    if text_split not in TEXT_SPLITS:
        raise InputError(f"text split must be one of {', '.join(TEXT_SPLITS)}, got {text_split!r}")
    pa = require("pyarrow")
    zstd_error: type[BaseException] = OSError
    if any(f.compression == ".zst" for f in files):
        zstd_error = require("zstandard").ZstdError
    for f in files:
        try:
            if f.kind == "jsonl":
                yield from _read_jsonl(f, text_field, source_field)
            elif f.kind == "txt":
                yield from _read_txt(f, text_split)
            else:
                yield from _read_arrow(f, text_field, source_field, rows)
        except FileNotFoundError:
            raise
        except (OSError, EOFError, UnicodeDecodeError, zstd_error, pa.ArrowException) as e:
            raise FormatError(f"{f.path}: cannot read this {f.kind} file: {e}") from e
