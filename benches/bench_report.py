"""The report's per-source statistics of r (``miniplm run``'s report: eligible and kept
counts, mean r, histogram, highest/lowest instance per shown source and the pooled
rest): the streamed pass (``report_stats.source_stats`` over ``scores.diff_chunks``)
against the whole-array numpy computation the report did before (``load_scores`` of both
runs, r and its ids in memory, index arrays per source, an argsort per row). Each side
runs in its own process (wall time, peak memory); their figures are compared.

    python benches/bench_report.py                          # 2e7 instances, 64 sources
    python benches/bench_report.py --instances 1000000      # quick
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import run, table

TOP = 32  # eval.top_sources' default


def _inputs(d: Path, n: int, sources: int, seed: int) -> None:
    """Two score runs (a tenth unscored: the excluded slices), Zipf-sized sources, and
    the top half by r as the kept ids."""
    import miniplm

    rng = np.random.default_rng(seed)
    cnt = rng.integers(50, 1025, n).astype(np.uint32)
    cnt[rng.random(n) < 0.1] = 0
    t_sum = rng.random(n) * 3.0 * cnt
    r_sum = t_sum + rng.normal(0.2, 0.3, n) * cnt
    part = 1 << 20
    miniplm.write_score_run(d / "teacher", t_sum, cnt, part_size=part)
    miniplm.write_score_run(d / "reference", r_sum, cnt, part_size=part)
    p = 1.0 / np.arange(1, sources + 1)
    src = rng.choice(sources, size=n, p=p / p.sum()).astype(np.uint16)
    np.save(d / "sources.npy", src)
    np.save(d / "sizes.npy", np.bincount(src, minlength=sources).astype(np.int64))
    ok = cnt > 0
    r = np.full(n, -np.inf)
    r[ok] = (r_sum[ok] - t_sum[ok]) / cnt[ok]
    k = int(ok.sum()) // 2
    np.save(d / "kept.npy", np.sort(np.argsort(-r, kind="stable")[:k]).astype(np.uint64))


def _child(d: Path, way: str, sources: int) -> None:
    """One side's figures, printed as JSON on stdout."""
    import miniplm
    from miniplm.pipeline.report_stats import hist_edges, source_stats
    from miniplm.pipeline.sources import by_source, shown_sources
    from miniplm.scores import diff_chunks

    src = np.load(d / "sources.npy", mmap_mode="r")
    sizes = np.load(d / "sizes.npy")  # as tokenize.json records them: not counted here
    shown = shown_sources(sizes, TOP)
    names = [f"s{k}" for k in range(sources)]
    if way == "stream":
        kept = np.load(d / "kept.npy", mmap_mode="r")
        lo_hi = json.loads((d / "range.json").read_text())
        rows = source_stats(
            diff_chunks(d / "teacher", d / "reference"),
            src,
            kept,
            shown,
            names,
            sizes,
            hist_edges(*lo_hi),
        )
        out = [
            [row.eligible, row.kept, row.sum_r, list(row.highest or ()), list(row.lowest or ())]
            for row in rows
        ]
    else:  # the report before: whole arrays
        kept = np.load(d / "kept.npy").astype(np.int64)
        t = miniplm.load_scores(d / "teacher")
        r = miniplm.load_scores(d / "reference")
        ok = (t["n_scored"] > 0) & (r["n_scored"] > 0)
        ids = np.flatnonzero(ok)
        diff = r["nll_sum"][ok] / r["n_scored"][ok] - t["nll_sum"][ok] / t["n_scored"][ok]
        s = np.asarray(src)
        groups = by_source(s[ids], sources)
        n_kept = np.bincount(s[kept], minlength=sources)
        ats = [groups[k] for k in shown.ids] + [np.concatenate([groups[k] for k in shown.pooled])]
        kepts = [int(n_kept[k]) for k in shown.ids] + [int(n_kept[shown.pooled].sum())]
        edges = np.linspace(float(np.nanmin(diff)), float(np.nanmax(diff)), 51)
        out = []
        for at, kp in zip(ats, kepts):
            np.histogram(diff[at], bins=edges)
            order = at[np.argsort(diff[at], kind="stable")]
            hi = order[diff[order] == diff[order[-1]]][0]  # ties to the smaller id
            lo = order[0]
            out.append(
                [
                    len(at),
                    kp,
                    float(np.sum(diff[at])),
                    [int(ids[hi]), float(diff[hi])],
                    [int(ids[lo]), float(diff[lo])],
                ]
            )
    print(json.dumps(out))


def _range(d: Path) -> tuple[float, float]:
    """r's range, as select's score_stats gives the report."""
    import miniplm

    rep = miniplm.select(
        d / "sel", teacher=d / "teacher", reference=d / "reference", count=0, overwrite=True
    )
    st = rep["score_stats"]
    assert st is not None
    return float(st["min"]), float(st["max"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=20_000_000)
    ap.add_argument("--sources", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", nargs=3, metavar=("DIR", "WAY", "SOURCES"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _child(Path(a.child[0]), a.child[1], int(a.child[2]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _inputs(d, a.instances, a.sources, a.seed)
        # select's score_stats give the streamed side r's range; not timed (select runs
        # before the report in any case).
        (d / "range.json").write_text(json.dumps(_range(d)))
        got: dict[str, Any] = {}
        rows = []
        for way, label in (("whole", "whole arrays (the report before)"), ("stream", "streamed")):
            m = run([sys.executable, __file__, "--child", str(d), way, str(a.sources)])
            got[way] = json.loads(m.stdout)
            rows.append(
                [f"{a.instances:.0e}", str(a.sources), label, f"{m.wall_s:.2f}",
                 f"{m.peak_rss_mb:.0f}", f"{m.peak_anon_mb:.0f}"]
            )  # fmt: skip
    w, s = got["whole"], got["stream"]
    same = all(
        a[0] == b[0] and a[1] == b[1] and a[3] == b[3] and a[4] == b[4] for a, b in zip(w, s)
    )
    rel = max(abs(a[2] - b[2]) / max(abs(a[2]), 1e-300) for a, b in zip(w, s))
    print(table(["instances", "sources", "way", "wall s", "peak RSS MB", "peak anon MB"], rows))
    print(
        f"\nrows: {len(s)} ({TOP} shown + other); counts and extremes equal: {same}; "
        f"sum of r max rel diff {rel:.1e}"
    )
    if not same:
        sys.exit("the two ways disagree")


if __name__ == "__main__":
    main()
