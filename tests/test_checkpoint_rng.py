"""Checkpoints keep every rank's RNG states and each rank restores its own (a restored
rank 1 with rank 0's generator would draw rank 0's dropout masks after a resume)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from miniplm.errors import InputError
from miniplm.training.checkpoint import load_checkpoint, save_checkpoint

from tiny_lm import one_thread_env


def test_two_gloo_ranks_each_restore_their_own_cpu_generator(tmp_path: Path) -> None:
    worker = Path(__file__).with_name("rng_ranks_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    subprocess.run([*cmd, str(worker), str(tmp_path)], check=True, env=one_thread_env())
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert got[0]["restored"] and got[1]["restored"]
    assert got[0]["next"] != got[1]["next"]  # two streams, not rank 0's twice
    rng = torch.load(tmp_path / "ckpt" / "step-00000001" / "rng.pt", weights_only=True)
    assert len(rng["cpu"]) == 2


def test_one_process_restores_and_reads_the_old_single_state(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    torch.manual_seed(5)
    saved = torch.get_rng_state()
    path = save_checkpoint(tmp_path, 1, model, opt, {"step": 1}, 0, keep=2)
    assert path is not None
    torch.rand(3)
    load_checkpoint(path, model, opt)
    assert torch.equal(torch.get_rng_state(), saved)
    # Fewer saved ranks than this one's number: refused, naming the checkpoint.
    with pytest.raises(InputError, match=r"rng\.pt.*rank 1"):
        load_checkpoint(path, model, opt, rank=1)
    # A checkpoint written before per-rank states: one CPU state, restored as it is.
    torch.save({"cpu": saved}, path / "rng.pt")
    torch.rand(3)
    load_checkpoint(path, model, opt)
    assert torch.equal(torch.get_rng_state(), saved)
