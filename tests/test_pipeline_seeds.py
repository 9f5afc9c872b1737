"""``[students] seeds``: the seeds a student trains with, the mean ± std the report
prints, and the pre-registered win rule (mean gap larger than the sum of the stds)."""

from __future__ import annotations

import statistics

from hypothesis import given
from hypothesis import strategies as st

from miniplm.pipeline.config import load_config
from miniplm.pipeline.seeds import fmt_mean_std, mean_std, n_seeds, student_seed, verdict
from miniplm.pipeline.stages import build_stages


def test_student_seeds_are_the_runs_first_then_distinct_and_stable() -> None:
    assert student_seed(7, 0) == 7
    seeds = [student_seed(7, i) for i in range(5)]
    assert len(set(seeds)) == 5 and seeds == [student_seed(7, i) for i in range(5)]
    assert student_seed(8, 1) != student_seed(7, 1)


def test_every_student_seed_is_its_own_stage_and_more_seeds_keep_those_trained() -> None:
    cfg = load_config(None, "smoke")
    cfg.students.seeds = 2
    two = {s.name: s for s in build_stages(cfg)}
    variants = ["miniplm", "random", "kd", "ppl"]
    names = [f"student-{v}" for v in variants] + [f"student-{v}-seed1" for v in variants]
    assert [n for n in two if n.startswith("student-")] == names
    assert two["student-kd"].params["seed"] == 0  # seed 0 is the run's own
    assert two["student-kd-seed1"].params["seed"] == student_seed(0, 1)
    assert set(names) <= set(two["eval"].reads) and "reference" in two["eval"].reads
    cfg.students.seeds = 3
    three = {s.name: s for s in build_stages(cfg)}
    assert all(three[n].params == two[n].params for n in names)  # keys unchanged: skipped
    assert "student-ppl-seed2" in three


def test_mean_std_is_the_sample_std_and_one_seed_is_the_value_alone() -> None:
    assert fmt_mean_std([1.0, 2.0, 4.0], 3) == f"2.333 ± {statistics.stdev([1, 2, 4]):.3f}"
    assert fmt_mean_std([6.5]) == "6.5000"
    assert fmt_mean_std([1.0, None]) == "n/a" and fmt_mean_std([]) == "n/a"
    assert mean_std([3.0, 5.0]) == (4.0, 2**0.5)
    assert n_seeds(2) == "2 seeds" and n_seeds(1) == "1 seed"


def test_the_win_rule_on_worked_cases() -> None:
    # NLL: lower is better. Gap 1.0 against stds 0.1 + 0.1: a win, and the mirror a loss.
    assert verdict([5.0, 5.2], [6.0, 6.2]) == "win"
    assert verdict([6.0, 6.2], [5.0, 5.2]) == "loss"
    # Gap 0.2 against stds 0.1414 + 0.1414 = 0.28: within noise.
    assert verdict([5.0, 5.2], [5.2, 5.4]) == "tie"
    # Accuracy: higher is better.
    assert verdict([0.6, 0.62], [0.4, 0.42], lower_is_better=False) == "win"
    assert verdict([5.0], [6.0]) == "n/a"  # one seed: no std, no verdict


floats = st.lists(st.floats(-100, 100, allow_nan=False), min_size=2, max_size=6)


@given(floats, floats)
def test_the_win_rule_is_antisymmetric_and_matches_its_definition(
    a: list[float], b: list[float]
) -> None:
    v, back = verdict(a, b), verdict(b, a)
    assert {v, back} in ({"win", "loss"}, {"tie"})
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    assert sa is not None and sb is not None
    if abs(mb - ma) > sa + sb:
        assert v == ("win" if ma < mb else "loss")
    else:
        assert v == "tie"
    assert verdict(a, b, lower_is_better=False) == back
