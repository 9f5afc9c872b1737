"""``miniplm.export``: a tokenized corpus (or a selection of it) back to its source text,
one row per document piece, for students of any tokenizer and for other frameworks.

Instances are read in id chunks (memory bounded by the chunk, never by N), each chunk's
tokens are mapped to their bytes through the tokenizer's byte table in numpy, split at
the corpus's EOS, repaired where an instance cut a UTF-8 character (the rule is in
docs/FORMATS.md, "Export"), and written as one parquet row group or a block of JSON lines
(``export_output``) to the partial output ``.<name>.partial/`` beside OUT. That is
checkpointed every ``checkpoint_every`` seconds, so a stopped export continues where it
stood, and the finished file is renamed into place."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from miniplm import _core
from miniplm._atomic import (
    atomic_write_text,
    check_spares_inputs,
    dataset_files,
    fresh_dir,
    keep_checkpointed,
    resumable_file,
    resume_state,
)
from miniplm._progress import progress_bar, show_progress
from miniplm.corpus import CHECKPOINT_EVERY_S
from miniplm.corpus.bytelevel import TokenBytes, token_bytes
from miniplm.corpus.export_output import SUFFIXES, Output, open_output, output_format
from miniplm.data import DataSpec, PathLike, TokenDataset
from miniplm.dataset_meta import TOKENIZE_JSON, TOKENIZER_JSON, dataset_dir, read_sources
from miniplm.errors import FormatError, InputError

_CHUNK_TOKENS = 1 << 20  # tokens gathered per chunk (the chunk's padded batch is 8x this)
CHECKPOINT = "checkpoint.json"  # in the partial output: where a stopped export stood
CHECKPOINT_FORMAT = "miniplm.export_checkpoint/1"


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
        self.sources: npt.NDArray[Any] = read_sources(self.ds.paths[0], len(self.ds)).ids

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
            # In the core's order, (start, end, name); an empty part holds no instance,
            # and kept, it would share its start with the part after it.
            ranges = [(int(p["start"]), int(p["end"]), str(p["name"])) for p in manifest["parts"]]
            for start, end, name in sorted(ranges):
                d = path / name
                nll = np.load(d / "nll_sum.npy", mmap_mode="r")
                cnt = np.load(d / "n_scored.npy", mmap_mode="r")
                if len(nll) != end - start or len(cnt) != len(nll):
                    raise FormatError(f"{d}: arrays do not match the manifest's part range")
                if end > start:
                    self.parts.append((start, nll, cnt))
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


class _ScoreInput:
    """A score input (a run or an ``.npy``) as a selection's ``selection.json`` records it."""

    def __init__(self, role: str, column: str, src: dict[str, Any]) -> None:
        self.role, self.column = role, column
        self.path, self.kind = Path(src["path"]), str(src["kind"])
        self.fingerprint = src.get("fingerprint")


def _score_inputs(selection: PathLike) -> list[_ScoreInput]:
    """The score inputs that the selection's ``selection.json`` names."""
    path = Path(selection) / "selection.json"
    try:
        inputs = json.loads(path.read_text()).get("inputs") or {}
        found = []
        for role, column in (("teacher", "nll_teacher"), ("reference", "nll_reference")):
            src = inputs.get(role)
            if isinstance(src, dict) and src.get("kind") in ("run", "npy"):
                found.append(_ScoreInput(role, column, src))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise FormatError(f"{path}: unreadable inputs ({e!r})") from None
    return found


def _score_columns(selection: PathLike, n: int) -> dict[str, _MeanNll]:
    """The mean-NLL columns of the score inputs the selection names, each checked to be
    the input the selection was made from (its fingerprint then and now)."""
    cols = {}
    for s in _score_inputs(selection):
        try:
            now = _core.score_fingerprint(os.fspath(s.path), s.kind)
        except FileNotFoundError as e:
            # Selections of older versions recorded the paths as given, relative to the
            # directory select ran in.
            rel = "" if s.path.is_absolute() else f", read from {Path.cwd()}"
            raise FileNotFoundError(
                f"{s.path}: the {s.role} scores selection {selection} was made from are not "
                f"there{rel} ({e}); export from where they are, or without the score columns "
                "(--no-scores, scores=False)"
            ) from None
        if now != s.fingerprint:
            raise InputError(
                f"{s.path}: the {s.role} scores changed since selection {selection} was made "
                f"from them (fingerprint {now}, recorded {s.fingerprint}); select again, or "
                "export without the score columns (--no-scores, scores=False)"
            )
        cols[s.column] = _MeanNll(s.path, s.kind, n)
    return cols


def export_identity(
    data: DataSpec, selection: PathLike | None = None, *, scores: bool = True
) -> dict[str, Any]:
    """What the rows ``export(data, ..., selection, scores=scores)`` writes depend on,
    each file fingerprinted under its resolved path: the corpus (its shards,
    ``sources.npy``, its tokenizer and EOS in ``tokenizer.json`` / ``tokenize.json``) and
    the selection's files, and whether there are score columns. The score runs need no
    print of their own: ``selection.json`` records theirs, and export refuses runs that no
    longer match it. A partial export, or text exported earlier, is of the same rows only
    when this is equal."""

    def prints(files: list[Path]) -> dict[str, str]:
        # Resolved: ``corpus/`` and ``/data/corpus`` (or a link to it) name the same rows.
        found = [f for f in files if f.is_file()]
        return {os.fspath(f.resolve()): _core.file_fingerprint(os.fspath(f)) for f in found}

    files = [Path(p) for p in dataset_files(data)]
    meta_dir = dataset_dir(files[0])
    files += [meta_dir / TOKENIZE_JSON, meta_dir / TOKENIZER_JSON, meta_dir / "sources.npy"]
    chosen: dict[str, Any] | None = None
    if selection is not None:
        sel = Path(selection)
        chosen = {
            "path": os.fspath(sel.resolve()),
            "files": prints(sorted(sel.iterdir()) if sel.is_dir() else [sel]),
        }
    return {"corpus": prints(files), "selection": chosen, "scores": scores}


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


# ---- the export ------------------------------------------------------------------------


def _id_chunks(
    n: int, selected: npt.NDArray[Any] | None, size: int, start: int
) -> Iterator[npt.NDArray[np.int64]]:
    """The ids of chunk ``start`` on, in chunks of ``size`` (all ``n``, or ``selected``)."""
    total = n if selected is None else len(selected)
    for lo in range(start * size, total, size):
        hi = min(lo + size, total)
        if selected is None:
            yield np.arange(lo, hi, dtype=np.int64)
        else:
            yield np.asarray(selected[lo:hi], dtype=np.int64)


def export(
    data: DataSpec,
    out: PathLike,
    selection: PathLike | None = None,
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    scores: bool = True,
    resume: bool = True,
    checkpoint_every: float = CHECKPOINT_EVERY_S,
) -> dict[str, Any]:
    """Write the source text of every instance of ``data`` (a corpus written by ``miniplm
    tokenize``), or of those ``selection`` keeps, to ``out`` (``.parquet``, ``.jsonl``,
    ``.jsonl.gz``, ``.jsonl.zst``): one row per document piece, in corpus order, columns
    ``id``, ``source``, ``text`` (+ ``r``, ``nll_teacher``, ``nll_reference`` when the
    selection came from score runs, unless ``scores`` is False). Returns counts:
    ``instances``, ``rows``, ``bytes``, ``elapsed_s``, ``resumed`` (how many stopped runs
    this one continues). ``progress``: None shows a bar when stderr is a terminal.

    The file is built in ``.<name>.partial`` beside ``out``, checkpointed every
    ``checkpoint_every`` seconds (0: after every chunk); a stopped run leaves it, and the
    same call continues from the last checkpoint, writing the same bytes as a run that
    never stopped. A partial of other inputs is discarded (with a message);
    ``resume=False`` discards it in any case."""
    t0 = time.perf_counter()
    if not checkpoint_every >= 0:
        raise InputError(f"checkpoint interval must be >= 0 seconds, got {checkpoint_every}")
    out_path = Path(out)
    suffix = output_format(out_path)
    if out_path.is_dir():  # the file would be renamed over it only at the very end
        raise InputError(
            f"{out_path}: is a directory; export writes one file (name the file to write, "
            f"ending in {', '.join(SUFFIXES)})"
        )
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
            columns = _score_columns(selection, n)
    names = list(columns)
    if len(columns) == 2:
        names = ["r", *names]
    total = n if selected is None else len(selected)
    chunk = max(1, _CHUNK_TOKENS // (corpus.seq_len + 1))
    n_chunks = -(-total // chunk)
    identity = {
        "format": CHECKPOINT_FORMAT,
        **export_identity(data, selection, scores=scores),
        "output": suffix,
        "columns": names,
        "chunk": chunk,
    }
    # Scaled units (1.2M/10.0M) only where counts are large: "7.00/7.00" reads oddly.
    big = total >= 100_000
    bar: Any = None
    try:
        keep = keep_checkpointed("export", CHECKPOINT)
        with resumable_file(out_path, overwrite, keep) as (work, done):
            try:
                state = resume_state("export", work, CHECKPOINT, identity, resume, _read_state)
                at = None if state is None else state["output"]
                output = open_output(work, suffix, names, at)
                run = _Progress(state, total, n_chunks, chunk)
            except (OSError, KeyError, TypeError, ValueError) as e:  # FormatError included
                # The partial is this job's own state; damaged, it is only work to redo.
                print(f"export: cannot continue {work} ({e}); starting again", file=sys.stderr)
                state = None
                fresh_dir(work)
                output = open_output(work, suffix, names, None)
                run = _Progress(None, total, n_chunks, chunk)
            try:
                if state is not None:
                    print(
                        f"export: resuming {work} at instance {run.instances:,} of {total:,} "
                        f"({run.rows:,} rows written)",
                        file=sys.stderr,
                    )
                    run.save(work, identity, output, t0)  # the resume itself is recorded
                # Created here, at what is done: a resumed run's rate is of its own work.
                bar = progress_bar(
                    total,
                    " instances",
                    "export",
                    show_progress(progress),
                    initial=run.instances,
                    unit_scale=big,
                )
                saved_at = time.perf_counter()
                for ids in _id_chunks(n, selected, chunk, run.chunks):
                    rows = _chunk_rows(corpus, ids)
                    source_names = [corpus.names[s] for s in corpus.sources[rows.ids].tolist()]
                    values = {k: f(rows.ids) for k, f in columns.items()}
                    if "r" in names:
                        values = {"r": values["nll_reference"] - values["nll_teacher"], **values}
                    output.write(rows.ids, rows.offsets, rows.data, source_names, values)
                    run.add(len(ids), len(rows.ids), len(rows.data))
                    now = time.perf_counter()
                    if now - saved_at >= checkpoint_every and run.chunks < n_chunks:
                        run.save(work, identity, output, t0)
                        saved_at = time.perf_counter()
                    if bar is not None:
                        bar.update(len(ids))
                # The checkpoint stays while the file is finished (a parquet merge, the
                # zstd frame): a run stopped there continues with the finishing.
                output.finish(done)
            finally:
                output.close()
    finally:
        if bar is not None:
            bar.close()
    return {
        "instances": total,
        "rows": run.rows,
        "bytes": run.bytes,
        "columns": ["id", "source", "text", *names],
        "elapsed_s": round(run.before_s + time.perf_counter() - t0, 3),
        "resumed": run.resumed,
    }


class _Progress:
    """How far an export has got (chunks, instances, rows, text bytes), from the start or
    from a checkpoint's ``state``."""

    def __init__(self, state: dict[str, Any] | None, total: int, n_chunks: int, chunk: int) -> None:
        s = state or {}
        self.chunks = int(s.get("chunks", 0))
        if not 0 <= self.chunks <= n_chunks:
            raise FormatError(f"checkpoint: {self.chunks} chunks done of {n_chunks}")
        self.rows = int(s.get("rows", 0))
        self.bytes = int(s.get("bytes", 0))
        self.before_s = float(s.get("elapsed_s", 0.0))
        self.resumed = int(s.get("resumed", -1)) + 1
        self.instances = min(self.chunks * chunk, total)

    def add(self, instances: int, rows: int, nbytes: int) -> None:
        self.chunks += 1
        self.instances += instances
        self.rows += rows
        self.bytes += nbytes

    def save(self, work: Path, identity: dict[str, Any], output: Output, t0: float) -> None:
        """The checkpoint, replaced whole after the output is durable."""
        state = {
            "identity": identity,
            "chunks": self.chunks,
            "instances": self.instances,
            "rows": self.rows,
            "bytes": self.bytes,
            "output": output.checkpoint(),
            "elapsed_s": self.before_s + time.perf_counter() - t0,
            "resumed": self.resumed,
        }
        atomic_write_text(work / CHECKPOINT, json.dumps(state) + "\n")


def _read_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise FormatError(f"{path}: unreadable checkpoint ({e})") from e
    if not isinstance(state, dict):
        raise FormatError(f"{path}: not an export checkpoint")
    return state
