"""``retokenize``: a corpus (or a selection of it) in another tokenizer's tokens, for a
student of another family or vocabulary.

It is the README's round trip made one call: ``miniplm.export`` writes the instances'
source text (byte for byte, one row per document piece), and ``tokenize_corpus`` packs
that text again with the student's tokenizer, one document per row and the source kept
per row, so the student corpus decodes, per source, to the exported text. The text passes
through a temporary JSON lines file beside ``out``, removed afterwards."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from miniplm.corpus.export import export
from miniplm.corpus.tokenize import tokenize_corpus
from miniplm.data import DataSpec, PathLike
from miniplm.errors import InputError


def retokenize(
    data: DataSpec,
    out: PathLike,
    tokenizer: Any,
    *,
    selection: PathLike | None = None,
    seq_len: int = 1024,
    packing: str = "boundary",
    min_tokens: int = 2,
    batch_docs: int = 1000,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Write the instances of ``data`` that ``selection`` keeps (all without one),
    re-tokenized with ``tokenizer`` (its own EOS ends every document piece), as the
    dataset directory ``out``. Returns ``tokenize.json``'s counts plus ``bytes`` (the
    UTF-8 size of the text, the denominator of bits per byte) and ``rows`` (document
    pieces exported)."""
    out_dir = Path(out)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir}: output exists (pass --overwrite to replace it)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    text = out_dir.parent / f".{out_dir.name}.text-{os.getpid()}.jsonl"
    try:
        exported = export(data, text, selection, overwrite=True, progress=progress)
        if exported["rows"] == 0:
            what = f"selection {selection}" if selection is not None else "it"
            raise InputError(f"{data}: {what} holds no text to re-tokenize")
        meta = tokenize_corpus(
            text,
            out_dir,
            tokenizer,
            seq_len=seq_len,
            packing=packing,
            text_field="text",
            source_field="source",
            min_tokens=min_tokens,
            batch_docs=batch_docs,
            workers=workers,
            overwrite=overwrite,
            progress=progress,
        )
    finally:
        text.unlink(missing_ok=True)
    counts: dict[str, Any] = meta["counts"]
    return {
        **counts,
        "sources": meta["sources"],
        "bytes": exported["bytes"],
        "rows": exported["rows"],
        "tokenizer": meta["tokenizer"],
    }
