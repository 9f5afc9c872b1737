"""miniplm: knowledge distillation for LM pre-training by Difference Sampling (MiniPLM).

A teacher and a small reference LM score every instance of a corpus offline; the corpus
is refined by keeping the instances where the teacher is most ahead of the reference
(top-alpha by r = nll_ref - nll_teacher); students then pre-train on the refined corpus.
"""

from __future__ import annotations

from miniplm import _core
from miniplm.data import DatasetView, TokenDataset, write_dataset
from miniplm.errors import FormatError, InputError, MiniplmError
from miniplm.sampling import build, inspect, load_selection, select
from miniplm.scores import load_scores, mean_nll, write_score_run

__version__: str = _core.__version__

__all__ = [
    "DatasetView",
    "FormatError",
    "InputError",
    "MiniplmError",
    "TokenDataset",
    "__version__",
    "build",
    "inspect",
    "load_scores",
    "load_selection",
    "mean_nll",
    "select",
    "write_dataset",
    "write_score_run",
]
