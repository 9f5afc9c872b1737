"""Run a command in a child process and record wall time and peak memory, polling
/proc: peak RSS, and peak anonymous RSS (private memory, without the page cache that
memory-mapped inputs show as resident)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Measure:
    wall_s: float
    peak_rss_mb: float
    peak_anon_mb: float
    stdout: str = ""


def _status(pid: int) -> tuple[int, int]:
    rss = anon = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1])
    except OSError:
        pass
    return rss, anon


def run(cmd: list[str], env: dict[str, str] | None = None) -> Measure:
    """Run ``cmd``, polling its memory; its output goes to temporary files (a pipe left
    unread while polling could fill up and stall the child)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, **(env or {})})
        peak_rss = peak_anon = 0
        while p.poll() is None:
            rss, anon = _status(p.pid)
            peak_rss, peak_anon = max(peak_rss, rss), max(peak_anon, anon)
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        if p.returncode != 0:
            sys.exit(
                f"benchmark command failed ({p.returncode}): {' '.join(cmd)}\n"
                + err.read().decode(errors="replace")
            )
        return Measure(wall, peak_rss / 1024, peak_anon / 1024, out.read().decode())


def installed_sample() -> str:
    """The `miniplm-sample` that this Python's environment installed (the native binary
    from the wheel), not whatever is first on PATH (a pyenv shim, a bash script, adds
    tens of milliseconds of its own start-up)."""
    here = Path(sysconfig.get_path("scripts")) / "miniplm-sample"
    return str(here) if here.exists() else shutil.which("miniplm-sample") or "miniplm-sample"


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join(
        [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )


def throughput_table(
    runs: list[tuple[str, Measure]], flops_per_param_token: float, gpu: str
) -> tuple[str, dict[str, dict[str, Any]]]:
    """A table of tokens/s, MFU (on a known GPU, or with MINIPLM_PEAK_TFLOPS) and peak
    memory for child runs that print a JSON line ``{"tokens", "seconds", "peak_gpu_mb",
    "params"}`` last; and each run's figures (tokens/s, MFU, memory, the MFU denominator).
    ``params`` comes from the first run that reports it."""
    import json

    from miniplm._peak import peak_tflops

    recs = [json.loads(m.stdout.strip().splitlines()[-1]) for _, m in runs]
    params = next(r["params"] for r in recs if r.get("params"))
    peak, peak_from = peak_tflops(gpu) if gpu else (None, "no GPU")
    rows, figures = [], {}
    for (name, m), r in zip(runs, recs):
        tps = r["tokens"] / r["seconds"]
        mfu_of = flops_per_param_token * params * tps / (peak * 1e12) if peak else None
        figures[name] = {
            "tokens": r["tokens"],
            "seconds": r["seconds"],
            "tokens_per_s": tps,
            "mfu": mfu_of,
            "peak_rss_anon_mb": m.peak_anon_mb,
            "peak_gpu_mb": r["peak_gpu_mb"],
            "params": params,
            "peak_tflops": peak,
            "peak_from": peak_from,
        }
        mfu = f"{100 * mfu_of:.1f}%" if mfu_of is not None else "-"
        rows.append(
            [
                name,
                f"{r['tokens']}",
                f"{r['seconds']:.2f}",
                f"{tps:,.0f}",
                mfu,
                f"{m.peak_anon_mb:.0f}",
                f"{r['peak_gpu_mb']:.0f}" if gpu else "-",
            ]
        )
    header = ["", "tokens", "seconds", "tokens/s", "MFU", "peak RSS MB (anon)", "peak GPU MB"]
    return table(header, rows), figures


def best_of(runs: list[Measure]) -> Measure:
    """The run with the most tokens per second (children print a JSON line last)."""
    import json

    def tps(m: Measure) -> float:
        r = json.loads(m.stdout.strip().splitlines()[-1])
        return float(r["tokens"]) / float(r["seconds"])

    return max(runs, key=tps)


def alternate(cmds: list[list[str]], repeat: int) -> list[Measure]:
    """Run the commands in turn ``repeat`` times and keep each one's best run: on a shared
    machine the load moves, and alternating spreads it over all of them alike."""
    best = [run(c) for c in cmds]
    for _ in range(repeat - 1):
        best = [best_of([b, run(c)]) for b, c in zip(best, cmds)]
    return best
