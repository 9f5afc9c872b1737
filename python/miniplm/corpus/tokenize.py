"""``tokenize_corpus``: text files -> packed Megatron shards + ``sources.npy`` +
``tokenizer.json`` + ``tokenize.json`` (+ ``ref_ids.npy``), all written atomically.

Documents are read in order, encoded in batches (in this process with the tokenizer's
own Rust threads when ``workers == 1``, else by a pool of worker processes, each owning a
tokenizer, results taken back in submission order), an EOS is appended to each, and the
stream of each source is packed by :class:`miniplm.corpus.packing.Packer`. The shards
depend only on the inputs and options, never on the number of workers."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import re
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from miniplm import _core
from miniplm._atomic import atomic_dir, check_spares_inputs
from miniplm._deps import require
from miniplm._progress import progress_bar, show_progress
from miniplm.corpus.bytelevel import missing_bytes
from miniplm.corpus.packing import PACKINGS, Chunk, Packer
from miniplm.corpus.readers import Document, check_columns, discover, read_documents
from miniplm.corpus.tokenizer import TokenizerInfo, load_tokenizer
from miniplm.dataset_meta import TOKENIZE_JSON, TOKENIZER_JSON
from miniplm.errors import InputError

SHARD_NAME = "corpus"
FORMAT = "miniplm.tokenized_corpus"
_WRITE_TOKENS = 1 << 20  # tokens gathered before one DatasetWriter.add_batch
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)

Encoded = tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]


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


Batch = tuple[list[str], list[str]]  # texts, source names


def _batches(docs: Iterable[Document], size: int) -> Iterator[Batch]:
    it = iter(docs)
    while True:
        block = list(itertools.islice(it, size))
        if not block:
            return
        yield [t for t, _ in block], [s for _, s in block]


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
                queue.append((b, ex.submit(encode_batch, tok.backend, b[0], tok.eos_id)))
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
            pending.append((b, pool.apply_async(_worker_encode, (b[0],))))
            if len(pending) >= 2 * workers:
                done, result = pending.popleft()
                yield done, result.get()
        while pending:
            done, result = pending.popleft()
            yield done, result.get()


# ---- writing ----------------------------------------------------------------------------


class _Output:
    """Kept instances -> shards (batched add_batch) and a raw uint32 source-id file."""

    def __init__(self, directory: Path, dtype: str, max_shard_bytes: int | None, min_tokens: int):
        self.writer = _core.DatasetWriter(os.fspath(directory), SHARD_NAME, dtype, max_shard_bytes)
        self.min_tokens = min_tokens
        self.pending: list[npt.NDArray[Any]] = []
        self.pending_sources: list[int] = []
        self.pending_tokens = 0
        self.instances = 0
        self.dropped = 0
        self.shards: list[dict[str, Any]] = []
        self.source_file: BinaryIO = open(directory / ".sources.u32", "wb")  # noqa: SIM115

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
        raw = directory / ".sources.u32"
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
    (by id or by text), instead of the tokenizer's own EOS."""
    t0 = time.perf_counter()
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    check_options(seq_len, packing, batch_docs, min_tokens, reference_fraction, workers)
    max_shard_bytes = None if shard_size is None else parse_size(shard_size)
    out_dir = Path(out)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir}: output exists (pass --overwrite to replace it)")
    files = discover(inputs, sources)
    check_spares_inputs(out_dir, [*(f.path for f in files), tokenizer])
    check_columns(files, text_field, source_field)
    tok = load_tokenizer(tokenizer, eos_id, eos_token)
    table = tok.break_table() if packing == "boundary" else None
    packer = Packer(seq_len, packing, table)
    dtype = "uint16" if tok.vocab_size <= 1 << 16 else "int32"
    inputs_meta = [
        {"path": os.fspath(f.path), "fingerprint": _core.file_fingerprint(os.fspath(f.path))}
        for f in files
    ]

    # Documents: their number is not known before reading them all (no ETA).
    bar = progress_bar(None, " docs", "tokenize", show_progress(progress), unit_scale=True)
    try:
        with atomic_dir(out_dir, overwrite) as tmp:
            output = _Output(tmp, dtype, max_shard_bytes, min_tokens)
            docs = _NonEmpty(read_documents(files, text_field, source_field, text_split))
            run = _Run(packer, output, tok.eos_id)
            normalizer = tok.backend.normalizer
            # Bytes the vocabulary lacks: a document holding one loses text (export asks).
            lost = missing_bytes(tok.json)
            keep = bytes(sorted(set(range(256)) - set(lost))) if lost else None
            for (texts, srcs), encoded in _encoded(_batches(docs, batch_docs), tok, workers):
                run.add(srcs, *encoded)
                if normalizer is not None:  # export is exact only where it changed nothing
                    run.normalized += sum(normalizer.normalize_str(t) != t for t in texts)
                if keep is not None:
                    run.unencodable += sum(
                        bool(t.encode("utf-8", "surrogatepass").translate(None, keep))
                        for t in texts
                    )
                if bar is not None:
                    bar.update(len(srcs))
                    rate = run.tokens_in / max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix_str(f"{rate:,.0f} tok/s", refresh=False)
            output.add(packer.finish(), run.per_source)
            if run.documents == 0:
                shown = ", ".join(os.fspath(f.path) for f in files[:5])
                more = ", ..." if len(files) > 5 else ""
                raise InputError(f"no documents (all empty or none) in the inputs: {shown}{more}")
            output.finish(tmp, len(run.names))
            ref_count = None
            if reference_fraction is not None:
                ref_count = _reference_ids(tmp, reference_fraction, seed)
            (tmp / TOKENIZER_JSON).write_text(tok.json)
            elapsed = time.perf_counter() - t0
            tokens_out = sum(s["tokens"] for s in run.per_source)
            meta: dict[str, Any] = {
                "format": FORMAT,
                "version": 1,
                "tokenizer": tok.describe(),
                "seq_len": seq_len,
                "packing": packing,
                "min_tokens": min_tokens,
                "text_field": text_field,
                "source_field": source_field,
                "text_split": text_split,
                "dtype": dtype,
                "sources": run.names,
                "inputs": inputs_meta,
                "shards": output.shards,
                "counts": {
                    "documents": run.documents,
                    "empty_documents": docs.empty,
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
            }
            (tmp / TOKENIZE_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    finally:
        if bar is not None:
            bar.close()
    return meta


class _NonEmpty:
    """The documents with text; counts the empty ones it skips."""

    def __init__(self, docs: Iterator[Document]) -> None:
        self.docs = docs
        self.empty = 0

    def __iter__(self) -> Iterator[Document]:
        for d in self.docs:
            if d[0]:
                yield d
            else:
                self.empty += 1


class _Run:
    """Source names -> indices, encoded batches -> packer -> output, and the counts."""

    def __init__(self, packer: Packer, output: _Output, eos_id: int) -> None:
        self.packer = packer
        self.eos_id = eos_id
        # EOS tokens inside documents' own tokens: export could not tell their end.
        self.eos_in_text = 0
        self.normalized = 0  # documents the tokenizer's normalizer changed
        self.unencodable = 0  # documents holding a byte the vocabulary has no token for
        self.output = output
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.per_source: list[dict[str, int]] = []
        self.documents = 0
        self.tokens_in = 0

    def _source(self, name: str) -> int:
        j = self.index.get(name)
        if j is None:
            j = self.index[name] = len(self.names)
            self.names.append(name)
            self.per_source.append({"documents": 0, "instances": 0, "tokens": 0})
        return j

    def add(self, sources: list[str], flat: npt.NDArray[Any], lengths: npt.NDArray[Any]) -> None:
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
