"""``miniplm.export``: a tokenized corpus (or a selection of it) back to its source text,
one row per document piece, for students of any tokenizer and for other frameworks.

Instances are read in id chunks (memory bounded by the chunk, never by N), each chunk's
tokens are mapped to their bytes through the tokenizer's byte table in numpy, split at
the corpus's EOS, repaired where an instance cut a UTF-8 character (the rule is in
docs/FORMATS.md, "Export"), and written as one parquet row group or a block of JSON lines
to a temporary file that is renamed into place when complete."""

from __future__ import annotations

import gzip
import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import numpy.typing as npt

from miniplm._atomic import atomic_file, check_spares_inputs, dataset_files
from miniplm._deps import require
from miniplm._progress import progress_bar, show_progress
from miniplm.corpus.bytelevel import TokenBytes, token_bytes
from miniplm.data import DataSpec, PathLike, TokenDataset
from miniplm.dataset_meta import TOKENIZE_JSON, TOKENIZER_JSON, dataset_dir
from miniplm.errors import FormatError, InputError

SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".jsonl.zst")
_CHUNK_TOKENS = 1 << 20  # tokens gathered per chunk (the chunk's padded batch is 8x this)


def output_format(out: Path) -> str:
    """The format of ``out`` from its suffix (one of ``SUFFIXES``)."""
    name = out.name.lower()
    for suffix in (".jsonl.gz", ".jsonl.zst", ".jsonl", ".parquet"):
        if name.endswith(suffix):
            return suffix
    raise InputError(f"{out}: unknown output format; the name must end in {', '.join(SUFFIXES)}")


# ---- the corpus and its tokenizer -------------------------------------------------------


class _Corpus:
    """A dataset written by ``miniplm tokenize``: shards, sources, EOS and byte table."""

    def __init__(self, data: DataSpec) -> None:
        self.ds = TokenDataset(data)
        directory = dataset_dir(self.ds.paths[0])
        meta_path = directory / TOKENIZE_JSON
        tok_path = directory / TOKENIZER_JSON
        for p in (meta_path, tok_path):
            if not p.is_file():
                raise FormatError(
                    f"{self.ds.path}: no {p.name} beside the shards; export needs a corpus "
                    "written by `miniplm tokenize` (its tokenizer and EOS)"
                )
        try:
            meta = json.loads(meta_path.read_text())
            eos = int(meta["tokenizer"]["eos_id"])
            names = [str(s) for s in meta["sources"]]
            self.seq_len = int(meta["seq_len"])
        except (ValueError, KeyError, TypeError) as e:
            raise FormatError(f"{meta_path}: not a miniplm tokenize.json ({e!r})") from None
        spec = meta["tokenizer"].get("spec", tok_path)
        in_text = meta.get("counts", {}).get("eos_in_text")
        if in_text is None:
            raise InputError(
                f"{meta_path}: written before tokenize recorded `counts.eos_in_text`, so "
                "it cannot tell whether the EOS token occurs inside documents (export "
                "would cut them there); tokenize the corpus again with this version"
            )
        if in_text:
            raise InputError(
                f"tokenizer {spec}: the EOS id {eos} occurs {in_text} time(s) inside the "
                f"documents' own tokens ({meta_path}), so document ends cannot be told "
                "from text; tokenize again with an --eos-token that is not in the text"
            )
        self.eos = eos
        self.names = names
        counts = meta["counts"]
        self.table = token_bytes(
            tok_path.read_text(),
            str(spec),
            counts.get("normalized_documents"),
            counts.get("unencodable_documents"),
        )
        self.bad = np.zeros(len(self.table.offsets) - 1, dtype=np.bool_)
        self.bad[[t for t in self.table.bad if t != eos]] = True
        sources_path = directory / "sources.npy"
        self.sources: npt.NDArray[Any] = np.load(sources_path, mmap_mode="r")
        if self.sources.shape != (len(self.ds),):
            raise FormatError(
                f"{sources_path}: {self.sources.shape} entries for {len(self.ds)} instances"
            )
        if len(self.sources) and int(self.sources.max()) >= len(names):
            raise FormatError(f"{sources_path}: a source index beyond {meta_path}'s sources")

    def next_same_source(self, i: int) -> int | None:
        """The next instance after ``i`` of ``i``'s source (its document may go on there)."""
        s = self.sources[i]
        lo, step = i + 1, 64  # usually close by; the window grows when it is not
        while lo < len(self.sources):
            hit = np.flatnonzero(self.sources[lo : lo + step] == s)
            if hit.size:
                return lo + int(hit[0])
            lo, step = lo + step, min(step * 4, 1 << 20)
        return None


def check_exportable(data: DataSpec) -> None:
    """Raise the error ``export`` would raise for corpus ``data`` (not written by ``miniplm
    tokenize``, a lossy tokenizer, the EOS inside the text), writing nothing."""
    _Corpus(data)


# ---- per-instance scores ----------------------------------------------------------------


class _MeanNll:
    """Mean NLL of given ids from a score run (memory-mapped parts) or a plain ``.npy``."""

    def __init__(self, path: Path, kind: str, n: int) -> None:
        self.parts: list[tuple[int, npt.NDArray[Any], npt.NDArray[Any] | None]] = []
        if kind == "npy":
            self.parts.append((0, np.load(path, mmap_mode="r"), None))
        else:
            manifest = json.loads((path / "manifest.json").read_text())
            for part in sorted(manifest["parts"], key=lambda p: int(p["start"])):
                d = path / part["name"]
                nll = np.load(d / "nll_sum.npy", mmap_mode="r")
                cnt = np.load(d / "n_scored.npy", mmap_mode="r")
                if len(nll) != int(part["end"]) - int(part["start"]) or len(cnt) != len(nll):
                    raise FormatError(f"{d}: arrays do not match the manifest's part range")
                self.parts.append((int(part["start"]), nll, cnt))
        total = sum(len(p[1]) for p in self.parts)
        if total != n:
            raise InputError(f"{path}: scores for {total} instances, the dataset has {n}")
        self.starts = np.array([p[0] for p in self.parts], dtype=np.int64)

    def __call__(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        out = np.full(len(ids), np.nan)
        which = np.searchsorted(self.starts, ids, side="right") - 1
        for k in np.unique(which).tolist():
            at = which == k
            start, nll, cnt = self.parts[k]
            local = ids[at] - start
            values = np.asarray(nll[local], dtype=np.float64)
            if cnt is not None:
                n = np.asarray(cnt[local])
                values = np.divide(values, n, out=np.full(len(n), np.nan), where=n > 0)
            out[at] = values
        return out


def _score_columns(info: dict[str, Any], n: int) -> dict[str, _MeanNll]:
    """The mean-NLL columns of the score inputs the selection names."""
    inputs = info.get("inputs") or {}
    cols: dict[str, _MeanNll] = {}
    for role, column in (("teacher", "nll_teacher"), ("reference", "nll_reference")):
        src = inputs.get(role)
        if isinstance(src, dict) and src.get("kind") in ("run", "npy"):
            cols[column] = _MeanNll(Path(src["path"]), str(src["kind"]), n)
    return cols


# ---- one chunk: tokens -> rows ----------------------------------------------------------


def _continuation(data: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    return np.asarray((data & 0xC0) == 0x80)


def _missing_tail(row: bytes) -> int:
    """How many continuation bytes the last character of ``row`` lacks (0 if complete)."""
    for back in range(1, min(4, len(row)) + 1):
        b = row[-back]
        if b & 0xC0 != 0x80:
            need = 2 if b >= 0xC0 else 1
            need = 3 if b >= 0xE0 else need
            need = 4 if b >= 0xF0 else need
            return max(need - back, 0)
    return 0


class _Rows:
    """The rows of one chunk: ``ids`` (instance per row), ``offsets`` into ``data``."""

    def __init__(self, ids: npt.NDArray[np.int64], offsets: npt.NDArray[np.int64], data: bytes):
        self.ids = ids
        self.offsets = offsets
        self.data = data


def _instance_bytes(corpus: _Corpus, i: int) -> npt.NDArray[np.uint8]:
    tokens = np.asarray(corpus.ds[i], dtype=np.int64)
    return _gather_bytes(corpus.table, tokens, corpus.eos)[0]


def _gather_bytes(
    table: TokenBytes, tokens: npt.NDArray[np.int64], eos: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """The bytes of ``tokens`` back to back (EOS gives none) and each token's length."""
    lengths = table.offsets[1:][tokens] - table.offsets[:-1][tokens]
    lengths[tokens == eos] = 0
    total = int(lengths.sum())
    ends = np.cumsum(lengths)
    index = np.repeat(table.offsets[:-1][tokens] - (ends - lengths), lengths)
    index += np.arange(total, dtype=np.int64)
    return table.data[index], lengths


def _check_tokens(corpus: _Corpus, tokens: npt.NDArray[Any]) -> None:
    over = tokens >= len(corpus.bad)
    if over.any():
        raise FormatError(f"{corpus.ds.path}: token id {int(tokens[over][0])} beyond the tokenizer")
    hit = corpus.bad[tokens]
    if hit.any():
        t = int(tokens[hit][0])
        why = corpus.table.bad[t]
        raise InputError(
            f"{corpus.ds.path}: token {t} cannot be exported exactly ({why}): the corpus "
            f"tokenizer does not keep the text byte for byte"
        )


def _chunk_rows(corpus: _Corpus, ids: npt.NDArray[np.int64]) -> _Rows:
    batch, counts = corpus.ds.gather(ids, corpus.seq_len + 1)
    counts = counts.astype(np.int64)
    width = batch.shape[1]
    tokens = batch[np.arange(width) < counts[:, None]]
    _check_tokens(corpus, tokens)
    data, lengths = _gather_bytes(corpus.table, tokens, corpus.eos)
    is_eos = tokens == corpus.eos
    # Token position within its instance; a row starts at an instance start or after an EOS.
    first = np.zeros(len(tokens), dtype=np.bool_)
    starts = np.cumsum(counts) - counts
    first[starts[counts > 0]] = True
    after_eos = np.zeros(len(tokens), dtype=np.bool_)
    after_eos[1:] = is_eos[:-1]
    opens = (first | after_eos) & ~is_eos
    row_of = np.cumsum(opens) - 1
    instance_of = np.repeat(np.arange(len(ids)), counts)
    text = ~is_eos
    nrows = int(opens.sum())
    row_ids = ids[instance_of[opens]]
    row_bytes = np.bincount(row_of[text], weights=lengths[text], minlength=nrows).astype(np.int64)
    row_end = np.cumsum(row_bytes)
    row_start = row_end - row_bytes
    # Rows that begin an instance mid-document / end one mid-document (no EOS at the cut).
    begins_cut = first[opens]
    last_token = np.zeros(len(tokens), dtype=np.bool_)
    last_token[(starts + counts - 1)[counts > 0]] = True
    ends_cut = np.zeros(nrows, dtype=np.bool_)
    ends_cut[row_of[last_token & text]] = True
    keep = np.ones(len(data), dtype=np.bool_)
    cont = _continuation(data)
    dropping = begins_cut
    for back in range(3):  # drop the < 4 continuation bytes of a character begun before
        at = row_start + back
        lead = begins_cut & (at < row_end)
        lead[lead] &= cont[at[lead]]
        lead &= dropping
        keep[at[lead]] = False
        dropping = lead
    new_lengths = row_bytes - np.bincount(
        np.repeat(np.arange(nrows), row_bytes)[~keep], minlength=nrows
    )
    data = data[keep]
    new_end = np.cumsum(new_lengths)
    # Rows that end an instance inside a character get its remaining bytes.
    inserts: list[tuple[int, bytes]] = []
    trims: list[tuple[int, int]] = []
    tail_rows = np.flatnonzero(ends_cut & (new_lengths > 0) & ~_ascii_end(data, new_end))
    for r in tail_rows.tolist():
        end = int(new_end[r])
        row = data[max(end - int(new_lengths[r]), end - 4) : end].tobytes()
        need = _missing_tail(row)
        if need:
            got = _completion(corpus, int(row_ids[r]), need)
            if len(got) == need:
                inserts.append((r, got))
            else:  # the rest is in an instance tokenize dropped as short
                trims.append((r, _partial(row)))
    if trims:
        cut = np.ones(len(data), dtype=np.bool_)
        for r, k in trims:
            cut[int(new_end[r]) - k : int(new_end[r])] = False
            new_lengths[r] -= k
        data = data[cut]
        new_end = np.cumsum(new_lengths)
    if inserts:
        rows_at = np.array([r for r, _ in inserts], dtype=np.int64)
        sizes = np.array([len(b) for _, b in inserts], dtype=np.int64)
        where = np.repeat(new_end[rows_at], sizes)
        extra = np.frombuffer(b"".join(b for _, b in inserts), dtype=np.uint8)
        data = np.insert(data, where, extra)
        np.add.at(new_lengths, rows_at, sizes)
    nonempty = new_lengths > 0
    offsets = np.zeros(int(nonempty.sum()) + 1, dtype=np.int64)
    np.cumsum(new_lengths[nonempty], out=offsets[1:])
    return _Rows(row_ids[nonempty], offsets, data.tobytes())


def _ascii_end(data: npt.NDArray[np.uint8], ends: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Whether each row's last byte is ASCII (then its last character is complete)."""
    out = np.ones(len(ends), dtype=np.bool_)
    some = ends > 0
    out[some] = data[ends[some] - 1] < 0x80
    return out


def _partial(row: bytes) -> int:
    """Bytes of the unfinished last character of ``row``."""
    back = 1
    while back < len(row) and row[-back] & 0xC0 == 0x80:
        back += 1
    return back


def _completion(corpus: _Corpus, i: int, need: int) -> bytes:
    """Up to ``need`` continuation bytes that finish instance ``i``'s last character:
    the leading continuation bytes of the next instances of its source (fewer when an
    instance holding them was dropped as short)."""
    got = b""
    j: int | None = i
    while len(got) < need:
        j = corpus.next_same_source(j) if j is not None else None
        if j is None or corpus.ds[j][:1].tolist() == [corpus.eos]:
            break
        whole = _instance_bytes(corpus, j).tobytes()
        head = whole[: need - len(got)]
        cont = len(head) - len(head.lstrip(bytes(range(0x80, 0xC0))))
        got += head[:cont]
        if cont < len(whole):  # the character ends in instance j (or cannot go on)
            break
    return got


# ---- writing ----------------------------------------------------------------------------


class _Writer:
    """Rows -> parquet row groups or JSON lines (plain, gzip or zstd)."""

    def __init__(self, path: Path, suffix: str, score_names: list[str]) -> None:
        self.suffix = suffix
        self.score_names = score_names
        self.pa = require("pyarrow")
        self.parquet: Any = None
        self.raw: IO[bytes] | None = None
        self.text: IO[str] | None = None
        if suffix == ".parquet":
            pq = require("pyarrow.parquet")
            fields = [("id", self.pa.uint64()), ("source", self.pa.string())]
            fields += [("text", self.pa.string())]
            fields += [(n, self.pa.float64()) for n in score_names]
            self.parquet = pq.ParquetWriter(os.fspath(path), self.pa.schema(fields))
            return
        raw: IO[bytes] = open(path, "wb")  # noqa: SIM115
        self.raw = raw
        if suffix == ".jsonl.gz":
            raw = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="wb", mtime=0))
        elif suffix == ".jsonl.zst":
            raw = require("zstandard").ZstdCompressor().stream_writer(raw, closefd=False)
        self.text = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")

    def write(self, rows: _Rows, sources: list[str], scores: dict[str, Any]) -> None:
        text = self.pa.LargeStringArray.from_buffers(
            len(rows.ids), self.pa.py_buffer(rows.offsets), self.pa.py_buffer(rows.data)
        )
        text.validate(full=True)  # every row is UTF-8 (a failure is a bug of ours)
        text = text.cast(self.pa.string())
        if self.parquet is not None:
            columns = {"id": rows.ids.astype(np.uint64), "source": sources, "text": text}
            columns.update(scores)
            self.parquet.write_table(self.pa.table(columns, schema=self.parquet.schema))
            return
        assert self.text is not None
        # One f-string per row around the C string encoder: 3x json.dumps of a dict.
        enc = json.encoder.encode_basestring
        quoted = {n: enc(n) for n in set(sources)}
        parts = [
            [
                f'{{"id": {i}, "source": {quoted[s]}, "text": '
                for i, s in zip(rows.ids.tolist(), sources)
            ]
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
        self.text.writelines("".join(p) + "}\n" for p in zip(*parts))

    def close(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
            return
        assert self.text is not None and self.raw is not None
        self.text.flush()
        self.text.close()  # closes the compressor, which flushes its frame
        if not self.raw.closed:
            self.raw.close()


def _id_chunks(n: int, selected: npt.NDArray[Any] | None, size: int) -> Iterator[Any]:
    if selected is None:
        for lo in range(0, n, size):
            yield np.arange(lo, min(lo + size, n), dtype=np.int64)
    else:
        for lo in range(0, len(selected), size):
            yield np.asarray(selected[lo : lo + size], dtype=np.int64)


def export(
    data: DataSpec,
    out: PathLike,
    selection: PathLike | None = None,
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    scores: bool = True,
) -> dict[str, Any]:
    """Write the source text of every instance of ``data`` (a corpus written by ``miniplm
    tokenize``), or of those ``selection`` keeps, to ``out`` (``.parquet``, ``.jsonl``,
    ``.jsonl.gz``, ``.jsonl.zst``): one row per document piece, in corpus order, columns
    ``id``, ``source``, ``text`` (+ ``r``, ``nll_teacher``, ``nll_reference`` when the
    selection came from score runs, unless ``scores`` is False). Returns counts:
    ``instances``, ``rows``, ``bytes``, ``elapsed_s``. ``progress``: None shows a bar
    when stderr is a terminal."""
    t0 = time.perf_counter()
    out_path = Path(out)
    suffix = output_format(out_path)
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path}: output exists (pass --overwrite to replace it)")
    check_spares_inputs(out_path, [*dataset_files(data), selection])
    corpus = _Corpus(data)
    n = len(corpus.ds)
    selected: npt.NDArray[Any] | None = None
    columns: dict[str, _MeanNll] = {}
    if selection is not None:
        # The core's one selection reader checks it against this dataset.
        selected = corpus.ds.select(selection).ids
        if scores:
            info = json.loads((Path(selection) / "selection.json").read_text())
            columns = _score_columns(info, n)
    names = list(columns)
    if len(columns) == 2:
        names = ["r", *names]
    total = n if selected is None else len(selected)
    chunk = max(1, _CHUNK_TOKENS // (corpus.seq_len + 1))
    # Scaled units (1.2M/10.0M) only where counts are large: "7.00/7.00" reads oddly.
    big = total >= 100_000
    bar = progress_bar(total, " instances", "export", show_progress(progress), unit_scale=big)
    rows_out = bytes_out = 0
    try:
        with atomic_file(out_path, overwrite) as tmp:
            writer = _Writer(tmp, suffix, names)
            try:
                for ids in _id_chunks(n, selected, chunk):
                    rows = _chunk_rows(corpus, ids)
                    source_names = [corpus.names[s] for s in corpus.sources[rows.ids].tolist()]
                    values = {k: f(rows.ids) for k, f in columns.items()}
                    if "r" in names:
                        values = {"r": values["nll_reference"] - values["nll_teacher"], **values}
                    writer.write(rows, source_names, values)
                    rows_out += len(rows.ids)
                    bytes_out += len(rows.data)
                    if bar is not None:
                        bar.update(len(ids))
            finally:
                writer.close()
    finally:
        if bar is not None:
            bar.close()
    return {
        "instances": total,
        "rows": rows_out,
        "bytes": bytes_out,
        "columns": ["id", "source", "text", *names],
        "elapsed_s": round(time.perf_counter() - t0, 3),
    }
