"""Run under torchrun (two gloo ranks) by test_checkpoint_rng.py: each rank seeds its
own CPU generator, saves a checkpoint, draws on, restores, and writes what it got."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from miniplm._dist import Dist
from miniplm.training.checkpoint import load_checkpoint, save_checkpoint


def main(out: Path) -> None:
    dist = Dist("cpu")
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    torch.manual_seed(100 + dist.rank)  # each rank its own stream (dropout masks differ)
    torch.rand(5)
    saved = torch.get_rng_state()
    save_checkpoint(out / "ckpt", 1, model, opt, {"step": 1}, dist.rank, keep=2)
    dist.barrier()
    torch.rand(7)  # move on, as the run did after the checkpoint
    load_checkpoint(out / "ckpt" / "step-00000001", model, opt, rank=dist.rank)
    got = {"restored": torch.equal(torch.get_rng_state(), saved), "next": torch.rand(2).tolist()}
    (out / f"rank{dist.rank}.json").write_text(json.dumps(got))
    dist.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
