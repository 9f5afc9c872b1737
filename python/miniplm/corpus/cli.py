"""``miniplm tokenize`` (placeholder: arguments and driver land with the corpus work)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("tokenize", help="text corpus -> token shards")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("miniplm tokenize")
