"""The student as training sees it: built from a preset, a config or a checkpoint, with
its loss in one module (``LMWithLoss``), wrapped for DDP / FSDP2, and its FLOPs per token
(the MFU numerator) and the device's peak (the denominator)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from miniplm._deps import require
from miniplm._logits import Head, output_head
from miniplm._peak import peak_tflops
from miniplm._safetensors import check_safetensors
from miniplm.errors import InputError
from miniplm.training.losses import head_losses
from miniplm.training.options import TrainOptions
from miniplm.training.presets import count_parameters, load_config, preset_config

if TYPE_CHECKING:  # mypy checks the real torch; at run time, a missing torch names its extra
    import torch
    from torch import Tensor
    from torch.distributed.fsdp import FSDPModule
else:
    torch = require("torch")
    FSDPModule = require("torch.distributed.fsdp").FSDPModule
transformers = require("transformers")


class LMWithLoss(torch.nn.Module):
    """The student and its loss as one module, so DDP / FSDP see the whole forward."""

    def __init__(self, model: Any, chunk: int, kd_ratio: float = 0.0):
        super().__init__()
        self.model = model
        self.chunk = chunk
        self.kd_ratio = kd_ratio

    def forward(
        self,
        input_ids: Tensor,
        rows: Tensor,
        cols: Tensor,
        targets: Tensor,
        teacher_hidden: Tensor | None = None,
        teacher_head: Head | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``teacher_head``: ``output_head`` of the teacher (its bias and logit rule too:
        the KD target is the distribution the teacher's own forward gives)."""
        hidden = self.model.get_decoder()(input_ids=input_ids, use_cache=False).last_hidden_state
        # Bias, scale and soft-cap too: the loss of the logits the model's forward returns.
        head = output_head(self.model)
        kd_ratio = self.kd_ratio if teacher_hidden is not None else 0.0
        return head_losses(
            hidden[rows, cols],
            head,
            targets,
            teacher_hidden,
            teacher_head,
            kd_ratio=kd_ratio,
            chunk=self.chunk,
        )


def build_model(
    opt: TrainOptions, vocab: int | None, eos_id: int | None, teacher_vocab: int | None
) -> Any:
    if opt.init_from:
        check_safetensors(opt.init_from)
        return transformers.AutoModelForCausalLM.from_pretrained(opt.init_from, dtype=torch.float32)
    want = opt.vocab_size or teacher_vocab or vocab
    if opt.preset:
        if want is None:
            raise InputError(
                f"{opt.data}: vocabulary size unknown (no tokenize.json or "
                "tokenizer.json beside the data): pass --vocab-size"
            )
        cfg = preset_config(opt.preset, want, opt.arch, max(4096, opt.seq_len + 1), eos_id)
    else:
        assert opt.model_config is not None
        cfg = load_config(opt.model_config)
        if opt.vocab_size:
            cfg.vocab_size = opt.vocab_size
    return transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)


def flops_per_token(model: Any, seq_len: int) -> float:
    """Training FLOPs per token: 6 x (weights used in matmuls) + attention scores, or for
    Mamba (no attention) its selective scan: 9 d_inner N_state per layer forward, x3."""
    cfg = model.config
    n = count_parameters(model)
    if not getattr(cfg, "tie_word_embeddings", False):
        n -= model.get_input_embeddings().weight.numel()
    layers = int(cfg.num_hidden_layers)
    if cfg.model_type == "mamba":
        return 6.0 * n + 27.0 * layers * int(cfg.intermediate_size) * int(cfg.state_size)
    return 6.0 * n + 12.0 * layers * int(cfg.hidden_size) * seq_len


def peak_flops(device: str) -> float | None:
    """The MFU denominator in FLOP/s (miniplm._peak: spec sheet or MINIPLM_PEAK_TFLOPS)."""
    if not device.startswith("cuda"):
        return None
    tf, _ = peak_tflops(torch.cuda.get_device_name(torch.device(device)))
    return None if tf is None else tf * 1e12


def parallelize(wrapped: LMWithLoss, fsdp_on: bool, world: int, device: str) -> torch.nn.Module:
    """FSDP2 (``fsdp_on``, also in one process: a one-rank group, so what runs is what is
    asked), DDP over ``world`` > 1 ranks, else the module itself."""
    gpu = device.startswith("cuda")
    if fsdp_on:
        fsdp = require("torch.distributed.fsdp")
        kw: dict[str, Any] = {}
        if gpu:  # bf16 all-gathers and compute, fp32 gradient reduction
            mp = fsdp.MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
            kw["mp_policy"] = mp
        for layer in wrapped.model.get_decoder().layers:
            fsdp.fully_shard(layer, **kw)
        sharded: torch.nn.Module = fsdp.fully_shard(wrapped, **kw)
        return sharded
    if world == 1:
        return wrapped
    ddp = torch.nn.parallel.DistributedDataParallel
    return ddp(wrapped, device_ids=[torch.device(device).index] if gpu else None)


def no_sync(
    wrapped: torch.nn.Module, sync: bool, world: int
) -> contextlib.AbstractContextManager[None]:
    """A context in which backward accumulates gradients without reducing them over ranks
    (every micro-step but the last of an optimizer step)."""
    if sync or world == 1:
        return contextlib.nullcontext()
    if isinstance(wrapped, torch.nn.parallel.DistributedDataParallel):
        return wrapped.no_sync()
    if isinstance(wrapped, FSDPModule):
        wrapped.set_requires_gradient_sync(False)
        return _Resync(wrapped)
    return contextlib.nullcontext()


class _Resync(contextlib.AbstractContextManager[None]):
    def __init__(self, wrapped: FSDPModule):
        self.wrapped = wrapped

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.wrapped.set_requires_gradient_sync(True)
