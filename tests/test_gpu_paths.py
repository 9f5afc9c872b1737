"""The CUDA paths' rules, checked on the CPU: no host sync (``nonzero``, ``item``) in the
scoring and training hot loops outside log steps, ranks bound to their own GPU, a real
FSDP2 wrap in one process, ``--init-from`` trains in train mode, the fused loss under bf16
autocast, and the MFU denominator."""

from __future__ import annotations

import json
import shutil
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils._python_dispatch import TorchDispatchMode

from miniplm.scoring.models import load_model
from miniplm.scoring.nll import ChunkedScorer
from miniplm.training import model as model_mod
from miniplm.training import trainer as trainer_mod
from miniplm.training.trainer import TrainOptions, train

from tiny_lm import make_dataset, make_model, reference_scores, torchrun_miniplm

VOCAB = 97


class SyncOps(TorchDispatchMode):  # type: ignore[misc]
    """Records the ops that make the host wait for the device: ``nonzero`` (and boolean
    indexing, which runs it), ``item`` / ``float(t)`` (``_local_scalar_dense``). One is
    not ours and is let through: transformers' check for packed sequences, an ``all()`` at
    the start of a decoder forward without attention mask (``masking_utils``)."""

    SYNCING = frozenset(
        ("aten::nonzero", "aten::nonzero_numpy", "aten::_local_scalar_dense", "aten::masked_select")
    )

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func._schema.name
        if name in self.SYNCING and not _in_transformers_mask_check():
            self.seen.append(name)
        if name == "aten::index" and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] or ()
        ):
            self.seen.append("boolean index")
        return func(*args, **(kwargs or {}))


def _in_transformers_mask_check() -> bool:
    return any(
        f.name == "find_packed_sequence_indices" and f.filename.endswith("masking_utils.py")
        for f in traceback.extract_stack()
    )


def _opts(data: Path, out: Path, **kw: Any) -> TrainOptions:
    base: dict[str, Any] = dict(
        data=str(data),
        out=str(out),
        preset="tiny",
        vocab_size=VOCAB,
        seq_len=24,
        max_steps=3,
        micro_batch_size=4,
        global_batch_size=8,
        warmup_steps=1,
        log_every=100,
        save_every=100,
        device="cpu",
        progress=False,
    )
    base.update(kw)
    return TrainOptions(**base)


def test_training_micro_steps_do_not_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dataset(tmp_path / "d", n=32, max_len=25)
    seen: list[str] = []
    inner = trainer_mod._Trainer.forward_backward_step

    def recorded(self: Any, *a: Any, **kw: Any) -> Any:
        with SyncOps() as mode:
            out = inner(self, *a, **kw)
        seen.extend(mode.seen)
        return out

    monkeypatch.setattr(trainer_mod._Trainer, "forward_backward_step", recorded)
    train(_opts(tmp_path / "d", tmp_path / "run"))
    assert seen == []


def test_scoring_does_not_sync(tmp_path: Path) -> None:
    seqs = make_dataset(tmp_path / "d", n=6, max_len=20)
    m = load_model(str(make_model(tmp_path / "m")), device="cpu", dtype=torch.float32)
    scorer = ChunkedScorer(m.model, 3, chunk_tokens=7)
    width = max(len(s) for s in seqs)
    x = torch.zeros(len(seqs), width, dtype=torch.int64)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = torch.from_numpy(s.astype(np.int64))
    lengths = torch.tensor([len(s) for s in seqs])
    with SyncOps() as mode:
        nll, cnt = scorer.score(x, lengths)
    assert mode.seen == []
    ref_nll, ref_cnt = reference_scores(tmp_path / "m", seqs, 3)
    np.testing.assert_array_equal(cnt.numpy(), ref_cnt)
    np.testing.assert_allclose(nll.numpy(), ref_nll, rtol=1e-5, atol=1e-5)


def test_each_rank_is_bound_to_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun with CUDA: ``--device cuda`` and ``auto`` give ``cuda:<local rank>``,
    the rank is bound to it before an NCCL group is made with ``device_id`` (``auto`` made
    a gloo group, ``cuda`` put every rank on cuda:0). CUDA is simulated."""
    from miniplm import _dist
    from miniplm.scoring.models import resolve_device

    calls: dict[str, Any] = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.setdefault("set", d))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)

    def init(backend: str, **kw: Any) -> None:
        calls["backend"], calls["kw"] = backend, kw

    monkeypatch.setattr(torch.distributed, "init_process_group", init)
    for spec in ("auto", "cuda"):
        assert resolve_device(spec) == "cuda:1"
    assert resolve_device("cuda:0") == "cuda:0"
    _dist.Dist(resolve_device("auto"))
    assert calls["set"] == torch.device("cuda:1")
    assert calls["backend"] == "nccl" and calls["kw"]["device_id"] == torch.device("cuda:1")


def test_fsdp_in_one_process_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--fsdp`` without torchrun wraps the model in FSDP2 (a one-rank group), so a
    one-GPU FSDP2 check tests FSDP2; its curve equals the plain run's."""
    from torch.distributed import fsdp

    make_dataset(tmp_path / "d", n=32, max_len=25)
    wrapped: list[str] = []
    real = fsdp.fully_shard

    def spy(module: Any, **kw: Any) -> Any:
        wrapped.append(type(module).__name__)
        return real(module, **kw)

    monkeypatch.setattr(fsdp, "fully_shard", spy)
    train(_opts(tmp_path / "d", tmp_path / "fsdp", fsdp=True, log_every=1))
    assert wrapped and wrapped[-1] == "LMWithLoss"
    assert not torch.distributed.is_initialized()  # the group is closed again
    train(_opts(tmp_path / "d", tmp_path / "plain", log_every=1))
    curves = [
        [json.loads(ln) for ln in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
        for r in ("fsdp", "plain")
    ]
    for key in ("loss", "grad_norm"):
        np.testing.assert_allclose(
            [r[key] for r in curves[0]], [r[key] for r in curves[1]], rtol=1e-5
        )


def test_init_from_trains_in_train_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``from_pretrained`` returns a model in eval mode: training it so kept dropout off
    and made ``--grad-checkpointing`` a no-op."""
    make_dataset(tmp_path / "d", n=32, max_len=25)
    modes: list[bool] = []
    inner = model_mod.LMWithLoss.forward

    def spy(self: Any, *a: Any, **kw: Any) -> Any:
        modes.append(self.training and self.model.training)
        return inner(self, *a, **kw)

    monkeypatch.setattr(model_mod.LMWithLoss, "forward", spy)
    model = make_model(tmp_path / "m", arch="qwen2")
    opts = _opts(tmp_path / "d", tmp_path / "run", preset=None, init_from=str(model))
    train(opts)
    assert modes and all(modes)


@pytest.mark.parametrize("arch", ["qwen2", "mamba"])
def test_grad_checkpointing_reaches_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arch: str
) -> None:
    """``--grad-checkpointing`` turns checkpointing on in the model every training forward
    runs (a curve test alone cannot tell it from a no-op), with no deprecated call, and
    it is off without the flag."""
    import warnings

    make_dataset(tmp_path / "d", n=32, max_len=25)
    seen: list[bool] = []
    inner = model_mod.LMWithLoss.forward

    def spy(self: Any, *a: Any, **kw: Any) -> Any:
        # The layers' own flag, as transformers reads it (under either API's name).
        seen.append(any(getattr(m, "gradient_checkpointing", False) for m in self.model.modules()))
        return inner(self, *a, **kw)

    monkeypatch.setattr(model_mod.LMWithLoss, "forward", spy)
    for flag in (True, False):
        seen.clear()
        opts = _opts(tmp_path / "d", tmp_path / f"run-{flag}", arch=arch, grad_checkpointing=flag)
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            train(opts)
        assert seen and all(x == flag for x in seen), (flag, seen)


def test_fused_loss_under_cpu_bf16_autocast() -> None:
    """The fused head loss and its gradients under bf16 autocast (the CUDA training path's
    dtype rule, here on the CPU) against fp32 autograd, within bf16's precision."""
    from miniplm.training.losses import head_losses

    g = torch.Generator().manual_seed(2)
    h = torch.randn(40, 16, generator=g, requires_grad=True)
    w = (0.3 * torch.randn(30, 16, generator=g)).requires_grad_()
    th, tw = torch.randn(40, 8, generator=g), torch.randn(30, 8, generator=g)
    y = torch.randint(0, 30, (40,), generator=g)
    logq = torch.log_softmax(h @ w.T, -1)
    ref = (
        0.6 * -logq[torch.arange(40), y].sum() + 0.4 * -(torch.softmax(th @ tw.T, -1) * logq).sum()
    )
    ref.backward()
    gh, gw = h.grad.clone(), w.grad.clone()  # type: ignore[union-attr]
    h.grad = w.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _, _ = head_losses(h, w, y, th, tw, kd_ratio=0.4, chunk=7)
    loss.backward()
    assert loss.dtype == torch.float32 and h.grad.dtype == torch.float32  # type: ignore[union-attr]
    assert abs(loss.item() - ref.item()) < 2e-2 * abs(ref.item())
    for got, want in ((h.grad, gh), (w.grad, gw)):
        err = (got - want).norm() / want.norm()  # type: ignore[operator]
        assert err < 3e-2, err


def test_mfu_denominator() -> None:
    from miniplm._peak import peak_tflops

    assert peak_tflops("NVIDIA H100 PCIe")[0] == 756.0
    assert peak_tflops("NVIDIA H100 NVL")[0] == 835.0
    assert peak_tflops("NVIDIA H100 80GB HBM3")[0] == 989.0
    assert peak_tflops("NVIDIA H200")[0] == 989.0
    assert peak_tflops("NVIDIA B200")[0] == 2250.0
    assert peak_tflops("Some GPU")[0] is None


def test_mfu_denominator_override(monkeypatch: pytest.MonkeyPatch) -> None:
    from miniplm._peak import ENV, peak_tflops
    from miniplm.errors import InputError

    monkeypatch.setenv(ENV, "790")
    assert peak_tflops("NVIDIA H200") == (790.0, ENV)
    monkeypatch.setenv(ENV, "fast")
    with pytest.raises(InputError, match=ENV):
        peak_tflops("NVIDIA H200")


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_fsdp2_two_ranks_resume_equals_uninterrupted(tmp_path: Path) -> None:
    """Two gloo ranks under FSDP2: a run restarted from its step-3 checkpoint (as after a
    kill: the later checkpoint and the final model gone) continues the curve and ends
    with the same weights."""
    make_dataset(tmp_path / "d", n=48, max_len=25)
    args = [
        "train", "--preset", "tiny", "--vocab-size", str(VOCAB), "--data", str(tmp_path / "d"),
        "--seq-len", "24", "--max-steps", "6", "--micro-batch-size", "2",
        "--global-batch-size", "8", "--warmup-steps", "1", "--log-every", "1",
        "--save-every", "3", "--device", "cpu", "--quiet", "--fsdp",
    ]  # fmt: skip
    full = tmp_path / "full"
    torchrun_miniplm([*args, "--out", str(full)])
    run = tmp_path / "resumed"
    shutil.copytree(full, run)
    shutil.rmtree(run / "checkpoints" / "step-00000006")
    shutil.rmtree(run / "final")
    (run / "summary.json").unlink()
    torchrun_miniplm([*args, "--out", str(run), "--resume"])
    curves = [
        [json.loads(ln) for ln in (r / "metrics.jsonl").read_text().splitlines()]
        for r in (full, run)
    ]
    assert [c["step"] for c in curves[1]] == list(range(1, 7))
    for key in ("loss", "grad_norm"):
        assert [c[key] for c in curves[1]] == [c[key] for c in curves[0]], key
    a = load_file(str(full / "final" / "model.safetensors"))
    b = load_file(str(run / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
