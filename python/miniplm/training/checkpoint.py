"""Training checkpoints that a killed job can resume from exactly.

``OUT/checkpoints/step-XXXXXXXX/``: ``model.safetensors`` (full fp32 weights),
``optimizer.pt`` (full optimizer state, loaded with ``weights_only=True``), ``rng.pt``
(every rank's torch CPU / CUDA generator states, lists indexed by rank: each rank draws
its own dropout masks, and restores its own) and ``state.json`` (step, data position, scheduler,
the run's settings). A checkpoint is written under a temporary name by rank 0, fsynced and
renamed; the newest complete one wins. The state-dict API of ``torch.distributed.checkpoint``
gathers full tensors from plain, DDP and FSDP2 models alike."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miniplm._atomic import fsync_dir
from miniplm._deps import require
from miniplm._safetensors import check_safetensors
from miniplm.errors import FormatError, InputError

if TYPE_CHECKING:  # mypy checks the real torch; at run time, a missing torch names its extra
    import torch
    import torch.distributed.checkpoint.state_dict as dcp_sd
else:
    torch = require("torch")
    dcp_sd = require("torch.distributed.checkpoint.state_dict")
safetensors = require("safetensors")
safetensors_torch = require("safetensors.torch")

_STEP = re.compile(r"^step-(\d{8})$")


def _options(rank0_only_load: bool = False) -> Any:
    return dcp_sd.StateDictOptions(
        full_state_dict=True, cpu_offload=True, broadcast_from_rank0=rank0_only_load
    )


def fsync_tree(d: Path) -> None:
    """Make the files under directory ``d`` (and their names) durable."""
    for f in d.iterdir():
        if f.is_dir():
            fsync_tree(f)
            continue
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(d)


def full_model_state(model: torch.nn.Module) -> dict[str, Any]:
    """Full (gathered, CPU) state dict; collective under FSDP: call on every rank."""
    state: dict[str, Any] = dcp_sd.get_model_state_dict(model, options=_options())
    return state


def _dedupe_tied(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """safetensors refuses two names for one storage (tied embeddings): keep the first;
    also returns {dropped name: kept name}, saved in the file's metadata for loading."""
    kept: dict[int, str] = {}
    out, tied = {}, {}
    for k, v in state.items():
        if v.numel() and v.data_ptr() in kept:
            tied[k] = kept[v.data_ptr()]
            continue
        kept[v.data_ptr()] = k
        out[k] = v.contiguous()
    return out, tied


def save_checkpoint(
    root: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    rank: int,
    keep: int,
) -> Path | None:
    """Write ``root/step-XXXXXXXX`` (rank 0 writes; every rank must call: gathering full
    state is collective under FSDP). Keeps the newest ``keep`` checkpoints."""
    model_state = full_model_state(model)
    optim_state = dcp_sd.get_optimizer_state_dict(model, optimizer, options=_options())
    rng = _rank_rng_states()
    if rank != 0:
        return None
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".step-{step:08d}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    weights, tied = _dedupe_tied(model_state)
    safetensors_torch.save_file(
        weights, str(tmp / "model.safetensors"), metadata={"tied": json.dumps(tied)}
    )
    torch.save(optim_state, tmp / "optimizer.pt")
    torch.save(rng, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    fsync_tree(tmp)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    # The rename durable before older checkpoints go: a power loss in between must leave
    # this one or the old ones, not neither.
    fsync_dir(root)
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _rank_rng_states() -> dict[str, list[Any]]:
    """Every rank's generator states, gathered (collective under torchrun)."""
    mine = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        mine["cuda"] = torch.cuda.get_rng_state()
    ranks: list[Any] = [mine]
    dist = torch.distributed
    if dist.is_initialized() and dist.get_world_size() > 1:
        ranks = [None] * dist.get_world_size()
        dist.all_gather_object(ranks, mine)
    return {k: [r[k] for r in ranks] for k in mine}


def _restore_rng(path: Path, rng: dict[str, Any], rank: int) -> None:
    """This rank's states; a checkpoint from before per-rank states holds rank 0's alone."""
    for key in ("cpu", "cuda"):
        states = rng.get(key)
        if isinstance(states, list):
            if rank >= len(states):
                raise InputError(
                    f"{path / 'rng.pt'}: {key} RNG states of {len(states)} ranks, none for "
                    f"rank {rank}: written by a run with fewer ranks?"
                )
            states = states[rank]
        if states is None:
            continue
        if key == "cpu":
            torch.set_rng_state(states)
        elif torch.cuda.is_available():
            torch.cuda.set_rng_state(states)


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not root.is_dir():
        return []
    return sorted(
        (p for p in root.iterdir() if _STEP.match(p.name) and (p / "state.json").is_file()),
        key=lambda p: p.name,
    )


def damaged(path: Path, name: str, e: BaseException) -> FormatError:
    """The error for the checkpoint ``path`` whose file ``name`` cannot be read (``e``),
    with what to do about it."""
    older = [p for p in list_checkpoints(path.parent) if p.name < path.name]
    todo = (
        f"delete {path} to resume from the previous checkpoint {older[-1].name}"
        if older
        else "no earlier checkpoint is left: start over with --overwrite"
    )
    if str(e).startswith(f"{path / name}: "):  # our own message, naming the file already
        return FormatError(f"{e}: damaged checkpoint; {todo}")
    return FormatError(f"{path / name}: damaged checkpoint ({e}); {todo}")


def read_state(path: Path) -> dict[str, Any]:
    """The checkpoint ``path``'s state.json (FormatError, with what to do, if damaged)."""
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, ValueError) as e:
        raise damaged(path, "state.json", e) from e
    if not isinstance(state, dict):
        raise damaged(path, "state.json", ValueError(f"a JSON {type(state).__name__}"))
    return state


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rank: int = 0
) -> dict[str, Any]:
    """Restore weights, optimizer and RNG states (on every rank: each ``rank`` its own);
    returns state.json. A file that cannot be read is a FormatError naming it (and the
    checkpoint to delete to resume from the one before)."""
    state = read_state(path)
    name = "model.safetensors"
    try:
        check_safetensors(path / name)
        weights = safetensors_torch.load_file(str(path / name))
        with safetensors.safe_open(str(path / name), "pt") as f:
            tied = json.loads((f.metadata() or {}).get("tied", "{}"))
        name = "optimizer.pt"
        optim_state = torch.load(path / name, weights_only=True, map_location="cpu")
        name = "rng.pt"
        rng = torch.load(path / name, weights_only=True)
    # torch.load of a cut-off file: RuntimeError (its zip reader), EOFError or an
    # UnpicklingError; safetensors raises its own SafetensorError.
    except (
        OSError,
        ValueError,
        RuntimeError,
        EOFError,
        pickle.UnpicklingError,
        safetensors.SafetensorError,
    ) as e:
        raise damaged(path, name, e) from e
    expected = set(full_model_state(model))
    missing = expected - set(weights)
    # A tied head is stored once: fill the other name from the same tensor (named in the
    # metadata; checkpoints from before it was written: Llama / Qwen2's names).
    for k in list(missing):
        tail = "lm_head.weight"
        alias = tied.get(k) or (
            k[: -len(tail)] + "model.embed_tokens.weight" if k.endswith(tail) else None
        )
        if alias and alias in weights:
            weights[k] = weights[alias]
            missing.discard(k)
    if missing:
        raise InputError(f"{path}: checkpoint lacks {sorted(missing)[:3]}: another model?")
    dcp_sd.set_model_state_dict(model, weights, options=_options())
    dcp_sd.set_optimizer_state_dict(model, optimizer, optim_state, options=_options())
    _restore_rng(path, rng, rank)
    return state
