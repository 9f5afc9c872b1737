"""``miniplm score``: per-instance NLL of a token dataset under one or more causal LMs."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from miniplm._argv import DATA_HELP, add_options, option_flags, options_from_args
from miniplm.scoring.options import ScoreOptions

if TYPE_CHECKING:  # not at run time: miniplm.data loads numpy, the CLI starts without it
    from miniplm.data import PathLike


def add_device_options(p: Any) -> None:
    """``--device`` and ``--dtype``, as every command that runs a model takes them."""
    add_options(p, ScoreOptions, only=("device", "dtype"))


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "score",
        help="score token shards with causal LMs (resumable, torchrun-ready)",
        description="Write a score run (per-instance nll_sum and n_scored) for each --model. "
        "Several models that share a tokenizer are scored in one pass over the data (give "
        "one --out per --model, in the same order). Re-running the same command resumes an "
        "interrupted run; under `torchrun --nproc-per-node G -m miniplm score ...` each rank "
        "scores its own contiguous range of parts.",
    )
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="M",
        help="Hugging Face model directory (safetensors) or .gguf file; repeatable",
    )
    p.add_argument("--data", required=True, help=f"token dataset: {DATA_HELP}")
    p.add_argument(
        "--out",
        action="append",
        required=True,
        metavar="RUN",
        help="score run directory, one per --model",
    )
    add_options(p, ScoreOptions)
    p.set_defaults(func=run)


def to_argv(
    models: Sequence[PathLike], data: PathLike, outs: Sequence[PathLike], opt: ScoreOptions
) -> list[str]:
    """``miniplm score`` arguments that give back these models, data, runs and ``opt`` (a
    ScoreOptions): what a launcher passes to torchrun."""
    if len(models) != len(outs):
        raise ValueError(f"{len(models)} models but {len(outs)} score runs")
    argv = ["score", "--data", os.fspath(data)]
    for m, o in zip(models, outs):
        argv += ["--model", os.fspath(m), "--out", os.fspath(o)]
    return argv + option_flags(opt, ScoreOptions())


def from_args(args: argparse.Namespace) -> ScoreOptions:
    """The ScoreOptions of parsed ``miniplm score`` arguments."""
    opt: ScoreOptions = options_from_args(ScoreOptions, args)
    return opt


def run(args: argparse.Namespace) -> int:
    from miniplm.scoring.runner import score

    summaries = score(args.model, args.data, args.out, from_args(args))
    if int(os.environ.get("RANK", "0")) == 0:
        for s in summaries:
            tps = s["scored_tokens"] / s["elapsed_s"] if s["elapsed_s"] else 0.0
            mean = "n/a" if s["mean_nll"] is None else f"{s['mean_nll']:.4f}"
            print(
                f"{s['model']}: {s['instances']} instances, {s['scored_tokens']} scored "
                f"tokens, mean NLL {mean}, {s['elapsed_s']:.1f} s ({tps:,.0f} tok/s) "
                f"-> {s['out']}"
            )
    return 0
