"""The figures of a run's report: what each table cell reads from eval's results, how
MiniPLM is judged against each baseline over the seeds, and the section on the text
outside the corpus (target works and zero-shot task)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from miniplm.pipeline.seeds import WIN_RULE, fmt_mean_std, mean_std, n_seeds, verdict
from miniplm.pipeline.stage import Inputs
from miniplm.pipeline.target_stage import TARGET, TargetOut, has_target

# A figure of one model's results (None: not measured), and over a variant's seeds.
Figure = Callable[[dict[str, Any]], "float | None"]
OverSeeds = Callable[[str, Figure], "list[float | None]"]

LABELS = {
    "miniplm": "MiniPLM (Difference Sampling)",
    "random": "uniform random subset (w/o KD)",
    "kd": "Vanilla KD (random subset + online teacher)",
    "ppl": "perplexity filtering (lowest teacher NLL)",
    "reference": "reference LM (trained on D_ref)",
}


def fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _nll(which: str) -> Callable[[dict[str, Any]], float | None]:
    def figure(res: dict[str, Any]) -> float | None:
        got: float | None = res[which]["heldout"].get("mean_nll")
        return got

    return figure


def _ppl(res: dict[str, Any]) -> float | None:
    got: float | None = res["heldout"]["heldout"].get("perplexity")
    return got


def bpb(res: dict[str, Any]) -> float | None:
    got: float | None = res["heldout"]["heldout"].get("bits_per_byte")
    return got


def _acc(res: dict[str, Any]) -> float | None:
    return res["tasks"]["average"] if "tasks" in res else None


def _target(metric: str, group: str | None = None) -> Callable[[dict[str, Any]], float | None]:
    """A figure of the bundled target set (``group``: one work of it)."""

    def figure(res: dict[str, Any]) -> float | None:
        t = res.get("target", {}).get("target") or {}
        if group is not None:
            t = (t.get("by_group") or {}).get(group) or {}
        got: float | None = t.get(metric)
        return got

    return figure


def _text_file(name: str, metric: str) -> Callable[[dict[str, Any]], float | None]:
    """A figure of one ``[eval] texts`` file (results keyed by its base name)."""

    def figure(res: dict[str, Any]) -> float | None:
        got: float | None = ((res.get("target") or {}).get(name) or {}).get(metric)
        return got

    return figure


def _zero_shot(metric: str) -> Callable[[dict[str, Any]], float | None]:
    """A figure of the zero-shot task made from the target set."""

    def figure(res: dict[str, Any]) -> float | None:
        tasks = [v for v in (res.get("zero_shot") or {}).values() if isinstance(v, dict)]
        got: float | None = tasks[0].get(metric) if len(tasks) == 1 else None
        return got

    return figure


# The students table's figures over seeds, in column order, with their digits.
FIGURES = ((_nll("heldout"), 4), (_ppl, 2), (_nll("heldout_clean"), 4), (_acc, 4))


def comparison(
    variants: list[str],
    over_seeds: Callable[[str, Callable[[dict[str, Any]], float | None]], list[float | None]],
    seeds: int,
) -> list[str]:
    """MiniPLM against each baseline, judged by the pre-registered rule."""
    figures = (
        ("target bits/byte", _target("bits_per_byte"), True),
        ("zero-shot acc_norm", _zero_shot("acc_norm"), False),
        ("zero-shot acc", _zero_shot("acc"), False),
        ("held-out NLL", _nll("heldout"), True),
        ("held-out NLL, no noise", _nll("heldout_clean"), True),
        ("`[eval] tasks` acc", _acc, False),  # the mean over the tasks a user named
    )
    rows = []
    for b in variants[1:]:
        for what, figure, lower in figures:
            ours, theirs = over_seeds("miniplm", figure), over_seeds(b, figure)
            (m1, _), (m2, _) = mean_std(ours), mean_std(theirs)
            if not (math.isfinite(m1) and math.isfinite(m2)):
                continue  # a figure this run did not measure (no tasks)
            gap = (m2 - m1) if lower else (m1 - m2)
            rows.append(
                f"| {LABELS[b].split(' (')[0]} | {what} | {fmt_mean_std(ours)} | "
                f"{fmt_mean_std(theirs)} | {gap:+.4f} | "
                f"{verdict(ours, theirs, lower_is_better=lower)} |"
            )
    if not rows:
        return []
    return [
        "## MiniPLM against each baseline",
        "",
        f"Pre-registered rule over the {n_seeds(seeds)}: "
        f"{WIN_RULE} (n/a: fewer than 2 seeds). `gap`: how much better MiniPLM's mean is.",
        "",
        "| baseline | figure | MiniPLM | baseline | gap | verdict |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def target_section(
    inp: Inputs,
    results: dict[str, Any],
    variants: list[str],
    over_seeds: Callable[[str, Callable[[dict[str, Any]], float | None]], list[float | None]],
) -> list[str]:
    """Students and reference on the text outside the corpus: the target works (LM loss,
    each model in its own tokens) and the zero-shot task made from them."""
    if not has_target(inp.cfg):
        return []
    t = inp.get(TARGET, TargetOut)
    first = results[variants[0]]
    files = [k for k in (first.get("target") or {}) if k != TARGET]
    if not t.works:  # no bundled target works: only the `[eval] texts` files
        return [
            "## Text outside the corpus",
            "",
            *_texts_table(inp, results, variants, over_seeds, files),
        ]
    cols = (
        (_target("bits_per_byte"), 4),
        (_target("mean_nll"), 4),
        (_zero_shot("acc"), 4),
        (_zero_shot("acc_norm"), 4),
    )
    rows = [
        f"| {LABELS[v]} | " + " | ".join(fmt_mean_std(over_seeds(v, f), d) for f, d in cols) + " |"
        for v in variants
    ]
    ref = results["reference"]
    rows.append("| reference LM | " + " | ".join(fmt(f(ref), d) for f, d in cols) + " |")
    size = (first.get("target", {}).get("target") or {}).get("bytes")
    task = [v for v in (first.get("zero_shot") or {}).values() if isinstance(v, dict)]
    works = ", ".join(t.works) or ", ".join(t.texts)
    md = [
        "## Text outside the corpus",
        "",
        f"Target set: {works} ({size} bytes): whole works no corpus instance comes from, "
        "as the paper evaluates on DCLM rather than on its training mix. LM loss in "
        f"windows of {inp.cfg.corpus.seq_len} predictions, each model in its own tokens "
        "(bits per byte compare across tokenizers). Zero-shot: "
        + (
            f"{task[0].get('docs')} items made from the target works (a passage and four "
            "candidate next sentences of the same work; chance 25%), acc and acc_norm."
            if task
            else "none."
        ),
        "",
        "| model | target bits/byte | target NLL/token | zero-shot acc | zero-shot acc_norm |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]
    groups = sorted((first.get("target", {}).get("target") or {}).get("by_group") or {})
    if groups:
        md += [
            "Target bits per byte per work:",
            "",
            "| work | " + " | ".join(LABELS[v].split(" (")[0] for v in variants) + " | reference |",
            "|---|" + "---|" * (len(variants) + 1),
        ]
        for g in groups:
            f = _target("bits_per_byte", g)
            cells = [fmt_mean_std(over_seeds(v, f), 4) for v in variants] + [fmt(f(ref), 4)]
            md.append(f"| {g} | " + " | ".join(cells) + " |")
        md.append("")
    return md + _texts_table(inp, results, variants, over_seeds, files)


def _texts_table(
    inp: Inputs,
    results: dict[str, Any],
    variants: list[str],
    over_seeds: Callable[[str, Callable[[dict[str, Any]], float | None]], list[float | None]],
    files: list[str],
) -> list[str]:
    """Students and reference on each ``[eval] texts`` file (by base name, which the
    config keeps unique): bits per byte and NLL per token."""
    if not files:
        return []
    cols = [(_text_file(n, m), 4) for n in files for m in ("bits_per_byte", "mean_nll")]
    head = " | ".join(f"`{n}` {w}" for n in files for w in ("bits/byte", "NLL/token"))
    rows = [
        f"| {LABELS[v]} | " + " | ".join(fmt_mean_std(over_seeds(v, f), d) for f, d in cols) + " |"
        for v in variants
    ]
    ref = results["reference"]
    rows.append("| reference LM | " + " | ".join(fmt(f(ref), d) for f, d in cols) + " |")
    return [
        f"`[eval] texts` files: LM loss in windows of {inp.cfg.corpus.seq_len} predictions, "
        "each model in its own tokens (bits per byte compare across tokenizers).",
        "",
        f"| model | {head} |",
        "|---|" + "---|" * len(cols),
        *rows,
        "",
    ]
