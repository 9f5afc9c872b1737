"""inspect (CLI and API), the installed native miniplm-sample, and the demo main job."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import miniplm

from reference import megatron_write


def test_inspect_every_kind(tmp_path: Path) -> None:
    seqs = [np.arange(n, dtype=np.uint16) for n in (0, 1, 2, 3, 5, 8, 100)]
    megatron_write(tmp_path / "ds", seqs, np.uint16)
    d = miniplm.inspect(tmp_path / "ds")
    assert d["kind"] == "dataset"
    assert (d["num_instances"], d["num_tokens"], d["dtype"]) == (7, 119, "uint16")
    assert d["length"]["min"] == 0 and d["length"]["max"] == 100
    assert d["length"]["mean"] == pytest.approx(119 / 7)
    # power-of-two buckets [lo, hi): 0 | 1 | 2-3 | 4-7 | 8-15 | 64-127
    assert [tuple(b) for b in d["length_histogram"]] == [
        (0, 1, 1),
        (1, 2, 1),
        (2, 4, 2),
        (4, 8, 1),
        (8, 16, 1),
        (64, 128, 1),
    ]

    nll = np.array([1.0, np.nan, 3.0, 2.0])
    np.save(tmp_path / "s.npy", nll)
    s = miniplm.inspect(tmp_path / "s.npy")
    assert s["kind"] == "score_array" and s["num_nan"] == 1
    assert s["mean_nll"] == {"count": 3, "min": 1.0, "max": 3.0, "mean": 2.0}
    assert sum(s["histogram"]["counts"]) == 3

    miniplm.write_score_run(tmp_path / "run", np.array([2.0, 0.0, 9.0]), np.array([2, 0, 3]))
    r = miniplm.inspect(tmp_path / "run")
    assert r["kind"] == "score_run" and r["num_nan"] == 1 and r["mean_nll"]["max"] == 3.0

    miniplm.select(tmp_path / "sel", teacher_nll=tmp_path / "s.npy", by="teacher", count=2)
    sel = miniplm.inspect(tmp_path / "sel")
    assert sel["kind"] == "selection" and sel["num_ids"] == 2 and sel["problems"] == []
    np.save(tmp_path / "sel" / "ids.npy", np.array([3, 0], dtype=np.uint64))
    assert any("ascending" in p for p in miniplm.inspect(tmp_path / "sel")["problems"])
    meta = json.loads((tmp_path / "sel" / "selection.json").read_text())
    assert meta["dataset"]["num_instances"] == meta["num_instances"]
    meta["dataset"]["num_instances"] += 1
    (tmp_path / "sel" / "selection.json").write_text(json.dumps(meta))
    problems = miniplm.inspect(tmp_path / "sel")["problems"]
    assert any("dataset.num_instances" in p for p in problems), problems


def test_cli_inspect_text_and_json(tmp_path: Path) -> None:
    megatron_write(tmp_path / "ds", [np.arange(4)] * 3, np.int32)
    text = subprocess.run(
        ["miniplm-sample", "inspect", str(tmp_path / "ds")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "instances 3" in text and "tokens 12" in text and "int32" in text
    js = subprocess.run(
        ["miniplm-sample", "inspect", str(tmp_path / "ds"), "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert json.loads(js)["num_tokens"] == 12
    bad = subprocess.run(
        ["miniplm-sample", "inspect", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "nope" in bad.stderr


def test_cli_build(tmp_path: Path) -> None:
    megatron_write(tmp_path / "ds", [np.arange(i % 7) for i in range(40)], np.uint16)
    np.save(tmp_path / "t.npy", np.arange(40.0))
    subprocess.run(
        [
            "miniplm-sample",
            "select",
            "--teacher-nll",
            str(tmp_path / "t.npy"),
            "--by",
            "teacher",
            "--keep",
            "highest",
            "--count",
            "10",
            "--out",
            str(tmp_path / "sel"),
        ],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [
            "miniplm-sample",
            "build",
            "--data",
            str(tmp_path / "ds"),
            "--selection",
            str(tmp_path / "sel"),
            "--out",
            str(tmp_path / "r"),
            "--shard-size",
            "16",
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rep = json.loads(out)
    assert rep["num_instances"] == 10
    assert len(list((tmp_path / "r").glob("refined_*.idx"))) > 1
    np.testing.assert_array_equal(np.load(tmp_path / "r" / "source_ids.npy"), np.arange(30, 40))
    again = subprocess.run(
        [
            "miniplm-sample",
            "build",
            "--data",
            str(tmp_path / "ds"),
            "--selection",
            str(tmp_path / "sel"),
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 1 and "overwrite" in again.stderr


def test_demo_main_job(tmp_path: Path) -> None:
    out = subprocess.run(
        ["python3", "-m", "miniplm.demo", str(tmp_path / "demo")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "kept" in out
    ids, info = miniplm.load_selection(tmp_path / "demo" / "selection")
    assert info["num_selected"] == len(ids) > 0
    # The demo's noisy instances (word salad) score worst under a teacher that knows text.
    src = np.load(tmp_path / "demo" / "is_noise.npy")
    assert src[ids].mean() < 0.5 * src.mean()


@pytest.mark.skipif(sys.platform != "linux", reason="checks for an ELF executable")
def test_miniplm_sample_on_path_is_the_native_binary() -> None:
    # The wheel installs the Rust executable itself (no Python start-up), and it is the
    # same program as the in-process entry `python -m miniplm._sample`.
    exe = Path(sysconfig.get_path("scripts")) / "miniplm-sample"
    assert exe.read_bytes()[:4] == b"\x7fELF", f"{exe} is not the native binary"
    native = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    inproc = subprocess.run(
        [sys.executable, "-m", "miniplm._sample", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert native.stdout == inproc.stdout
    assert "select" in native.stdout
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.split() == ["miniplm-sample", miniplm.__version__]
