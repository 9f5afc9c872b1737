"""Language-modelling and Vanilla-KD losses computed from hidden states in chunks of
positions, with the head's gradient made in the same pass (the "fused linear
cross-entropy" of Liger-Kernel): neither the student's nor the teacher's [N, V] logits
ever exist whole (a 152k vocabulary makes them 600 MB per 1024-token sequence in fp32),
and backward does not recompute any logits (activation checkpointing of the head would
run its matmul a second time, which is a third of a small model's FLOPs).

For the positions of one chunk, with student logits s and teacher logits t (fp32),
q = softmax(s), p = softmax(t):
  ce = logsumexp(s) - s[target]          d ce / ds = q - onehot(target)
  kd = -sum_v p_v log q_v                d kd / ds = q - p      (CE(p_teacher, q_student), T = 1)
and the loss is (1 - r) * sum ce + r * sum kd; its gradient w.r.t. the hidden states and
the head weight is accumulated chunk by chunk in the forward and scaled in backward.

s and t are the logits the models' own forwards return (``miniplm._logits``): the head's
output z = h W^T + b, then scaled and soft-capped (s = cap tanh(scale z / cap)), so
d loss / dz = d loss / ds * scale (1 - (s / cap)^2), and the bias gets sum_rows d loss / dz."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from miniplm._deps import require
from miniplm._logits import Head, LogitRule
from miniplm.training.options import DEFAULT_CHUNK as DEFAULT_CHUNK

if TYPE_CHECKING:  # mypy checks the real torch; at run time, a missing torch names its extra
    import torch
    from torch import Tensor
else:
    torch = require("torch")


def _compute_dtype(t: Tensor) -> torch.dtype:
    """The matmul dtype: autocast's when it is on for the tensor's device, else the
    tensor's own (autocast does not reach the explicit casts and in-place adds below)."""
    kind = t.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return t.dtype


def _chunk(
    h: Tensor,
    y: Tensor,
    head: Head,
    t_h: Tensor | None,
    t_head: Head | None,
    r: float,
    want_grad: bool,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Sums of ce and kd over one chunk, and d loss / d z (the head's output, before the
    scale and soft-cap) when ``want_grad``."""
    s = _logits(h, head)
    logz = torch.logsumexp(s, -1)
    ce = (logz - s.gather(1, y[:, None])[:, 0]).sum()
    kd = torch.zeros((), device=s.device)
    p = None
    if t_h is not None:
        assert t_head is not None
        p = torch.softmax(_logits(t_h, t_head), -1)
        kd = -(p * (s - logz[:, None])).sum()
    if not want_grad:
        return ce, kd, None
    g = torch.softmax(s, -1)  # (1 - r)(q - onehot) + r (q - p) = q - (1 - r) onehot - r p
    g.scatter_add_(1, y[:, None], torch.full_like(g[:, :1], -(1.0 - r)))
    if p is not None and r:
        g.sub_(p, alpha=r)
    return ce, kd, head.rule.backward_(g, s)


def _logits(h: Tensor, head: Head) -> Tensor:
    """fp32 logits of one chunk as the model's forward makes them (``h`` and the weight
    already in the compute dtype; the bias is added in fp32)."""
    z = (h @ head.weight.to(h.dtype).T).float()
    if head.bias is not None:
        z += head.bias.float()
    return head.rule.apply(z)


class _FusedHeadLoss(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        hidden: Tensor,
        head_w: Tensor,
        head_b: Tensor | None,
        targets: Tensor,
        t_hidden: Tensor | None,
        t_head: Head | None,
        rule: LogitRule,
        r: float,
        chunk: int,
        want: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        cd = _compute_dtype(hidden)
        head = Head(head_w.to(cd), head_b, rule)
        if t_head is not None:
            assert t_hidden is not None  # head_losses passes both or neither
            t_head = t_head._replace(weight=t_head.weight.to(_compute_dtype(t_hidden)))
        ce_t = torch.zeros((), device=hidden.device)
        kd_t = torch.zeros((), device=hidden.device)
        gh = torch.empty(hidden.shape, dtype=cd, device=hidden.device) if want else None
        gw = torch.zeros(head_w.shape, dtype=torch.float32, device=head_w.device) if want else None
        gb = None
        if want and head_b is not None:
            gb = torch.zeros(head_b.shape, dtype=torch.float32, device=head_b.device)
        for a in range(0, hidden.shape[0], chunk):
            h = hidden[a : a + chunk].to(cd)
            t_h = None
            if t_hidden is not None:
                t_h = t_hidden[a : a + chunk].to(_compute_dtype(t_hidden))
            ce, kd, g = _chunk(h, targets[a : a + chunk], head, t_h, t_head, r, want)
            ce_t += ce
            kd_t += kd
            if g is not None:
                assert gh is not None and gw is not None
                if gb is not None:
                    gb += g.sum(0)
                gd = g.to(cd)
                gh[a : a + chunk] = gd @ head.weight
                gw += gd.T @ h
        ctx.save_for_backward(gh, gw, gb)
        ctx.dtypes = (hidden.dtype, head_w.dtype, None if head_b is None else head_b.dtype)
        ctx.mark_non_differentiable(ce_t, kd_t)
        return (1.0 - r) * ce_t + r * kd_t, ce_t, kd_t

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        gh, gw, gb = ctx.saved_tensors
        h_dtype, w_dtype, b_dtype = ctx.dtypes
        d_h = None if gh is None else (gh.float() * grad_loss).to(h_dtype)
        d_w = None if gw is None else (gw * grad_loss).to(w_dtype)
        d_b = None if gb is None else (gb * grad_loss).to(b_dtype)
        return d_h, d_w, d_b, None, None, None, None, None, None, None


def head_losses(
    hidden: Tensor,
    head: Tensor | Head,
    targets: Tensor,
    teacher_hidden: Tensor | None = None,
    teacher_head: Tensor | Head | None = None,
    *,
    kd_ratio: float = 0.0,
    chunk: int = DEFAULT_CHUNK,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(loss, ce, kd)`` over the rows of ``hidden`` [N, d] (the selected positions) with
    ``targets`` [N]: ``ce`` and ``kd`` are sums (not differentiable), ``loss = (1 -
    kd_ratio) * ce + kd_ratio * kd`` carries the gradient. ``head`` is the student's
    output head (``miniplm._logits.output_head``: weight [V, d], bias, logit rule; a bare
    weight is a head with neither), ``teacher_hidden`` [N, d_t] and ``teacher_head`` give
    the KD term (no gradient reaches them)."""
    head = _as_head(head)
    t_head = None
    if teacher_hidden is not None:
        assert teacher_head is not None
        teacher_hidden = teacher_hidden.detach()
        t = _as_head(teacher_head)
        t_head = Head(t.weight.detach(), None if t.bias is None else t.bias.detach(), t.rule)
    leaves = [hidden, head.weight] + ([] if head.bias is None else [head.bias])
    want = torch.is_grad_enabled() and any(x.requires_grad for x in leaves)
    out: tuple[Tensor, Tensor, Tensor] = _FusedHeadLoss.apply(
        hidden,
        head.weight,
        head.bias,
        targets,
        teacher_hidden,
        t_head,
        head.rule,
        float(kd_ratio),
        chunk,
        want,
    )
    return out


def _as_head(head: Tensor | Head) -> Head:
    return head if isinstance(head, Head) else Head(head)


def plain_losses(
    logits: Tensor, targets: Tensor, teacher_logits: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The same sums from whole logits (reference for tests)."""
    logp = torch.log_softmax(logits.double(), -1)
    ce = -logp.gather(1, targets[:, None])[:, 0].sum()
    if teacher_logits is None:
        return ce, torch.zeros((), dtype=torch.float64)
    p = torch.softmax(teacher_logits.double(), -1)
    return ce, -(p * logp).sum()
