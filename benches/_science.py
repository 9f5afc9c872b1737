"""benches/bench_science.py's cells, run sizes and report (the table and the plot of
MiniPLM's gaps): what a reader of the results needs, apart from how a cell is run."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from miniplm.pipeline.seeds import WIN_RULE, fmt_mean_std, mean_std, n_seeds, verdict

VARIANTS = ("miniplm", "random", "ppl")
BASELINES = ("random", "ppl")
# (key, label, lower is better)
METRICS = (
    ("target_bpb", "target bits/byte", True),
    ("target_nats", "target nats/token", True),
    ("zs_acc", "zero-shot acc", False),
    ("zs_acc_norm", "zero-shot acc_norm", False),
)


@dataclass(frozen=True)
class Cell:
    name: str
    axis: str  # the factor varied from the base cell ("base" for the base)
    corpus: float  # fraction of the scored corpus's instances in the cell's pool
    alpha: float
    ref_fraction: float  # D_ref, as a fraction of the pool
    preset: str  # the students' model preset
    epochs: float  # over the smallest student corpus of the cell, in own tokens


BASE = Cell("base", "base", corpus=0.25, alpha=0.5, ref_fraction=0.3, preset="tiny", epochs=1.0)


def all_cells() -> list[Cell]:
    """The base cell and one variation of one factor each."""
    r = dataclasses.replace
    return [
        BASE,
        r(BASE, name="corpus-0.1", axis="corpus", corpus=0.1),
        r(BASE, name="corpus-0.5", axis="corpus", corpus=0.5),
        r(BASE, name="corpus-1", axis="corpus", corpus=1.0),
        r(BASE, name="alpha-0.25", axis="alpha", alpha=0.25),
        r(BASE, name="alpha-0.75", axis="alpha", alpha=0.75),
        r(BASE, name="dref-0.1", axis="dref", ref_fraction=0.1),
        r(BASE, name="dref-0.5", axis="dref", ref_fraction=0.5),
        r(BASE, name="student-mini", axis="student", preset="mini"),
        r(BASE, name="student-small", axis="student", preset="small"),
        r(BASE, name="epochs-4", axis="epochs", alpha=0.25, epochs=4.0),
    ]


@dataclass(frozen=True)
class Sizes:
    """What a run costs: the whole bench, or ``--quick`` (the test's)."""

    max_bytes: int | None  # corpus text (None: the whole bundled corpus)
    seq_len: int
    teacher: str  # "smollm2", or "" for a tiny teacher trained here
    teacher_bpe: int  # with a trained teacher: its tokenizer's vocabulary
    student_bpe: int
    teacher_batch: int
    ref_epochs: float
    lr: float
    batch: int  # global = micro batch size of reference and students
    target_docs: int | None  # None: the whole target set
    target_chars: int | None  # each target document cut to this many characters
    task_items: int | None  # None: the whole zero-shot task


FULL = Sizes(
    # 1.5 MB: the teacher's one pass (414k tokens in 10 min on 2 cores, measured
    # 2026-12-02) leaves the cells most of the hour; --max-bytes 0 takes the whole corpus.
    max_bytes=1_500_000,
    seq_len=128,  # the default run's (pipeline/config.py PRESETS["default"])
    teacher="smollm2",
    teacher_bpe=0,
    student_bpe=4096,
    teacher_batch=16,
    ref_epochs=4.0,
    lr=5e-3,
    batch=16,
    target_docs=None,
    target_chars=None,
    task_items=None,
)
QUICK = Sizes(
    max_bytes=15_000,
    seq_len=32,
    teacher="",
    teacher_bpe=300,
    student_bpe=280,
    teacher_batch=64,
    ref_epochs=1.0,
    lr=3e-3,
    batch=8,
    target_docs=2,
    target_chars=1500,
    task_items=8,
)


def figures(cell: dict[str, Any], variant: str, key: str) -> list[float | None]:
    return [r.get(key) for r in cell["students"][variant]]


def table(results: dict[str, Any]) -> str:
    """The markdown table: every figure as mean ± std, MiniPLM's verdict against each
    baseline by the pre-registered rule, per cell and metric, and the cell's wall time."""
    head = [
        "cell",
        "varied",
        "metric",
        *(f"{v}" for v in VARIANTS),
        *(f"vs {b}" for b in BASELINES),
        "wall",
    ]
    rows = [head, ["---"] * len(head)]
    for name, c in results["cells"].items():
        for j, (key, label, lower) in enumerate(METRICS):
            ours = figures(c, "miniplm", key)
            row = [name if j == 0 else "", c["cell"]["axis"] if j == 0 else "", label]
            row += [fmt_mean_std(figures(c, v, key)) for v in VARIANTS]
            row += [verdict(ours, figures(c, b, key), lower_is_better=lower) for b in BASELINES]
            row.append(f"{c['wall_s']:.0f} s" if j == 0 else "")
            rows.append(row)
    m = results["machine"]
    lines = [
        f"Science bench ({'quick' if results['quick'] else 'full'}), {results['date']}, "
        f"{m['node']}: {m['cpus']} CPUs, load average {m['load']} at start; "
        f"{n_seeds(results['seeds'])}; teacher {results['teacher']}.",
        "",
        f"Verdict: {WIN_RULE}. One factor is varied at a time from the base cell "
        f"({cell_text(BASE)}); 'varied' names it.",
        "",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
    return "\n".join(lines) + "\n"


def cell_text(c: Cell) -> str:
    return (
        f"corpus {c.corpus:g}, alpha {c.alpha:g}, D_ref {c.ref_fraction:g}, "
        f"student {c.preset}, {c.epochs:g} epochs"
    )


def plot(results: dict[str, Any], path: Path) -> None:
    """MiniPLM's gap to each baseline per cell (positive: MiniPLM better), error bars the
    sum of the two stds (the win rule's margin), one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["cells"])
    fig, axes = plt.subplots(len(METRICS), 1, figsize=(max(6, len(names)), 3 * len(METRICS)))
    x = np.arange(len(names))
    for ax, (key, label, lower) in zip(axes, METRICS):
        for off, b in zip((-0.15, 0.15), BASELINES):
            gaps, errs = [], []
            for n in names:
                c = results["cells"][n]
                (m1, s1), (m2, s2) = (
                    mean_std(figures(c, "miniplm", key)),
                    mean_std(figures(c, b, key)),
                )
                gaps.append((m2 - m1) if lower else (m1 - m2))
                errs.append((s1 or 0.0) + (s2 or 0.0))
            ax.errorbar(x + off, gaps, yerr=errs, fmt="o", capsize=3, label=f"vs {b}")
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_ylabel(f"gap, {label}")
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.legend(fontsize=8)
    axes[0].set_title("MiniPLM's gap to each baseline (> 0: MiniPLM better; bars: std sum)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
