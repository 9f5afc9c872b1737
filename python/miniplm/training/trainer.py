"""``miniplm train``: pre-train a causal LM on token shards (optionally through a
selection), with the paper's optimiser defaults, exact resume, DDP / FSDP2 under
torchrun, and the Vanilla KD baseline.

Every rank derives the same global batch from the global sample index (``SampleOrder``)
and takes its slice: no data loader state to save, and a resumed run reads exactly what
the uninterrupted one would have read. The loss of a step is the sum over the global
batch's target tokens divided by their number, so it does not depend on how the batch is
split into ranks and micro-batches.

The run is in the shape of torchtitan's trainer: ``_Trainer.setup`` (inputs, model,
optimizer, output, resume), then ``train`` loops ``train_step`` (one optimizer step, its
micro-steps in ``forward_backward_step``), ``log_step`` and ``save_step``, and ends
with ``save_final``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from miniplm._atomic import (
    atomic_dir,
    atomic_write_text,
    check_spares_inputs,
    dataset_files,
    output_lock,
)
from miniplm._deps import require
from miniplm._dist import Dist
from miniplm._logits import Head, output_head
from miniplm._progress import library_bars, progress_bar, show_progress
from miniplm.data import DatasetView, TokenDataset
from miniplm.dataset_meta import read_dataset_meta
from miniplm.errors import InputError
from miniplm.models import (
    LoadedModel,
    check_same_tokenizer,
    check_tokenizer,
    load_model,
    model_fingerprint,
    model_tokenizer,
    resolve_device,
    split_spec,
)
from miniplm.training.checkpoint import (
    damaged,
    fsync_tree,
    list_checkpoints,
    load_checkpoint,
    read_state,
    save_checkpoint,
)
from miniplm.training.metrics import MetricsLog
from miniplm.training.model import (
    LMWithLoss,
    build_model,
    flops_per_token,
    no_sync,
    parallelize,
    peak_flops,
)
from miniplm.training.options import TrainOptions as TrainOptions
from miniplm.training.presets import count_parameters
from miniplm.training.stream import SampleOrder

if TYPE_CHECKING:  # mypy checks the real torch; at run time, a missing torch names its extra
    import torch
    from torch import Tensor
else:
    torch = require("torch")
transformers = require("transformers")


def cosine_lr(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the peak lr: linear warmup, then cosine down to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def train(opt: TrainOptions) -> dict[str, Any]:
    """Run (or resume) a training job; returns the final summary."""
    opt.check()
    device = resolve_device(opt.device)
    dist = Dist(device, group=opt.fsdp)
    try:
        trainer = _Trainer(opt, dist, device)
        with trainer.locks:  # the output's lock, taken by rank 0 once the inputs are checked
            return trainer.train()
    finally:
        dist.close()


@dataclass
class _StepResult:
    """One optimizer step's sums on the device (read at log steps only: a read syncs)."""

    lr: float
    targets: int  # target tokens of the global batch
    ce_sum: Tensor
    kd_sum: Tensor
    grad_norm: Tensor


class _Trainer:
    def __init__(self, opt: TrainOptions, dist: Dist, device: str):
        self.opt, self.dist, self.device = opt, dist, device
        self.out = Path(opt.out)
        self.locks = contextlib.ExitStack()
        self.gpu = self.device.startswith("cuda")

    # ---- set-up -------------------------------------------------------------------
    def setup(self) -> None:
        """Check the inputs, build the student (and teacher), its optimizer, the output
        and, with --resume, the state of the last checkpoint."""
        opt = self.opt
        inputs = [opt.selection, opt.init_from, opt.model_config, opt.kd_teacher]
        check_spares_inputs(self.out, [*dataset_files(opt.data), *inputs])
        if opt.init_from and not opt.allow_tokenizer_mismatch:
            directory, gguf = split_spec(opt.init_from)
            tok = model_tokenizer(directory, gguf, trust_remote_code=False)
            check_tokenizer(opt.init_from, None if tok is None else tok.get_vocab(), opt.data)
        torch.manual_seed(opt.seed)
        self.src = self._source()
        vocab, self.eos_tok, eos_id, self.tok_file = read_dataset_meta(opt.data)
        self.teacher = self._teacher()
        self.model = self._student(vocab, eos_id)
        # Wrap before the optimizer exists: FSDP2 replaces the parameters by sharded ones.
        self.wrapped = parallelize(
            LMWithLoss(self.model, opt.loss_chunk, opt.kd_ratio),
            opt.fsdp,
            self.dist.world,
            self.device,
        )
        self.optimizer = self._optimizer()
        self.accum = self._accumulation()
        self._prepare_out()  # only now: an early error above leaves nothing behind
        if opt.max_steps is not None:
            self.total = opt.max_steps
        else:
            assert opt.epochs is not None
            self.total = math.ceil(opt.epochs * len(self.src) / opt.global_batch_size)
        self.settings = self._settings(len(self.src), self.total, self.accum)
        self.settings["inputs"] = self._input_identities()
        #: The loss of the last logged step (None before the first): what summary.json
        #: reports, kept in checkpoints so that a resume at the last step reports it too.
        self.last_loss: float | None = None
        self.state: dict[str, Any] = self._resume() or {"step": 0, "samples": 0, "tokens": 0}
        if opt.compile:
            # The decoder layers, in place (their names stay those checkpoints use): their
            # shapes are fixed ([micro batch, L]), while the fused loss sees a new number of
            # target tokens every micro-step and would recompile for each one.
            for layer in self.model.get_decoder().layers:
                layer.compile()
        self.fpt = flops_per_token(self.model, opt.seq_len)
        self.peak = peak_flops(self.device)
        self.n_params = count_parameters(self.model)
        if self.dist.rank == 0:
            self._write_run_info()
            if self.teacher is not None:
                self._kd_hint()
        self.log = MetricsLog(self.out, self.state["step"], self.dist.rank == 0, opt.tensorboard)
        self.order = SampleOrder(len(self.src), opt.seed, opt.shuffle)
        self.lengths = _source_lengths(self.src)

    def _source(self) -> TokenDataset | DatasetView:
        ds = TokenDataset(self.opt.data)
        src: TokenDataset | DatasetView = (
            ds.select(self.opt.selection) if self.opt.selection else ds
        )
        if len(src) == 0:
            raise InputError(f"{self.opt.data}: nothing to train on (0 instances)")
        return src

    def _teacher(self) -> LoadedModel | None:
        opt = self.opt
        if not opt.kd_teacher:
            return None
        dt = torch.bfloat16 if self.gpu else torch.float32
        teacher = load_model(opt.kd_teacher, device=self.device, dtype=dt)
        if not opt.allow_tokenizer_mismatch:
            check_same_tokenizer([teacher], opt.data)
        return teacher

    def _student(self, vocab: int | None, eos_id: int | None) -> Any:  # a transformers model
        opt, teacher = self.opt, self.teacher
        model = build_model(opt, vocab, eos_id, teacher.vocab_size if teacher else None)
        head_rows = model.get_output_embeddings().weight.shape[0]
        if teacher is not None and teacher.vocab_size != head_rows:
            raise InputError(
                f"--kd-teacher {opt.kd_teacher}: vocabulary of {teacher.vocab_size} but the "
                f"student has {head_rows}: Vanilla KD needs one tokenizer and one vocabulary"
            )
        # Every token id inside the student's vocabulary, before the output is created.
        base = self.src.base if isinstance(self.src, DatasetView) else self.src
        base.check_vocab(int(model.get_input_embeddings().weight.shape[0]))
        model.train()  # from_pretrained (--init-from) returns it in eval mode: no dropout
        if opt.grad_checkpointing:
            # transformers >= 5.2x renames it (the old name warns, and goes in v6).
            enable = getattr(model, "activation_checkpointing_enable", None)
            (enable or model.gradient_checkpointing_enable)()
        model.to(self.device)
        return model

    def _optimizer(self) -> torch.optim.AdamW:
        opt = self.opt
        params = list(self.wrapped.parameters())
        return torch.optim.AdamW(
            [
                {"params": [p for p in params if p.dim() >= 2], "weight_decay": opt.weight_decay},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
            ],
            lr=opt.lr,
            betas=opt.betas,
            eps=opt.eps,
            fused=self.gpu or None,
        )

    def _accumulation(self) -> int:
        opt = self.opt
        world_batch = opt.micro_batch_size * self.dist.world
        if opt.global_batch_size % world_batch:
            raise InputError(
                f"--global-batch-size {opt.global_batch_size} is not a multiple of "
                f"--micro-batch-size x ranks = {world_batch}"
            )
        return opt.global_batch_size // world_batch

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

    def _resume(self) -> dict[str, Any] | None:
        """The progress of the last checkpoint (weights, optimizer, RNG restored), or None."""
        ckpts = list_checkpoints(self.out / "checkpoints")
        if not (self.opt.resume and ckpts):
            return None
        last = ckpts[-1]
        state = read_state(last)
        if not isinstance(state.get("progress"), dict):
            raise damaged(last, "state.json", ValueError("no progress object"))
        saved = state.get("settings")
        saved = dict(saved) if isinstance(saved, dict) else {}
        then, now = saved.pop("inputs", None), self.settings["inputs"]
        if then is not None and not isinstance(then, dict):
            raise damaged(last, "state.json", ValueError(f"inputs are {then!r}"))
        rest = {k: v for k, v in self.settings.items() if k != "inputs"}
        if saved != rest:
            raise InputError(
                f"{last}: refusing to resume with other settings: " + _diff(saved, rest)
            )
        if then is None:
            # A checkpoint from before the inputs' fingerprints were recorded: nothing
            # to compare with. Resume (refusing would strand every such run), and say so;
            # the checkpoints written from now on record them.
            if self.dist.rank == 0:
                print(
                    f"warning: {last} does not record the fingerprints of its inputs "
                    "(written by an older miniplm): resuming without checking that the "
                    "dataset, selection and models are the ones it was trained on",
                    file=sys.stderr,
                )
        elif then != now:
            changed = sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k))
            what = "; ".join(
                f"{_INPUT_FLAGS.get(k, k)} {getattr(self.opt, k, '')}: "
                f"{then.get(k)} -> {now.get(k)}"
                for k in changed
            )
            raise InputError(
                f"{last}: refusing to resume: the content of an input changed since the "
                f"checkpoint was written (fingerprints {what}); restore it, or start "
                "over with --overwrite"
            )
        loaded = load_checkpoint(last, self.wrapped, self.optimizer, self.dist.rank)
        loss = loaded.get("last_loss")
        self.last_loss = float(loss) if isinstance(loss, (int, float)) else None
        progress: dict[str, Any] = loaded["progress"]
        return progress

    def _input_identities(self) -> dict[str, str]:
        """Fingerprints of what the run reads, by option name: a resume refuses inputs
        rewritten in place (the same paths, other content)."""
        opt, src = self.opt, self.src
        base = src.base if isinstance(src, DatasetView) else src
        ident = {"data": base.fingerprint()}  # cheap: check_vocab read the contents
        if isinstance(src, DatasetView):
            ids = np.ascontiguousarray(src.ids, dtype="<u8")
            ident["selection"] = "blake2b:" + hashlib.blake2b(ids.data, digest_size=16).hexdigest()
        if opt.init_from:
            ident["init_from"] = model_fingerprint(opt.init_from)
        if self.teacher is not None:
            ident["kd_teacher"] = self.teacher.fingerprint
        return ident

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

    # ---- the loop -----------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        show = self.dist.rank == 0 and show_progress(self.opt.progress)
        with library_bars(show):
            self.setup()
            self.loop(show)
            self.save_final()
        summary = {
            "steps": self.state["step"],
            "tokens": self.state["tokens"],
            "final_loss": self._loss_json(),
            "parameters": self.n_params,
            "elapsed_s": time.perf_counter() - self.t0,
            "final": str(self.out / "final"),
        }
        if self.dist.rank == 0:
            atomic_write_text(
                self.out / "summary.json", json.dumps(summary, indent=1, allow_nan=False)
            )
        return summary

    def loop(self, show: bool) -> None:
        """Optimizer steps up to the last, each logged and checkpointed when due."""
        opt, total = self.opt, self.total
        bar = progress_bar(total, "step", "train", show, initial=self.state["step"])
        self.t_last, self.tok_last = time.perf_counter(), self.state["tokens"]
        self.t0 = time.perf_counter()
        while self.state["step"] < total:
            result = self.train_step()
            step = self.state["step"]
            if step % opt.log_every == 0 or step == total:
                rec = self.log_step(result)
                if bar is not None:
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", tok_s=f"{rec['tokens_per_s']:,.0f}")
            if bar is not None:
                bar.update(1)
            if step % opt.save_every == 0 or step == total:
                self.save_step()
        if bar is not None:
            bar.close()
        self.log.close()

    def train_step(self) -> _StepResult:
        """One optimizer step over the next global batch (this rank's slice of it)."""
        opt, dist, state = self.opt, self.dist, self.state
        step = state["step"]
        lr = opt.lr * cosine_lr(step, self.total, opt.warmup_steps, opt.min_lr_ratio)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        idx = self.order.take(state["samples"], opt.global_batch_size)
        width = opt.seq_len + 1
        targets_all = int(np.minimum(self.lengths[idx], width).clip(min=1).sum() - len(idx))
        if targets_all == 0:
            raise InputError(
                f"{opt.data}: a batch has no token to predict (instances of length < 2)"
            )
        share = opt.micro_batch_size * self.accum
        mine = idx[dist.rank * share : (dist.rank + 1) * share]
        ce_sum, kd_sum = (torch.zeros((), dtype=torch.float64, device=self.device) for _ in "ck")
        for m in range(self.accum):
            micro = mine[m * opt.micro_batch_size : (m + 1) * opt.micro_batch_size]
            with no_sync(self.wrapped, m == self.accum - 1, dist.world):
                ce, kd = self.forward_backward_step(micro, width, targets_all)
            ce_sum += ce
            kd_sum += kd
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), opt.clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state = {
            "step": step + 1,
            "samples": state["samples"] + opt.global_batch_size,
            "tokens": state["tokens"] + targets_all,
        }
        return _StepResult(lr, targets_all, ce_sum, kd_sum, grad_norm)

    def forward_backward_step(
        self, micro: npt.NDArray[np.int64], width: int, denom: int
    ) -> tuple[Tensor, Tensor]:
        """Forward and backward of one micro-batch; its CE and KD sums, on the device."""
        x, lens = self.src.gather(micro, width, pad_id=0)
        # The target positions are found on the host, from the lengths: a `nonzero` on the
        # device would wait for the copy (and for the previous step) every micro-step.
        valid = np.arange(width - 1)[None, :] < (lens.astype(np.int64)[:, None] - 1)
        host = [torch.from_numpy(a) for a in (x, *np.nonzero(valid))]
        if self.gpu:
            host = [t.pin_memory() for t in host]
        ids, rows, cols = (t.to(self.device, non_blocking=True) for t in host)
        inputs = ids[:, :-1]
        targets = ids[:, 1:][rows, cols]
        t_hidden: Tensor | None = None
        t_head: Head | None = None
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if self.gpu else contextlib.nullcontext()
        with amp:
            if self.teacher is not None:
                with torch.no_grad():
                    th = self.teacher.model.get_decoder()(input_ids=inputs, use_cache=False)
                    t_hidden = th.last_hidden_state[rows, cols]
                    t_head = output_head(self.teacher.model)  # bias, scale, soft-cap too
            loss, ce, kd = self.wrapped(inputs, rows, cols, targets, t_hidden, t_head)
        # DDP and FSDP average gradients over ranks; each rank holds its share of the
        # global token sum, so scale by the world size to get the global mean's gradient.
        (loss * (self.dist.world / denom)).backward()
        return ce.detach(), kd.detach()  # read at log steps only (a read is a host sync)

    def log_step(self, r: _StepResult) -> dict[str, Any]:
        """The metrics line of the step just taken (its reads wait for the device: the
        throughput counts finished work)."""
        opt, state = self.opt, self.state
        ce_g, kd_g = self.dist.all_sum([float(r.ce_sum), float(r.kd_sum)], self.device)
        grad_norm = r.grad_norm
        if hasattr(grad_norm, "full_tensor"):  # FSDP2 returns a DTensor: its full value
            grad_norm = grad_norm.full_tensor()
        now = time.perf_counter()
        tps = (state["tokens"] - self.tok_last) / max(1e-9, now - self.t_last)
        self.t_last, self.tok_last = now, state["tokens"]
        rec: dict[str, Any] = {
            "step": state["step"],
            "loss": ce_g / r.targets,
            "lr": r.lr,
            "tokens": state["tokens"],
            "tokens_per_s": tps,
            "grad_norm": float(grad_norm),
            "elapsed_s": now - self.t0,
        }
        if self.teacher is not None:
            rec["kd_loss"] = kd_g / r.targets
            rec["total_loss"] = ((1 - opt.kd_ratio) * ce_g + opt.kd_ratio * kd_g) / r.targets
        if self.peak:
            rec["mfu"] = self.fpt * tps / (self.peak * self.dist.world)
            rec["peak_tflops"] = self.peak / 1e12  # the denominator, per GPU
        self.log.write(rec)
        self.last_loss = rec["loss"]
        return rec

    # ---- saving -------------------------------------------------------------------
    def save_step(self) -> None:
        """A checkpoint of the step just taken (collective: every rank calls it)."""
        save_checkpoint(
            self.out / "checkpoints",
            self.state["step"],
            self.wrapped,
            self.optimizer,
            {"progress": self.state, "settings": self.settings, "last_loss": self._loss_json()},
            self.dist.rank,
            self.opt.keep_checkpoints,
        )
        self.dist.barrier()

    def _loss_json(self) -> float | None:
        """The last logged loss for JSON: None (null) rather than NaN, which is not JSON
        (unknown only before the first log, or resuming an older miniplm's last step)."""
        loss = self.last_loss
        return loss if loss is not None and math.isfinite(loss) else None

    def save_final(self) -> None:
        """``OUT/final``: the HF model (and the dataset's tokenizer), written atomically."""
        from miniplm.training.checkpoint import full_model_state

        state = full_model_state(self.wrapped)
        if self.dist.rank == 0:
            # Under a temporary name, fsynced, then put in place of an old ``final`` (moved
            # aside, not removed first): a crash leaves the old model or the new one.
            with atomic_dir(self.out / "final", overwrite=True) as tmp:
                inner = {k.removeprefix("model."): v for k, v in state.items()}
                self.model.save_pretrained(tmp, state_dict=inner)
                if self.tok_file is not None:
                    fast = transformers.PreTrainedTokenizerFast(
                        tokenizer_file=str(self.tok_file),
                        eos_token=self.eos_tok,
                        pad_token=self.eos_tok,
                    )
                    fast.save_pretrained(tmp)
                fsync_tree(tmp)
        self.dist.barrier()

    def _write_run_info(self) -> None:
        info = {
            "settings": self.settings,
            "parameters": self.n_params,
            "teacher": self.teacher.describe() if self.teacher is not None else None,
        }
        atomic_write_text(self.out / "run.json", json.dumps(info, indent=1))

    def _kd_hint(self) -> None:
        n_stu, total = self.n_params, self.total
        assert self.teacher is not None
        n_tch = self.teacher.describe()["num_parameters"]
        match = int(total * 3 * n_stu / (3 * n_stu + n_tch))
        print(
            f"Vanilla KD costs (6 N_stu + 2 N_tch) FLOPs per token: to match the training "
            f"FLOPs of MiniPLM over {total} steps, train KD for {match} steps "
            f"(= 3 N_stu T / (3 N_stu + N_tch), N_stu {n_stu / 1e6:.1f}M, "
            f"N_tch {n_tch / 1e6:.1f}M)",
            file=sys.stderr,
        )


_INPUT_FLAGS = {
    "data": "--data",
    "selection": "--selection",
    "init_from": "--init-from",
    "kd_teacher": "--kd-teacher",
}


def _diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys)


def _source_lengths(src: TokenDataset | DatasetView) -> npt.NDArray[np.int64]:
    if isinstance(src, DatasetView):
        return src.base.lengths()[src.ids.astype(np.int64)].astype(np.int64)
    return src.lengths().astype(np.int64)
