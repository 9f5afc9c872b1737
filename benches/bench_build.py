"""Refined-corpus build throughput: `miniplm-sample build` beside the numpy a user would
write (a token mask from the selection, one fancy-index copy, tofile), same data, same run.

    python benches/bench_build.py [--instances 2000000] [--repeat 3] [--dir DIR]

Ours and numpy run in turn `--repeat` times and each one's best is kept; before every
timed run the previous outputs are deleted and all dirty pages synced, so that no run
pays for another's write-back or deletion.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import numpy as np

import miniplm

from _measure import installed_sample, python, run, table

NUMPY = """
import sys, numpy as np
from pathlib import Path
prefix, ids, out = sys.argv[1], np.load(sys.argv[2]), Path(sys.argv[3])
idx = open(prefix + ".idx", "rb").read()
n = int.from_bytes(idx[18:26], "little")
sizes = np.frombuffer(idx, "<i4", n, 34).astype(np.int64)
tokens = np.memmap(prefix + ".bin", np.uint16, "r")
keep = np.zeros(n, bool); keep[ids.astype(np.int64)] = True
out.mkdir(exist_ok=True)
tokens[np.repeat(keep, sizes)].tofile(out / "refined.bin")
np.save(out / "sizes.npy", sizes[keep].astype(np.int32))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=2_000_000)
    ap.add_argument("--dir", default="/tmp/miniplm-bench-build")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs of each")
    args = ap.parse_args()
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    n = args.instances
    rng = np.random.default_rng(0)
    if not (d / "corpus").exists():
        lengths = rng.integers(256, 1025, n)
        seqs = (rng.integers(0, 50_000, int(ln)) for ln in lengths)
        miniplm.write_dataset(d / "corpus", seqs, vocab_size=50_000, overwrite=True)
    ds = miniplm.TokenDataset(d / "corpus")
    np.save(d / "t.npy", rng.random(len(ds)))
    rows = []
    for ratio in (0.5, 0.25):
        miniplm.select(
            d / "sel", teacher_nll=d / "t.npy", by="teacher", ratio=ratio, overwrite=True
        )
        cmd = [installed_sample(), "--quiet", "build", "--data", str(d / "corpus")]
        cmd += ["--selection", str(d / "sel"), "--out", str(d / "out")]
        prefix = str(next((d / "corpus").glob("*.idx"))).removesuffix(".idx")
        numpy_cmd = python(NUMPY, prefix, str(d / "sel" / "ids.npy"), str(d / "np"))
        ours_runs, npy_runs = [], []
        for _ in range(args.repeat):  # each round leaves both outputs for the comparison
            for out, cmd_, runs in (("out", cmd, ours_runs), ("np", numpy_cmd, npy_runs)):
                shutil.rmtree(d / out, ignore_errors=True)
                os.sync()
                runs.append(run(cmd_))
        ours = min(ours_runs, key=lambda m: m.wall_s)
        npy = min(npy_runs, key=lambda m: m.wall_s)
        gb = miniplm.inspect(d / "out")["num_tokens"] * 2 / 1e9
        same = (d / "np" / "refined.bin").read_bytes() == b"".join(
            (d / "out" / p.name).read_bytes() for p in sorted((d / "out").glob("*.bin"))
        )
        rows.append(
            [
                f"{ratio}",
                f"{gb:.2f}",
                f"{ours.wall_s:.2f}",
                f"{gb / ours.wall_s:.2f}",
                f"{ours.peak_anon_mb:.0f}",
                f"{npy.wall_s:.2f}",
                f"{gb / npy.wall_s:.2f}",
                f"{npy.peak_anon_mb:.0f}",
                f"{npy.wall_s / ours.wall_s:.1f}x",
                "yes" if same else "NO",
            ]
        )
        shutil.rmtree(d / "np")
    print(
        f"build from {len(ds)} instances, {ds.num_tokens * 2 / 1e9:.2f} GB of uint16 tokens "
        "(page cache warm); GB/s of output; memory in MB (private)"
    )
    print(
        table(
            [
                "ratio",
                "out GB",
                "ours s",
                "ours GB/s",
                "ours anon",
                "numpy s",
                "numpy GB/s",
                "numpy anon",
                "speed-up",
                "same bytes",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
