"""``DIR/report.md`` and its PNG plots: the students side by side, the selection's
statistics, per-source keep rates and the decoded extremes of r."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from miniplm._atomic import atomic_write_text
from miniplm.pipeline.config import RunConfig, dump
from miniplm.pipeline.corpus_stages import DataOut, ModelOut, SplitOut
from miniplm.pipeline.eval_stage import EvalOut
from miniplm.pipeline.report_figures import (
    FIGURES,
    LABELS,
    bpb,
    comparison,
    fmt,
    target_section,
)
from miniplm.pipeline.report_stats import SourceRow, hist_edges, hist_rows, source_stats
from miniplm.pipeline.seeds import fmt_mean_std, mean_std, n_seeds
from miniplm.pipeline.select_stages import ScoreOut, SelectOut
from miniplm.pipeline.sources import corpus_source_sizes, shown_sources
from miniplm.pipeline.stage import Inputs, Outputs, Stage
from miniplm.pipeline.student_corpus import (
    KD_LEFT_OUT,
    TOKENIZER,
    StudentTokenizerOut,
    own_tokenizer,
)
from miniplm.pipeline.student_stages import student_label, student_stage_name, student_variants
from miniplm.pipeline.train_stages import TrainOut, teacher_name


def _params(model_dir: str) -> int:
    from safetensors import safe_open

    n = 0
    for f in Path(model_dir).glob("*.safetensors"):
        with safe_open(str(f), "np") as st:
            for k in st.keys():  # noqa: SIM118 (safe_open is not a mapping)
                n += int(np.prod(st.get_slice(k).get_shape()))
    return n


def _sci(x: float) -> str:
    return f"{x:.2e}"


def _source_rows(inp: Inputs, edges: np.ndarray | None) -> list[SourceRow]:
    """The shown sources (``eval.top_sources`` largest, index order), then the pooled
    rest, each with its statistics of r, streamed over the score runs."""
    from miniplm.dataset_meta import read_sources
    from miniplm.scores import diff_chunks

    d, select, sc = (
        inp.get("data", DataOut),
        inp.get("select", SelectOut),
        inp.get("score", ScoreOut),
    )
    names = d.sources
    sources = read_sources(inp.resolve(d.dataset), inp.get("split", SplitOut).instances).ids
    kept = np.load(Path(inp.resolve(select.miniplm)) / "ids.npy", mmap_mode="r")
    sizes = corpus_source_sizes(names, d.counts)
    shown = shown_sources(sizes, inp.cfg.eval.top_sources)
    chunks = diff_chunks(inp.resolve(sc.teacher), inp.resolve(sc.reference))
    return source_stats(chunks, sources, kept, shown, names, sizes, edges)


def _save(fig: Any, out: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def _plots(
    inp: Inputs,
    out: Path,
    edges: np.ndarray | None,
    thr: float | None,
    rows: list[SourceRow],
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for row in hist_rows(rows) if edges is not None else []:
        if row.hist.sum():
            ax.stairs(row.hist, edges, fill=True, alpha=0.55, label=row.label)
    if thr is not None:
        ax.axvline(thr, color="k", linestyle="--", label=f"threshold {thr:.3f}")
    ax.set_xlabel("r = NLL_ref - NLL_teacher (per token)")
    ax.set_ylabel("instances")
    ax.set_title(
        "Difference scores by source"
        + ("" if edges is not None else " (none drawn: no finite range of r)")
    )
    ax.legend(fontsize=7)
    made.append(_save(fig, out, "r_histogram.png"))

    fig, ax = plt.subplots(figsize=(max(7.0, 0.3 * len(rows)), 3.5))
    ax.bar(range(len(rows)), [row.rate if row.rate is not None else 0 for row in rows])
    ax.set_xticks(
        range(len(rows)), [row.label for row in rows], rotation=30, ha="right", fontsize=8
    )
    ax.set_ylabel("kept / eligible")
    ax.set_ylim(0, 1)
    ax.axhline(inp.cfg.selection.alpha, color="k", linestyle=":", label="alpha")
    ax.set_title("Keep rate per source")
    ax.legend()
    made.append(_save(fig, out, "keep_rate_by_source.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    for k, v in enumerate(student_variants(inp.cfg)):
        for i in range(inp.cfg.students.seeds):  # every seed, one colour per student
            run = Path(inp.resolve(inp.get(student_stage_name(v, i), TrainOut).run))
            recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            x, y = [x["tokens"] for x in recs], [x["loss"] for x in recs]
            ax.plot(x, y, color=f"C{k}", alpha=0.8, label=LABELS[v] if i == 0 else None)
    ax.set_xlabel("training tokens")
    ax.set_ylabel("training loss (CE on its own data)")
    ax.set_title("Students' training curves")
    ax.legend(fontsize=7)
    made.append(_save(fig, out, "loss_curves.png"))
    return made


def _examples(inp: Inputs, rows: list[SourceRow]) -> list[str]:
    """The highest- and lowest-r instance of every reported source (and of the pooled
    rest), decoded."""
    from tokenizers import Tokenizer

    from miniplm import TokenDataset
    from miniplm.dataset_meta import TOKENIZER_JSON

    d = inp.get("data", DataOut)
    data = Path(inp.resolve(d.dataset))
    tok = Tokenizer.from_file(str(data / TOKENIZER_JSON))
    ds = TokenDataset(data)
    lines = []
    for row in rows:
        for label, pick in (("highest r", row.highest), ("lowest r", row.lowest)):
            if pick is None:
                continue
            i, r = pick
            text = tok.decode([int(t) for t in ds[i]][:120]).replace("\n", " ").strip()
            text = text.replace("|", "\\|")[:300]
            lines.append(f"| {row.label} | {label} | {r:.3f} | {i} | {text} |")
    return lines


def _own_tokens_line(inp: Inputs) -> str:
    tok = inp.get(TOKENIZER, StudentTokenizerOut)
    return (
        f"their own tokenizer (`{tok.spec}`, {tok.vocab_size} entries): each trains on "
        "its subset exported and re-tokenized, equal numbers of its own tokens (the "
        "smallest re-tokenized subset's, times epochs) "
    )


def _own_tokens_note(hr: dict[str, Any], kd: bool) -> str:
    return (
        "The students read the held-out text in their own tokens, the reference in the "
        "corpus's: NLL per token is not comparable between them; bits per byte (summed "
        "NLL / ln 2 / the slice's UTF-8 bytes) is. Reference LM, held-out bits/byte: "
        f"{fmt(hr.get('bits_per_byte'))}." + (f" {KD_LEFT_OUT}." if kd else "")
    )


@dataclass
class ReportOut(Outputs):
    report: str


class ReportStage(Stage[ReportOut]):
    """Plots into the stage folder, ``report.md`` beside the stage folders."""

    outputs = ReportOut

    def __init__(self, cfg: RunConfig, reads: tuple[str, ...]) -> None:
        # The version: bumped when the report changes, so older runs get the new one.
        super().__init__("report", reads, {"version": 6})

    def run(self, sdir: Path, inp: Inputs) -> ReportOut:
        return ReportOut(inp.record(write_report(inp, sdir, self.reads)))


def write_report(inp: Inputs, out: Path, stages: tuple[str, ...]) -> Path:
    """``report.md`` of the run whose ``stages`` (names, in order) ``inp`` reads."""
    cfg, root = inp.cfg, inp.root
    results = json.loads(Path(inp.resolve(inp.get("eval", EvalOut).results)).read_text())
    select = inp.get("select", SelectOut)
    sel = select.report
    thr = sel.get("threshold")
    d = inp.get("data", DataOut)
    stats = sel.get("score_stats") or {}
    edges = hist_edges(stats.get("min"), stats.get("max"))
    src_rows = _source_rows(inp, edges)
    plots = _plots(inp, out, edges, thr, src_rows)
    atomic_write_text(out / "config.json", dump(cfg))

    # FLOPs: training 6 N T; the KD teacher's forward 2 N_tch T; offline scoring 2 N T for
    # teacher and reference over the scored tokens, plus the reference's own training.
    n_t = _params(inp.resolve(inp.get(teacher_name(cfg), ModelOut).model))
    ref = inp.get("reference", TrainOut)
    n_ref = _params(inp.resolve(ref.model))
    scored = int(inp.get("score", ScoreOut).summaries[0]["scored_tokens"])
    offline = 2.0 * (n_t + n_ref) * scored + 6.0 * n_ref * ref.tokens
    variants, seeds = student_variants(cfg), cfg.students.seeds
    runs = {v: [student_label(v, i) for i in range(seeds)] for v in variants}

    def over_seeds(v: str, figure: Callable[[dict[str, Any]], float | None]) -> list[float | None]:
        return [figure(results[label]) for label in runs[v]]

    own = own_tokenizer(cfg)  # students in their own tokens: NLL per token not comparable
    rows = []
    for v in variants:
        # Equal steps for every seed; the tokens in them vary with the data order.
        sts = [inp.get(student_stage_name(v, i), TrainOut) for i in range(seeds)]
        tokens = [float(st.tokens) for st in sts]
        n_s = _params(inp.resolve(sts[0].model))
        train_flops = 6.0 * n_s * mean_std(tokens)[0]  # the mean over the seeds
        if v == "kd":
            train_flops += 2.0 * n_t * mean_std(tokens)[0]
        total = train_flops + (offline if v == "miniplm" else 0.0)
        cells = [fmt_mean_std(over_seeds(v, f), digits) for f, digits in FIGURES]
        rows.append(
            f"| {LABELS[v]} | {' | '.join(cells)} | {fmt_mean_std(tokens, 0)} | "
            f"{sts[0].steps} | {fmt_mean_std([st.elapsed_s for st in sts], 0)} | "
            f"{_sci(train_flops)} | {_sci(total)} |"
            + (f" {fmt_mean_std(over_seeds(v, bpb))} |" if own else "")
        )
    hr = results["reference"]["heldout"]["heldout"]
    counts = d.counts
    src_lines = []
    for row in src_rows:
        src_lines.append(
            f"| {row.label} | {row.instances} | {row.eligible} | {row.kept} | "
            f"{fmt(row.rate, 3)} | {fmt(row.mean_r, 3)} |"
        )
    per_source_key = "bits_per_byte" if own else "mean_nll"
    by_src_rows = []
    for row in src_rows:

        def nll(res: dict[str, Any], name: str | None = row.name) -> float | None:
            h = res["per_source"].get(name) if name is not None else res["per_source_other"]
            return None if h is None else h.get(per_source_key)

        cells = [fmt_mean_std(over_seeds(v, nll), 3) for v in variants]
        cells.append(fmt(nll(results["reference"]), 3))
        first = results[variants[0]]
        h = first["per_source"].get(row.name) if row.name else first["per_source_other"]
        by_src_rows.append(
            f"| {row.label} | {fmt(row.rate, 3)} | {(h or {}).get('instances', 0)} | "
            + " | ".join(cells)
            + " |"
        )
    n_eligible = sum(row.eligible for row in src_rows)
    neg = sum(row.negative for row in src_rows) / n_eligible if n_eligible else float("nan")
    split = inp.get("split", SplitOut).counts
    teacher_desc = (
        cfg.teacher.model
        or f"trained here (preset {cfg.teacher.train.preset if cfg.teacher.train else '?'})"
    )
    md = [
        "# MiniPLM run report",
        "",
        f"Teacher: `{teacher_desc}` ({n_t / 1e6:.1f}M parameters); reference: preset "
        f"`{cfg.reference.preset}` ({n_ref / 1e6:.1f}M) trained on D_ref = {split['ref']} "
        f"instances; students: preset `{cfg.students.preset}`, arch `{cfg.students.arch}`, "
        + (_own_tokens_line(inp) if own else "equal steps and batch (so equal instances) ")
        + f"for every student, each trained with {n_seeds(seeds)} (initialisation and "
        f"data order). Corpus: {counts.get('instances')} "
        f"instances of <= {cfg.corpus.seq_len + 1} tokens ({counts.get('tokens')} tokens); "
        f"held-out: {split['heldout']} instances ({split['heldout_clean']} without the "
        "noise sources), never trained on or selected.",
        "",
        "## Students",
        "",
        "| student | held-out NLL | held-out ppl | held-out NLL, no noise | `[eval] tasks` acc | "
        "training tokens | steps | wall s | training FLOPs | FLOPs incl. offline |"
        + (" held-out bits/byte |" if own else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if own else ""),
        *rows,
        "",
        *([_own_tokens_note(hr, "kd" in cfg.selection.baselines), ""] if own else []),
        f"Reference LM on the same held-out data: NLL {fmt(hr.get('mean_nll'))}. "
        "`FLOPs incl. offline` adds, for MiniPLM, the teacher and reference scoring passes "
        f"(2 N T over {scored} scored tokens each) and the reference's training "
        f"({_sci(offline)} in all), which the paper leaves out; it is paid once for any "
        "number of students. Held-out NLL is per token, on instances of the same corpus; "
        "`no noise` drops the labelled noise sources, i.e. the text a user wants modelled. "
        f"Figures over the {n_seeds(seeds)} are mean ± sample std (one seed: the value); "
        "FLOPs are their means.",
        "",
        *target_section(inp, results, variants, over_seeds),
        *comparison(variants, over_seeds, seeds),
        "## Selection",
        "",
        f"alpha {cfg.selection.alpha}: K = {sel['k']} of {sel['num_eligible']} eligible "
        f"instances (excluded: {sel['num_excluded']} = D_ref + held-out; NaN: "
        f"{sel['num_nan']}); threshold r >= {fmt(thr)}; ties at threshold "
        f"{sel['ties_at_threshold']}. Share of instances with r < 0 (the reference is "
        f"ahead of the teacher): {neg:.1%}.",
        "",
        "| source | instances | eligible | kept | keep rate | mean r |",
        "|---|---|---|---|---|---|",
        *src_lines,
        "",
        ("Held-out bits per byte" if own else "Held-out NLL")
        + " per source (the selection changes the mix of sources a student sees: "
        "compare each student where MiniPLM kept much and where it kept little):",
        "",
        "| source | keep rate | held-out instances | "
        + " | ".join(LABELS[v].split(" (")[0] for v in variants)
        + " | reference |",
        "|---|---|---|" + "---|" * (len(variants) + 1),
        *by_src_rows,
        "",
        *[f"![{p}]({out.name}/{p})" for p in plots],
        "",
        "## Highest- and lowest-scored instances per source (decoded, first 120 tokens)",
        "",
        "| source | which | r | id | text |",
        "|---|---|---|---|---|",
        *_examples(inp, src_rows),
        "",
        "## Config",
        "",
        f"The resolved config this report was made with: [{out.name}/config.json]"
        f"({out.name}/config.json) (`DIR/config.json` is the one of the latest run, written "
        "when it starts, so a run that fails after a config change leaves it newer than "
        "this report).",
        "",
        "## Stage times",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {name} | {inp.elapsed_s(name):.1f} |" for name in stages],
        "",
    ]
    return atomic_write_text(root / "report.md", "\n".join(md))
