"""Command lines from option dataclasses and back. A field with ``cli(...)`` metadata is
a command-line option: its flag is ``--field-name`` (or ``flag``), its default, type and
switch action come from the field, so a default is written once, in the dataclass.
``add_options`` builds the parser, ``option_flags`` what a launcher (torchrun) passes so
that the parser gives back the same options, ``options_from_args`` the way back."""

from __future__ import annotations

import argparse
import os
import types
import typing
from dataclasses import MISSING, Field, fields
from typing import Any

DATA_HELP = "a directory, a shard prefix, or a quoted glob of prefixes ('dir/*_tokens')"
"""What every CLI's ``--data`` says it takes (docs/FORMATS.md, "Token dataset")."""

_KEY = "miniplm.cli"


def cli(
    help: str, *, flag: str | None = None, group: str | None = None, **kw: Any
) -> dict[str, Any]:
    """Field metadata making the field a command-line option. ``help`` may say
    ``%(default)s``; ``flag`` names a switch that turns a True (or None) default off
    (``--no-shuffle``, ``--quiet``); ``kw`` goes to ``add_argument`` (choices, metavar)."""
    return {_KEY: {"help": help, "flag": flag, "group": group, "kw": kw}}


def _meta(f: Field[Any]) -> dict[str, Any] | None:
    meta: dict[str, Any] | None = f.metadata.get(_KEY)
    return meta


def _flag(f: Field[Any]) -> str:
    meta = _meta(f)
    return (meta and meta["flag"]) or "--" + f.name.replace("_", "-")


def _base(hint: Any) -> Any:
    """``int`` of ``int | None``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _switch(f: Field[Any], hint: Any) -> bool | None:
    """The value a bare switch sets (True: ``--fsdp``, False: ``--quiet``), or None for
    an option that takes a value."""
    if _base(hint) is not bool:
        return None
    return f.default is False


def add_options(
    p: argparse.ArgumentParser,
    cls: type,
    *,
    only: tuple[str, ...] | None = None,
    groups: tuple[str, ...] = (),
) -> None:
    """Add ``cls``'s options (those with ``cli`` metadata; or just ``only``) to ``p``,
    in field order, each in its group (``groups`` first, in that order)."""
    hints = typing.get_type_hints(cls)
    made = {g: p.add_argument_group(g) for g in groups}
    for f in fields(cls):
        meta = _meta(f)
        if meta is None or (only is not None and f.name not in only):
            continue
        target: Any = p
        if meta["group"] is not None:
            target = made.setdefault(meta["group"], p.add_argument_group(meta["group"]))
        kw: dict[str, Any] = {"dest": f.name, "help": meta["help"], **meta["kw"]}
        switch = _switch(f, hints[f.name])
        if switch is True:
            kw["action"] = "store_true"
        elif switch is False:
            kw.update(action="store_const", const=False, default=f.default)
        elif f.default is MISSING and f.default_factory is MISSING:
            kw["required"] = True
        else:
            kw["default"] = f.default
        if switch is None and _base(hints[f.name]) is not str:
            kw["type"] = _base(hints[f.name])
        target.add_argument(_flag(f), **kw)


def option_flags(opt: Any, default: Any, skip: tuple[str, ...] = ()) -> list[str]:
    """Flags for the fields of dataclass ``opt`` that differ from ``default`` (except
    ``skip``): a bare switch (``--fsdp``, ``--quiet``) where it sets the value, ``--name
    value`` for numbers, strings and paths. A value the command line cannot express (a
    field without ``cli`` metadata, a switch's other value) raises ValueError."""
    hints = typing.get_type_hints(type(opt))
    argv: list[str] = []
    for f in fields(opt):
        value = getattr(opt, f.name)
        if f.name in skip or value == getattr(default, f.name):
            continue
        switch = _switch(f, hints[f.name])
        if _meta(f) is None:
            pass
        elif switch is not None:
            if value is switch:
                argv.append(_flag(f))
                continue
        elif isinstance(value, (int, float, str, os.PathLike)) and not isinstance(value, bool):
            argv += [_flag(f), os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
            continue
        raise ValueError(f"no command-line form for {f.name}={value!r}")
    return argv


def options_from_args(cls: Any, args: argparse.Namespace) -> Any:
    """The options dataclass ``cls`` from parsed arguments: every field the parser has."""
    keys = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in vars(args).items() if k in keys})
