"""Reports cross the native boundary as dicts built from the Rust structs: the same keys,
values and key order as the JSON files beside them and the CLI's ``--json``; and
``build.json`` records the dataset as it was given, reopenable to the same instances."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import miniplm
from miniplm import InputError, _core, sampling

from reference import megatron_write


def _same(a: Any, b: Any) -> None:
    """Equal values and equal key order, at every depth."""
    assert json.dumps(a) == json.dumps(b)


def _cli_json(*args: str) -> Any:
    out = subprocess.run(
        ["miniplm-sample", *args, "--json"], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def test_python_api_is_the_native_functions() -> None:
    # One signature: sampling re-exports the native functions instead of re-listing them.
    assert sampling.select is _core.select and miniplm.select is _core.select
    assert sampling.build is _core.build and miniplm.build is _core.build
    assert sampling.inspect is _core.inspect and miniplm.inspect is _core.inspect


def test_select_report_is_selection_json(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    np.save(tmp_path / "t.npy", rng.normal(size=200))
    r = rng.normal(size=200)
    r[[3, 7]] = np.nan
    np.save(tmp_path / "r.npy", r)
    np.save(tmp_path / "ex.npy", np.array([0, 9], dtype=np.uint64))
    rep = _core.select(
        tmp_path / "sel",
        teacher_nll=tmp_path / "t.npy",
        reference_nll=str(tmp_path / "r.npy"),
        exclude=tmp_path / "ex.npy",
        ratio=0.3,
    )
    assert type(rep) is dict
    _same(rep, json.loads((tmp_path / "sel" / "selection.json").read_text()))
    assert (rep["num_nan"], rep["num_excluded"], rep["k"]) == (2, 2, 59)
    assert type(rep["histogram"]["counts"][0]) is int
    assert rep["inputs"]["teacher"]["path"] == str(tmp_path / "t.npy")
    assert rep["inputs"]["reference"] is not None and rep["dataset"]["path"] is None
    cli = _cli_json(
        "select",
        "--teacher-nll",
        str(tmp_path / "t.npy"),
        "--reference-nll",
        str(tmp_path / "r.npy"),
        "--exclude",
        str(tmp_path / "ex.npy"),
        "--ratio",
        "0.3",
        "--out",
        str(tmp_path / "cli"),
    )
    assert list(cli) == list(rep)
    for a in (cli, rep):
        a.pop("elapsed_s")
    _same(cli, rep)


def test_infinite_threshold_is_none(tmp_path: Path) -> None:
    np.save(tmp_path / "t.npy", np.array([np.inf, np.inf, 1.0]))
    rep = _core.select(tmp_path / "sel", teacher_nll=tmp_path / "t.npy", by="teacher", count=1)
    assert rep["keep"] == "lowest" and rep["threshold"] == -1.0  # the key: -value
    rep = _core.select(
        tmp_path / "sel2", teacher_nll=tmp_path / "t.npy", by="teacher", keep="highest", count=1
    )
    assert rep["threshold"] is None
    _same(rep, json.loads((tmp_path / "sel2" / "selection.json").read_text()))


def test_request_errors_unchanged(tmp_path: Path) -> None:
    np.save(tmp_path / "t.npy", np.zeros(4))
    t = tmp_path / "t.npy"
    with pytest.raises(InputError, match=r"^pass either teacher or teacher_nll, not both$"):
        miniplm.select(tmp_path / "o", teacher=tmp_path, teacher_nll=t, ratio=0.5)
    with pytest.raises(InputError, match=r"^pass either reference or reference_nll, not both$"):
        miniplm.select(tmp_path / "o", reference=tmp_path, reference_nll=t, ratio=0.5)
    with pytest.raises(InputError, match="by must be 'diff', 'teacher' or 'reference'"):
        miniplm.select(tmp_path / "o", teacher_nll=t, by="x", ratio=0.5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="keep must be 'highest' or 'lowest'"):
        miniplm.select(tmp_path / "o", teacher_nll=t, keep="x", ratio=0.5)  # type: ignore[arg-type]
    assert not (tmp_path / "o").exists()


def _dataset(tmp: Path) -> Path:
    """A directory of three shards (one family), 30 instances."""
    d = tmp / "ds"
    d.mkdir()
    for k in range(3):
        megatron_write(d / f"c_{k}", [np.arange(1 + (i + k) % 5) for i in range(10)], np.uint16)
    return d


def test_build_report_is_build_json_and_cli(tmp_path: Path) -> None:
    d = _dataset(tmp_path)
    miniplm.select(tmp_path / "sel", random=True, count=12, data=d)
    rep = _core.build(d, tmp_path / "sel", tmp_path / "r", shard_size=40)
    assert type(rep) is dict and rep["num_instances"] == 12 and len(rep["shards"]) > 1
    _same(rep, json.loads((tmp_path / "r" / "build.json").read_text()))
    cli = _cli_json(
        "build", "--data", str(d), "--selection", str(tmp_path / "sel"), "--out",
        str(tmp_path / "c"), "--shard-size", "40", "--name", "refined",
    )  # fmt: skip
    assert list(cli) == list(rep)
    assert cli["dataset"] == rep["dataset"] and cli["num_tokens"] == rep["num_tokens"]


def test_inspect_report_matches_cli(tmp_path: Path) -> None:
    d = _dataset(tmp_path)
    np.save(tmp_path / "s.npy", np.array([1.0, np.nan] * 15))
    miniplm.select(tmp_path / "sel", teacher_nll=tmp_path / "s.npy", by="teacher", count=3, data=d)
    for p in (d, tmp_path / "s.npy", tmp_path / "sel"):
        rep = _core.inspect(p)
        assert type(rep) is dict
        _same(rep, _cli_json("inspect", str(p)))


@pytest.mark.parametrize("given", ["dir", "glob", "list"])
def test_build_json_records_the_dataset_as_given(tmp_path: Path, given: str) -> None:
    # issue 13 item 8: a multi-shard directory, a glob, a list: reopening the recorded
    # path gives every instance and the recorded fingerprint.
    d = _dataset(tmp_path)
    e = tmp_path / "more"
    e.mkdir()
    megatron_write(e / "x_tokens", [np.arange(3)] * 4, np.uint16)
    megatron_write(d.parent / "y_tokens", [np.arange(2)] * 5, np.uint16)
    data: Any = {
        "dir": str(d),
        "glob": str(tmp_path / "*_tokens"),
        "list": [str(d), str(e / "x_tokens")],
    }[given]
    full = miniplm.TokenDataset(data)
    n = {"dir": 30, "glob": 5, "list": 34}[given]
    assert len(full) == n
    np.save(tmp_path / "s.npy", np.zeros(n))
    miniplm.select(tmp_path / "sel", teacher_nll=tmp_path / "s.npy", by="teacher", ratio=1.0)
    rep = miniplm.build(data, tmp_path / "sel", tmp_path / "r")
    recorded = json.loads((tmp_path / "r" / "build.json").read_text())["dataset"]
    assert recorded == rep["dataset"]
    assert recorded["path"] == data
    again = miniplm.TokenDataset(recorded["path"])
    assert len(again) == n == rep["num_instances"]
    assert again.fingerprint() == recorded["fingerprint"] == full.fingerprint()
