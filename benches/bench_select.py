"""Difference Sampling at N = 1e6, 1e7, 1e8 (and 1e9 with --max-exp 9, disk allowing):
`miniplm-sample select` beside the numpy code a user would write (argpartition + sort)
and the original MiniPLM way (torch.sort of all scores), measured in one run, plus two
floors: one single-threaded pass over the score bytes (memory bandwidth), and writing
the K kept ids durably (what any selection must also do). K = N/2 for every N; the
`--ratios` add rows for the largest N (ours and the floors only). Ours and the floors are
the best of `--repeat` runs in turn. The baselines are skipped where they would not fit
in the memory available (at 1e9 they need about 50 GB).

    python benches/bench_select.py [--max-exp 8] [--ratios 0.1,0.01] [--repeat 3] [--dir DIR]
    python benches/bench_select.py --min-exp 9 --max-exp 9 --repeat 1 --ratios "" \
        --no-baselines --json OUT.json            # scripts/gpu-check on a 16-core machine
    python benches/bench_select.py --against OLD/miniplm-sample   # a previous build beside ours

With `--against`, that binary is timed in turn with ours in every repeat (best of each
kept), and its ids are checked equal to ours.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from _measure import Measure, installed_sample, python, run, table

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

# K uint64 ids, already in memory, saved to a new file and synced (as the selection's
# ids.npy is before its directory is renamed into place); only the save is timed.
WRITE = """
import os, sys, time, numpy as np
ids = np.arange(int(sys.argv[2]), dtype=np.uint64)
t0 = time.perf_counter()
with open(sys.argv[1], "wb") as f:
    np.save(f, ids)
    f.flush()
    os.fsync(f.fileno())
print(time.perf_counter() - t0)
os.unlink(sys.argv[1])
"""


def make_scores(d: Path, n: int) -> None:
    """Score files written the way np.save writes them (sequential writes). Not through a
    writable memmap: pages dirtied through a mapping stay 4 KiB pages in the page cache,
    which makes every later reader (numpy included) pay per small page."""
    rng = np.random.default_rng(n)
    for name, shift in (("t", 0.0), ("r", 0.3)):
        with open(d / f"{name}.npy", "wb") as f:
            header = {"descr": "<f8", "fortran_order": False, "shape": (n,)}
            np.lib.format.write_array_header_1_0(f, header)
            for s in range(0, n, 1 << 24):
                rng.normal(3.0 + shift, 0.5, min(n, s + (1 << 24)) - s).tofile(f)


def seconds(code: str, *args: str) -> float:
    out = subprocess.run(python(code, *args), check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def select_cmd(sample: str, d: Path, k: int, out: str) -> list[str]:
    return [
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
        str(d / out),
        "--overwrite",
    ]


def timed(cmd: list[str], out: Path) -> Measure:
    # Like the baselines' outputs (unlinked below, untimed), the previous output is
    # removed before timing: replacing it would add the unlink of a K x 8-byte file.
    shutil.rmtree(out, ignore_errors=True)
    os.sync()  # nothing of the floors' or the deletion's write-back left to compete
    return run(cmd)


def measure(
    d: Path, n: int, k: int, sample: str, baselines: bool, repeat: int, against: str | None
) -> list[str]:
    """Ours (and `against`) and the two floors `repeat` times in turn, each one's best
    kept (the disk's write speed on a VM varies from one second to the next); the
    baselines once."""
    cmd = select_cmd(sample, d, k, "sel")
    runs = []
    old: list[Measure] = []
    for _ in range(repeat):
        floor = seconds(PASS, str(d / "t.npy"), str(d / "r.npy"))
        write = seconds(WRITE, str(d / "w.npy"), str(k))
        if against:
            old.append(timed(select_cmd(against, d, k, "sel-against"), d / "sel-against"))
        runs.append((timed(cmd, d / "sel"), floor, write))
    ours = min((r[0] for r in runs), key=lambda m: m.wall_s)
    floor, write = min(r[1] for r in runs), min(r[2] for r in runs)
    ref = np.load(d / "sel" / "ids.npy", mmap_mode="r")
    cells = ["-"] * 6
    same = "-"
    if baselines:
        inputs = (str(d / "t.npy"), str(d / "r.npy"), str(k))
        npy = run(python(NUMPY, *inputs, str(d / "np.npy")))
        tor = run(python(TORCH, *inputs, str(d / "to.npy")))
        equal = all(
            np.array_equal(ref, np.load(d / f, mmap_mode="r")) for f in ("np.npy", "to.npy")
        )
        same = "yes" if equal else "NO"
        cells = [
            f"{npy.wall_s:.2f}",
            f"{npy.peak_anon_mb:.0f}",
            f"{npy.wall_s / ours.wall_s:.1f}x",
            f"{tor.wall_s:.2f}",
            f"{tor.peak_anon_mb:.0f}",
            f"{tor.wall_s / ours.wall_s:.1f}x",
        ]
        for f in ("np.npy", "to.npy"):
            (d / f).unlink(missing_ok=True)
    vs_old = []
    if against:
        best = min(m.wall_s for m in old)
        equal = np.array_equal(ref, np.load(d / "sel-against" / "ids.npy", mmap_mode="r"))
        vs_old = [f"{best:.3f}", f"{ours.wall_s / best:.2f}", "yes" if equal else "NO"]
    return [
        f"1e{len(str(n)) - 1}",
        f"{k / n:g}",
        f"{ours.wall_s:.3f}",
        f"{ours.peak_anon_mb:.0f}",
        f"{ours.peak_rss_mb:.0f}",
        *cells,
        f"{floor:.3f}",
        f"{ours.wall_s / floor:.1f}x",
        f"{write:.3f}",
        f"{ours.wall_s / (floor + write):.1f}x",
        same,
        *vs_old,
    ]


# Peak private memory of the baselines per instance, measured at 1e8 (numpy 3.8 GB, torch
# 4.9 GB): they are skipped where they would not fit in the memory available.
BASELINE_BYTES = 50


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--min-exp", type=int, default=6)
    ap.add_argument("--max-exp", type=int, default=8)
    ap.add_argument("--no-baselines", action="store_true", help="ours and the floors only")
    ap.add_argument("--json", help="also write the table's rows here (header -> cell)")
    ap.add_argument("--dir", default="/tmp/miniplm-bench-select")
    ap.add_argument("--ratios", default="0.1,0.01", help="more K/N for the largest N")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many, ours and floors")
    ap.add_argument("--against", help="a previous build's miniplm-sample, timed beside ours")
    args = ap.parse_args()
    root = Path(args.dir)
    sample = installed_sample()
    rows = []
    for exp in range(args.min_exp, args.max_exp + 1):
        n = 10**exp
        d = root / f"n{exp}w"  # "w": written sequentially (older benches used a memmap)
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "r.npy").exists():
            make_scores(d, n)
            os.sync()  # their write-back would otherwise run during the timings
        baselines = BASELINE_BYTES * n < 0.8 * available_bytes() and not args.no_baselines
        if not baselines and not args.no_baselines:
            need = BASELINE_BYTES * n / 1e9
            print(f"N = {n:.0e}: numpy and torch.sort skipped (they need about {need:.0f} GB)")
        rows.append(measure(d, n, n // 2, sample, baselines, args.repeat, args.against))
        if exp == args.max_exp:
            for ratio in (float(x) for x in args.ratios.split(",") if x):
                rows.append(measure(d, n, int(n * ratio), sample, False, args.repeat, args.against))
    print(
        f"select, float64 inputs, {os.cpu_count()} cores; memory in MB "
        "(anon = private memory; rss also counts mapped input pages); "
        "floors: 1 pass = one single-threaded numpy pass over both score arrays, "
        "write K = np.save of K uint64 ids + fsync"
    )
    header = [
        "N",
        "K/N",
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
        "write K s",
        "ours/(pass+write)",
        "same ids",
        *(["against s", "ours/against", "same as against"] if args.against else []),
    ]
    print(table(header, rows))
    if args.json:
        cores = os.cpu_count()
        recs = [dict(zip(header, r)) for r in rows]
        Path(args.json).write_text(json.dumps({"cores": cores, "rows": recs}, indent=1))


if __name__ == "__main__":
    main()
