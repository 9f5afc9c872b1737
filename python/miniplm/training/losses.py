"""Language-modelling and Vanilla-KD losses computed from hidden states in chunks of
positions, each chunk under activation checkpointing: neither the student's nor the
teacher's [B, L, V] logits ever exist in fp32 (a 152k vocabulary makes that 600 MB per
sequence); backward recomputes one chunk's logits at a time.

For the positions of one chunk, with student logits s and teacher logits t (fp32):
  ce = logsumexp(s) - s[target]                      (cross-entropy with the data)
  kd = -sum_v softmax(t)_v * log_softmax(s)_v         (CE(p_teacher, q_student), T = 1)
and the step loss is ((1 - r) * sum ce + r * sum kd) / tokens."""

from __future__ import annotations

from typing import Any

from miniplm._deps import require

torch = require("torch")
checkpoint = require("torch.utils.checkpoint").checkpoint

DEFAULT_CHUNK = 1024


def _chunk_terms(
    h: Any, targets: Any, head_w: Any, t_h: Any | None, t_head_w: Any | None
) -> tuple[Any, Any]:
    s = torch.nn.functional.linear(h, head_w).float()
    logz = torch.logsumexp(s, -1)
    ce = (logz - s.gather(1, targets[:, None])[:, 0]).sum()
    if t_h is None:
        return ce, torch.zeros((), device=s.device)
    # Teacher logits are made here (and remade in backward) rather than passed in, so
    # checkpointing does not keep every chunk's [chunk, V] teacher logits alive.
    with torch.no_grad():
        p = torch.softmax(torch.nn.functional.linear(t_h, t_head_w).float(), -1)
    kd = -(p * (s - logz[:, None])).sum()
    return ce, kd


def chunked_losses(
    hidden: Any,
    head_weight: Any,
    targets: Any,
    teacher_hidden: Any | None = None,
    teacher_head_weight: Any | None = None,
    chunk: int = DEFAULT_CHUNK,
    recompute: bool = True,
) -> tuple[Any, Any]:
    """Sum of CE and sum of KD over the rows of ``hidden`` [N, d] (the selected
    positions), ``targets`` [N]. ``teacher_hidden`` [N, d_t] and ``teacher_head_weight``
    [V, d_t] give the KD term (no gradient flows into the teacher)."""
    ce_total = hidden.new_zeros((), dtype=torch.float32)
    kd_total = hidden.new_zeros((), dtype=torch.float32)
    for s in range(0, hidden.shape[0], chunk):
        e = s + chunk
        t_h = None if teacher_hidden is None else teacher_hidden[s:e]
        args = (hidden[s:e], targets[s:e], head_weight, t_h, teacher_head_weight)
        if recompute and torch.is_grad_enabled():
            ce, kd = checkpoint(_chunk_terms, *args, use_reentrant=False)
        else:
            ce, kd = _chunk_terms(*args)
        ce_total = ce_total + ce
        kd_total = kd_total + kd
    return ce_total, kd_total


def plain_losses(logits: Any, targets: Any, teacher_logits: Any | None = None) -> tuple[Any, Any]:
    """The same sums from whole logits (reference for tests)."""
    logp = torch.log_softmax(logits.double(), -1)
    ce = -logp.gather(1, targets[:, None])[:, 0].sum()
    if teacher_logits is None:
        return ce, torch.zeros((), dtype=torch.float64)
    p = torch.softmax(teacher_logits.double(), -1)
    return ce, -(p * logp).sum()
