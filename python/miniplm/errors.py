"""Exceptions raised by miniplm. The native core raises these with its own messages.

I/O problems surface as the builtin ``FileNotFoundError`` / ``PermissionError`` /
``OSError``, an existing output as ``FileExistsError`` and Ctrl-C as ``KeyboardInterrupt``.
A broken invariant of miniplm itself is ``InternalError`` (a ``RuntimeError``): never the
user's input, always a bug to report.
"""

from __future__ import annotations


class MiniplmError(Exception):
    """Base class of miniplm's own errors."""


class FormatError(MiniplmError, ValueError):
    """A file is not what its format promises (truncated, foreign, inconsistent)."""


class InputError(MiniplmError, ValueError):
    """Arguments or inputs that do not fit together (lengths, ranges, options)."""


class OutputLockedError(MiniplmError, RuntimeError):
    """Another process is writing the same output now (it holds the output's lock)."""


class InternalError(MiniplmError, RuntimeError):
    """A bug in miniplm (a broken invariant of its own), never the user's bad input."""
