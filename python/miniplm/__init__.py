"""miniplm: knowledge distillation for LM pre-training by Difference Sampling (MiniPLM).

A teacher and a small reference LM score every instance of a corpus offline; the corpus
is refined by keeping the instances where the teacher is most ahead of the reference
(top-alpha by r = nll_ref - nll_teacher); students then pre-train on the refined corpus.

Names are imported on first use (PEP 562), so `import miniplm` and the in-process CLI
(`python -m miniplm._sample`) start without loading numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from miniplm import _core

if TYPE_CHECKING:
    from miniplm.corpus.export import export
    from miniplm.data import DatasetView, TokenDataset, write_dataset
    from miniplm.errors import (
        FormatError,
        InputError,
        InternalError,
        MiniplmError,
        OutputLockedError,
    )
    from miniplm.sampling import build, inspect, load_selection, select
    from miniplm.scores import diff_chunks, load_scores, mean_nll, write_score_run

__version__: str = _core.__version__

_WHERE = {
    "export": "miniplm.corpus.export",
    "DatasetView": "miniplm.data",
    "TokenDataset": "miniplm.data",
    "write_dataset": "miniplm.data",
    "FormatError": "miniplm.errors",
    "InputError": "miniplm.errors",
    "InternalError": "miniplm.errors",
    "MiniplmError": "miniplm.errors",
    "OutputLockedError": "miniplm.errors",
    "build": "miniplm.sampling",
    "inspect": "miniplm.sampling",
    "load_selection": "miniplm.sampling",
    "select": "miniplm.sampling",
    "diff_chunks": "miniplm.scores",
    "load_scores": "miniplm.scores",
    "mean_nll": "miniplm.scores",
    "write_score_run": "miniplm.scores",
}

__all__ = [
    "DatasetView",
    "FormatError",
    "InputError",
    "InternalError",
    "MiniplmError",
    "OutputLockedError",
    "TokenDataset",
    "__version__",
    "build",
    "diff_chunks",
    "export",
    "inspect",
    "load_scores",
    "load_selection",
    "mean_nll",
    "select",
    "write_dataset",
    "write_score_run",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'miniplm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
