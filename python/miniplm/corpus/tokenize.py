"""``tokenize_corpus``: text files -> packed Megatron shards + ``sources.npy`` +
``tokenizer.json`` + ``tokenize.json`` (+ ``ref_ids.npy``), all written atomically.

Documents are read in order, encoded in batches (in this process with the tokenizer's
own Rust threads when ``workers == 1``, else by a pool of worker processes, each owning a
tokenizer, results taken back in submission order), an EOS is appended to each, and the
stream of each source is packed by :class:`miniplm.corpus.packing.Packer`. The shards
depend only on the inputs and options, never on the number of workers."""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from miniplm import _core
from miniplm._atomic import (
    check_spares_inputs,
    fresh_dir,
    fsync_dir,
    keep_checkpointed,
    resumable_dir,
    resume_state,
)
from miniplm._deps import require
from miniplm._progress import progress_bar, show_progress
from miniplm.corpus import CHECKPOINT_EVERY_S, MAX_SOURCES
from miniplm.corpus.bytelevel import missing_bytes
from miniplm.corpus.packing import PACKINGS, Chunk, Packer
from miniplm.corpus.readers import (
    InputFile,
    check_columns,
    check_source_names,
    discover,
    read_documents,
)
from miniplm.corpus.tokenizer import TokenizerInfo, load_tokenizer
from miniplm.dataset_meta import TOKENIZE_JSON, TOKENIZER_JSON
from miniplm.errors import FormatError, InputError

SHARD_NAME = "corpus"
FORMAT = "miniplm.tokenized_corpus"
_WRITE_TOKENS = 1 << 20  # tokens gathered before one DatasetWriter.add_batch
_RAW_SOURCES = ".sources.u32"  # each kept instance's source id, until sources.npy
CHECKPOINT = "checkpoint.npz"  # in the partial output: where a killed run stood
CHECKPOINT_FORMAT = "miniplm.tokenize_checkpoint/2"
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)

Encoded = tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]
# DatasetWriter.checkpoint(): (instances, bytes) of each finished shard, and of the open one.
WriterState = tuple[list[tuple[int, int]], tuple[int, int] | None]


def parse_size(value: int | str) -> int:
    """Bytes of ``123``, ``64K``, ``500M``, ``1.5G``, ``4GiB`` (powers of 1024)."""
    if isinstance(value, int):
        size = value
    else:
        m = _SIZE.match(value)
        if m is None:
            raise InputError(f"not a size: {value!r} (examples: 500M, 1G, 4GiB)")
        mult = 1024 ** " KMGT".index(m.group(2).upper() or " ")
        size = int(float(m.group(1)) * mult)
    if size <= 0:
        raise InputError(f"size must be positive: {value!r}")
    return size


# ---- encoding ---------------------------------------------------------------------------


def encode_batch(tokenizer: Any, texts: list[str], eos_id: int) -> Encoded:
    """Token ids of ``texts`` (no special tokens added), each followed by ``eos_id``, as one
    flat int32 array plus the per-document lengths. ``encode_batch_fast`` (tokenizers >=
    0.20) gives the ids of ``encode_batch`` without computing character offsets."""
    encode = getattr(tokenizer, "encode_batch_fast", None) or tokenizer.encode_batch
    ids = [e.ids for e in encode(texts, add_special_tokens=False)]
    for x in ids:
        x.append(eos_id)
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths


_worker_tokenizer: Any = None
_worker_eos = 0


def _worker_init(tokenizer_json: str, eos_id: int) -> None:
    # Parallelism comes from the processes: each encodes on one thread.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    global _worker_tokenizer, _worker_eos
    _worker_tokenizer = require("tokenizers").Tokenizer.from_str(tokenizer_json)
    _worker_eos = eos_id


def _worker_encode(texts: list[str]) -> Encoded:
    return encode_batch(_worker_tokenizer, texts, _worker_eos)


Position = tuple[int, int]  # (input file, documents of it read, empty ones included)


@dataclass
class Batch:
    """Up to ``batch_docs`` non-empty documents, and where the reading stood after them."""

    texts: list[str]
    sources: list[str]
    end: Position
    empty: int  # empty documents skipped since the previous batch


def _too_many_sources(what: str, count: int, max_sources: int, fix: str) -> InputError:
    return InputError(
        f"{what} {count:,} sources, more than --max-sources ({max_sources:,}): each source "
        "is packed apart and holds up to L+1 tokens in memory until the end, so sources "
        f"should be parts of the corpus (domains, subsets), not documents; {fix}, or raise "
        "--max-sources"
    )


def check_sources(
    files: Sequence[InputFile], source_field: str | None, max_sources: int | None
) -> None:
    """Fail before any work when the inputs' own sources (``source_field`` unset) are
    more than ``max_sources`` (None: no limit), or when two different inputs have one
    default source name (see :func:`check_source_names`)."""
    if max_sources is not None and max_sources < 1:
        raise InputError(f"max_sources must be >= 1, got {max_sources}")
    if source_field is not None:
        return
    check_source_names(files)
    if max_sources is None:
        return
    count = len({f.source for f in files})
    if count > max_sources:
        raise _too_many_sources(
            f"{len(files):,} input files (each file of a glob is its own source) make",
            count,
            max_sources,
            "name them with --source (one name per input argument, e.g. --source web "
            "'data/*.jsonl')",
        )


def _batches(
    files: Sequence[InputFile],
    text_field: str,
    source_field: str | None,
    text_split: str,
    size: int,
    start: Position = (0, 0),
    max_sources: int | None = None,
    known: Sequence[str] = (),
) -> Iterator[Batch]:
    """The documents of ``files`` from ``start`` on, in batches. A resumed run re-reads
    the documents of its current file before ``start`` (a compressed stream cannot seek),
    but opens no file before it. More than ``max_sources`` sources (``known``: those of
    the run being resumed) is an InputError at the document that makes one too many."""
    texts: list[str] = []
    sources: list[str] = []
    seen = set(known)
    empty = 0
    for i in range(start[0], len(files)):
        skip = start[1] if i == start[0] else 0
        n = 0
        for text, source in read_documents(files[i : i + 1], text_field, source_field, text_split):
            n += 1
            if n <= skip:
                continue
            if not text:
                empty += 1
                continue
            if source not in seen:
                seen.add(source)
                if max_sources is not None and len(seen) > max_sources:
                    raise _too_many_sources(
                        f"{files[i].path}: document {n}: source field {source_field!r} makes",
                        len(seen),
                        max_sources,
                        "choose a field that names corpus parts (e.g. meta.pile_set_name)",
                    )
            texts.append(text)
            sources.append(source)
            if len(texts) == size:
                yield Batch(texts, sources, (i, n), empty)
                texts, sources, empty = [], [], 0
        if n < skip:
            raise InputError(
                f"{files[i].path}: holds {n} documents, but the partial output being resumed "
                f"read {skip} of it; it changed without changing its fingerprint "
                "(run again to start afresh)"
            )
    if texts or empty:
        yield Batch(texts, sources, (len(files), 0), empty)


def _encoded(
    batches: Iterator[Batch], tok: TokenizerInfo, workers: int
) -> Iterator[tuple[Batch, Encoded]]:
    """``(batch, encoding)`` in batch order; with workers, at most 2 x workers batches are
    in flight (memory stays bounded however large the corpus)."""
    if workers <= 1:
        # One encoding thread (the tokenizer's Rust threads do the work, without the GIL),
        # so that reading the next batch and packing the last one overlap with it.
        with ThreadPoolExecutor(1) as ex:
            queue: deque[tuple[Batch, Future[Encoded]]] = deque()
            for b in batches:
                queue.append((b, ex.submit(encode_batch, tok.backend, b.texts, tok.eos_id)))
                if len(queue) >= 2:
                    done, future = queue.popleft()
                    yield done, future.result()
            while queue:
                done, future = queue.popleft()
                yield done, future.result()
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_worker_init, initargs=(tok.json, tok.eos_id)) as pool:
        pending: deque[tuple[Batch, Any]] = deque()
        for b in batches:
            pending.append((b, pool.apply_async(_worker_encode, (b.texts,))))
            if len(pending) >= 2 * workers:
                done, result = pending.popleft()
                yield done, result.get()
        while pending:
            done, result = pending.popleft()
            yield done, result.get()


# ---- writing ----------------------------------------------------------------------------


class _Output:
    """Kept instances -> shards (batched add_batch) and a raw uint32 source-id file;
    ``resume`` (a checkpoint's ``output`` entry) continues the files a killed run left."""

    def __init__(
        self,
        directory: Path,
        dtype: str,
        max_shard_bytes: int | None,
        min_tokens: int,
        resume: dict[str, Any] | None = None,
    ):
        at = None if resume is None else _writer_checkpoint(resume["writer"])
        self.writer = _core.DatasetWriter(
            os.fspath(directory), SHARD_NAME, dtype, max_shard_bytes, at
        )
        self.min_tokens = min_tokens
        self.pending: list[npt.NDArray[Any]] = []
        self.pending_sources: list[int] = []
        self.pending_tokens = 0
        self.instances = 0 if resume is None else int(resume["instances"])
        self.dropped = 0 if resume is None else int(resume["dropped"])
        self.shards: list[dict[str, Any]] = []
        raw = directory / _RAW_SOURCES
        if resume is None:
            self.source_file: BinaryIO = open(raw, "wb")  # noqa: SIM115
        else:
            self.source_file = open(raw, "r+b")  # noqa: SIM115
            if os.fstat(self.source_file.fileno()).st_size < 4 * self.instances:
                self.source_file.close()
                raise FormatError(f"{raw}: shorter than the checkpoint of {directory} records")
            self.source_file.truncate(4 * self.instances)
            self.source_file.seek(0, os.SEEK_END)

    def add(self, chunks: list[Chunk], per_source: list[dict[str, int]]) -> None:
        for source, tokens in chunks:
            if len(tokens) < self.min_tokens:
                self.dropped += 1
                continue
            self.pending.append(tokens)
            self.pending_sources.append(source)
            self.pending_tokens += len(tokens)
            stats = per_source[source]
            stats["instances"] += 1
            stats["tokens"] += len(tokens)
        if self.pending_tokens >= _WRITE_TOKENS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        lengths = np.fromiter(map(len, self.pending), dtype=np.int64, count=len(self.pending))
        self.writer.add_batch(np.concatenate(self.pending, dtype=np.int64), lengths)
        self.source_file.write(np.asarray(self.pending_sources, dtype=np.uint32).tobytes())
        self.instances += len(self.pending)
        self.pending, self.pending_sources, self.pending_tokens = [], [], 0

    def checkpoint(self) -> dict[str, Any]:
        """Make every instance added so far durable; returns what ``resume`` takes."""
        self.flush()
        done, open_ = self.writer.checkpoint()
        self.source_file.flush()
        os.fsync(self.source_file.fileno())
        return {
            "instances": self.instances,
            "dropped": self.dropped,
            "writer": {"done": done, "open": open_},
        }

    def finish(self, directory: Path, num_sources: int) -> None:
        self.flush()
        self.shards = [
            {
                "name": Path(s["prefix"]).name,
                "num_instances": s["num_instances"],
                "num_tokens": s["num_tokens"],
            }
            for s in self.writer.finish()
        ]
        self.source_file.close()
        raw = directory / _RAW_SOURCES
        dtype = np.uint16 if num_sources <= 1 << 16 else np.uint32
        out = np.lib.format.open_memmap(
            directory / "sources.npy", mode="w+", dtype=dtype, shape=(self.instances,)
        )
        step = 1 << 22
        for start in range(0, self.instances, step):
            count = min(step, self.instances - start)
            out[start : start + count] = np.fromfile(raw, np.uint32, count, offset=4 * start)
        out.flush()
        del out
        raw.unlink()


def _writer_checkpoint(w: dict[str, Any]) -> WriterState:
    done = [(int(a), int(b)) for a, b in w["done"]]
    open_ = None if w["open"] is None else (int(w["open"][0]), int(w["open"][1]))
    return done, open_


def _reference_ids(directory: Path, fraction: float, seed: int) -> int:
    """Draw D_ref with the core's uniform selection into ``directory/ref_ids.npy``."""
    from miniplm.sampling import select

    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=".ref-select-") as tmp:
        sel = Path(tmp) / "sel"
        info = select(sel, random=True, ratio=fraction, seed=seed, data=directory)
        shutil.move(os.fspath(sel / "ids.npy"), os.fspath(directory / "ref_ids.npy"))
    return int(info["num_selected"])


# ---- the driver -------------------------------------------------------------------------


def check_options(
    seq_len: int,
    packing: str,
    batch_docs: int,
    min_tokens: int,
    reference_fraction: float | None,
    workers: int,
) -> None:
    """The option checks of ``tokenize_corpus`` (``miniplm run`` makes them up front)."""
    if seq_len < 1:
        raise InputError(f"seq_len must be >= 1, got {seq_len}")
    if packing not in PACKINGS:
        raise InputError(f"packing must be one of {', '.join(PACKINGS)}, got {packing!r}")
    if batch_docs < 1:
        raise InputError(f"batch_docs must be >= 1, got {batch_docs}")
    if min_tokens < 1:
        raise InputError(f"min_tokens must be >= 1, got {min_tokens}")
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    if reference_fraction is not None and not 0.0 < reference_fraction < 1.0:
        raise InputError(f"reference fraction must be in (0, 1), got {reference_fraction}")


def tokenize_corpus(
    inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    out: str | os.PathLike[str],
    tokenizer: Any,
    *,
    seq_len: int = 1024,
    packing: str = "boundary",
    text_field: str = "text",
    source_field: str | None = None,
    sources: Sequence[str] | None = None,
    shard_size: int | str | None = None,
    reference_fraction: float | None = None,
    seed: int = 0,
    workers: int | None = None,
    batch_docs: int = 1000,
    min_tokens: int = 2,
    overwrite: bool = False,
    progress: bool | None = None,
    eos_id: int | None = None,
    text_split: str = "document",
    eos_token: str | None = None,
    resume: bool = True,
    checkpoint_every: float = CHECKPOINT_EVERY_S,
    max_sources: int | None = MAX_SOURCES,
) -> dict[str, Any]:
    """Tokenize and pack ``inputs`` into the dataset directory ``out``; returns what it
    writes to ``out/tokenize.json``. ``tokenizer``: a Hugging Face tokenizer directory, a
    ``tokenizer.json``, a ``.gguf`` file or a loaded fast tokenizer. ``sources``: one
    source name per input (default: file stem / directory name); ``source_field`` takes
    it from each document instead. ``workers``: 1 encodes in this process on the
    tokenizer's own Rust threads (``TOKENIZERS_PARALLELISM``); N > 1 encodes in N
    spawned processes of one thread each (scripts calling this must then guard their
    entry point with ``if __name__ == "__main__":``). ``progress``: None shows a bar when
    stderr is a terminal. ``eos_id`` / ``eos_token``: the token appended to every document
    (by id or by text), instead of the tokenizer's own EOS. ``max_sources``: the most
    distinct sources (None: no limit); each holds up to ``seq_len + 1`` tokens in memory
    until the end, so a per-document ``source_field`` (a URL) fails early.

    The output is built in ``.<name>.partial`` beside ``out`` and checkpointed every
    ``checkpoint_every`` seconds (0: after every batch); a killed or failed run leaves it,
    and the same call continues from its last checkpoint, giving the same bytes as a run
    that never stopped. A partial made with other inputs or settings is discarded (with a
    message); ``resume=False`` discards it in any case."""
    t0 = time.perf_counter()
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    check_options(seq_len, packing, batch_docs, min_tokens, reference_fraction, workers)
    if not checkpoint_every >= 0:
        raise InputError(f"checkpoint interval must be >= 0 seconds, got {checkpoint_every}")
    max_shard_bytes = None if shard_size is None else parse_size(shard_size)
    out_dir = Path(out)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir}: output exists (pass --overwrite to replace it)")
    files = discover(inputs, sources)
    check_spares_inputs(out_dir, [*(f.path for f in files), tokenizer])
    check_columns(files, text_field, source_field)
    check_sources(files, source_field, max_sources)
    tok = load_tokenizer(tokenizer, eos_id, eos_token)
    table = tok.break_table() if packing == "boundary" else None
    packer = Packer(seq_len, packing, table)
    dtype = "uint16" if tok.vocab_size <= 1 << 16 else "int32"
    inputs_meta = [
        {"path": os.fspath(f.path), "fingerprint": _core.file_fingerprint(os.fspath(f.path))}
        for f in files
    ]
    # The options that decide the instances, as tokenize.json and the checkpoint record them.
    packing_options = {
        "seq_len": seq_len,
        "packing": packing,
        "min_tokens": min_tokens,
        "text_field": text_field,
        "source_field": source_field,
        "text_split": text_split,
    }
    # What a partial output must have been made with to be continued (the reference
    # draw, the workers and the batch size do not change the shards).
    identity = {
        "format": CHECKPOINT_FORMAT,
        # Resolved: ``a.jsonl`` and ``/data/a.jsonl`` (or a link to it) are one input.
        # The size and mtime too: the fingerprint samples blocks, and an edit between
        # them (same length) must not resume into a mix of the old and the new text.
        "inputs": [{**m, **_stamp(m["path"])} for m in inputs_meta],
        "sources": [f.source for f in files],
        "tokenizer": hashlib.sha256(tok.json.encode()).hexdigest(),
        "eos_id": tok.eos_id,
        **packing_options,
        "max_shard_bytes": max_shard_bytes,
        "dtype": dtype,
    }

    bar: Any = None
    try:
        keep_partial = keep_checkpointed("tokenize", CHECKPOINT)
        with resumable_dir(out_dir, overwrite, keep_partial) as work, ExitStack() as stack:
            try:
                state = resume_state(
                    "tokenize", work, CHECKPOINT, identity, resume, _read_checkpoint
                )
                if state is not None:
                    at = state["position"]
                    print(
                        f"tokenize: resuming {work} at input {at[0] + 1} of "
                        f"{len(inputs_meta)}, document {at[1]:,} of it "
                        f"({state['output']['instances']:,} instances written)",
                        file=sys.stderr,
                    )
                output, run = _open(work, state, dtype, max_shard_bytes, min_tokens, packer, tok)
            except (OSError, KeyError, TypeError, ValueError) as e:  # FormatError included
                # The partial is this job's own state; damaged, it is only work to redo.
                print(f"tokenize: cannot continue {work} ({e}); starting again", file=sys.stderr)
                state = None
                fresh_dir(work)
                output, run = _open(work, state, dtype, max_shard_bytes, min_tokens, packer, tok)
            stack.callback(output.source_file.close)  # closed too when the run fails
            normalizer = tok.backend.normalizer
            # Bytes the vocabulary lacks: a document holding one loses text (export asks).
            lost = missing_bytes(tok.json)
            keep = bytes(sorted(set(range(256)) - set(lost))) if lost else None
            start: Position = (0, 0) if state is None else _position(state["position"])
            before_s = 0.0 if state is None else float(state["elapsed_s"])
            if state is not None:  # the resume itself is recorded (tokenize.json "resumed")
                _save_checkpoint(work, identity, start, output, run, packer, before_s)
            tokens_before = run.tokens_in  # of the runs before a resume
            # Documents: their number is not known before reading them all (no ETA). The
            # bar starts at what is done: a resumed run's rate is of its own work.
            bar = progress_bar(
                None,
                " docs",
                "tokenize",
                show_progress(progress),
                initial=run.documents + run.empty,
                unit_scale=True,
            )
            batches = _batches(
                *(files, text_field, source_field, text_split, batch_docs, start),
                max_sources=max_sources,
                known=tuple(run.names),
            )
            saved_at = time.perf_counter()
            for batch, encoded in _encoded(batches, tok, workers):
                run.add(batch.sources, *encoded)
                run.empty += batch.empty
                texts = batch.texts
                if normalizer is not None:  # export is exact only where it changed nothing
                    run.normalized += sum(normalizer.normalize_str(t) != t for t in texts)
                if keep is not None:
                    run.unencodable += sum(
                        bool(t.encode("utf-8", "surrogatepass").translate(None, keep))
                        for t in texts
                    )
                if time.perf_counter() - saved_at >= checkpoint_every and batch.end[0] < len(files):
                    elapsed = before_s + time.perf_counter() - t0
                    _save_checkpoint(work, identity, batch.end, output, run, packer, elapsed)
                    saved_at = time.perf_counter()
                if bar is not None:
                    bar.update(len(texts) + batch.empty)
                    rate = (run.tokens_in - tokens_before) / max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix_str(f"{rate:,.0f} tok/s", refresh=False)
            # From here on the files are being finished: a run killed now starts again.
            (work / CHECKPOINT).unlink(missing_ok=True)
            output.add(packer.finish(), run.per_source)
            if run.documents == 0:
                shown = ", ".join(os.fspath(f.path) for f in files[:5])
                more = ", ..." if len(files) > 5 else ""
                raise InputError(f"no documents (all empty or none) in the inputs: {shown}{more}")
            output.finish(work, len(run.names))
            ref_count = None
            if reference_fraction is not None:
                ref_count = _reference_ids(work, reference_fraction, seed)
            (work / TOKENIZER_JSON).write_text(tok.json)
            elapsed = before_s + time.perf_counter() - t0
            tokens_out = sum(s["tokens"] for s in run.per_source)
            meta: dict[str, Any] = {
                "format": FORMAT,
                "version": 1,
                "tokenizer": tok.describe(),
                **packing_options,
                "dtype": dtype,
                "sources": run.names,
                "inputs": inputs_meta,
                "shards": output.shards,
                "counts": {
                    "documents": run.documents,
                    "empty_documents": run.empty,
                    "instances": output.instances,
                    "tokens": tokens_out,
                    "dropped_short": output.dropped,
                    "dropped_tokens": run.tokens_in - tokens_out,
                    "eos_in_text": run.eos_in_text,
                    "normalized_documents": None if normalizer is None else run.normalized,
                    "unencodable_documents": None if lost is None else run.unencodable,
                    "per_source": dict(zip(run.names, run.per_source)),
                },
                "seed": seed,
                "reference_fraction": reference_fraction,
                "reference_instances": ref_count,
                "elapsed_s": round(elapsed, 3),
                "tokens_per_s": round(tokens_out / elapsed, 1) if elapsed > 0 else None,
                "resumed": 0 if state is None else int(state["resumed"]) + 1,
            }
            (work / TOKENIZE_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    finally:
        if bar is not None:
            bar.close()
    return meta


# ---- checkpoints ------------------------------------------------------------------------


def _stamp(path: str) -> dict[str, Any]:
    """An input as a partial output's identity pins it: resolved path, size, mtime."""
    st = os.stat(path)
    return {"path": os.fspath(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _save_checkpoint(
    work: Path,
    identity: dict[str, Any],
    position: Position,
    output: _Output,
    run: _Run,
    packer: Packer,
    elapsed_s: float,
) -> None:
    """One file, replaced whole after the shards are durable: the identity, where the
    reading stood, the counts, the writer's state and the packer's carry-over."""
    state = {
        "identity": identity,
        "position": list(position),
        "output": output.checkpoint(),
        "run": run.state(),
        "elapsed_s": elapsed_s,
        "resumed": run.resumed,
    }
    carry = packer.carry()
    arrays = {
        "state": np.frombuffer(json.dumps(state).encode(), dtype=np.uint8),
        "carry_sources": np.array([c for c, _ in carry], dtype=np.int64),
        "carry_lengths": np.array([len(t) for _, t in carry], dtype=np.int64),
        # int32, as encode_batch gives them (a checkpoint of int64 tokens reads as well).
        "carry_tokens": np.concatenate([t for _, t in carry] or [np.zeros(0)]).astype(np.int32),
    }
    path = work / CHECKPOINT
    tmp = work / f".{CHECKPOINT}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(work)


def _open(
    work: Path,
    state: dict[str, Any] | None,
    dtype: str,
    max_shard_bytes: int | None,
    min_tokens: int,
    packer: Packer,
    tok: TokenizerInfo,
) -> tuple[_Output, _Run]:
    """The output files and counts of a fresh run (``state`` None) or of the checkpoint
    (``state["carry"]`` goes back into the fresh ``packer``)."""
    output = _Output(
        work, dtype, max_shard_bytes, min_tokens, None if state is None else state["output"]
    )
    if state is not None:
        packer.restore(state["carry"])
    return output, _Run(packer, output, tok.eos_id, None if state is None else state["run"])


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's state, its carry-over (``carry``) included."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        state = json.loads(arrays.pop("state").tobytes())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise FormatError(f"{path}: unreadable checkpoint ({e})") from e
    if not isinstance(state, dict):
        raise FormatError(f"{path}: not a tokenize checkpoint")
    return {**state, "carry": _carry(arrays)}


def _position(p: Any) -> Position:
    return int(p[0]), int(p[1])


def _carry(z: dict[str, npt.NDArray[Any]]) -> list[Chunk]:
    lengths = z["carry_lengths"]
    if len(lengths) != len(z["carry_sources"]) or int(lengths.sum()) != len(z["carry_tokens"]):
        raise FormatError("the checkpoint's carry-over arrays do not agree")
    ends = np.cumsum(lengths)
    return [
        (int(j), z["carry_tokens"][a:b])
        for j, a, b in zip(z["carry_sources"].tolist(), (ends - lengths).tolist(), ends.tolist())
    ]


class _Run:
    """Source names -> indices, encoded batches -> packer -> output, and the counts;
    ``resume`` (a checkpoint's ``run`` entry) continues the counts of a killed run."""

    def __init__(
        self, packer: Packer, output: _Output, eos_id: int, resume: dict[str, Any] | None = None
    ) -> None:
        self.packer = packer
        self.eos_id = eos_id
        self.output = output
        r = resume or {}
        # EOS tokens inside documents' own tokens: export could not tell their end.
        self.eos_in_text = int(r.get("eos_in_text", 0))
        self.normalized = int(r.get("normalized", 0))  # documents the normalizer changed
        self.unencodable = int(r.get("unencodable", 0))  # with a byte the vocabulary lacks
        self.names: list[str] = list(r.get("names", []))
        self.index: dict[str, int] = {n: j for j, n in enumerate(self.names)}
        self.per_source: list[dict[str, int]] = [dict(d) for d in r.get("per_source", [])]
        self.documents = int(r.get("documents", 0))
        self.empty = int(r.get("empty", 0))  # empty documents, skipped
        self.tokens_in = int(r.get("tokens_in", 0))
        self.resumed = int(r.get("resumed", 0)) + (resume is not None)

    _STATE = (
        *("eos_in_text", "normalized", "unencodable", "names", "per_source"),
        *("documents", "empty", "tokens_in", "resumed"),
    )

    def state(self) -> dict[str, Any]:
        """The counts a checkpoint saves (``resume`` takes them back)."""
        return {k: getattr(self, k) for k in self._STATE}

    def _source(self, name: str) -> int:
        j = self.index.get(name)
        if j is None:
            j = self.index[name] = len(self.names)
            self.names.append(name)
            self.per_source.append({"documents": 0, "instances": 0, "tokens": 0})
        return j

    def add(self, sources: list[str], flat: npt.NDArray[Any], lengths: npt.NDArray[Any]) -> None:
        if not sources:
            return
        ids = np.fromiter(map(self._source, sources), dtype=np.int64, count=len(sources))
        ends = np.cumsum(lengths)
        # Runs of consecutive documents from one source go to the packer at once.
        cuts = (np.flatnonzero(np.diff(ids)) + 1).tolist()
        for a, b in zip([0, *cuts], [*cuts, len(ids)]):
            j = int(ids[a])
            lo = int(ends[a - 1]) if a else 0
            self.per_source[j]["documents"] += b - a
            self.output.add(self.packer.add(j, flat[lo : int(ends[b - 1])]), self.per_source)
        self.documents += len(sources)
        self.tokens_in += len(flat)
        self.eos_in_text += int(np.count_nonzero(flat == self.eos_id)) - len(sources)
