"""Rank, world size, barriers and sums under torchrun; a no-op in a single process.
Shared by the scoring and training loops (gloo on CPU, NCCL on GPU)."""

from __future__ import annotations

import datetime
import os
from typing import TYPE_CHECKING, Any

from miniplm._deps import require

if TYPE_CHECKING:  # mypy checks the real torch; at run time, a missing torch names its extra
    import torch
else:
    torch = require("torch")


class Dist:
    """``device`` is the resolved one (``cuda:<local rank>``, ``cpu``): a CUDA rank is bound
    to its GPU before the group exists, so NCCL and every later ``synchronize`` use it.
    ``group``: a one-process group even without torchrun (FSDP2 needs a group)."""

    def __init__(self, device: str, timeout: datetime.timedelta | None = None, group: bool = False):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local = int(os.environ.get("LOCAL_RANK", "0"))
        self.owned = False
        cuda = device.startswith("cuda")
        if cuda:
            torch.cuda.set_device(torch.device(device))
        if (self.world > 1 or group) and not torch.distributed.is_initialized():
            kw: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
            if cuda:
                kw["device_id"] = torch.device(device)
            if self.world == 1:
                # torch imports HashStore (off Windows) without re-exporting it.
                store = torch.distributed.HashStore()  # type: ignore[attr-defined]
                kw.update(store=store, rank=0, world_size=1)
            torch.distributed.init_process_group("nccl" if cuda else "gloo", **kw)
            self.owned = True

    def all_sum(self, values: list[float], device: torch.device | str) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return [float(x) for x in t.tolist()]

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.owned:
            torch.distributed.destroy_process_group()
