"""When does Difference Sampling help at small scale? A CPU ablation (issue 12).

Each cell compares three students trained on subsets of equal size of the cell's pool:
MiniPLM (top-alpha by teacher-minus-reference difference), the uniform random subset and
perplexity filtering (lowest teacher NLL), over seeds, on the target set (whole works
held out of the bundled corpus: bits per byte, nats/token) and the bundled zero-shot
task (acc, acc_norm). Students have their own small BPE (trained once on the corpus
text) and every student of a cell trains on equal numbers of its own tokens.

Axes, one factor at a time around the base cell: corpus size, alpha, the D_ref fraction,
the student size, and epochs (the paper's data-limited setting: alpha 0.25, 4 epochs).

The teacher scores the whole corpus once (a resumable score run under ``--work``); a
cell's pool is a seeded subset of those instances (nested: a smaller pool is a prefix
of one permutation), so no cell rescores the teacher. The reference is trained on D_ref
of the cell's pool and scores only the cell's candidates.

    python benches/bench_science.py --work /tmp/sci --out /tmp/sci-out          # ~1 h
    python benches/bench_science.py --quick --work /tmp/q --out /tmp/q-out      # ~1 min

Resumable: every step writes its result last (atomically), so a rerun (after Ctrl-C)
skips what is done; a cell already done is skipped whole."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from miniplm._atomic import atomic_write_text
from miniplm.pipeline.seeds import student_seed
from miniplm.pipeline.student_corpus import own_token_steps

from _science import (
    FULL,
    QUICK,
    VARIANTS,
    Cell,
    Sizes,
    all_cells,
    cell_text,
    plot,
    table,
)

RUN_SEED = 0


def done(path: Path, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``path``'s JSON if a run already wrote it, else ``make()`` written there (last,
    atomically: an interrupted step is redone, a finished one never)."""
    if path.is_file():
        got: dict[str, Any] = json.loads(path.read_text())
        return got
    out = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(out, indent=1) + "\n")
    return out


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def train_model(
    data: Path,
    out: Path,
    *,
    sizes: Sizes,
    preset: str,
    seed: int,
    selection: Path | None = None,
    epochs: float | None = None,
    max_steps: int | None = None,
) -> dict[str, Any]:
    from miniplm.training.trainer import TrainOptions, train

    opt = TrainOptions(
        data=str(data),
        out=str(out),
        selection=None if selection is None else str(selection),
        preset=preset,
        seq_len=sizes.seq_len,
        epochs=epochs,
        max_steps=max_steps,
        seed=seed,
        lr=sizes.lr,
        warmup_steps=5,
        micro_batch_size=sizes.batch,
        global_batch_size=sizes.batch,
        device="cpu",
        save_every=50,
        log_every=10**9,
        resume=True,
        progress=False,
    )
    summary: dict[str, Any] = train(opt)
    return summary


class Shared:
    """What every cell reads: the corpus in the teacher's tokens and its teacher scores,
    the students' tokenizer, the target set and the zero-shot task."""

    def __init__(self, work: Path, sizes: Sizes) -> None:
        from miniplm import TokenDataset
        from miniplm.bundled import zero_shot_task
        from miniplm.corpus.bpe import train_bpe
        from miniplm.corpus.tokenize import tokenize_corpus
        from miniplm.default_corpus import target_documents, write_default_corpus

        self.work, self.sizes = work, sizes
        text = work / "text" / "corpus.jsonl"
        if not text.is_file():
            write_default_corpus(text.parent, seed=RUN_SEED, max_bytes=sizes.max_bytes)
        tok: str
        if sizes.teacher == "smollm2":
            from miniplm.bundled import smollm2_checkpoint

            self.teacher_model = str(smollm2_checkpoint())
            tok = self.teacher_model
        else:
            tok = str(work / "teacher-tokenizer")
            if not Path(tok).is_dir():
                train_bpe([text], tok, sizes.teacher_bpe)
        self.data = work / "corpus"
        done(
            work / "corpus.done.json",
            lambda: tokenize_corpus(
                [text],
                self.data,
                tok,
                seq_len=sizes.seq_len,
                source_field="source",
                overwrite=True,
                progress=False,
            )["counts"],
        )
        self.n = len(TokenDataset(self.data))
        if sizes.teacher != "smollm2":
            teacher = work / "teacher"
            done(
                work / "teacher.done.json",
                lambda: train_model(
                    self.data, teacher, sizes=sizes, preset="tiny", seed=RUN_SEED, epochs=1.0
                ),
            )
            self.teacher_model = str(teacher / "final")
        self.teacher_scores = work / "scores" / "teacher"
        t0 = time.perf_counter()
        done(work / "scores" / "teacher.done.json", lambda: self._score_teacher(t0))
        self.student_tok = work / "student-tokenizer"
        if not self.student_tok.is_dir():
            train_bpe([text], self.student_tok, sizes.student_bpe)
        docs = target_documents()[: sizes.target_docs]
        self.target = [d["text"][: sizes.target_chars] for d in docs]
        self.target_works = sorted({f"{d['source']}: {d['work']}" for d in docs})
        task = zero_shot_task()
        if sizes.task_items is not None:
            lines = task.read_text(encoding="utf-8").splitlines(keepends=True)
            task = work / "task" / "continuation.jsonl"
            if not task.is_file():
                task.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(task, lines[: sizes.task_items])
        self.task = task
        # One permutation of all instances: a cell's pool is its prefix.
        self.order = np.random.default_rng([RUN_SEED, 7]).permutation(self.n)

    def _score_teacher(self, t0: float) -> dict[str, Any]:
        from miniplm.scoring.runner import ScoreOptions, score

        log(f"teacher scores {self.n} instances (once; resumable)")
        opt = ScoreOptions(batch_size=self.sizes.teacher_batch, device="cpu", progress=None)
        summary = score([self.teacher_model], self.data, [self.teacher_scores], opt)[0]
        return {"summary": summary, "wall_s": time.perf_counter() - t0}


def run_cell(sh: Shared, cell: Cell, seeds: int) -> dict[str, Any]:
    """One cell: split its pool, train and score its reference, select, re-tokenize the
    three subsets, train and evaluate every student over ``seeds`` seeds."""
    import miniplm
    from miniplm import TokenDataset
    from miniplm.corpus.retokenize import retokenize
    from miniplm.evaluation import evaluate
    from miniplm.scoring.runner import ScoreOptions, score

    t0 = time.perf_counter()
    d = sh.work / "cells" / cell.name
    d.mkdir(parents=True, exist_ok=True)
    ds = TokenDataset(sh.data)
    pool = np.sort(sh.order[: max(2, round(cell.corpus * sh.n))])
    rng = np.random.default_rng([RUN_SEED, 11])
    ref = np.sort(
        rng.choice(pool, size=max(1, round(cell.ref_fraction * len(pool))), replace=False)
    )
    candidates = np.setdiff1d(pool, ref)
    exclude = d / "exclude.npy"
    if not exclude.is_file():
        np.save(d / "exclude.tmp.npy", np.setdiff1d(np.arange(sh.n), candidates).astype(np.uint64))
        os.replace(d / "exclude.tmp.npy", exclude)
    if not (d / "ref" / "ids.npy").is_file():
        ds.write_selection(d / "ref", ref, f"D_ref of cell {cell.name}", overwrite=True)
    reference = d / "reference"
    done(
        d / "reference.done.json",
        lambda: train_model(
            sh.data,
            reference,
            sizes=sh.sizes,
            preset="tiny",
            seed=RUN_SEED,
            selection=d / "ref",
            epochs=sh.sizes.ref_epochs,
        ),
    )
    ref_scores = d / "scores-reference"
    opt = ScoreOptions(batch_size=sh.sizes.teacher_batch, device="cpu", skip_ids=str(exclude))
    done(
        d / "scores-reference.done.json",
        lambda: score([str(reference / "final")], sh.data, [ref_scores], opt)[0],
    )

    def select() -> dict[str, Any]:
        main = miniplm.select(
            d / "sel-miniplm",
            teacher=sh.teacher_scores,
            reference=ref_scores,
            ratio=cell.alpha,
            exclude=exclude,
            overwrite=True,
        )
        k = int(main["num_selected"])
        miniplm.select(
            d / "sel-random",
            random=True,
            count=k,
            exclude=exclude,
            data=sh.data,
            seed=RUN_SEED,
            overwrite=True,
        )
        miniplm.select(
            d / "sel-ppl",
            by="teacher",
            keep="lowest",
            teacher=sh.teacher_scores,
            count=k,
            exclude=exclude,
            overwrite=True,
        )
        return {"k": k, "candidates": len(candidates), "pool": len(pool), "ref": len(ref)}

    sel = done(d / "select.done.json", select)

    def student_corpus(v: str) -> dict[str, Any]:
        out = d / f"student-corpus-{v}"
        info = retokenize(
            sh.data,
            out,
            str(sh.student_tok),
            selection=d / f"sel-{v}",
            seq_len=sh.sizes.seq_len,
            overwrite=True,
            progress=False,
        )
        return {**info, "dataset": str(out)}

    corpora = {
        v: done(d / f"student-corpus-{v}.done.json", partial(student_corpus, v)) for v in VARIANTS
    }
    steps = own_token_steps(corpora, cell.epochs, sh.sizes.batch)

    def student(v: str, i: int) -> dict[str, Any]:
        out = d / f"student-{v}-{i}"
        s = train_model(
            Path(corpora[v]["dataset"]),
            out,
            sizes=sh.sizes,
            preset=cell.preset,
            seed=student_seed(RUN_SEED, i),
            max_steps=steps[v],
        )
        r = evaluate(str(out / "final"), texts=sh.target, mc_files=[sh.task], device="cpu")
        task = next(iter(r["tasks"].values()))
        return {
            "target_bpb": r["texts"]["bits_per_byte"],
            "target_nats": r["texts"]["mean_nll"],
            "zs_acc": task["acc"],
            "zs_acc_norm": task["acc_norm"],
            "steps": s["steps"],
            "tokens": s["tokens"],
            "parameters": s["parameters"],
        }

    runs: dict[str, list[dict[str, Any]]] = {}
    for v in VARIANTS:
        runs[v] = []
        for i in range(seeds):
            log(f"{cell.name}: student {v}, seed {i + 1}/{seeds} ({steps[v]} steps)")
            runs[v].append(done(d / f"student-{v}-{i}.done.json", partial(student, v, i)))
    return {
        "cell": dataclasses.asdict(cell),
        "seeds": seeds,
        "selection": sel,
        "own_tokens": {v: int(c["tokens"]) for v, c in corpora.items()},
        "steps": steps,
        "students": runs,
        "wall_s": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--work", type=Path, required=True, help="caches (resumable)")
    p.add_argument("--out", type=Path, required=True, help="results.json, table.md, gaps.png")
    p.add_argument("--seeds", type=int, default=None, help="seeds per student (3; quick: 1)")
    p.add_argument("--cells", default="", help="comma-separated cell names (default: all)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and teacher (~1 min)")
    p.add_argument(
        "--max-bytes", type=int, default=None, help="corpus text to score (0: whole corpus)"
    )
    a = p.parse_args(argv)
    sizes = QUICK if a.quick else FULL
    if a.max_bytes is not None:
        if a.max_bytes < 0:
            p.error("--max-bytes must be >= 0")
        sizes = dataclasses.replace(sizes, max_bytes=a.max_bytes or None)
    seeds = a.seeds if a.seeds is not None else (1 if a.quick else 3)
    if seeds < 1:
        p.error("--seeds must be at least 1")
    cells = {c.name: c for c in all_cells()}
    picked = [s.strip() for s in a.cells.split(",") if s.strip()] or list(cells)
    unknown = [s for s in picked if s not in cells]
    if unknown:
        p.error(f"unknown cells {unknown}; known: {', '.join(cells)}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t0 = time.perf_counter()
    # One cache per corpus size: the teacher's scores are of that corpus.
    work: Path = a.work / f"{'quick' if a.quick else 'full'}-{sizes.max_bytes or 'all'}"
    sh = Shared(work, sizes)
    results: dict[str, Any] = {
        "quick": a.quick,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "node": platform.node() or "?",
            "cpus": os.cpu_count(),
            "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "python": platform.python_version(),
        },
        "seeds": seeds,
        "teacher": "SmolLM2-135M" if sizes.teacher == "smollm2" else "tiny, trained here",
        "sizes": dataclasses.asdict(sizes),
        "instances": sh.n,
        "target_works": sh.target_works,
        "cells": {},
    }
    for name in picked:
        log(f"cell {name}: {cell_text(cells[name])}")
        key = f"{name}-seeds{seeds}"
        results["cells"][name] = done(
            work / "cells" / f"{key}.done.json", partial(run_cell, sh, cells[name], seeds)
        )
    results["wall_s"] = time.perf_counter() - t0
    a.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(a.out / "results.json", json.dumps(results, indent=1) + "\n")
    atomic_write_text(a.out / "table.md", table(results))
    plot(results, a.out / "gaps.png")
    print(table(results))
    log(f"done in {results['wall_s']:.0f} s: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
