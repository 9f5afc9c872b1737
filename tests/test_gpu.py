"""Tests of the CUDA paths (``pytest -m gpu``): they run where CUDA is, and are skipped
elsewhere, except under ``MINIPLM_GPU_TESTS_ON_CPU=1`` (``scripts/gpu-check
--cpu-dry-run``), which runs the same code on the CPU so that it cannot rot unseen.

Tolerances, stated once: bf16 scores are within 2% (mean NLL per token) of fp32 on the
same instances; on CUDA a resumed or FSDP2 run is compared with the uninterrupted or plain
one within 1e-3 relative (the embedding and index backward use atomics there, so two GPU
runs are not bit-identical); on the CPU the same comparisons are exact or 1e-5."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from miniplm.scoring.models import load_model
from miniplm.scoring.nll import ChunkedScorer
from miniplm.training.losses import head_losses
from miniplm.training.trainer import TrainOptions, train

from tiny_lm import make_dataset, make_model

pytestmark = pytest.mark.gpu
VOCAB = 97


@pytest.fixture
def device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if os.environ.get("MINIPLM_GPU_TESTS_ON_CPU") == "1":
        return "cpu"
    pytest.skip("needs CUDA (MINIPLM_GPU_TESTS_ON_CPU=1 runs it on the CPU)")


def _rtol(device: str) -> float:
    return 1e-3 if device.startswith("cuda") else 1e-5


def _batch(seqs: list[np.ndarray], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    x = torch.zeros(len(seqs), width, dtype=torch.int64)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = torch.from_numpy(s.astype(np.int64))
    return x.to(device), torch.tensor([len(s) for s in seqs], device=device)


def _scores(model_dir: Path, seqs: list[np.ndarray], device: str, dtype: Any, **kw: Any) -> Any:
    m = load_model(str(model_dir), device=device, dtype=dtype, **kw)
    nll, cnt = ChunkedScorer(m.model, m.ignore_id, chunk_tokens=64).score(*_batch(seqs, device))
    return nll.cpu().numpy(), cnt.cpu().numpy()


def _opts(data: Path, out: Path, device: str, **kw: Any) -> TrainOptions:
    base: dict[str, Any] = dict(
        data=str(data),
        out=str(out),
        preset="tiny",
        vocab_size=VOCAB,
        seq_len=32,
        max_steps=6,
        micro_batch_size=4,
        global_batch_size=8,
        warmup_steps=1,
        log_every=1,
        save_every=3,
        device=device,
        progress=False,
    )
    base.update(kw)
    return TrainOptions(**base)


def _curve(out: Path, key: str = "loss") -> list[float]:
    return [json.loads(ln)[key] for ln in (out / "metrics.jsonl").read_text().splitlines()]


def test_bf16_scores_match_fp32(tmp_path: Path, device: str) -> None:
    seqs = [s for s in make_dataset(tmp_path / "d", n=12, max_len=40) if len(s) >= 2]
    model = make_model(tmp_path / "m")
    nll32, cnt32 = _scores(model, seqs, device, torch.float32)
    nll16, cnt16 = _scores(model, seqs, device, torch.bfloat16)
    np.testing.assert_array_equal(cnt16, cnt32)
    np.testing.assert_allclose(nll16 / cnt16, nll32 / cnt32, rtol=2e-2)
    again, _ = _scores(model, seqs, device, torch.bfloat16)
    np.testing.assert_array_equal(again, nll16)  # the per-row sum is deterministic


def test_sdpa_and_flash_attention_score_like_eager(tmp_path: Path, device: str) -> None:
    seqs = [s for s in make_dataset(tmp_path / "d", n=8, max_len=40) if len(s) >= 2]
    model = make_model(tmp_path / "m")
    ref, _ = _scores(model, seqs, device, torch.float32, attn_implementation="eager")
    kinds = ["sdpa"]
    if device.startswith("cuda"):
        try:
            import flash_attn  # noqa: F401

            kinds.append("flash_attention_2")
        except ImportError:
            pass
    for kind in kinds:
        dt = torch.bfloat16 if kind == "flash_attention_2" else torch.float32
        got, _ = _scores(model, seqs, device, dt, attn_implementation=kind)
        np.testing.assert_allclose(got, ref, rtol=2e-2 if dt == torch.bfloat16 else 1e-4)


@pytest.mark.parametrize("autocast", [False, True])
def test_fused_head_loss_and_gradient_equal_autograd(device: str, autocast: bool) -> None:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(300, 64, generator=g).to(device).requires_grad_()
    w = (0.2 * torch.randn(500, 64, generator=g)).to(device).requires_grad_()
    y = torch.randint(0, 500, (300,), generator=g).to(device)
    ref = torch.nn.functional.cross_entropy(h @ w.T, y, reduction="sum")
    ref.backward()
    gh, gw = h.grad.clone(), w.grad.clone()  # type: ignore[union-attr]
    h.grad = w.grad = None
    kind = torch.device(device).type
    with torch.autocast(kind, dtype=torch.bfloat16, enabled=autocast):
        loss, _, _ = head_losses(h, w, y, chunk=128)
    loss.backward()
    tol = 3e-2 if autocast else 1e-4
    assert abs(loss.item() - ref.item()) <= tol * abs(ref.item())
    for got, want in ((h.grad, gh), (w.grad, gw)):
        assert float((got - want).norm() / want.norm()) < tol  # type: ignore[operator]


def test_resumed_run_equals_uninterrupted(tmp_path: Path, device: str) -> None:
    """A run restarted from its step-3 checkpoint (as after a kill) continues the curve."""
    make_dataset(tmp_path / "d", n=64, max_len=33)
    train(_opts(tmp_path / "d", tmp_path / "full", device))
    run = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full", run)
    shutil.rmtree(run / "checkpoints" / "step-00000006")
    shutil.rmtree(run / "final")
    train(_opts(tmp_path / "d", run, device, resume=True))
    np.testing.assert_allclose(_curve(run), _curve(tmp_path / "full"), rtol=_rtol(device))


def test_fsdp2_on_one_device_equals_plain(tmp_path: Path, device: str) -> None:
    make_dataset(tmp_path / "d", n=64, max_len=33)
    train(_opts(tmp_path / "d", tmp_path / "fsdp", device, fsdp=True))
    train(_opts(tmp_path / "d", tmp_path / "plain", device))
    # On CUDA, FSDP2 computes in bf16 parameters, the plain run under bf16 autocast.
    rtol = 2e-2 if device.startswith("cuda") else 1e-5
    np.testing.assert_allclose(_curve(tmp_path / "fsdp"), _curve(tmp_path / "plain"), rtol=rtol)
    assert (tmp_path / "fsdp" / "final" / "model.safetensors").is_file()


def test_compile_trains_like_eager(
    tmp_path: Path, device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--compile`` compiles the decoder layers (fixed shapes), not the fused loss, whose
    number of target tokens changes every micro-step."""
    if not device.startswith("cuda"):  # the dry run: dynamo's tracing, not inductor's C++
        inner = torch.nn.Module.compile

        def eager(self: Any, *a: Any, **kw: Any) -> None:
            inner(self, *a, **{**kw, "backend": "eager"})

        monkeypatch.setattr(torch.nn.Module, "compile", eager)
    torch._dynamo.reset()
    make_dataset(tmp_path / "d", n=32, max_len=33)
    train(_opts(tmp_path / "d", tmp_path / "compiled", device, compile=True, max_steps=3))
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    train(_opts(tmp_path / "d", tmp_path / "eager", device, max_steps=3))
    compiled, eager_curve = _curve(tmp_path / "compiled"), _curve(tmp_path / "eager")
    np.testing.assert_allclose(compiled, eager_curve, rtol=1e-2)
    assert 0 < graphs <= 4, graphs  # per layer (and its backward), not per token count


def test_kd_with_a_gguf_free_teacher(tmp_path: Path, device: str) -> None:
    """Vanilla KD with a teacher from a Hugging Face directory (no GGUF) on the device."""
    make_dataset(tmp_path / "d", n=32, max_len=33)
    teacher = make_model(tmp_path / "t", arch="qwen2")
    train(_opts(tmp_path / "d", tmp_path / "kd", device, kd_teacher=str(teacher), max_steps=3))
    kd = _curve(tmp_path / "kd", "kd_loss")
    assert len(kd) == 3 and all(np.isfinite(kd)) and all(k > 0 for k in kd)
