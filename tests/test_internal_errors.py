"""A broken invariant of miniplm is reported as its bug (InternalError, a RuntimeError),
never as the user's bad input, and the CLI exits with EX_SOFTWARE (70)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

import miniplm
from miniplm import _core, cli
from miniplm.errors import InputError, InternalError, MiniplmError

REPORT = "this is a bug in miniplm; please report it with the command and the message"


def test_internal_error_is_a_runtime_error() -> None:
    assert issubclass(InternalError, RuntimeError)
    assert issubclass(InternalError, MiniplmError)
    assert not issubclass(InternalError, ValueError)
    assert miniplm.InternalError is InternalError


@pytest.mark.parametrize("panic", [False, True])
def test_core_internal_error_surfaces_as_internal_error(panic: bool) -> None:
    with pytest.raises(InternalError) as info:
        _core._internal_error_for_test(panic)
    assert not isinstance(info.value, InputError)
    assert REPORT in str(info.value)


def test_cli_exits_70_on_internal_error(capsys: pytest.CaptureFixture[str]) -> None:
    def broken(args: argparse.Namespace) -> int:
        _core._internal_error_for_test(False)
        return 0

    code = cli._run(argparse.Namespace(command="select", func=broken))
    assert code == 70
    err = capsys.readouterr().err
    assert err.startswith("miniplm select: internal error: ")
    assert REPORT in err


def test_no_internal_site_is_reported_as_invalid_input() -> None:
    rust = Path(__file__).resolve().parent.parent / "rust"
    pattern = re.compile(r"Error::invalid\(\s*(format!\(\s*)?\"internal", re.MULTILINE)
    offenders = [
        str(p) for p in sorted(rust.rglob("*.rs")) if pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert not offenders, offenders
