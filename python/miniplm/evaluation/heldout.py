"""Held-out language-modelling loss: the token-weighted mean next-token NLL of a token
dataset and its perplexity, computed by the scorer of ``miniplm score`` (same masking:
positions whose *input* token is the ignore id are not scored)."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from miniplm._deps import require
from miniplm._progress import progress_bar
from miniplm.data import DatasetView, PathLike, TokenDataset
from miniplm.errors import InputError
from miniplm.evaluation.model import EvalModel
from miniplm.models import check_tokenizer, model_device
from miniplm.scoring.nll import ChunkedScorer

if TYPE_CHECKING:  # mypy checks the real torch; at run time, a missing torch names its extra
    import torch
else:
    torch = require("torch")


def heldout_nll(
    em: EvalModel,
    data: PathLike,
    *,
    batch_size: int = 16,
    selection: PathLike | None = None,
    max_instances: int | None = None,
    seq_len: int | None = None,
    chunk_tokens: int | None = None,
    allow_tokenizer_mismatch: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Mean NLL = sum(nll_sum) / sum(n_scored) over the instances of ``data`` (those of
    ``selection``, the first ``max_instances`` of them), each cut to ``seq_len + 1``
    tokens (``seq_len`` predicted positions) when ``seq_len`` is given."""
    if batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    if max_instances is not None and max_instances < 0:
        raise InputError("--max-instances must be >= 0")
    if seq_len is not None and seq_len < 1:
        raise InputError("--seq-len must be at least 1")
    base = TokenDataset(data)
    ds: TokenDataset | DatasetView = base
    all_lengths = base.lengths()
    if selection is not None:
        ds = base.select(selection)
        lengths = all_lengths[ds.ids.astype(np.int64)]
    else:
        lengths = all_lengths
    n = len(lengths) if max_instances is None else min(len(lengths), max_instances)
    lengths = lengths[:n].astype(np.int64)
    if seq_len is not None:
        lengths = np.minimum(lengths, seq_len + 1)
    if not allow_tokenizer_mismatch:
        check_tokenizer(em.spec, em.own_vocab, os.fspath(data))
    longest = int(lengths.max()) if n else 0
    if em.max_positions is not None and longest - 1 > em.max_positions:
        raise InputError(
            f"{em.spec}: {os.fspath(data)} has instances of {longest} tokens, longer than "
            f"the model's {em.max_positions} positions + 1; pass --seq-len"
        )
    scorer = ChunkedScorer(em.model, em.ignore_id, chunk_tokens)
    base.check_vocab(scorer.vocab_size)
    device = model_device(em.model)
    # Longest first (ties by position, stable): batches of similar lengths, little padding.
    order = np.argsort(-lengths, kind="stable")
    nll_total = torch.zeros((), dtype=torch.float64, device=device)
    cnt_total = torch.zeros((), dtype=torch.int64, device=device)
    bar = progress_bar(int(lengths.sum()), "tok", "held-out", progress, unit_scale=True)
    for s in range(0, n, batch_size):
        pos = order[s : s + batch_size]
        width = max(1, int(lengths[pos].max()))
        batch, lens = ds.gather(pos.astype(np.uint64), width, pad_id=0)
        x = torch.from_numpy(batch).to(device)
        nlen = torch.from_numpy(lens.astype(np.int64)).to(device)
        nll, cnt = scorer.score(x, nlen)
        nll_total += nll.sum()
        cnt_total += cnt.sum()
        if bar is not None:
            bar.update(int(lens.sum()))
    if bar is not None:
        bar.close()
    nll_sum = float(nll_total.item())
    scored = int(cnt_total.item())
    mean = nll_sum / scored if scored else None
    return {
        "path": base.record(),
        "fingerprint": base.fingerprint(),
        "selection": None if selection is None else os.path.abspath(selection),
        "instances": n,
        "tokens": int(lengths.sum()),
        "scored_tokens": scored,
        "nll_sum": nll_sum,
        "mean_nll": mean,
        "perplexity": _exp(mean),
        "seq_len": seq_len,
        "ignore_id": em.ignore_id,
    }


def _exp(x: float | None) -> float | None:
    if x is None:
        return None
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf
