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
  below it, in sorted path order. Skipped: files of other extensions, files whose names
  start with ``.`` or ``_`` (``_SUCCESS``, ``_metadata``, ``.part-0.jsonl.crc``) and
  directories whose names start with ``.``. Symbolic links to directories are followed,
  a directory reached twice (by its real path: a link back up, or two links to one
  place) is read once; a directory that cannot be listed is an InputError.
- A glob pattern (``data/*.jsonl``): each matching file, in sorted order; a matching
  directory is read as a directory input is, less the files that the pattern matches
  itself or that lie in a deeper matching directory (so ``data/**`` reads each file
  once, as its own match).

Every compressed or columnar file must end where its format says it ends (a cut ``cat
a.zst b.zst`` or Arrow stream parses as a shorter valid one otherwise): else FormatError.
An empty compressed file is not a valid one (FormatError); a file with no documents
(an empty ``.jsonl``) is read as such, with a warning on stderr naming it, since its
source may then get no documents at all.

Sources: one per input *argument* unless ``source_field`` names a per-document field: a
file's name without its extensions (``pile/ArXiv.jsonl.zst`` -> ``ArXiv``), a directory's
name (all its files are one source), or the matching name of ``sources``. Files of a glob
are each their own source (a directory it matches, one source). Two different inputs
(files or directories) whose default names are equal (``web/part-0.jsonl`` and
``books/part-0.jsonl``) are refused by :func:`check_source_names` rather than merged
into one source: name them with ``sources``. Field names may be dotted to reach nested
fields (``meta.pile_set_name``); a source field must hold a string or an integer. Text
and source strings must be valid Unicode (a JSON ``"\\ud800"`` escape or raw surrogate
bytes are a FormatError naming the line).
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import sys
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from miniplm._deps import require
from miniplm.dataset_meta import json_type
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
    # The file or directory whose name ``source`` is by default; None where it was given.
    origin: Path | None = None


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


def _file(path: Path, source: str, origin: Path | None = None) -> InputFile:
    kind = _kind(path)
    if kind is None:
        raise InputError(f"{path}: unknown input format (expected {KNOWN}, or a directory)")
    return InputFile(path, kind[0], kind[1], source, origin)


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


def _directory_files(directory: Path) -> list[tuple[Path, bool]]:
    """The input files below ``directory`` (see the module's docstring), in order, each
    with whether a ``datasets`` ``state.json`` lists it (an Arrow file whatever its name)."""
    arrow = _hf_dataset_files(directory)
    if arrow is not None:
        return [(p, True) for p in arrow]

    def unreadable(e: OSError) -> None:
        raise InputError(
            f"{e.filename}: cannot list this directory ({e.strerror}); its files would be left out"
        ) from e

    files = []
    seen: set[str] = set()
    for root, dirs, names in os.walk(directory, onerror=unreadable, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back up (a cycle), or a second way to the same place
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in names:
            p = Path(root) / n
            if not n.startswith((".", "_")) and _kind(p) is not None:
                files.append((p, False))
    return sorted(files)


def _directory(directory: Path, source: str, origin: Path | None) -> list[InputFile]:
    files = _directory_files(directory)
    if not files:
        raise InputError(f"{directory}: no input files ({KNOWN}) in this directory")
    return [_listed(p, hf, source, origin) for p, hf in files]


def _listed(path: Path, hf: bool, source: str, origin: Path | None) -> InputFile:
    return InputFile(path, "arrow", None, source, origin) if hf else _file(path, source, origin)


def _glob(pattern: str, given: str | None) -> list[InputFile]:
    """The files of a glob: each matching file its own source, each matching directory
    one source, owning the files below it that no deeper match owns."""
    matches = sorted(Path(m) for m in glob.glob(pattern, recursive=True))
    owner: dict[Path, Path] = {m: m for m in matches if m.is_file()}
    hf: set[Path] = set()  # listed by a datasets state.json
    # Deepest directories first: a file belongs to the closest match above it.
    for d in sorted((m for m in matches if m.is_dir()), key=lambda m: -len(m.parts)):
        for p, listed in _directory_files(d):
            if owner.setdefault(p, d) == d and listed:
                hf.add(p)
    if not owner:
        raise FileNotFoundError(f"{pattern}: no files match this pattern")
    order = {m: k for k, m in enumerate(matches)}
    files = []
    for p in sorted(owner, key=lambda p: (order[owner[p]], p)):
        m = owner[p]
        name = _stem(m) if m == p else m.resolve().name
        files.append(_listed(p, p in hf, given or name, None if given else m))
    return files


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
        origin = None if given else path
        if path.is_dir():
            files.extend(_directory(path, given or path.resolve().name, origin))
        elif path.is_file():
            files.append(_file(path, given or _stem(path), origin))
        elif glob.has_magic(name):
            files.extend(_glob(name, given))
        else:
            raise FileNotFoundError(f"{name}: no such file or directory")
    return files


def check_source_names(files: Sequence[InputFile]) -> None:
    """Refuse two different inputs (files, directories) whose *default* source names are
    equal: their documents would silently become one source."""
    first: dict[str, tuple[Path, str]] = {}
    for f in files:
        if f.origin is None:
            continue
        real = os.path.realpath(f.origin)
        seen = first.setdefault(f.source, (f.origin, real))
        if seen[1] != real:
            raise InputError(
                f"{seen[0]} and {f.origin} would both be source {f.source!r} (a file's "
                "default source is its name without extensions, a directory's its name), "
                "merging their documents: name the inputs with --source (one name per "
                "input argument; the same name twice merges them on purpose), or give "
                "their directories as inputs (each directory is one source)"
            )


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
            if not text.isascii():
                _check_unicode(f, lineno, text, text_field)
            source = f.source
            if source_path is not None:
                value = _field(obj, source_path)
                if value is _MISSING or value is None:
                    raise FormatError(f"{f.path}:{lineno}: no source field {source_field!r}")
                if type(value) is str:
                    if not value.isascii():
                        _check_unicode(f, lineno, value, source_field)
                    source = value
                elif type(value) is int:
                    source = str(value)
                else:
                    raise FormatError(
                        f"{f.path}:{lineno}: source field {source_field!r} is a JSON "
                        f"{json_type(value)}, not a string or an integer"
                    )
            yield text, source


def _check_unicode(f: InputFile, lineno: int, text: str, name: str | None) -> None:
    """``text`` must be valid Unicode: json.loads takes a lone surrogate (a ``"\\ud800"``
    escape, or its raw UTF-8-like bytes) into a str that no tokenizer can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise FormatError(
            f"{f.path}:{lineno}: field {name!r} is not valid UTF-8: it holds a lone "
            f"surrogate {text[e.start]!r} at character {e.start} (an unpaired \\ud800-"
            "\\udfff escape, or its bytes written raw)"
        ) from None


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
    """Fail early (before a slow tokenizer load) when a parquet / Arrow file lacks a field,
    or a source field is asked of a .txt file."""
    pa = require("pyarrow")
    for f in files:
        if f.kind == "txt" and source_field:
            raise _no_fields(f, source_field)
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
            _check_source_type(src_col.type, f.path, source_field)
            yield from zip(texts, map(str, src_col.to_pylist()))
        else:
            for t in texts:
                yield t, f.source
        row += batch.num_rows


def _check_source_type(t: Any, path: Path, name: str) -> None:
    """A source column holds strings or integers (a float, bool, struct or list column
    would give names such as ``1.0`` or ``{'a': 1}``)."""
    pa = require("pyarrow")
    if pa.types.is_dictionary(t):
        t = t.value_type
    ok = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
    if not ok and hasattr(pa.types, "is_string_view"):
        ok = pa.types.is_string_view(t)
    if not ok:
        raise FormatError(f"{path}: source column {name!r} holds {t}, not strings or integers")


def _no_fields(f: InputFile, source_field: str) -> InputError:
    return InputError(
        f"{f.path}: a .txt file has no fields to take the source field {source_field!r} "
        "from (a source field needs jsonl, parquet or Arrow inputs; name .txt inputs' "
        "sources with --source instead)"
    )


def read_documents(
    files: Sequence[InputFile],
    text_field: str = "text",
    source_field: str | None = None,
    text_split: str = "document",
    rows: int = 1024,
) -> Generator[Document, None, None]:
    """Every document of ``files`` in order, as ``(text, source)``. Read errors name the
    file (and line or row)."""
    if text_split not in TEXT_SPLITS:
        raise InputError(f"text split must be one of {', '.join(TEXT_SPLITS)}, got {text_split!r}")
    pa = require("pyarrow")
    zstd_error: type[BaseException] = OSError
    if any(f.compression == ".zst" for f in files):
        zstd_error = require("zstandard").ZstdError
    for f in files:
        if f.kind == "txt" and source_field:
            raise _no_fields(f, source_field)
        n = nonempty = 0
        try:
            if f.kind == "jsonl":
                documents = _read_jsonl(f, text_field, source_field)
            elif f.kind == "txt":
                documents = _read_txt(f, text_split)
            else:
                documents = _read_arrow(f, text_field, source_field, rows)
            for doc in documents:
                n += 1
                if doc[0]:
                    nonempty += 1
                yield doc
        except FileNotFoundError:
            raise
        except (OSError, EOFError, UnicodeDecodeError, zstd_error, pa.ArrowException) as e:
            raise FormatError(f"{f.path}: cannot read this {f.kind} file: {e}") from e
        if not nonempty:
            _warn_empty(f, n, source_field)


def _warn_empty(f: InputFile, documents: int, source_field: str | None) -> None:
    """A file without documents is valid (an empty shard of many), so it is no error, but
    the source it names may get none at all: say so on stderr, naming the file."""
    if documents:
        what = f"only empty documents ({documents:,}) in this file"
    elif f.compression is None and f.path.stat().st_size == 0:
        what = "empty file"
    else:
        what = "no documents in this file"
    gets = "" if source_field else f"; source {f.source!r} gets none from it"
    print(f"warning: {f.path}: {what}{gets}", file=sys.stderr)
