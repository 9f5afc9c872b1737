"""``miniplm run [CONFIG.toml] [--preset NAME] --out DIR``."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="the whole pipeline: tokenize, reference, score, select, students, eval, report",
        description="Run MiniPLM end to end into DIR, skipping stages whose outputs are "
        "complete and whose inputs are unchanged. With no CONFIG it runs offline on the "
        "bundled corpus with the bundled SmolLM2-135M teacher.",
    )
    p.add_argument("config", nargs="?", help="TOML file overriding the preset's settings")
    p.add_argument(
        "--preset",
        help="default (CPU demo, about 7 min on 2 cores), smoke (tiny random models, "
        "< 1 min), demo-gpu",
    )
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--nproc-per-node", type=int, help="run scoring and training under torchrun")
    p.add_argument("--device", help="override the config's device (auto, cpu, cuda)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from miniplm.pipeline.config import load_config, validate
    from miniplm.pipeline.run import run_pipeline

    cfg = load_config(args.config, args.preset)
    if args.nproc_per_node is not None:
        cfg.nproc_per_node = args.nproc_per_node
    if args.device is not None:
        cfg.device = args.device
    validate(cfg)
    ctx = run_pipeline(cfg, args.out, quiet=args.quiet)
    print(f"report: {ctx.root / 'report.md'}")
    return 0
