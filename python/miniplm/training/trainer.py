"""``miniplm train``: pre-train a causal LM on token shards (optionally through a
selection), with the paper's optimiser defaults, exact resume, DDP / FSDP2 under
torchrun, and the Vanilla KD baseline.

Every rank derives the same global batch from the global sample index (``SampleOrder``)
and takes its slice: no data loader state to save, and a resumed run reads exactly what
the uninterrupted one would have read. The loss of a step is the sum over the global
batch's target tokens divided by their number, so it does not depend on how the batch is
split into ranks and micro-batches."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from miniplm._atomic import check_spares_inputs, dataset_files, output_lock
from miniplm._deps import require
from miniplm._dist import Dist
from miniplm._peak import peak_tflops
from miniplm._safetensors import check_safetensors
from miniplm.data import DatasetView, TokenDataset
from miniplm.dataset_meta import read_dataset_meta
from miniplm.errors import InputError
from miniplm.models import (
    check_same_tokenizer,
    check_tokenizer,
    load_model,
    model_tokenizer,
    resolve_device,
    split_spec,
)
from miniplm.training.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from miniplm.training.losses import head_losses
from miniplm.training.options import TrainOptions as TrainOptions
from miniplm.training.presets import count_parameters, load_config, preset_config
from miniplm.training.stream import SampleOrder

torch = require("torch")
transformers = require("transformers")


class LMWithLoss(torch.nn.Module):  # type: ignore[misc,name-defined]
    """The student and its loss as one module, so DDP / FSDP see the whole forward."""

    def __init__(self, model: Any, chunk: int, kd_ratio: float = 0.0):
        super().__init__()
        self.model = model
        self.chunk = chunk
        self.kd_ratio = kd_ratio

    def forward(
        self,
        input_ids: Any,
        rows: Any,
        cols: Any,
        targets: Any,
        teacher_hidden: Any = None,
        teacher_head: Any = None,
    ) -> tuple[Any, Any, Any]:
        hidden = self.model.get_decoder()(input_ids=input_ids, use_cache=False).last_hidden_state
        head = self.model.get_output_embeddings().weight
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


def cosine_lr(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the peak lr: linear warmup, then cosine down to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _build_model(
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


def _flops_per_token(model: Any, seq_len: int) -> float:
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


def _peak_flops(device: str) -> float | None:
    """The MFU denominator in FLOP/s (miniplm._peak: spec sheet or MINIPLM_PEAK_TFLOPS)."""
    if not device.startswith("cuda"):
        return None
    tf, _ = peak_tflops(torch.cuda.get_device_name(torch.device(device)))
    return None if tf is None else tf * 1e12


def train(opt: TrainOptions) -> dict[str, Any]:
    """Run (or resume) a training job; returns the final summary."""
    opt.check()
    device = resolve_device(opt.device)
    dist = Dist(device, group=opt.fsdp)
    try:
        trainer = _Trainer(opt, dist, device)
        with trainer.locks:  # the output's lock, taken by rank 0 once the inputs are checked
            return trainer.run()
    finally:
        dist.close()


class _Trainer:
    def __init__(self, opt: TrainOptions, dist: Dist, device: str):
        self.opt, self.dist, self.device = opt, dist, device
        self.out = Path(opt.out)
        self.locks = contextlib.ExitStack()
        self.gpu = self.device.startswith("cuda")

    # ---- set-up -------------------------------------------------------------------
    def _prepare_out(self) -> None:
        """An existing output is continued with --resume, replaced with --overwrite, and
        refused otherwise. Rank 0 holds the output's lock from here to the end of the run."""
        if self.dist.rank == 0:
            self.locks.enter_context(output_lock(self.out))
            if self.out.exists() and any(self.out.iterdir()):
                if self.opt.overwrite:
                    shutil.rmtree(self.out)
                elif not self.opt.resume:
                    raise FileExistsError(
                        f"{self.out}: output exists (pass --resume to continue it, or --overwrite)"
                    )
            self.out.mkdir(parents=True, exist_ok=True)
            # A killed run's half-written final model and checkpoints (we hold the lock).
            for debris in [
                *self.out.glob(".final.tmp-*"),
                *(self.out / "checkpoints").glob(".step-*.tmp-*"),
            ]:
                shutil.rmtree(debris, ignore_errors=True)
        self.dist.barrier()

    def _source(self) -> TokenDataset | DatasetView:
        ds = TokenDataset(self.opt.data)
        src: TokenDataset | DatasetView = (
            ds.select(self.opt.selection) if self.opt.selection else ds
        )
        if len(src) == 0:
            raise InputError(f"{self.opt.data}: nothing to train on (0 instances)")
        return src

    def run(self) -> dict[str, Any]:
        opt, dist = self.opt, self.dist
        inputs = [opt.selection, opt.init_from, opt.model_config, opt.kd_teacher]
        check_spares_inputs(self.out, [*dataset_files(opt.data), *inputs])
        if opt.init_from and not opt.allow_tokenizer_mismatch:
            directory, gguf = split_spec(opt.init_from)
            tok = model_tokenizer(directory, gguf, trust_remote_code=False)
            check_tokenizer(opt.init_from, None if tok is None else tok.get_vocab(), opt.data)
        torch.manual_seed(opt.seed)
        src = self._source()
        vocab, eos_tok, eos_id, tok_file = read_dataset_meta(opt.data)
        teacher = None
        if opt.kd_teacher:
            dt = torch.bfloat16 if self.gpu else torch.float32
            teacher = load_model(opt.kd_teacher, device=self.device, dtype=dt)
            if not opt.allow_tokenizer_mismatch:
                check_same_tokenizer([teacher], opt.data)
        model = _build_model(opt, vocab, eos_id, teacher.vocab_size if teacher else None)
        if (
            teacher is not None
            and teacher.vocab_size != model.get_output_embeddings().weight.shape[0]
        ):
            raise InputError(
                f"--kd-teacher {opt.kd_teacher}: vocabulary of {teacher.vocab_size} but the "
                f"student has {model.get_output_embeddings().weight.shape[0]}: Vanilla KD "
                "needs one tokenizer and one vocabulary"
            )
        # Every token id inside the student's vocabulary, before the output is created.
        base = src.base if isinstance(src, DatasetView) else src
        base.check_vocab(int(model.get_input_embeddings().weight.shape[0]))
        model.train()  # from_pretrained (--init-from) returns it in eval mode: no dropout
        if opt.grad_checkpointing:
            model.gradient_checkpointing_enable()
        model.to(self.device)
        # Wrap before the optimizer exists: FSDP2 replaces the parameters by sharded ones.
        wrapped = self._parallel(LMWithLoss(model, opt.loss_chunk, opt.kd_ratio))
        params = list(wrapped.parameters())
        optimizer = torch.optim.AdamW(
            [
                {"params": [p for p in params if p.dim() >= 2], "weight_decay": opt.weight_decay},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
            ],
            lr=opt.lr,
            betas=opt.betas,
            eps=opt.eps,
            fused=self.gpu or None,
        )
        world_batch = opt.micro_batch_size * dist.world
        if opt.global_batch_size % world_batch:
            raise InputError(
                f"--global-batch-size {opt.global_batch_size} is not a multiple of "
                f"--micro-batch-size x ranks = {world_batch}"
            )
        accum = opt.global_batch_size // world_batch
        self._prepare_out()  # only now: an early error above leaves nothing behind
        if opt.max_steps is not None:
            total = opt.max_steps
        else:
            assert opt.epochs is not None
            total = math.ceil(opt.epochs * len(src) / opt.global_batch_size)
        state: dict[str, Any] = {"step": 0, "samples": 0, "tokens": 0}
        settings = self._settings(len(src), total, accum)
        ckpts = list_checkpoints(self.out / "checkpoints")
        if opt.resume and ckpts:
            saved = json.loads((ckpts[-1] / "state.json").read_text())
            if saved.get("settings") != settings:
                raise InputError(
                    f"{ckpts[-1]}: refusing to resume with other settings: "
                    + _diff(saved.get("settings", {}), settings)
                )
            state = load_checkpoint(ckpts[-1], wrapped, optimizer, dist.rank)["progress"]
        if opt.compile:
            # The decoder layers, in place (their names stay those checkpoints use): their
            # shapes are fixed ([micro batch, L]), while the fused loss sees a new number of
            # target tokens every micro-step and would recompile for each one.
            for layer in model.get_decoder().layers:
                layer.compile()
        fpt = _flops_per_token(model, opt.seq_len)
        peak = _peak_flops(self.device)
        n_params = count_parameters(model)
        if dist.rank == 0:
            self._write_run_info(settings, n_params, teacher)
            if teacher is not None:
                self._kd_hint(n_params, teacher, total)
        log = _MetricsLog(self.out, state["step"], dist.rank == 0, opt.tensorboard)
        order = SampleOrder(len(src), opt.seed, opt.shuffle)
        lengths = _source_lengths(src)
        bar = _bar(
            total,
            state["step"],
            dist.rank == 0 and (opt.progress if opt.progress is not None else sys.stderr.isatty()),
        )
        t_last, tok_last = time.perf_counter(), state["tokens"]
        t0 = time.perf_counter()
        last_loss = float("nan")
        while state["step"] < total:
            step = state["step"]
            lr = opt.lr * cosine_lr(step, total, opt.warmup_steps, opt.min_lr_ratio)
            for g in optimizer.param_groups:
                g["lr"] = lr
            idx = order.take(state["samples"], opt.global_batch_size)
            width = opt.seq_len + 1
            targets_all = int(np.minimum(lengths[idx], width).clip(min=1).sum() - len(idx))
            if targets_all == 0:
                raise InputError(
                    f"{opt.data}: a batch has no token to predict (instances of length < 2)"
                )
            mine = idx[
                dist.rank * opt.micro_batch_size * accum : (dist.rank + 1)
                * opt.micro_batch_size
                * accum
            ]
            ce_sum, kd_sum = (
                torch.zeros((), dtype=torch.float64, device=self.device) for _ in "ck"
            )
            for m in range(accum):
                micro = mine[m * opt.micro_batch_size : (m + 1) * opt.micro_batch_size]
                sync = m == accum - 1
                with self._no_sync(wrapped, sync):
                    ce, kd = self._micro_step(wrapped, src, micro, width, teacher, targets_all)
                ce_sum += ce
                kd_sum += kd
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), opt.clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state = {
                "step": step + 1,
                "samples": state["samples"] + opt.global_batch_size,
                "tokens": state["tokens"] + targets_all,
            }
            if state["step"] % opt.log_every == 0 or state["step"] == total:
                # This read waits for the device: the throughput below counts finished work.
                ce_g, kd_g = dist.all_sum([float(ce_sum), float(kd_sum)], self.device)
                if hasattr(grad_norm, "full_tensor"):  # FSDP2 returns a DTensor: its full value
                    grad_norm = grad_norm.full_tensor()
                now = time.perf_counter()
                tps = (state["tokens"] - tok_last) / max(1e-9, now - t_last)
                t_last, tok_last = now, state["tokens"]
                rec: dict[str, Any] = {
                    "step": state["step"],
                    "loss": ce_g / targets_all,
                    "lr": lr,
                    "tokens": state["tokens"],
                    "tokens_per_s": tps,
                    "grad_norm": float(grad_norm),
                    "elapsed_s": now - t0,
                }
                if teacher is not None:
                    rec["kd_loss"] = kd_g / targets_all
                    rec["total_loss"] = (
                        (1 - opt.kd_ratio) * ce_g + opt.kd_ratio * kd_g
                    ) / targets_all
                if peak:
                    rec["mfu"] = fpt * tps / (peak * dist.world)
                    rec["peak_tflops"] = peak / 1e12  # the denominator, per GPU
                log.write(rec)
                last_loss = rec["loss"]
                if bar is not None:
                    bar.set_postfix(loss=f"{last_loss:.4f}", tok_s=f"{tps:,.0f}")
            if bar is not None:
                bar.update(1)
            if state["step"] % opt.save_every == 0 or state["step"] == total:
                save_checkpoint(
                    self.out / "checkpoints",
                    state["step"],
                    wrapped,
                    optimizer,
                    {"progress": state, "settings": settings},
                    dist.rank,
                    opt.keep_checkpoints,
                )
                dist.barrier()
        if bar is not None:
            bar.close()
        log.close()
        self._save_final(wrapped, model, tok_file, eos_tok)
        summary = {
            "steps": state["step"],
            "tokens": state["tokens"],
            "final_loss": last_loss,
            "parameters": n_params,
            "elapsed_s": time.perf_counter() - t0,
            "final": str(self.out / "final"),
        }
        if dist.rank == 0:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary

    # ---- pieces -----------------------------------------------------------------
    def _settings(self, n: int, total: int, accum: int) -> dict[str, Any]:
        """What must not change across a resume (else the curve would not continue)."""
        o = asdict(self.opt)
        for k in (
            "out",
            "resume",
            "overwrite",
            "progress",
            "save_every",
            "keep_checkpoints",
            "log_every",
            "tensorboard",
            "device",
            "compile",
            "extra",
        ):
            o.pop(k)
        o["betas"] = list(o["betas"])
        o.update(num_instances=n, total_steps=total, world_size=self.dist.world, accumulation=accum)
        return o

    def _parallel(self, wrapped: Any) -> Any:
        if self.opt.fsdp:  # also in one process (a one-rank group): what runs is what is asked
            fsdp = require("torch.distributed.fsdp")
            kw: dict[str, Any] = {}
            if self.gpu:  # bf16 all-gathers and compute, fp32 gradient reduction
                mp = fsdp.MixedPrecisionPolicy(
                    param_dtype=torch.bfloat16, reduce_dtype=torch.float32
                )
                kw["mp_policy"] = mp
            for layer in wrapped.model.get_decoder().layers:
                fsdp.fully_shard(layer, **kw)
            return fsdp.fully_shard(wrapped, **kw)
        if self.dist.world == 1:
            return wrapped
        ddp = torch.nn.parallel.DistributedDataParallel
        return ddp(wrapped, device_ids=[torch.device(self.device).index] if self.gpu else None)

    def _no_sync(self, wrapped: Any, sync: bool) -> Any:
        if sync or self.dist.world == 1:
            return contextlib.nullcontext()
        if hasattr(wrapped, "no_sync"):
            return wrapped.no_sync()
        if hasattr(wrapped, "set_requires_gradient_sync"):  # FSDP2
            wrapped.set_requires_gradient_sync(False)
            return _Resync(wrapped)
        return contextlib.nullcontext()

    def _micro_step(
        self,
        wrapped: Any,
        src: Any,
        micro: npt.NDArray[np.int64],
        width: int,
        teacher: Any,
        denom: int,
    ) -> tuple[Any, Any]:
        x, lens = src.gather(micro, width, pad_id=0)
        # The target positions are found on the host, from the lengths: a `nonzero` on the
        # device would wait for the copy (and for the previous step) every micro-step.
        valid = np.arange(width - 1)[None, :] < (lens.astype(np.int64)[:, None] - 1)
        host = [torch.from_numpy(a) for a in (x, *np.nonzero(valid))]
        if self.gpu:
            host = [t.pin_memory() for t in host]
        x, rows, cols = (t.to(self.device, non_blocking=True) for t in host)
        inputs = x[:, :-1]
        targets = x[:, 1:][rows, cols]
        t_hidden = t_head = None
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if self.gpu else contextlib.nullcontext()
        with amp:
            if teacher is not None:
                with torch.no_grad():
                    th = teacher.model.get_decoder()(input_ids=inputs, use_cache=False)
                    t_hidden = th.last_hidden_state[rows, cols]
                    t_head = teacher.model.get_output_embeddings().weight
            loss, ce, kd = wrapped(inputs, rows, cols, targets, t_hidden, t_head)
        # DDP and FSDP average gradients over ranks; each rank holds its share of the
        # global token sum, so scale by the world size to get the global mean's gradient.
        (loss * (self.dist.world / denom)).backward()
        return ce.detach(), kd.detach()  # read at log steps only (a read is a host sync)

    def _write_run_info(self, settings: dict[str, Any], n_params: int, teacher: Any) -> None:
        info = {
            "settings": settings,
            "parameters": n_params,
            "teacher": teacher.describe() if teacher is not None else None,
        }
        (self.out / "run.json").write_text(json.dumps(info, indent=1))

    def _kd_hint(self, n_stu: int, teacher: Any, total: int) -> None:
        n_tch = teacher.describe()["num_parameters"]
        match = int(total * 3 * n_stu / (3 * n_stu + n_tch))
        print(
            f"Vanilla KD costs (6 N_stu + 2 N_tch) FLOPs per token: to match the training "
            f"FLOPs of MiniPLM over {total} steps, train KD for {match} steps "
            f"(= 3 N_stu T / (3 N_stu + N_tch), N_stu {n_stu / 1e6:.1f}M, "
            f"N_tch {n_tch / 1e6:.1f}M)",
            file=sys.stderr,
        )

    def _save_final(
        self, wrapped: Any, model: Any, tok_file: Path | None, eos_tok: str | None
    ) -> None:
        from miniplm.training.checkpoint import full_model_state

        state = full_model_state(wrapped)
        if self.dist.rank == 0:
            final = self.out / "final"
            tmp = self.out / f".final.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            inner = {k.removeprefix("model."): v for k, v in state.items()}
            model.save_pretrained(tmp, state_dict=inner)
            if tok_file is not None:
                fast = transformers.PreTrainedTokenizerFast(
                    tokenizer_file=str(tok_file), eos_token=eos_tok, pad_token=eos_tok
                )
                fast.save_pretrained(tmp)
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        self.dist.barrier()


class _Resync:
    def __init__(self, wrapped: Any):
        self.wrapped = wrapped

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.wrapped.set_requires_gradient_sync(True)


def _diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys)


def _source_lengths(src: TokenDataset | DatasetView) -> npt.NDArray[np.int64]:
    if isinstance(src, DatasetView):
        return src.base.lengths()[src.ids.astype(np.int64)].astype(np.int64)
    return src.lengths().astype(np.int64)


def _bar(total: int, initial: int, enabled: bool | None) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr, desc="train"
    )


class _MetricsLog:
    """``metrics.jsonl`` (one object per logged step); on resume, lines past the resumed
    step are dropped so the file is the curve of one uninterrupted run."""

    def __init__(self, out: Path, step: int, active: bool, tensorboard: bool):
        self.active = active
        self.path = out / "metrics.jsonl"
        self.tb = None
        if not active:
            return
        if self.path.exists():
            keep = [
                ln
                for ln in self.path.read_text().splitlines()
                if ln.strip() and json.loads(ln)["step"] <= step
            ]
            self.path.write_text("".join(ln + "\n" for ln in keep))
        self.f = open(self.path, "a")  # noqa: SIM115 (kept open across steps)
        if tensorboard:
            sw = require("torch.utils.tensorboard", extra="tensorboard").SummaryWriter
            self.tb = sw(str(out / "tensorboard"), purge_step=step + 1)

    def write(self, rec: dict[str, Any]) -> None:
        if not self.active:
            return
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()
        if self.tb is not None:
            for k, v in rec.items():
                if k != "step":
                    self.tb.add_scalar(f"train/{k}", v, rec["step"])

    def close(self) -> None:
        if self.active:
            self.f.close()
            if self.tb is not None:
                self.tb.close()
