"""Difference Sampling at N = 1e6, 1e7, 1e8 (and 1e9 with --max-exp 9, disk allowing):
`miniplm-sample select` beside the numpy code a user would write (argpartition + sort)
and the original MiniPLM way (torch.sort of all scores), measured in one run, plus one
single-threaded pass over the score bytes (the memory-bandwidth floor).

    python benches/bench_select.py [--max-exp 8] [--dir /tmp/miniplm-bench]
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import numpy as np

from _measure import python, run, table

NUMPY = """
import sys, numpy as np
t = np.load(sys.argv[1]); r = np.load(sys.argv[2]); k = int(sys.argv[3])
d = (r - t).astype(np.float64)
d[np.isnan(d)] = -np.inf
keep = np.argpartition(-d, k - 1)[:k]
keep.sort()
np.save(sys.argv[4], keep.astype(np.uint64))
"""

TORCH = """
import sys, numpy as np, torch
t = torch.from_numpy(np.load(sys.argv[1])); r = torch.from_numpy(np.load(sys.argv[2]))
k = int(sys.argv[3])
d = torch.nan_to_num(r - t, nan=-float("inf"))
order = torch.sort(d, descending=True, stable=True).indices[:k]
np.save(sys.argv[4], torch.sort(order).values.numpy().astype(np.uint64))
"""

PASS = """
import sys, time, numpy as np
t = np.load(sys.argv[1], mmap_mode="r"); r = np.load(sys.argv[2], mmap_mode="r")
t.sum(); r.sum()  # warm the page cache
t0 = time.perf_counter(); t.sum(); r.sum(); print(time.perf_counter() - t0)
"""


def make_scores(d: Path, n: int) -> None:
    rng = np.random.default_rng(n)
    for name, shift in (("t", 0.0), ("r", 0.3)):
        a = np.lib.format.open_memmap(d / f"{name}.npy", mode="w+", dtype=np.float64, shape=(n,))
        for s in range(0, n, 1 << 24):
            e = min(n, s + (1 << 24))
            a[s:e] = rng.normal(3.0 + shift, 0.5, e - s)
        a.flush()
        del a


def one_pass_seconds(d: Path) -> float:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", PASS, str(d / "t.npy"), str(d / "r.npy")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-exp", type=int, default=8)
    ap.add_argument("--dir", default="/tmp/miniplm-bench-select")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    root = Path(args.dir)
    rows = []
    sample = shutil.which("miniplm-sample") or "miniplm-sample"
    for exp in range(6, args.max_exp + 1):
        n = 10**exp
        d = root / f"n{exp}"
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "r.npy").exists():
            make_scores(d, n)
        k = n // 2
        floor = one_pass_seconds(d)
        # Like the baselines' outputs (unlinked below, untimed), the previous run's output
        # is removed before timing: replacing it would add the unlink of a K x 8-byte file.
        shutil.rmtree(d / "sel", ignore_errors=True)
        ours = run(
            [
                sample,
                "--quiet",
                "select",
                "--teacher-nll",
                str(d / "t.npy"),
                "--reference-nll",
                str(d / "r.npy"),
                "--count",
                str(k),
                "--out",
                str(d / "sel"),
                "--overwrite",
            ]
        )
        npy = run(python(NUMPY, str(d / "t.npy"), str(d / "r.npy"), str(k), str(d / "np.npy")))
        ref = np.load(d / "sel" / "ids.npy", mmap_mode="r")
        same = bool(np.array_equal(ref, np.load(d / "np.npy", mmap_mode="r")))
        torch_cell = ["-", "-", "-"]
        if not args.no_torch:
            tor = run(python(TORCH, str(d / "t.npy"), str(d / "r.npy"), str(k), str(d / "to.npy")))
            same = same and bool(np.array_equal(ref, np.load(d / "to.npy", mmap_mode="r")))
            torch_cell = [
                f"{tor.wall_s:.2f}",
                f"{tor.peak_anon_mb:.0f}",
                f"{tor.wall_s / ours.wall_s:.1f}x",
            ]
        rows.append(
            [
                f"1e{exp}",
                f"{ours.wall_s:.3f}",
                f"{ours.peak_anon_mb:.0f}",
                f"{ours.peak_rss_mb:.0f}",
                f"{npy.wall_s:.2f}",
                f"{npy.peak_anon_mb:.0f}",
                f"{npy.wall_s / ours.wall_s:.1f}x",
                *torch_cell,
                f"{floor:.3f}",
                f"{ours.wall_s / floor:.1f}x",
                "yes" if same else "NO",
            ]
        )
        for f in ("np.npy", "to.npy"):
            (d / f).unlink(missing_ok=True)
    print(
        f"select, K = N/2, float64 inputs, {os.cpu_count()} cores; memory in MB "
        "(anon = private memory; rss also counts mapped input pages)"
    )
    print(
        table(
            [
                "N",
                "ours s",
                "ours anon",
                "ours rss",
                "numpy s",
                "numpy anon",
                "vs numpy",
                "torch s",
                "torch anon",
                "vs torch",
                "1 pass s",
                "ours/pass",
                "same ids",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
