"""Stops at a chosen point of a job, for the resume tests (Ctrl-C in the middle)."""

from __future__ import annotations

from typing import Any


def tokenize_stopped_at(k: int) -> Any:
    """A ``_Run.add`` for ``miniplm.corpus.tokenize`` that raises KeyboardInterrupt at its
    ``k``-th call (the batch's count) and packs every batch before it."""
    from miniplm.corpus import tokenize as mod

    real, calls = mod._Run.add, [0]

    def add(self: Any, *a: Any) -> None:
        calls[0] += 1
        if calls[0] == k:
            raise KeyboardInterrupt
        real(self, *a)

    return add


def export_stopped_at(k: int, error: BaseException | None = None) -> Any:
    """A ``_chunk_rows`` for ``miniplm.corpus.export`` that raises ``error``
    (KeyboardInterrupt by default) at its ``k``-th call and exports every chunk before it."""
    from miniplm.corpus import export as mod

    real, calls = mod._chunk_rows, [0]

    def chunk_rows(*a: Any) -> Any:
        calls[0] += 1
        if calls[0] == k:
            raise KeyboardInterrupt if error is None else error
        return real(*a)

    return chunk_rows
