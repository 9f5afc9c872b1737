"""What a causal LM's forward does to its logits after the output head, in one place for
the scorer and the training loss (both run the head themselves, in chunks of positions,
and must get the distribution the model's own forward gives).

transformers' causal LMs compute ``z = hidden @ head.weight.T (+ head.bias)`` and then,
in this order, multiply by a scale (Cohere ``logit_scale``, Falcon-H1
``lm_head_multiplier``; Granite divides by ``logits_scaling``) and soft-cap
(``cap * tanh(z / cap)``: Gemma 2/3 ``final_logit_softcapping``, RecurrentGemma
``logits_soft_cap``); a config with both gets both, in that order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from miniplm._deps import require

if TYPE_CHECKING:  # mypy checks the real torch; at run time, a missing torch names its extra
    import torch
    from torch import Tensor
else:
    torch = require("torch")


def _number(cfg: Any, key: str) -> float | None:
    v = getattr(cfg, key, None)
    return None if v is None else float(v)


class LogitRule(NamedTuple):
    """``s = softcap * tanh(scale * z / softcap)`` (no cap when ``softcap`` is None)."""

    scale: float = 1.0
    softcap: float | None = None

    @classmethod
    def of(cls, config: Any) -> LogitRule:
        """The rule of a transformers config (its text config for a multimodal one)."""
        cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
        scale = 1.0
        for key in ("logit_scale", "lm_head_multiplier"):
            v = _number(cfg, key)
            if v is not None:
                scale *= v
        div = _number(cfg, "logits_scaling")
        if div:
            scale /= div
        cap = _number(cfg, "final_logit_softcapping") or _number(cfg, "logits_soft_cap")
        return cls(scale, cap or None)

    def apply(self, z: Tensor) -> Tensor:
        """The logits the model's forward returns, from the head's output ``z``."""
        if self.scale != 1.0:
            z = z * self.scale
        if self.softcap:
            z = torch.tanh(z / self.softcap) * self.softcap
        return z

    def backward_(self, grad: Tensor, s: Tensor) -> Tensor:
        """d loss / d z from ``grad`` = d loss / d s and ``s = apply(z)``, in ``grad``'s
        storage: d s / d z = scale * (1 - tanh^2) = scale * (1 - (s / cap)^2)."""
        if self.softcap:
            grad.mul_(1.0 - (s / self.softcap).square())
        if self.scale != 1.0:
            grad.mul_(self.scale)
        return grad


class Head(NamedTuple):
    """An output head as the losses use it: weight [V, d], optional bias [V], and rule."""

    weight: Tensor
    bias: Tensor | None = None
    rule: LogitRule = LogitRule()


def output_head(model: Any) -> Head:
    """The output head of a transformers causal LM (``model``: not typed well enough in
    transformers to annotate), with its bias and its config's logit rule."""
    lin = model.get_output_embeddings()
    return Head(lin.weight, getattr(lin, "bias", None), LogitRule.of(model.config))
