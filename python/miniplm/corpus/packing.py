"""Packing token streams into instances of at most ``L + 1`` tokens (pure numpy).

Each source has its own buffer, so an instance never mixes two sources.

- ``boundary`` (the paper's packing): while a source's buffer holds more than ``L + 1``
  tokens, its first ``L + 1`` tokens are cut back to the last EOS among them, else the
  last newline token, else the last sentence-end token, else kept whole (a hard cut);
  only breaks that leave at least half the window count (:func:`min_cut`), so a
  document ending just after a cut does not become a nearly empty instance; the rest of
  the buffer starts the next instance. At the end the buffer (at most
  ``L + 1`` tokens) is one last instance.
- ``fixed``: consecutive ``L + 1`` token pieces of each source's stream; the last, shorter
  piece is kept.

Which tokens are breaks is a table over the vocabulary (:data:`EOS`, :data:`NEWLINE`,
:data:`SENTENCE` or :data:`NONE` per id), built once by :mod:`miniplm.corpus.tokenizer`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

NONE, SENTENCE, NEWLINE, EOS = 0, 1, 2, 3
PACKINGS = ("boundary", "fixed")

Chunk = tuple[int, npt.NDArray[Any]]


def min_cut(width: int) -> int:
    """The shortest chunk a boundary cut may leave: half the window. A break earlier than
    that (say a document ending 3 tokens into the window) would make a nearly empty
    instance; the chunk then runs on to a later break, or is cut hard at L+1."""
    return (width + 1) // 2


class Packer:
    """Cut per-source token streams into instances.

    ``add(source, tokens)`` appends to the source's stream and returns the instances
    completed by it, as ``(source, tokens)`` in stream order; ``finish()`` returns every
    source's last instance (sources in ascending order). The instances of one source,
    concatenated, are exactly its stream; the cuts depend only on that stream, not on
    how it was split into ``add`` calls."""

    def __init__(
        self,
        seq_len: int,
        mode: str = "boundary",
        break_table: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        if mode not in PACKINGS:
            raise ValueError(f"packing must be one of {', '.join(PACKINGS)}, got {mode!r}")
        if mode == "boundary" and break_table is None:
            raise ValueError("boundary packing needs a break table")
        self.width = seq_len + 1
        self.mode = mode
        self.table = break_table
        self._buffers: dict[int, list[npt.NDArray[Any]]] = {}
        self._sizes: dict[int, int] = {}

    def add(self, source: int, tokens: npt.NDArray[Any]) -> list[Chunk]:
        buf = self._buffers.setdefault(source, [])
        size = self._sizes.get(source, 0) + len(tokens)
        self._sizes[source] = size
        if size < self.width or (self.mode == "boundary" and size == self.width):
            # A copy: ``tokens`` is often a view of a whole encoded batch, which a view
            # kept here would keep alive (one batch per source waiting, up to the corpus).
            buf.append(tokens.copy())
            return []
        stream = np.concatenate([*buf, tokens]) if buf else tokens
        cuts = self._cuts(stream)
        chunks = [(source, stream[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
        rest = stream[cuts[-1] :]
        self._buffers[source] = [rest.copy()] if len(rest) else []
        self._sizes[source] = len(rest)
        return chunks

    def finish(self) -> list[Chunk]:
        out = self.carry()
        self._buffers.clear()
        self._sizes.clear()
        return out

    def carry(self) -> list[Chunk]:
        """Each source's unfinished tokens (sources in ascending order), leaving the packer
        as it is: what a checkpoint saves and :meth:`restore` takes back."""
        out: list[Chunk] = []
        for source in sorted(self._buffers):
            buf = self._buffers[source]
            if self._sizes[source]:
                out.append((source, np.concatenate(buf) if len(buf) > 1 else buf[0]))
        return out

    def restore(self, carry: list[Chunk]) -> None:
        """Continue from :meth:`carry` of a packer with the same settings (this one fresh):
        the cuts depend only on each source's stream, so they come out the same."""
        if self._buffers:
            raise RuntimeError("Packer.restore needs a fresh packer")
        for source, tokens in carry:
            self._buffers[source] = [tokens]
            self._sizes[source] = len(tokens)

    def _cuts(self, stream: npt.NDArray[Any]) -> list[int]:
        """Start offsets of the instances completed in ``stream``, then the start of the
        unfinished rest."""
        n, w = len(stream), self.width
        if self.mode == "fixed":
            return list(range(0, n - n % w + 1, w))
        assert self.table is not None
        classes = self.table[stream]
        cuts = [0]
        start = 0
        lo = min_cut(w) - 1  # breaks at window positions >= lo leave a long enough chunk
        while n - start > w:
            window = classes[start + lo : start + w]
            best = int(window.max())
            # Cut after the last token of the best class present (a hard cut if none).
            start += w if best == NONE else w - int(np.argmax(window[::-1] == best))
            cuts.append(start)
        return cuts
