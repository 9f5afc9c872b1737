"""``miniplm score`` (placeholder: arguments and driver land with the scoring work)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("score", help="score token shards with a causal LM")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("miniplm score")
