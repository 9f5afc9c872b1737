"""The report's per-source statistics of the difference score r, streamed: one pass over
the two score runs, ``sources.npy`` and the kept ids, chunk by chunk, in memory
O(chunk + rows x bins) rather than O(instances) (at 1e9 instances, loading r, its ids
and the sources whole took some 40 GB). Per row (a shown source, or the pooled rest):
eligible (scored by both models) and kept counts, the sum of r, an equal-width histogram,
and the highest- and lowest-r instance, ties to the smaller id."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from miniplm.pipeline.sources import Shown
from miniplm.scores import CHUNK

BINS = 50  # bins of the r histogram

# (instance id, r) of a row's extreme instance; None for a row without eligible instances.
Extreme = tuple[int, float] | None


@dataclass(frozen=True)
class SourceRow:
    """A row of the report's per-source parts: one source (``name``), or the pooled rest
    (``name`` None), over the instances its sources hold (``instances``, the corpus's);
    ``hist`` counts its finite r values over the report's histogram edges."""

    label: str
    name: str | None
    instances: int
    kept: int
    eligible: int
    sum_r: float
    negative: int
    hist: npt.NDArray[np.int64]
    highest: Extreme
    lowest: Extreme

    @property
    def rate(self) -> float | None:
        return self.kept / self.eligible if self.eligible else None

    @property
    def mean_r(self) -> float | None:
        return self.sum_r / self.eligible if self.eligible else None


def hist_edges(lo: float | None, hi: float | None) -> npt.NDArray[np.float64] | None:
    """``BINS`` equal-width bins over ``[lo, hi]`` (r's range; one unit wide around a
    single value); None when the range is unknown or not finite (no histogram)."""
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        return None
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, BINS + 1)


def _better(new: tuple[int, float], old: Extreme, highest: bool) -> bool:
    """Whether ``new`` replaces ``old``: strictly more extreme (chunks come in id order,
    so a tie keeps the older, smaller id)."""
    if old is None:
        return True
    return new[1] > old[1] if highest else new[1] < old[1]


def source_stats(
    chunks: Iterable[tuple[int, npt.NDArray[np.float64]]],
    sources: npt.NDArray[Any],
    kept: npt.NDArray[Any],
    shown: Shown,
    names: list[str],
    sizes: npt.NDArray[np.int64],
    edges: npt.NDArray[np.float64] | None,
    chunk: int = CHUNK,
) -> list[SourceRow]:
    """The rows of ``shown`` (its sources in index order, then the pooled rest if any)
    from ``chunks`` (``(start, r)`` in ascending, contiguous order: ``diff_chunks``),
    ``sources`` (a source index per instance, may be a memmap) and ``kept`` (the
    selected ids, ascending, may be a memmap). NaN r = not eligible."""
    n_rows = len(shown.ids) + (1 if len(shown.pooled) else 0)
    row_of = np.full(len(names), n_rows - 1, dtype=np.int64)  # pooled sources: last row
    row_of[shown.ids] = np.arange(len(shown.ids))
    bins = len(edges) - 1 if edges is not None else 0
    eligible = np.zeros(n_rows, dtype=np.int64)
    negative = np.zeros(n_rows, dtype=np.int64)
    sum_r = np.zeros(n_rows, dtype=np.float64)
    hist = np.zeros((n_rows, bins), dtype=np.int64)
    hi: list[Extreme] = [None] * n_rows
    lo: list[Extreme] = [None] * n_rows
    for start, r in chunks:
        at = np.flatnonzero(~np.isnan(r))
        if not len(at):
            continue
        rv, ids = r[at], start + at
        row = row_of[np.asarray(sources[start : start + len(r)])[at]]
        here = np.bincount(row, minlength=n_rows)
        eligible += here
        negative += np.bincount(row[rv < 0], minlength=n_rows)
        with np.errstate(invalid="ignore"):  # inf + -inf: a NaN mean, as np.mean gives
            sum_r += np.bincount(row, weights=rv, minlength=n_rows)
        if edges is not None:
            fin = np.isfinite(rv)
            b = np.clip(np.searchsorted(edges, rv[fin], side="right") - 1, 0, bins - 1)
            hist += np.bincount(row[fin] * bins + b, minlength=n_rows * bins).reshape(n_rows, bins)
        present = np.flatnonzero(here)
        for best, ufunc, init, highest in (
            (hi, np.maximum, -np.inf, True),
            (lo, np.minimum, np.inf, False),
        ):
            ext = np.full(n_rows, init)
            ufunc.at(ext, row, rv)
            hit = rv == ext[row]
            first = np.full(n_rows, np.iinfo(np.int64).max)
            np.minimum.at(first, row[hit], ids[hit])
            for j in present:
                new = (int(first[j]), float(ext[j]))
                if _better(new, best[j], highest):
                    best[j] = new
    n_kept = np.zeros(n_rows, dtype=np.int64)
    for s in range(0, len(kept), chunk):
        k = np.asarray(kept[s : s + chunk], dtype=np.int64)
        n_kept += np.bincount(row_of[np.asarray(sources[k])], minlength=n_rows)
    labels = [names[k] for k in shown.ids]
    row_sizes = [int(sizes[k]) for k in shown.ids]
    row_names: list[str | None] = list(labels)
    if len(shown.pooled):
        labels.append(shown.pooled_label())
        row_sizes.append(int(sizes[shown.pooled].sum()))
        row_names.append(None)
    return [
        SourceRow(
            labels[j],
            row_names[j],
            row_sizes[j],
            int(n_kept[j]),
            int(eligible[j]),
            float(sum_r[j]),
            int(negative[j]),
            hist[j],
            hi[j],
            lo[j],
        )
        for j in range(n_rows)
    ]


def merged(rows: list[SourceRow], label: str) -> SourceRow:
    """One row of the instances of ``rows`` (their extremes: the most extreme, ties to
    the smaller id)."""

    def pick(ext: list[Extreme], highest: bool) -> Extreme:
        got = [e for e in ext if e is not None]
        if not got:
            return None
        return min(got, key=lambda e: ((-e[1] if highest else e[1]), e[0]))

    first = rows[0]
    return replace(
        first,
        label=label,
        name=None,
        instances=sum(r.instances for r in rows),
        kept=sum(r.kept for r in rows),
        eligible=sum(r.eligible for r in rows),
        sum_r=float(sum(r.sum_r for r in rows)),
        negative=sum(r.negative for r in rows),
        hist=np.sum([r.hist for r in rows], axis=0).astype(np.int64),
        highest=pick([r.highest for r in rows], True),
        lowest=pick([r.lowest for r in rows], False),
    )


HIST_ROWS = 8  # histograms drawn over one another: more would hide each other


def hist_rows(rows: list[SourceRow]) -> list[SourceRow]:
    """The rows the r histogram draws: all of them up to ``HIST_ROWS``, else the
    ``HIST_ROWS - 1`` with most corpus instances (as the rows themselves are chosen,
    ties to the earlier row), in row order, and the rest as one."""
    if len(rows) <= HIST_ROWS:
        return rows
    big = sorted(range(len(rows)), key=lambda j: (-rows[j].instances, j))[: HIST_ROWS - 1]
    rest = [row for j, row in enumerate(rows) if j not in big]
    return [*(rows[j] for j in sorted(big)), merged(rest, "the rest")]
