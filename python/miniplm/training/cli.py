"""``miniplm train``: pre-train a reference or student LM on token shards."""

from __future__ import annotations

import argparse
import json
from typing import Any

from miniplm._argv import add_options, option_flags, options_from_args
from miniplm.training.options import GROUPS, TrainOptions


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "train",
        help="pre-train a causal LM on token shards (optionally a selection; Vanilla KD)",
        description="Pre-train a causal LM with the MiniPLM paper's defaults (AdamW 0.9/0.98, "
        "eps 1e-6, weight decay 0.01, clip 1.0, cosine schedule with warmup down to lr/10). "
        "Checkpoints are exact: --resume continues a killed run as if it had not stopped. "
        "Under torchrun: DDP, or FSDP2 with --fsdp.",
    )
    add_options(p, TrainOptions, groups=GROUPS)
    p.set_defaults(func=run)


def to_argv(opt: TrainOptions) -> list[str]:
    """``miniplm train`` arguments that give back ``opt``: what a launcher passes to
    torchrun. Settings the command line cannot express are refused."""
    default = TrainOptions(data=opt.data, out=opt.out)
    flags = option_flags(opt, default, skip=("data", "out"))
    return ["train", "--data", opt.data, "--out", opt.out, *flags]


def from_args(args: argparse.Namespace) -> TrainOptions:
    """The TrainOptions of parsed ``miniplm train`` arguments."""
    opt: TrainOptions = options_from_args(TrainOptions, args)
    return opt


def run(args: argparse.Namespace) -> int:
    from miniplm.training.trainer import train

    summary = train(from_args(args))
    print(json.dumps(summary))
    return 0
