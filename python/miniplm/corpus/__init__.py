"""Text corpora to token shards: readers, tokenizers, packing (``miniplm tokenize``), and
back to text (``miniplm export``)."""

from __future__ import annotations

import argparse

# tokenize, export: seconds between checkpoints of a partial output (at most this much
# work is redone after a kill). Here, so that the CLI can show it without importing numpy.
CHECKPOINT_EVERY_S = 60.0

# tokenize: the most sources a corpus may have. Each source is packed apart and holds up
# to L+1 tokens in memory (and in every checkpoint) until the end, so a per-document field
# (a URL, an id) would hold the whole corpus; 65536 sources at L = 1024 hold <= 0.3 GB.
MAX_SOURCES = 1 << 16


def add_resume_arguments(p: argparse.ArgumentParser, step: str) -> None:
    """``--no-resume`` and ``--checkpoint-every`` of a command that builds OUT in
    ``.OUT.partial`` and checkpoints it after a ``step`` (a batch, a chunk)."""
    p.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="discard the partial output a killed run left (.OUT.partial) instead of "
        "continuing it (by default the same command continues it)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=CHECKPOINT_EVERY_S,
        metavar="SECONDS",
        help=f"seconds between checkpoints of the partial output ({CHECKPOINT_EVERY_S:g}; "
        f"0: after every {step})",
    )
