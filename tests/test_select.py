"""select against the sort-everything reference, every mode, on adversarial inputs."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import miniplm
from miniplm import FormatError, InputError

from reference import ref_select

SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, np.inf, -np.inf, np.nan]


@st.composite
def score_arrays(draw: st.DrawFn, max_n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(0, max_n))
    pool = st.one_of(st.sampled_from(SPECIAL), st.floats(-4, 4, width=32))
    t = np.array(draw(st.lists(pool, min_size=n, max_size=n)), dtype=np.float64)
    r = np.array(draw(st.lists(pool, min_size=n, max_size=n)), dtype=np.float64)
    return t, r


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    t, r = draw(score_arrays())
    n = len(t)
    exclude = np.array(
        sorted(draw(st.sets(st.integers(0, max(n - 1, 0)), max_size=n // 3))) if n else [],
        dtype=np.uint64,
    )
    mode = draw(st.sampled_from(["top", "random", "gumbel"]))
    by = draw(st.sampled_from(["diff", "teacher", "reference"]))
    keep = draw(st.sampled_from([None, "highest", "lowest"]))
    if draw(st.booleans()):
        amount: dict[str, Any] = {"ratio": draw(st.sampled_from([0.0, 0.25, 0.5, 1.0, 0.3333]))}
    else:
        amount = {"count": draw(st.integers(0, n + 3))}
    return {
        "t": t,
        "r": r,
        "exclude": exclude,
        "mode": mode,
        "by": by,
        "keep": keep,
        "seed": draw(st.integers(0, 2**64 - 1)),
        "temperature": draw(st.sampled_from([0.1, 1.0, 7.5])),
        **amount,
    }


def run_select(d: Path, c: dict[str, Any], dtype: Any = np.float64) -> dict[str, Any]:
    np.save(d / "t.npy", c["t"].astype(dtype))
    np.save(d / "r.npy", c["r"].astype(dtype))
    np.save(d / "ex.npy", c["exclude"])
    kw: dict[str, Any] = {"by": c["by"], "keep": c["keep"], "seed": c["seed"]}
    if c["mode"] == "random":
        kw["random"] = True
    if c["mode"] == "gumbel":
        kw["temperature"] = c["temperature"]
    if "ratio" in c:
        kw["ratio"] = c["ratio"]
    else:
        kw["count"] = c["count"]
    return miniplm.select(
        d / "sel",
        teacher_nll=d / "t.npy",
        reference_nll=d / "r.npy",
        exclude=d / "ex.npy",
        overwrite=True,
        **kw,
    )


def check_against_reference(d: Path, c: dict[str, Any], rep: dict[str, Any], cast: Any) -> None:
    t, r = c["t"].astype(cast).astype(np.float64), c["r"].astype(cast).astype(np.float64)
    want = ref_select(
        len(t),
        t,
        r,
        exclude=c["exclude"],
        by=c["by"],
        keep=c["keep"],
        mode=c["mode"],
        ratio=c.get("ratio"),
        count=c.get("count"),
        seed=c["seed"],
        temperature=c["temperature"],
    )
    ids, info = miniplm.load_selection(d / "sel")
    assert ids.dtype == np.uint64
    np.testing.assert_array_equal(ids, want["ids"])
    assert info == rep
    for key in ("k", "num_selected", "num_excluded", "num_nan", "num_eligible"):
        assert rep[key] == want[key], key
    if "threshold" in want:
        # JSON has no infinity: an infinite threshold is reported as null.
        t = want["threshold"]
        assert rep["threshold"] == (t if np.isfinite(t) else None)
        assert rep["ties_at_threshold"] == want["ties_at_threshold"]
        assert rep["ties_kept"] == want["ties_kept"]


@given(cases())
def test_select_equals_reference(c: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        rep = run_select(d, c)
        check_against_reference(d, c, rep, np.float64)


@given(cases())
def test_select_float32_inputs(c: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        rep = run_select(d, c, dtype=np.float32)
        check_against_reference(d, c, rep, np.float32)


def test_large_with_heavy_ties() -> None:
    rng = np.random.default_rng(0)
    n = 200_000
    t = rng.integers(0, 5, n).astype(np.float64)
    r = rng.integers(0, 5, n).astype(np.float64)
    t[rng.integers(0, n, 1000)] = np.nan
    ex = np.unique(rng.integers(0, n, 10_000)).astype(np.uint64)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        c = {
            "t": t,
            "r": r,
            "exclude": ex,
            "mode": "top",
            "by": "diff",
            "keep": None,
            "seed": 0,
            "temperature": 1.0,
            "ratio": 0.37,
        }
        rep = run_select(d, c)
        # numpy reference: lexsort by (-r, id) over eligible ids.
        value = r - t
        ok = ~np.isnan(value)
        ok[ex.astype(np.int64)] = False
        ids = np.flatnonzero(ok)
        order = np.lexsort((ids, -value[ids]))
        k = int(np.floor(0.37 * (n - len(ex))))
        want = np.sort(ids[order[:k]]).astype(np.uint64)
        np.testing.assert_array_equal(miniplm.load_selection(d / "sel")[0], want)
        assert rep["ties_at_threshold"] > rep["ties_kept"] > 0


def test_score_runs_equal_npy_means(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 5000
    nt, nr = rng.integers(0, 50, n), rng.integers(0, 50, n)
    st_, sr = rng.random(n) * nt * 3, rng.random(n) * nr * 3
    miniplm.write_score_run(tmp_path / "T", st_, nt, part_size=777)
    miniplm.write_score_run(tmp_path / "R", sr.astype(np.float32), nr, part_size=1000)
    loaded = miniplm.load_scores(tmp_path / "R")
    assert loaded["nll_sum"].dtype == np.float32
    np.testing.assert_array_equal(loaded["n_scored"], nr.astype(np.uint32))
    mt = miniplm.mean_nll(miniplm.load_scores(tmp_path / "T"))
    mr = miniplm.mean_nll(loaded)
    np.save(tmp_path / "mt.npy", mt)
    np.save(tmp_path / "mr.npy", mr)
    a = miniplm.select(tmp_path / "a", teacher=tmp_path / "T", reference=tmp_path / "R", ratio=0.5)
    b = miniplm.select(
        tmp_path / "b",
        teacher_nll=tmp_path / "mt.npy",
        reference_nll=tmp_path / "mr.npy",
        ratio=0.5,
    )
    np.testing.assert_array_equal(
        miniplm.load_selection(tmp_path / "a")[0], miniplm.load_selection(tmp_path / "b")[0]
    )
    assert a["num_nan"] == b["num_nan"] == int(((nt == 0) | (nr == 0)).sum())
    assert a["inputs"]["teacher"]["kind"] == "run"
    assert b["inputs"]["teacher"]["kind"] == "npy"


def test_selection_json_fields(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    t, r = rng.normal(size=1000), rng.normal(size=1000)
    np.save(tmp_path / "t.npy", t)
    np.save(tmp_path / "r.npy", r)
    rep = miniplm.select(
        tmp_path / "s", teacher_nll=tmp_path / "t.npy", reference_nll=tmp_path / "r.npy", ratio=0.5
    )
    diff = r - t
    assert rep["format"] == "miniplm.selection" and rep["version"] == 1
    assert (rep["by"], rep["keep"], rep["mode"], rep["ratio"]) == ("diff", "highest", "top", 0.5)
    assert rep["k"] == 500 and rep["num_selected"] == 500
    assert rep["score_stats"]["min"] == diff.min() and rep["score_stats"]["max"] == diff.max()
    assert rep["score_stats"]["num_negative"] == int((diff < 0).sum())
    assert rep["score_stats"]["mean"] == pytest.approx(diff.mean())
    counts, edges = np.histogram(diff, bins=64, range=(diff.min(), diff.max()))
    assert sum(rep["histogram"]["counts"]) == 1000
    np.testing.assert_allclose(rep["histogram"]["edges"], edges)
    assert np.abs(np.array(rep["histogram"]["counts"]) - counts).sum() <= 2  # edge rounding
    assert rep["threshold"] == np.sort(diff)[::-1][499]
    fp = rep["inputs"]["teacher"]["fingerprint"]
    assert fp.startswith("xxh3:") and rep["inputs"]["reference"]["fingerprint"] != fp


def _npy(tmp: Path, name: str, a: Any) -> Path:
    np.save(tmp / name, np.asarray(a))
    return tmp / name


def test_errors_name_the_inputs(tmp_path: Path) -> None:
    t = _npy(tmp_path, "t.npy", np.zeros(10))
    r = _npy(tmp_path, "r.npy", np.zeros(11))
    with pytest.raises(InputError, match=r"(?s)t\.npy.*10.*r\.npy.*11|r\.npy.*11.*t\.npy.*10"):
        miniplm.select(tmp_path / "o", teacher_nll=t, reference_nll=r, ratio=0.5)
    r = _npy(tmp_path, "r.npy", np.zeros(10))
    with pytest.raises(InputError, match="ratio"):
        miniplm.select(tmp_path / "o", teacher_nll=t, reference_nll=r, ratio=1.5)
    with pytest.raises(InputError, match="temperature"):
        miniplm.select(tmp_path / "o", teacher_nll=t, reference_nll=r, ratio=0.5, temperature=0)
    with pytest.raises(InputError, match="reference"):
        miniplm.select(tmp_path / "o", teacher_nll=t, ratio=0.5)
    # Checked once, by the core's request (SelectSpec::new, Mode::new).
    with pytest.raises(InputError, match="exactly one of ratio and count"):
        miniplm.select(tmp_path / "o", teacher_nll=t, reference_nll=r)
    with pytest.raises(InputError, match="exactly one of ratio and count"):
        miniplm.select(tmp_path / "o", teacher_nll=t, reference_nll=r, ratio=0.5, count=2)
    with pytest.raises(InputError, match="random or temperature, not both"):
        miniplm.select(tmp_path / "o", teacher_nll=t, ratio=0.5, random=True, temperature=1.0)
    ex = _npy(tmp_path, "ex.npy", np.array([3, 10], dtype=np.uint64))
    with pytest.raises(InputError, match=r"ex\.npy.*10"):
        miniplm.select(tmp_path / "o", teacher_nll=t, reference_nll=r, ratio=0.5, exclude=ex)
    ints = _npy(tmp_path, "i.npy", np.zeros(10, dtype=np.int64))
    with pytest.raises(FormatError, match=r"i\.npy"):
        miniplm.select(tmp_path / "o", teacher_nll=ints, reference_nll=r, ratio=0.5)
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(FormatError, match=r"bad\.npy"):
        miniplm.select(tmp_path / "o", teacher_nll=tmp_path / "bad.npy", reference_nll=r, count=1)
    with pytest.raises(FileNotFoundError, match="missing"):
        miniplm.select(tmp_path / "o", teacher=tmp_path / "missing", reference_nll=r, count=1)
    assert not (tmp_path / "o").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.npy",
        "ex.npy",
        "i.npy",
        "r.npy",
        "t.npy",
    ]


def test_bad_score_runs(tmp_path: Path) -> None:
    r = _npy(tmp_path, "r.npy", np.zeros(10))
    run = miniplm.write_score_run(tmp_path / "T", np.ones(10), np.ones(10), part_size=4)
    man = json.loads((run / "manifest.json").read_text())
    man["parts"][1]["complete"] = False
    (run / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(FormatError, match=r"(?i)manifest\.json.*(incomplete|complete)"):
        miniplm.select(tmp_path / "o", teacher=run, reference_nll=r, count=1)
    man["parts"][1]["complete"] = True
    man["parts"][1]["start"] = 3
    (run / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(FormatError, match=r"manifest\.json"):
        miniplm.select(tmp_path / "o", teacher=run, reference_nll=r, count=1)
    man["parts"][1]["start"] = 4
    man["num_instances"] = 12
    (run / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(FormatError, match=r"manifest\.json"):
        miniplm.load_scores(run)
    (run / "manifest.json").write_text("{not json")
    with pytest.raises(FormatError, match=r"manifest\.json"):
        miniplm.load_scores(run)


def test_existing_output_refused(tmp_path: Path) -> None:
    t = _npy(tmp_path, "t.npy", np.arange(10.0))
    miniplm.select(tmp_path / "o", teacher_nll=t, by="teacher", count=3)
    with pytest.raises(FileExistsError, match="overwrite"):
        miniplm.select(tmp_path / "o", teacher_nll=t, by="teacher", count=4)
    assert len(miniplm.load_selection(tmp_path / "o")[0]) == 3
    miniplm.select(tmp_path / "o", teacher_nll=t, by="teacher", count=4, overwrite=True)
    ids, info = miniplm.load_selection(tmp_path / "o")
    np.testing.assert_array_equal(ids, [0, 1, 2, 3])  # lowest teacher NLL by default
    assert info["keep"] == "lowest"


def test_random_uses_dataset_length(tmp_path: Path) -> None:
    from reference import megatron_write

    megatron_write(tmp_path / "ds", [np.arange(3)] * 50, np.uint16)
    rep = miniplm.select(tmp_path / "o", random=True, seed=7, ratio=0.2, data=tmp_path / "ds")
    assert rep["num_instances"] == 50 and rep["num_selected"] == 10
    want = ref_select(50, None, None, mode="random", ratio=0.2, seed=7)
    np.testing.assert_array_equal(miniplm.load_selection(tmp_path / "o")[0], want["ids"])
    t = _npy(tmp_path, "t.npy", np.zeros(49))
    with pytest.raises(InputError, match="49"):
        miniplm.select(tmp_path / "p", teacher_nll=t, by="teacher", count=1, data=tmp_path / "ds")


def test_cli_matches_api(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    t = _npy(tmp_path, "t.npy", rng.normal(size=300))
    r = _npy(tmp_path, "r.npy", rng.normal(size=300))
    api = miniplm.select(tmp_path / "a", teacher_nll=t, reference_nll=r, ratio=0.25)
    out = subprocess.run(
        [
            "miniplm-sample",
            "select",
            "--teacher-nll",
            str(t),
            "--reference-nll",
            str(r),
            "--ratio",
            "0.25",
            "--out",
            str(tmp_path / "b"),
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    cli = json.loads(out.stdout)
    assert out.stderr == ""  # no progress bar when not on a terminal
    for key in ("k", "threshold", "ties_at_threshold", "num_selected"):
        assert cli[key] == api[key]
    np.testing.assert_array_equal(
        miniplm.load_selection(tmp_path / "a")[0], miniplm.load_selection(tmp_path / "b")[0]
    )
    bad = subprocess.run(
        [
            "miniplm-sample",
            "select",
            "--teacher-nll",
            str(t),
            "--reference-nll",
            str(tmp_path / "nope.npy"),
            "--ratio",
            "0.5",
            "--out",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert "nope.npy" in bad.stderr and "error" in bad.stderr
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(("ratio", "want"), [(0.29, 29), (0.57, 57), (0.58, 58), (0.005, 0)])
def test_k_of_a_ratio_is_the_decimal_floor(tmp_path: Path, ratio: float, want: int) -> None:
    """0.29 * 100 is 28.999999999999996 in binary: K was 28 for a user asking 0.29."""
    t = tmp_path / "t.npy"
    np.save(t, np.arange(100, dtype=np.float64))
    rep = miniplm.select(tmp_path / "s", teacher_nll=t, by="teacher", ratio=ratio)
    assert rep["k"] == want == len(miniplm.load_selection(tmp_path / "s")[0])


def test_runs_scored_on_different_positions_are_refused(tmp_path: Path) -> None:
    """Runs that left out different input ids (a teacher with a pad id, a reference
    without): r would be a difference of means over different token sets."""
    n = np.ones(6)
    for name, ignore in (("T", 5), ("R", None), ("R2", 5)):
        miniplm.write_score_run(tmp_path / name, n, n, settings={"ignore_id": ignore})
    with pytest.raises(InputError, match=r"left out input id 5 .* id null.*--ignore-id"):
        miniplm.select(tmp_path / "s", teacher=tmp_path / "T", reference=tmp_path / "R", ratio=0.5)
    assert not (tmp_path / "s").exists()
    miniplm.select(tmp_path / "s", teacher=tmp_path / "T", reference=tmp_path / "R2", ratio=0.5)
    miniplm.write_score_run(tmp_path / "plain", n, n)  # another tool's run: nothing recorded
    miniplm.select(tmp_path / "p", teacher=tmp_path / "T", reference=tmp_path / "plain", ratio=0.5)
