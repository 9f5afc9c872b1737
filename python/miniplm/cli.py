"""The ``miniplm`` command: one subcommand per pipeline stage.

Each stage module exposes ``register(subparsers)``, which adds its parser and sets
``func``; heavy imports (torch, transformers) happen inside ``func``, so ``miniplm
--help`` stays fast and a missing optional dependency is reported by the stage that needs
it."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from miniplm.errors import MiniplmError

# Stage modules, in pipeline order.
_STAGES = (
    "miniplm.corpus.cli",
    "miniplm.corpus.export_cli",
    "miniplm.scoring.cli",
    "miniplm.training.cli",
    "miniplm.evaluation.cli",
    "miniplm.pipeline.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="miniplm",
        description="Knowledge distillation for LM pre-training by Difference Sampling. "
        "Selection and refined-corpus building live in `miniplm-sample`.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _STAGES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (MiniplmError, FileNotFoundError, FileExistsError) as e:
        print(f"miniplm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"miniplm {args.command}: interrupted", file=sys.stderr)
        return 130
    return code
