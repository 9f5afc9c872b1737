"""Command lines from option dataclasses and back: what a launcher (torchrun) passes to
a ``miniplm`` subcommand so that its parser gives back the same options."""

from __future__ import annotations

import argparse
import os
from dataclasses import fields
from typing import Any

DATA_HELP = "a directory, a shard prefix, or a quoted glob of prefixes ('dir/*_tokens')"
"""What every CLI's ``--data`` says it takes (docs/FORMATS.md, "Token dataset")."""

# Negative switches: the field is True by default and the flag turns it off.
_OFF = {"progress": "--quiet", "shuffle": "--no-shuffle"}


def option_flags(opt: Any, default: Any, skip: tuple[str, ...] = ()) -> list[str]:
    """Flags for the fields of dataclass ``opt`` that differ from ``default`` (except
    ``skip``): ``--quiet`` / ``--no-shuffle`` for ``progress`` / ``shuffle`` off, a bare
    ``--name`` for a switch turned on, ``--name value`` for numbers, strings and paths.
    A value the command line cannot express raises ValueError."""
    argv: list[str] = []
    for f in fields(opt):
        value = getattr(opt, f.name)
        if f.name in skip or value == getattr(default, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.name in _OFF and value is False:
            argv.append(_OFF[f.name])
        elif value is True and f.name not in _OFF:
            argv.append(flag)
        elif isinstance(value, (int, float, str, os.PathLike)) and not isinstance(value, bool):
            argv += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
        else:
            raise ValueError(f"no command-line form for {f.name}={value!r}")
    return argv


def options_from_args(cls: Any, args: argparse.Namespace) -> Any:
    """The options dataclass ``cls`` from parsed arguments: every field the parser has,
    and ``progress`` off for ``--quiet`` (else None: a bar when stderr is a terminal)."""
    keys = {f.name for f in fields(cls)}
    kw = {k: v for k, v in vars(args).items() if k in keys}
    return cls(**kw, progress=False if args.quiet else None)
