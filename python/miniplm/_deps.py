"""Optional dependencies: import them or say which extra brings them."""

from __future__ import annotations

import importlib
from types import ModuleType

from miniplm.errors import MiniplmError


class MissingDependency(MiniplmError, ImportError):
    """An optional dependency of the requested feature is not installed."""


def require(module: str, extra: str = "lm") -> ModuleType:
    """Import ``module``, or raise an error naming the pip extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependency(
            f"this needs the Python package {module.split('.')[0]!r} ({e}); "
            f"install it with: pip install 'miniplm[{extra}]'"
        ) from e
