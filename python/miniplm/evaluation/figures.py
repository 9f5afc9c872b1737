"""The held-out figures of a set of instances (``instances``, ``tokens``,
``scored_tokens``, ``nll_sum``, ``mean_nll``, ``perplexity``), from each instance's sums or
from totals: one definition for ``miniplm eval``, its per-source break-down and the
pools of sources ``miniplm run`` reports. No torch here."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# The figures that add up over disjoint sets of instances.
ADDED = ("instances", "tokens", "scored_tokens", "nll_sum")


def nll_figures(tokens: np.ndarray, scored: np.ndarray, nll: np.ndarray) -> dict[str, Any]:
    """The held-out figures of a set of instances from their tokens, scored tokens and
    NLL sums (one entry each): ``instances``, ``tokens``, ``scored_tokens``,
    ``nll_sum``, ``mean_nll`` (None with nothing scored) and ``perplexity``."""
    return pooled_figures(len(tokens), int(tokens.sum()), int(scored.sum()), float(nll.sum()))


def pooled_figures(instances: int, tokens: int, scored: int, nll_sum: float) -> dict[str, Any]:
    """``nll_figures`` from the totals (of figures added up, e.g. over sources)."""
    mean = nll_sum / scored if scored else None
    return {
        "instances": instances,
        "tokens": tokens,
        "scored_tokens": scored,
        "nll_sum": nll_sum,
        "mean_nll": mean,
        "perplexity": perplexity(mean),
    }


def pool(figures: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of several disjoint sets of instances, as of one set."""
    total = {k: sum(f[k] for f in figures) for k in ADDED}
    return pooled_figures(
        int(total["instances"]),
        int(total["tokens"]),
        int(total["scored_tokens"]),
        float(total["nll_sum"]),
    )


def perplexity(x: float | None) -> float | None:
    """exp(mean NLL): None for None, inf past the float range."""
    if x is None:
        return None
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf
