"""Students trained over several seeds (``[students] seeds``): the seed each one uses,
how a figure over the seeds is summed up (mean ± sample std), and the pre-registered
rule for when MiniPLM beats a baseline."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Literal

import numpy as np

# The rule, in the words the report prints; ``verdict`` is its one implementation.
WIN_RULE = (
    "a win (or loss) when the gap between the two means is larger than the sum of the "
    "two standard deviations over the seeds; anything closer is a tie within noise"
)

Verdict = Literal["win", "loss", "tie", "n/a"]


def n_seeds(n: int) -> str:
    """``"N seeds"`` as the report says it (``"1 seed"``)."""
    return f"{n} seed{'s' if n != 1 else ''}"


def student_seed(run_seed: int, i: int) -> int:
    """Seed of a student's ``i``-th training (model initialisation and data order).
    Seed 0 is the run's own, so raising ``seeds`` keeps the students already trained."""
    if i == 0:
        return run_seed
    return int(np.random.SeedSequence([run_seed, i]).generate_state(1)[0])


def mean_std(xs: Sequence[float | None]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value) of ``xs``; NaN
    when any value is missing or not finite."""
    vals = [math.nan if x is None else float(x) for x in xs]
    if not vals or not all(math.isfinite(v) for v in vals):
        return math.nan, None
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None


def fmt_mean_std(xs: Sequence[float | None], digits: int = 4) -> str:
    """``mean ± std`` of ``xs`` (the value alone for one seed; ``n/a`` if unknown)."""
    m, s = mean_std(xs)
    if not math.isfinite(m):
        return "n/a"
    return f"{m:.{digits}f}" if s is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def verdict(
    ours: Sequence[float | None],
    theirs: Sequence[float | None],
    *,
    lower_is_better: bool = True,
) -> Verdict:
    """``ours`` against ``theirs`` (one figure per seed) by ``WIN_RULE``; ``n/a`` without
    a std on both sides (fewer than 2 seeds) or with a missing figure."""
    (m1, s1), (m2, s2) = mean_std(ours), mean_std(theirs)
    if s1 is None or s2 is None or not (math.isfinite(m1) and math.isfinite(m2)):
        return "n/a"
    gap = (m2 - m1) if lower_is_better else (m1 - m2)  # > 0: ours is better
    if abs(gap) <= s1 + s2:
        return "tie"
    return "win" if gap > 0 else "loss"
