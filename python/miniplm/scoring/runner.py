"""``miniplm score``: one pass over a token dataset with one or more causal LMs (sharing a
tokenizer), writing one resumable score run per model.

Work is split into parts of ``part_size`` instances (fixed by the dataset, not by the
number of processes); under torchrun each rank takes a contiguous range of the parts not
yet written and writes them itself: no scores travel between ranks. Inside a part,
instances are scored longest first in batches of ``batch_size`` (little padding), and the
part's state is checkpointed every ``checkpoint_interval`` seconds, so a killed job
repeats at most that much work; batches are a pure function of the part, so a resumed run
is bit-identical to an uninterrupted one."""

from __future__ import annotations

import datetime
import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from miniplm._atomic import check_spares_inputs, dataset_files, output_lock
from miniplm._deps import require
from miniplm._dist import Dist
from miniplm._npy import load_npy
from miniplm._progress import library_bars, progress_bar, show_progress
from miniplm.data import PathLike, TokenDataset
from miniplm.errors import InputError
from miniplm.models import (
    LoadedModel,
    check_same_tokenizer,
    load_model,
    resolve_device,
    resolve_dtype,
)
from miniplm.scoring.nll import ChunkedScorer
from miniplm.scoring.options import ScoreOptions as ScoreOptions
from miniplm.scoring.run_dir import RunDir

if TYPE_CHECKING:  # mypy checks the real torch; at run time, a missing torch names its extra
    import torch
    from torch import Tensor
else:
    torch = require("torch")


def score(
    models: list[str],
    data: PathLike,
    outs: list[PathLike],
    options: ScoreOptions | None = None,
) -> list[dict[str, Any]]:
    """Score every instance of ``data`` with each model, writing run ``outs[i]`` for
    ``models[i]``; resumes runs left unfinished. Returns each run's summary."""
    opt = options or ScoreOptions()
    opt.check()
    if not models or len(models) != len(outs):
        raise InputError(
            f"give one --out per --model (got {len(models)} models and {len(outs)} outputs)"
        )
    if len({os.path.abspath(o) for o in outs}) != len(outs):
        raise InputError("two models write to the same --out")
    device = resolve_device(opt.device)
    dtype = resolve_dtype(opt.dtype, device)
    # Ranks finish their shares at different times: wait long at the last barrier.
    dist = Dist(device, datetime.timedelta(hours=48))
    try:
        with ExitStack() as locks, library_bars(show_progress(opt.progress) and dist.rank == 0):
            paths = [Path(o) for o in outs]
            return _score(models, os.fspath(data), paths, opt, device, dtype, dist, locks)
    finally:
        dist.close()


def _skip_mask(opt: ScoreOptions, n: int) -> tuple[npt.NDArray[np.bool_], dict[str, Any] | None]:
    """Instances not to score (``--skip-ids``: e.g. D_ref and a held-out slice, which
    selection excludes anyway), as a mask, and what the manifest records of them."""
    skip = np.zeros(n, dtype=bool)
    if opt.skip_ids is None:
        return skip, None
    from miniplm import _core

    ids = load_npy(opt.skip_ids, "--skip-ids")
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise InputError(f"--skip-ids {opt.skip_ids}: expected 1-D integer ids, got {ids.dtype}")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= n):
        raise InputError(
            f"--skip-ids {opt.skip_ids}: ids range over [{int(ids.min())}, {int(ids.max())}] "
            f"but the dataset has {n} instances"
        )
    skip[ids.astype(np.int64)] = True
    info = {
        "path": os.path.abspath(opt.skip_ids),
        "fingerprint": _core.file_fingerprint(opt.skip_ids),
        "count": int(skip.sum()),
    }
    return skip, info


def _header(
    m: LoadedModel,
    ds: TokenDataset,
    opt: ScoreOptions,
    device: str,
    dtype: torch.dtype,
    chunk: int,
    skip: dict[str, Any] | None,
) -> dict[str, Any]:
    settings = {
        "ignore_id": m.ignore_id,
        "ignore_id_from": m.ignore_id_from,
        "dtype": str(dtype).removeprefix("torch."),
        "device_type": device.split(":")[0],
        "batch_size": opt.batch_size,
        "part_size": opt.part_size,
        "chunk_tokens": chunk,
        "attn_implementation": getattr(m.model.config, "_attn_implementation", None),
        "skip_ids": skip,
    }
    return {
        "num_instances": len(ds),
        "normalization": "mean_nll_per_scored_token",
        "model": m.describe(),
        "tokenizer": None if m.tokenizer_vocab is None else f"{len(m.tokenizer_vocab)} entries",
        "dataset": {"path": ds.record(), "fingerprint": ds.fingerprint()},
        "settings": settings,
    }


def _score(
    models: list[str],
    data: str,
    outs: list[Path],
    opt: ScoreOptions,
    device: str,
    dtype: torch.dtype,
    dist: Dist,
    locks: ExitStack,
) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    show = show_progress(opt.progress) and dist.rank == 0
    ds = TokenDataset(data)
    for out in outs:
        check_spares_inputs(out, [*dataset_files(data), *models, opt.skip_ids])
    lengths = ds.lengths()
    skip, skip_info = _skip_mask(opt, len(ds))
    loaded = [
        load_model(
            m,
            device=device,
            dtype=dtype,
            ignore_id=opt.ignore_id,
            trust_remote_code=opt.trust_remote_code,
            attn_implementation=opt.attn_implementation,
        )
        for m in models
    ]
    if not opt.allow_tokenizer_mismatch:
        check_same_tokenizer(loaded, data)
    if len({m.ignore_id for m in loaded}) > 1:
        # A difference of means over different positions is not a difference of models.
        each = ", ".join(f"{m.spec}: {m.ignore_id} ({m.ignore_id_from})" for m in loaded)
        raise InputError(
            f"the models would leave out different input ids from scoring ({each}); "
            "pass --ignore-id (ScoreOptions.ignore_id) to score every model on the same "
            "positions"
        )
    longest = int(lengths.max()) if len(lengths) else 0
    for m in loaded:
        if m.max_positions is not None and longest - 1 > m.max_positions:
            raise InputError(
                f"{m.spec}: the dataset has instances of {longest} tokens, "
                f"longer than the model's {m.max_positions} positions + 1"
            )
    scorers = [ChunkedScorer(m.model, m.ignore_id, opt.chunk_tokens) for m in loaded]
    # Every token id inside every model's vocabulary, before any run directory exists.
    ds.check_vocab(min(s.vocab_size for s in scorers))
    runs = [
        RunDir(out, _header(m, ds, opt, device, dtype, s.chunk_tokens, skip_info), opt.part_size)
        for out, m, s in zip(outs, loaded, scorers)
    ]
    if dist.rank == 0:
        # One writer per run for the whole job: rank 0 holds the locks (released when the
        # job ends, in `score`); the other ranks write their parts under them.
        for r in runs:
            locks.enter_context(output_lock(r.path))
        for r in runs:
            r.prepare(opt.overwrite)
    dist.barrier()
    parts = runs[0].parts
    pending = [k for k in range(len(parts)) if not all(r.is_done(k) for r in runs)]
    # Everyone has listed the pending parts before anyone can write one.
    dist.barrier()
    mine = pending[
        dist.rank * len(pending) // dist.world : (dist.rank + 1) * len(pending) // dist.world
    ]
    todo_tokens = np.where(skip, 0, lengths)
    bar = progress_bar(
        sum(int(todo_tokens[parts[k][1] : parts[k][2]].sum()) for k in mine),
        "tok",
        "score",
        show,
        unit_scale=True,
    )
    worker = _PartScorer(ds, lengths, skip, scorers, opt, device)
    t_loop = time.perf_counter()
    for k in mine:
        worker.run_part(k, parts[k][1], parts[k][2], runs, bar)
    if bar is not None:
        bar.close()
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    scoring_s = time.perf_counter() - t_loop
    dist.barrier()
    summaries = []
    elapsed = time.perf_counter() - t0
    for r, m in zip(runs, loaded):
        total, count = r.totals()
        summary = {
            "instances": len(ds),
            "scored_tokens": count,
            "mean_nll": total / count if count else None,
            "elapsed_s": round(elapsed, 3),
            "scoring_s": round(scoring_s, 3),
            "world_size": dist.world,
        }
        if dist.rank == 0:
            r.finish(summary)
        summaries.append({"model": m.spec, "out": str(r.path), **summary})
    dist.barrier()
    return summaries


class _PartScorer:
    def __init__(
        self,
        ds: TokenDataset,
        lengths: npt.NDArray[Any],
        skip: npt.NDArray[np.bool_],
        scorers: list[ChunkedScorer],
        opt: ScoreOptions,
        device: str,
    ):
        self.ds = ds
        self.lengths = lengths
        self.skip = skip
        self.scorers = scorers
        self.opt = opt
        self.device = torch.device(device)
        self.pin = self.device.type == "cuda"

    def batches(self, start: int, end: int) -> list[npt.NDArray[np.int64]]:
        """Local indices of the part's batches: longest first, ties by id (stable); the
        skipped instances are in none (they keep nll_sum 0, n_scored 0)."""
        order = np.argsort(-self.lengths[start:end].astype(np.int64), kind="stable")
        order = order[~self.skip[start + order]]
        bs = self.opt.batch_size
        return [order[i : i + bs] for i in range(0, len(order), bs)]

    def run_part(self, k: int, start: int, end: int, runs: list[RunDir], bar: Any) -> None:
        todo = [i for i, r in enumerate(runs) if not r.is_done(k)]
        states = {i: runs[i].load_state(k) for i in todo}
        # Results stay on the device until a checkpoint: no host sync per batch, so the
        # next batch is gathered while the device still works on this one.
        acc = {
            i: (
                torch.from_numpy(st.nll_sum).to(self.device),
                torch.from_numpy(st.n_scored.astype(np.int64)).to(self.device),
            )
            for i, st in states.items()
        }

        def sync(i: int) -> None:
            states[i].nll_sum[:] = acc[i][0].cpu().numpy()
            states[i].n_scored[:] = acc[i][1].cpu().numpy()

        last = time.monotonic()
        for local in self.batches(start, end):
            need = [i for i in todo if not states[i].done[local[0]]]
            ntok = int(self.lengths[start + local].sum())
            if need:
                self._score_batch(start, local, need, acc)
                for i in need:
                    states[i].done[local] = True
            if bar is not None:
                bar.update(ntok)
            if need and (
                self.opt.checkpoint_interval == 0
                or time.monotonic() - last >= self.opt.checkpoint_interval
            ):
                for i in need:
                    sync(i)
                    runs[i].save_checkpoint(k, states[i])
                last = time.monotonic()
        for i in todo:
            sync(i)
            runs[i].write_part(k, states[i])

    def _score_batch(
        self,
        start: int,
        local: npt.NDArray[np.int64],
        need: list[int],
        acc: dict[int, tuple[Tensor, Tensor]],
    ) -> None:
        gid = start + local
        width = max(1, int(self.lengths[gid].max()))
        batch, lens = self.ds.gather(gid.astype(np.uint64), width, pad_id=0)
        host = [
            torch.from_numpy(batch),
            torch.from_numpy(lens.astype(np.int64)),
            torch.from_numpy(local),
        ]
        if self.pin:
            host = [t.pin_memory() for t in host]
        x, n, idx = (t.to(self.device, non_blocking=True) for t in host)
        for i in need:
            nll, cnt = self.scorers[i].score(x, n)
            acc[i][0][idx] = nll
            acc[i][1][idx] = cnt
