"""``retokenize``: a corpus (or a selection of it) in another tokenizer's tokens, for a
student of another family or vocabulary.

It is the README's round trip made one call: ``miniplm.export`` writes the instances'
source text (byte for byte, one row per document piece), and ``tokenize_corpus`` packs
that text again with the student's tokenizer, one document per row and the source kept
per row, so the student corpus decodes, per source, to the exported text.

The text passes through ``.<name>.retokenize/`` beside ``out`` (the exported JSON lines
and ``export.json``, what they are an export of), removed when ``out`` is complete. A
stopped run keeps it, so the same call continues: during the export, the export's own
partial output there resumes from its checkpoint; after it, the text is reused when
corpus, selection and text are unchanged (their fingerprints), and tokenize resumes from
its checkpoint beside ``out``."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from miniplm import _core
from miniplm._atomic import (
    atomic_write_text,
    check_spares_inputs,
    dataset_files,
    output_lock,
    partial_dir,
)
from miniplm.corpus import CHECKPOINT_EVERY_S
from miniplm.corpus.export import CHECKPOINT, export, export_identity
from miniplm.corpus.tokenize import tokenize_corpus
from miniplm.data import DataSpec, PathLike
from miniplm.errors import FormatError, InputError

EXPORT_FORMAT = "miniplm-retokenize-export-2"
_TEXT = "text.jsonl"
_EXPORT_JSON = "export.json"


def work_dir(out: Path) -> Path:
    """Where ``retokenize`` keeps the exported text of ``out``: ``.<name>.retokenize``."""
    return out.parent / f".{out.name}.retokenize"


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
    resume: bool = True,
    checkpoint_every: float = CHECKPOINT_EVERY_S,
) -> dict[str, Any]:
    """Write the instances of ``data`` that ``selection`` keeps (all without one),
    re-tokenized with ``tokenizer`` (its own EOS ends every document piece), as the
    dataset directory ``out``. Returns ``tokenize.json``'s counts plus ``bytes`` (the
    UTF-8 size of the text, the denominator of bits per byte) and ``rows`` (document
    pieces exported). A stopped run is continued by the same call, the tokenizer's
    export and the tokenizer's output each from its last checkpoint (every
    ``checkpoint_every`` seconds, as in ``export`` and ``tokenize_corpus``);
    ``resume=False`` exports and tokenizes from the start."""
    out_dir = Path(out)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir}: output exists (pass --overwrite to replace it)")
    # Before anything is written: with --overwrite, an ``out`` that is (or holds) the
    # corpus or the selection would replace it.
    check_spares_inputs(out_dir, [*dataset_files(data), selection])
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = work_dir(out_dir)
    with output_lock(work):  # one retokenize of ``out`` at a time owns ``work``
        try:
            # Text only: the score columns would read the score runs the selection names.
            identity = {"format": EXPORT_FORMAT, **export_identity(data, selection, scores=False)}
            exported = _earlier_export(work, identity) if resume else None
            if exported is None:
                # The export's own partial output stays: export checks it is of these rows.
                work.mkdir(exist_ok=True)
                for name in (_EXPORT_JSON, _TEXT):
                    (work / name).unlink(missing_ok=True)
                exported = export(
                    data,
                    work / _TEXT,
                    selection,
                    overwrite=True,
                    progress=progress,
                    scores=False,
                    resume=resume,
                    checkpoint_every=checkpoint_every,
                )
                text = _fingerprint(work / _TEXT)
                stamp = {"identity": identity, "text": text, "exported": exported}
                atomic_write_text(work / _EXPORT_JSON, json.dumps(stamp, indent=2) + "\n")
            if exported["rows"] == 0:
                what = f"selection {selection}" if selection is not None else "it"
                raise InputError(f"{data}: {what} holds no text to re-tokenize")
            meta = tokenize_corpus(
                work / _TEXT,
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
                resume=resume,
                checkpoint_every=checkpoint_every,
                max_sources=None,  # the dataset's own, within its tokenize's limit
            )
        except BaseException as e:
            # Bad input ends the job (no text is left behind for a run that may never
            # come); any other stop (Ctrl-C, a full disk) keeps the export, finished or
            # checkpointed.
            started = (work / _EXPORT_JSON).is_file()
            started |= (partial_dir(work / _TEXT) / CHECKPOINT).is_file()
            if isinstance(e, (InputError, FormatError)) or not started:
                shutil.rmtree(work, ignore_errors=True)
            else:
                print(
                    f"retokenize: stopped; the work so far is kept in {work}, and the same "
                    "call continues from there",
                    file=sys.stderr,
                )
            raise
        shutil.rmtree(work)
    counts: dict[str, Any] = meta["counts"]
    return {
        **counts,
        "sources": meta["sources"],
        "bytes": exported["bytes"],
        "rows": exported["rows"],
        "tokenizer": meta["tokenizer"],
    }


def _fingerprint(path: Path) -> str:
    return _core.file_fingerprint(os.fspath(path))


def _earlier_export(work: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The counts of the export a stopped run left in ``work``, when it is of the same
    corpus and selection and its text is whole; None (with a message when there was one)
    otherwise."""
    stamp_path = work / _EXPORT_JSON
    if not stamp_path.is_file():
        return None
    why = "its corpus or selection changed"
    try:
        stamp = json.loads(stamp_path.read_text())
        if stamp["identity"] == identity:
            if stamp["text"] == _fingerprint(work / _TEXT):
                print(f"retokenize: reusing the text exported to {work}", file=sys.stderr)
                return dict(stamp["exported"])
            why = "its text changed"
    except (OSError, ValueError, KeyError, TypeError) as e:
        why = f"unreadable ({e})"
    print(f"retokenize: exporting again, not reusing {work}: {why}", file=sys.stderr)
    return None
