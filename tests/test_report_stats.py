"""The report's per-source statistics of r (``pipeline.report_stats``), streamed chunk
by chunk, against the plain computation over whole arrays on random inputs (ties within
and across chunks, NaN, infinities, empty rows, one instance), and the score streaming
(``scores.diff_chunks``, ``_core.ScoreReader``) against ``load_scores``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import miniplm
from miniplm import _core
from miniplm.errors import InputError
from miniplm.pipeline.report_stats import (
    BINS,
    SourceRow,
    hist_edges,
    hist_rows,
    source_stats,
)
from miniplm.pipeline.sources import shown_sources
from miniplm.scores import diff_chunks

# Quarter-integers: sums are exact in any order, and ties are frequent.
VALUES = st.one_of(
    st.integers(-8, 8).map(lambda q: q / 4),
    st.sampled_from([float("nan"), float("inf"), -float("inf")]),
)


def _chunks(r: npt.NDArray[np.float64], size: int) -> list[tuple[int, npt.NDArray[np.float64]]]:
    return [(s, r[s : s + size]) for s in range(0, len(r), size)]


def _sum(v: npt.NDArray[np.float64]) -> float:
    with np.errstate(invalid="ignore"):  # inf + -inf: NaN
        return float(np.sum(v)) if len(v) else 0.0


def _reference(
    r: npt.NDArray[np.float64],
    src: npt.NDArray[Any],
    kept: npt.NDArray[Any],
    members: list[list[int]],
    edges: npt.NDArray[np.float64] | None,
) -> list[dict[str, Any]]:
    """Each row's figures from whole arrays, the way the report computed them before."""
    out = []
    for row in members:
        at = [i for i in range(len(r)) if not np.isnan(r[i]) and int(src[i]) in row]
        v = r[at]
        fin = v[np.isfinite(v)]
        hi = max(((r[i], -i) for i in at), default=None)
        lo = min(((r[i], i) for i in at), default=None)
        out.append(
            {
                "eligible": len(at),
                "kept": sum(int(src[k]) in row for k in kept),
                "sum_r": _sum(v),
                "negative": int((v < 0).sum()),
                "hist": np.histogram(fin, edges)[0] if edges is not None else np.zeros(0),
                "highest": None if hi is None else (-hi[1], hi[0]),
                "lowest": None if lo is None else (lo[1], lo[0]),
            }
        )
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(VALUES, min_size=0, max_size=40),
    st.integers(1, 5),
    st.integers(0, 5),
    st.integers(1, 7),
    st.data(),
)
def test_source_stats_equal_the_whole_array_computation(
    values: list[float], n_src: int, top: int, chunk: int, data: st.DataObject
) -> None:
    r = np.array(values, dtype=np.float64)
    src = np.array(data.draw(st.lists(st.integers(0, n_src - 1), min_size=len(r), max_size=len(r))))
    src = src.astype(np.uint16)
    eligible = np.flatnonzero(~np.isnan(r))
    kept = np.array(
        sorted(data.draw(st.sets(st.sampled_from(eligible.tolist())))) if len(eligible) else []
    )
    kept = kept.astype(np.uint64)
    sizes = np.bincount(src.astype(np.int64), minlength=n_src).astype(np.int64)
    shown = shown_sources(sizes, top)
    names = [f"s{k}" for k in range(n_src)]
    fin = r[np.isfinite(r)]
    edges = hist_edges(float(fin.min()), float(fin.max())) if len(fin) else None
    got = source_stats(_chunks(r, chunk), src, kept, shown, names, sizes, edges, chunk=chunk)

    members = [[int(k)] for k in shown.ids]
    if len(shown.pooled):
        members.append([int(k) for k in shown.pooled])
    want = _reference(r, src, kept, members, edges)
    assert [g.label for g in got] == [names[k] for k in shown.ids] + (
        [shown.pooled_label()] if len(shown.pooled) else []
    )
    assert [g.name for g in got] == [names[k] for k in shown.ids] + [None] * (
        len(got) - len(shown.ids)
    )
    for g, w, m in zip(got, want, members):
        assert g.instances == int(sizes[m].sum())
        assert (g.eligible, g.kept, g.negative) == (w["eligible"], w["kept"], w["negative"])
        np.testing.assert_array_equal(g.sum_r, w["sum_r"])  # NaN (inf - inf) equal too
        np.testing.assert_array_equal(g.hist, w["hist"])
        if edges is not None:
            assert len(g.hist) == BINS and g.hist.sum() == len(fin[np.isin(src[np.isfinite(r)], m)])
        assert g.highest == w["highest"] and g.lowest == w["lowest"]
        assert g.rate == (w["kept"] / w["eligible"] if w["eligible"] else None)
    # Every eligible instance is in exactly one row.
    assert sum(g.eligible for g in got) == len(eligible)


def test_extremes_tie_to_the_smaller_id_across_chunks() -> None:
    r = np.array([1.0, 3.0, -2.0, 3.0, -2.0, np.nan, 3.0])
    src = np.zeros(len(r), dtype=np.uint16)
    shown = shown_sources(np.array([7]), 0)
    for chunk in (1, 2, 3, 7):
        (row,) = source_stats(
            _chunks(r, chunk),
            src,
            np.array([1, 3], np.uint64),
            shown,
            ["a"],
            np.array([7]),
            hist_edges(-2.0, 3.0),
            chunk=chunk,
        )
        assert row.highest == (1, 3.0) and row.lowest == (2, -2.0)
        assert (row.eligible, row.kept, row.negative, row.sum_r) == (6, 2, 2, 6.0)
        assert row.mean_r == 1.0 and row.rate == 2 / 6


def test_hist_edges() -> None:
    e = hist_edges(-1.0, 3.0)
    assert e is not None and len(e) == BINS + 1 and e[0] == -1.0 and e[-1] == 3.0
    one = hist_edges(2.0, 2.0)  # a single value: one unit around it, not zero-width bins
    assert one is not None and one[0] == 1.5 and one[-1] == 2.5
    for lo, hi in ((None, 1.0), (0.0, None), (-np.inf, 1.0), (0.0, np.nan), (2.0, 1.0)):
        assert hist_edges(lo, hi) is None


def _row(label: str, instances: int, hist: list[int], hi: Any, lo: Any) -> SourceRow:
    return SourceRow(
        label,
        label,
        instances,
        1,
        sum(hist),
        float(sum(hist)),
        0,
        np.array(hist, dtype=np.int64),
        hi,
        lo,
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=0, max_size=14))
def test_the_histogram_draws_the_largest_rows_and_the_rest_as_one(sizes: list[int]) -> None:
    """Up to 8 rows: all of them. Past it: the 7 with most corpus instances (ties to the
    earlier row) in row order, then one row adding up every other row."""
    rows = [
        _row(f"s{j}", size, [j, size], (10 * j, float(size)), (10 * j + 1, -float(size)))
        for j, size in enumerate(sizes)
    ]
    got = hist_rows(rows)
    if len(rows) <= 8:
        assert [r.label for r in got] == [r.label for r in rows]
        return
    ranked = sorted(range(len(rows)), key=lambda j: (-sizes[j], j))
    big, rest = sorted(ranked[:7]), sorted(ranked[7:])
    assert [r.label for r in got[:-1]] == [f"s{j}" for j in big]
    last = got[-1]
    assert last.label == "the rest" and last.name is None
    assert last.instances == sum(sizes[j] for j in rest)
    assert last.kept == len(rest) and last.eligible == sum(j + sizes[j] for j in rest)
    assert last.hist.tolist() == [sum(j for j in rest), sum(sizes[j] for j in rest)]
    top = max(sizes[j] for j in rest)
    assert last.highest == (10 * min(j for j in rest if sizes[j] == top), float(top))
    assert last.lowest == (10 * min(j for j in rest if sizes[j] == top) + 1, -float(top))


def _runs(tmp_path: Path, n: int, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    t_sum, r_sum = rng.random(n) * 50, rng.random(n) * 50
    t_n = rng.integers(0, 4, n)
    r_n = rng.integers(0, 4, n)
    miniplm.write_score_run(tmp_path / "T", t_sum, t_n, part_size=7)
    miniplm.write_score_run(tmp_path / "R", r_sum.astype(np.float32), r_n, part_size=5)
    return tmp_path / "T", tmp_path / "R"


@pytest.mark.parametrize("chunk", [1, 3, 8, 100])
def test_diff_chunks_equal_r_from_whole_runs(tmp_path: Path, chunk: int) -> None:
    t, r = _runs(tmp_path, 37, chunk)
    got = list(diff_chunks(t, r, chunk))
    assert [s for s, _ in got] == list(range(0, 37, chunk))
    want = miniplm.mean_nll(miniplm.load_scores(r)) - miniplm.mean_nll(miniplm.load_scores(t))
    np.testing.assert_array_equal(np.concatenate([v for _, v in got]), want)
    assert np.isnan(want).any() and not np.isnan(want).all()


def test_score_reader_ranges_and_errors(tmp_path: Path) -> None:
    t, _ = _runs(tmp_path, 20, 0)
    rd = _core.ScoreReader(str(t))
    whole = miniplm.mean_nll(miniplm.load_scores(t))
    assert len(rd) == 20
    np.testing.assert_array_equal(rd.mean_nll(5, 9), whole[5:14])  # across parts
    assert rd.mean_nll(20, 0).shape == (0,)
    for start, count in ((15, 6), (21, 0), (2**64 - 1, 2)):
        with pytest.raises(InputError, match="past its 20 instances"):
            rd.mean_nll(start, count)
    npy = tmp_path / "m.npy"
    np.save(npy, whole.astype(np.float32))
    got = _core.ScoreReader(str(npy), "npy").mean_nll(0, 20)
    np.testing.assert_array_equal(got, whole.astype(np.float32).astype(np.float64))
    with pytest.raises(InputError, match="unknown score input kind"):
        _core.ScoreReader(str(t), "csv")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="not a score run directory"):
        _core.ScoreReader(str(npy))
    miniplm.write_score_run(tmp_path / "short", np.zeros(3), np.ones(3))
    with pytest.raises(InputError, match="not runs over one dataset"):
        next(diff_chunks(t, tmp_path / "short"))
