"""benches/bench_science.py: the quick run end to end (every cell, every variant, finite
figures, the table and the plot), its resumability, and the table's verdicts."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benches" / "bench_science.py"
sys.path.insert(0, str(BENCH.parent))  # its sibling _science.py, as when run as a script

import _science  # noqa: E402


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_science", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_science"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _bench()


@pytest.fixture(scope="module")
def quick(bench: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("science")
    argv = ["--quick", "--work", str(root / "work"), "--out", str(root / "out")]
    assert bench.main(argv) == 0
    return root


def test_quick_run_has_every_cell_variant_and_finite_figures(
    bench: ModuleType, quick: Path
) -> None:
    results = json.loads((quick / "out" / "results.json").read_text())
    names = [c.name for c in bench.all_cells()]
    assert list(results["cells"]) == names
    assert results["target_works"], "the target set names its works"
    for name, cell in results["cells"].items():
        assert set(cell["students"]) == set(bench.VARIANTS), name
        assert cell["wall_s"] > 0
        assert cell["selection"]["k"] > 0
        for variant, runs in cell["students"].items():
            assert len(runs) == results["seeds"] == 1
            for r in runs:
                for key, _label, _lower in _science.METRICS:
                    assert math.isfinite(r[key]), (name, variant, key, r[key])
                assert r["target_bpb"] > 0 and 0 <= r["zs_acc"] <= 1
    md = (quick / "out" / "table.md").read_text()
    assert "2 CPUs" in md or "CPUs" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert len(rows) == 1 + len(names) * len(_science.METRICS)  # header + cell x metric
    for name in names:
        assert f"| {name} |" in md
    png = (quick / "out" / "gaps.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_rerun_skips_the_cells_done(bench: ModuleType, quick: Path) -> None:
    before = json.loads((quick / "out" / "results.json").read_text())
    t0 = time.perf_counter()
    argv = ["--quick", "--work", str(quick / "work"), "--out", str(quick / "again")]
    assert bench.main([*argv, "--cells", "base,epochs-4"]) == 0
    assert time.perf_counter() - t0 < 30  # nothing trained again
    again = json.loads((quick / "again" / "results.json").read_text())
    assert list(again["cells"]) == ["base", "epochs-4"]
    for name in again["cells"]:
        assert again["cells"][name] == before["cells"][name]


def _cell(figs: dict[str, list[float]]) -> dict[str, Any]:
    runs = {
        v: [dict.fromkeys(("target_bpb", "target_nats", "zs_acc", "zs_acc_norm"), x) for x in xs]
        for v, xs in figs.items()
    }
    return {"cell": {"axis": "alpha"}, "students": runs, "wall_s": 12.0}


def test_table_gives_mean_std_and_the_win_rule(bench: ModuleType) -> None:
    results = {
        "quick": False,
        "date": "2026-12-02 01:00 UTC",
        "machine": {"node": "box", "cpus": 2, "load": "0.1 0.1 0.1"},
        "seeds": 2,
        "teacher": "SmolLM2-135M",
        "cells": {
            # lower bits/byte is better: MiniPLM clearly below random, within noise of ppl;
            # for the accuracies (higher is better) the same numbers read as a loss.
            "alpha-0.25": _cell({"miniplm": [1.0, 1.1], "random": [2.0, 2.1], "ppl": [1.05, 1.2]}),
        },
    }
    md = bench.table(results)
    row = next(ln for ln in md.splitlines() if "target bits/byte" in ln)
    cols = [c.strip() for c in row.strip("|").split("|")]
    assert cols[3:6] == ["1.0500 ± 0.0707", "2.0500 ± 0.0707", "1.1250 ± 0.1061"]
    assert cols[6:8] == ["win", "tie"]
    assert cols[8] == "12 s"
    acc = next(ln for ln in md.splitlines() if "zero-shot acc |" in ln)
    assert [c.strip() for c in acc.strip("|").split("|")][6:8] == ["loss", "tie"]
    assert "2 seeds" in md and "box" in md and "2026-12-02" in md
