"""The ``miniplm`` command: one subcommand per pipeline stage.

Each stage module exposes ``register(subparsers)``, which adds its parser and sets
``func``; heavy imports (torch, transformers) happen inside ``func``, so ``miniplm
--help`` stays fast and a missing optional dependency is reported by the stage that needs
it."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from miniplm.errors import InternalError, MiniplmError

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


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler's stop, `kill`) handled as Ctrl-C for the block: a
    KeyboardInterrupt in the main thread, which the native long calls see too (they poll
    Python's signal handlers), so outputs are cleaned up and locks released. Only in the
    main thread, where Python allows handlers; the previous handler is put back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with sigterm_as_interrupt():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        code: int = args.func(args)
    except InternalError as e:  # our bug, not the user's input: EX_SOFTWARE
        print(f"miniplm {args.command}: {e}", file=sys.stderr)
        return 70
    except (MiniplmError, OSError) as e:  # OSError: not found, exists, disk full, ...
        print(f"miniplm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"miniplm {args.command}: interrupted", file=sys.stderr)
        return 130
    return code
