"""The training loss (and the KD teacher's distribution, and the scorer) use the logits the
model's own forward returns: the head's bias, Cohere's / Falcon-H1's scale, Granite's
``logits_scaling`` and Gemma's soft-cap, with gradients that include them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from miniplm._logits import Head, LogitRule, output_head  # noqa: E402
from miniplm.scoring.nll import ChunkedScorer  # noqa: E402
from miniplm.training.losses import head_losses  # noqa: E402
from miniplm.training.model import LMWithLoss  # noqa: E402

V = 97
_SMALL = {"vocab_size": V, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4}
_GQA = {**_SMALL, "num_hidden_layers": 2, "num_key_value_heads": 2}

# name -> its tiny config; RULES: the rule its forward applies after the head, and whether
# the head has a bias.
FAMILIES: dict[str, Callable[[], Any]] = {
    "llama": lambda: transformers.LlamaConfig(**_GQA),
    "gemma2": lambda: transformers.Gemma2Config(**_GQA, head_dim=8, final_logit_softcapping=5.0),
    "phi": lambda: transformers.PhiConfig(**_SMALL, num_hidden_layers=2),
    "cohere": lambda: transformers.CohereConfig(**_GQA, logit_scale=0.25),
    "granite": lambda: transformers.GraniteConfig(**_GQA, logits_scaling=8.0),
    "recurrent_gemma": lambda: transformers.RecurrentGemmaConfig(
        **_SMALL,
        num_hidden_layers=3,
        num_key_value_heads=2,
        lru_width=32,
        attention_window_size=16,
        logits_soft_cap=5.0,
    ),
    "falcon_h1": lambda: transformers.FalconH1Config(
        **_GQA,
        head_dim=8,
        mamba_d_ssm=32,
        mamba_n_heads=4,
        mamba_d_head=8,
        mamba_d_state=8,
        mamba_n_groups=1,
        lm_head_multiplier=0.3,
    ),
}
RULES = {
    "llama": (LogitRule(), False),
    "gemma2": (LogitRule(softcap=5.0), False),
    "phi": (LogitRule(), True),
    "cohere": (LogitRule(scale=0.25), False),
    "granite": (LogitRule(scale=1 / 8.0), False),
    "recurrent_gemma": (LogitRule(softcap=5.0), False),
    "falcon_h1": (LogitRule(scale=0.3), False),
}


def _model(name: str, seed: int = 0) -> Any:
    """A tiny random model with weights large enough that every transform matters (the
    soft-cap bites, the bias moves the logits)."""
    torch.manual_seed(seed)
    m = transformers.AutoModelForCausalLM.from_config(FAMILIES[name]()).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3) if p.dim() > 1 else p.normal_(0, 1.0)
    return m


def _batch(seed: int = 1) -> tuple[Any, Any, Any]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(4, V, (2, 12), generator=g)
    rows, cols = (
        t.reshape(-1) for t in torch.meshgrid(torch.arange(2), torch.arange(11), indexing="ij")
    )
    return x, rows, cols


def _grads(m: Any) -> dict[str, Any]:
    out = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad(set_to_none=True)
    return out


def _same_grads(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got.keys() == want.keys()  # the bias too: it is a trained parameter
    for n, w in want.items():
        assert torch.allclose(got[n], w, rtol=1e-4, atol=1e-6), (n, (got[n] - w).abs().max())


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_rule_and_bias_of_each_family(name: str) -> None:
    m = _model(name)
    rule, biased = RULES[name]
    head = output_head(m)
    assert head.rule == rule
    assert (head.bias is not None) == biased
    assert head.weight is m.get_output_embeddings().weight


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_training_loss_and_gradients_are_hf(name: str) -> None:
    """``LMWithLoss`` (what the trainer runs) against ``model(labels=...).loss`` and its
    autograd gradients w.r.t. every parameter, over several head chunks."""
    m = _model(name)
    x, rows, cols = _batch()
    ref = m(input_ids=x, labels=x).loss
    ref.backward()
    want = _grads(m)
    loss, ce, kd = LMWithLoss(m, chunk=5)(x[:, :-1], rows, cols, x[:, 1:][rows, cols])
    n = len(rows)
    assert abs(ce.item() / n - ref.item()) < 1e-5, (ce.item() / n, ref.item())
    assert kd.item() == 0.0
    (loss / n).backward()
    _same_grads(_grads(m), want)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_scorer_nll_is_hf(name: str) -> None:
    """The scorer reads the same rule: its per-row NLL is HF's loss."""
    m = _model(name)
    x, _, _ = _batch()
    with torch.no_grad():
        ref = [m(input_ids=x[i : i + 1], labels=x[i : i + 1]).loss.item() for i in range(2)]
    nll, cnt = ChunkedScorer(m, None, chunk_tokens=5).score(x, torch.tensor([12, 12]))
    assert cnt.tolist() == [11, 11]
    for got, want in zip((nll / cnt).tolist(), ref, strict=True):
        assert abs(got - want) < 1e-5


@pytest.mark.parametrize("teacher", ["gemma2", "phi", "cohere", "granite"])
@pytest.mark.parametrize("student", ["llama", "phi", "gemma2"])
def test_kd_term_is_against_the_teachers_own_distribution(teacher: str, student: str) -> None:
    """The KD target is softmax of the teacher's forward logits (bias, scale, soft-cap),
    and the student's gradient is autograd of the explicit (1 - r) CE + r KD."""
    t, s = _model(teacher, seed=3), _model(student)
    x, rows, cols = _batch()
    inp, y, r = x[:, :-1], x[:, 1:][rows, cols], 0.4
    with torch.no_grad():
        p = torch.softmax(t(input_ids=inp).logits[rows, cols].double(), -1)
        t_hidden = t.get_decoder()(input_ids=inp).last_hidden_state[rows, cols]
    logq = torch.log_softmax(s(input_ids=inp).logits[rows, cols].double(), -1)
    ce_ref = -logq[torch.arange(len(y)), y].sum()
    kd_ref = -(p * logq).sum()
    n = len(y)
    (((1 - r) * ce_ref + r * kd_ref) / n).float().backward()
    want = _grads(s)
    wrapped = LMWithLoss(s, chunk=6, kd_ratio=r)
    loss, ce, kd = wrapped(inp, rows, cols, y, t_hidden, output_head(t))
    assert abs(ce.item() - ce_ref.item()) / n < 1e-5
    assert abs(kd.item() - kd_ref.item()) / n < 1e-5, (kd.item() / n, kd_ref.item() / n)
    (loss / n).backward()
    _same_grads(_grads(s), want)
    assert all(q.grad is None for q in t.parameters())


def test_fused_head_with_bias_scale_and_softcap() -> None:
    """``head_losses`` on a head with all three transforms at once (scale first, then the
    cap) and a teacher head with its own, against autograd of whole logits; every input
    of the student head gets its gradient."""
    g = torch.Generator().manual_seed(5)
    h = torch.randn(23, 8, generator=g, requires_grad=True)
    w = torch.randn(31, 8, generator=g).requires_grad_()
    b = torch.randn(31, generator=g).requires_grad_()
    th, tw, tb = torch.randn(23, 6, generator=g), torch.randn(31, 6, generator=g), torch.randn(31)
    y = torch.randint(0, 31, (23,), generator=g)
    rule, t_rule = LogitRule(scale=0.7, softcap=3.0), LogitRule(scale=2.0)
    s = 3.0 * torch.tanh(0.7 * (h @ w.T + b) / 3.0)
    logq = torch.log_softmax(s, -1)
    p = torch.softmax(2.0 * (th @ tw.T + tb), -1)
    ref = 0.3 * -logq[torch.arange(23), y].sum() + 0.7 * -(p * logq).sum()
    ref.backward()
    want = [v.grad.clone() for v in (h, w, b)]  # type: ignore[union-attr]
    h.grad = w.grad = b.grad = None
    loss, _, _ = head_losses(
        h, Head(w, b, rule), y, th, Head(tw, tb, t_rule), kd_ratio=0.7, chunk=4
    )
    assert abs(loss.item() - ref.item()) < 1e-4 * abs(ref.item())
    loss.backward()
    for v, gw in zip((h, w, b), want, strict=True):
        assert torch.allclose(v.grad, gw, rtol=1e-4, atol=1e-5)  # type: ignore[arg-type]


def test_fused_head_transforms_under_cpu_bf16_autocast() -> None:
    """The training path's bf16 autocast: the bias, scale and cap are applied in fp32
    after the bf16 matmul, so loss and gradients stay within bf16's precision of fp32."""
    g = torch.Generator().manual_seed(6)
    h = torch.randn(40, 16, generator=g, requires_grad=True)
    w = (0.5 * torch.randn(30, 16, generator=g)).requires_grad_()
    b = torch.randn(30, generator=g).requires_grad_()
    y = torch.randint(0, 30, (40,), generator=g)
    rule = LogitRule(scale=0.5, softcap=2.0)
    s = 2.0 * torch.tanh(0.5 * (h @ w.T + b) / 2.0)
    ref = -torch.log_softmax(s, -1)[torch.arange(40), y].sum()
    ref.backward()
    want = [v.grad.clone() for v in (h, w, b)]  # type: ignore[union-attr]
    h.grad = w.grad = b.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _, _ = head_losses(h, Head(w, b, rule), y, chunk=7)
    loss.backward()
    assert loss.dtype == torch.float32 and b.grad is not None and b.grad.dtype == torch.float32
    assert abs(loss.item() - ref.item()) < 1e-2 * abs(ref.item())
    for v, gw in zip((h, w, b), want, strict=True):
        assert ((v.grad - gw).norm() / gw.norm()).item() < 3e-2  # type: ignore[operator]
