"""``miniplm score``: per-instance NLL of a token dataset under one or more causal LMs."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from miniplm._argv import DATA_HELP

if TYPE_CHECKING:  # not at run time: miniplm.data loads numpy, the CLI starts without it
    from miniplm.data import PathLike


def add_device_options(p: Any) -> None:
    """``--device`` and ``--dtype``, as every command that runs a model takes them."""
    p.add_argument("--device", default="auto", help="cuda, cuda:N or cpu (auto: cuda if any)")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="model dtype (auto: bfloat16 on GPU, float32 on CPU)",
    )


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
    p.add_argument("--batch-size", type=int, default=16, help="instances per batch (16)")
    add_device_options(p)
    p.add_argument(
        "--ignore-id",
        type=int,
        default=None,
        help="input token id whose positions are not scored (default: the pad id "
        "of the tokenizer, else the config's pad_token_id, else eos_token_id; "
        "-1 scores every position)",
    )
    p.add_argument("--part-size", type=int, default=1 << 16, help="instances per part file (65536)")
    p.add_argument(
        "--checkpoint-interval",
        type=float,
        default=300.0,
        help="seconds between in-part checkpoints (300; 0: after every batch)",
    )
    p.add_argument(
        "--chunk-tokens",
        type=int,
        default=None,
        help="positions per output-head chunk (default: ~256 MiB of fp32 logits)",
    )
    p.add_argument(
        "--attn-implementation",
        default=None,
        help="transformers attention backend (sdpa, flash_attention_2, eager)",
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow model code from the model directory (off by default)",
    )
    p.add_argument(
        "--allow-tokenizer-mismatch",
        action="store_true",
        help="score even if the model's tokenizer differs from the dataset's, or it has none",
    )
    p.add_argument(
        "--skip-ids",
        metavar="IDS.npy",
        help="instance ids not to score (n_scored 0, so never selected): e.g. the reference "
        "model's training slice D_ref, which selection excludes anyway",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing runs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def to_argv(
    models: Sequence[PathLike], data: PathLike, outs: Sequence[PathLike], opt: Any
) -> list[str]:
    """``miniplm score`` arguments that give back these models, data, runs and ``opt`` (a
    ScoreOptions): what a launcher passes to torchrun."""
    from miniplm._argv import option_flags
    from miniplm.scoring.runner import ScoreOptions

    if len(models) != len(outs):
        raise ValueError(f"{len(models)} models but {len(outs)} score runs")
    argv = ["score", "--data", os.fspath(data)]
    for m, o in zip(models, outs):
        argv += ["--model", os.fspath(m), "--out", os.fspath(o)]
    return argv + option_flags(opt, ScoreOptions())


def from_args(args: argparse.Namespace) -> Any:
    """The ScoreOptions of parsed ``miniplm score`` arguments."""
    from miniplm._argv import options_from_args
    from miniplm.scoring.runner import ScoreOptions

    return options_from_args(ScoreOptions, args)


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
