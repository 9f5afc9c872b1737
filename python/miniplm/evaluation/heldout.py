"""Held-out language-modelling loss: the token-weighted mean next-token NLL of a token
dataset and its perplexity, computed by the scorer of ``miniplm score`` (same masking:
positions whose *input* token is the ignore id are not scored)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from miniplm._deps import require
from miniplm._progress import progress_bar
from miniplm.data import DatasetView, PathLike, TokenDataset
from miniplm.dataset_meta import DatasetSources, read_sources
from miniplm.errors import InputError
from miniplm.evaluation.figures import nll_figures, pooled_figures
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
    by_source: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Mean NLL = sum(nll_sum) / sum(n_scored) over the instances of ``data`` (those of
    ``selection``, the first ``max_instances`` of them), each cut to ``seq_len + 1``
    tokens (``seq_len`` predicted positions) when ``seq_len`` is given.

    ``by_source``: also ``by_source`` (source name -> the same figures over its
    instances, for every source with one), from the one pass: each instance's sums are
    kept and added up per source (``sources.npy`` of a corpus written by ``miniplm
    tokenize``), so a corpus of thousands of sources costs no more passes than one."""
    if batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    if max_instances is not None and max_instances < 0:
        raise InputError("--max-instances must be >= 0")
    if seq_len is not None and seq_len < 1:
        raise InputError("--seq-len must be at least 1")
    base = TokenDataset(data)
    ds: TokenDataset | DatasetView = base
    all_lengths = base.lengths()
    ids: np.ndarray | None = None
    if selection is not None:
        ds = base.select(selection)
        ids = ds.ids.astype(np.int64)
        lengths = all_lengths[ids]
    else:
        lengths = all_lengths
    n = len(lengths) if max_instances is None else min(len(lengths), max_instances)
    lengths = lengths[:n].astype(np.int64)
    sources = read_sources(data, len(base)) if by_source else None  # checked before the pass
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
    # Each instance's sums stay on the device until the end: no sync per batch.
    nll_parts: list[torch.Tensor] = []
    cnt_parts: list[torch.Tensor] = []
    bar = progress_bar(int(lengths.sum()), "tok", "held-out", progress, unit_scale=True)
    for s in range(0, n, batch_size):
        pos = order[s : s + batch_size]
        width = max(1, int(lengths[pos].max()))
        batch, lens = ds.gather(pos.astype(np.uint64), width, pad_id=0)
        x = torch.from_numpy(batch).to(device)
        nlen = torch.from_numpy(lens.astype(np.int64)).to(device)
        nll, cnt = scorer.score(x, nlen)
        nll_parts.append(nll)
        cnt_parts.append(cnt)
        if bar is not None:
            bar.update(int(lens.sum()))
    if bar is not None:
        bar.close()
    # Back in instance order (``order`` is a permutation of the n positions).
    nll_each = np.zeros(n, dtype=np.float64)
    cnt_each = np.zeros(n, dtype=np.int64)
    if n:
        nll_each[order] = torch.cat(nll_parts).double().cpu().numpy()
        cnt_each[order] = torch.cat(cnt_parts).long().cpu().numpy()
    out: dict[str, Any] = {
        "path": base.record(),
        "fingerprint": base.fingerprint(),
        "selection": None if selection is None else os.path.abspath(selection),
        **nll_figures(lengths, cnt_each, nll_each),
        "seq_len": seq_len,
        "ignore_id": em.ignore_id,
    }
    if sources is not None:
        at = np.arange(n) if ids is None else ids[:n]
        out["by_source"] = _by_source(sources, at, lengths, cnt_each, nll_each)
    return out


def _by_source(
    sources: DatasetSources,
    ids: np.ndarray,
    tokens: np.ndarray,
    scored: np.ndarray,
    nll: np.ndarray,
) -> dict[str, dict[str, Any]]:
    """``nll_figures`` per source of the instances ``ids`` (one bincount per figure:
    O(instances + sources), whatever the number of sources)."""
    src = np.asarray(sources.ids[ids], dtype=np.int64)
    k = len(sources.names)
    count = np.bincount(src, minlength=k)
    tok = np.bincount(src, weights=tokens, minlength=k)
    cnt = np.bincount(src, weights=scored, minlength=k)
    nll_sum = np.bincount(src, weights=nll, minlength=k)
    return {
        sources.names[i]: pooled_figures(int(count[i]), int(tok[i]), int(cnt[i]), float(nll_sum[i]))
        for i in np.flatnonzero(count)
    }
