"""``miniplm train``: pre-train a reference or student LM on token shards."""

from __future__ import annotations

import argparse
import json
from typing import Any

from miniplm._argv import DATA_HELP
from miniplm.training.presets import ARCHS, PRESET_NAMES


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "train",
        help="pre-train a causal LM on token shards (optionally a selection; Vanilla KD)",
        description="Pre-train a causal LM with the MiniPLM paper's defaults (AdamW 0.9/0.98, "
        "eps 1e-6, weight decay 0.01, clip 1.0, cosine schedule with warmup down to lr/10). "
        "Checkpoints are exact: --resume continues a killed run as if it had not stopped. "
        "Under torchrun: DDP, or FSDP2 with --fsdp.",
    )
    m = p.add_argument_group("model")
    m.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        help="paper sizes or tiny CPU sizes (mamba: tiny, mini, small, 130M)",
    )
    m.add_argument("--model-config", help="HF config (json file or model directory)")
    m.add_argument("--init-from", help="continue from an HF model directory")
    m.add_argument("--arch", choices=ARCHS, default="qwen2", help="family of --preset (qwen2)")
    m.add_argument("--vocab-size", type=int, help="default: the corpus tokenizer's")
    d = p.add_argument_group("data")
    d.add_argument("--data", required=True, help=f"token dataset: {DATA_HELP}")
    d.add_argument("--selection", help="train on a selection (SELDIR with ids.npy), no copy")
    d.add_argument("--seq-len", type=int, default=1024, help="L: instances of L+1 tokens")
    d.add_argument("--epochs", type=float, help="passes over the (selected) data")
    d.add_argument("--max-steps", type=int, help="optimizer steps (instead of --epochs)")
    d.add_argument(
        "--no-shuffle",
        dest="shuffle",
        action="store_false",
        help="corpus order (the paper's no-shuffle mode)",
    )
    d.add_argument("--seed", type=int, default=0)
    o = p.add_argument_group("optimisation")
    o.add_argument("--lr", type=float, default=6e-4)
    o.add_argument("--warmup-steps", type=int, default=2000)
    o.add_argument("--min-lr-ratio", type=float, default=0.1, help="final lr / lr (0.1)")
    o.add_argument("--weight-decay", type=float, default=0.01)
    o.add_argument("--clip", type=float, default=1.0, help="gradient norm clip")
    o.add_argument("--micro-batch-size", type=int, default=8, help="instances per rank step")
    o.add_argument(
        "--global-batch-size",
        type=int,
        default=512,
        help="instances per optimizer step (gradient accumulation is derived)",
    )
    o.add_argument(
        "--loss-chunk", type=int, default=1024, help="positions per output-head chunk of the loss"
    )
    r = p.add_argument_group("runtime")
    r.add_argument("--out", required=True, help="run directory")
    r.add_argument("--device", default="auto", help="cuda or cpu (auto)")
    r.add_argument("--compile", action="store_true", help="torch.compile the model")
    r.add_argument(
        "--grad-checkpointing",
        action="store_true",
        help="activation checkpointing (less memory, ~30%% more compute)",
    )
    r.add_argument("--fsdp", action="store_true", help="FSDP2 sharding under torchrun")
    r.add_argument("--save-every", type=int, default=1000, help="checkpoint every N steps")
    r.add_argument("--keep-checkpoints", type=int, default=2)
    r.add_argument("--log-every", type=int, default=10)
    r.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    r.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    r.add_argument("--tensorboard", action="store_true", help="also log to OUT/tensorboard")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    k = p.add_argument_group("Vanilla KD baseline")
    k.add_argument("--kd-teacher", help="teacher model (same tokenizer) for online KD")
    k.add_argument(
        "--kd-ratio",
        type=float,
        default=0.5,
        help="loss = (1 - r) CE + r CE(p_teacher, q_student) (0.5)",
    )
    m.add_argument(
        "--allow-tokenizer-mismatch",
        action="store_true",
        help="train even if --init-from / --kd-teacher has no tokenizer or another one "
        "than the dataset's",
    )
    p.set_defaults(func=run)


def to_argv(opt: Any) -> list[str]:
    """``miniplm train`` arguments that give back ``opt`` (a TrainOptions): what a
    launcher passes to torchrun. Settings the command line cannot express are refused."""
    from miniplm._argv import option_flags
    from miniplm.training.trainer import TrainOptions

    default = TrainOptions(data=opt.data, out=opt.out)
    flags = option_flags(opt, default, skip=("data", "out"))
    return ["train", "--data", opt.data, "--out", opt.out, *flags]


def from_args(args: argparse.Namespace) -> Any:
    """The TrainOptions of parsed ``miniplm train`` arguments."""
    from miniplm._argv import options_from_args
    from miniplm.training.trainer import TrainOptions

    return options_from_args(TrainOptions, args)


def run(args: argparse.Namespace) -> int:
    from miniplm.training.trainer import train

    summary = train(from_args(args))
    print(json.dumps(summary))
    return 0
