"""Positions per head chunk: the fused training loss (forward + backward of
``head_losses``, bf16 autocast on GPU) and the scorer's head (``ChunkedScorer`` over given
hidden states), timed for each chunk size at a real vocabulary. Their defaults (1024
positions; 256 MiB of fp32 logits) were tuned on a CPU; a GPU may want 4-8k.

    python benches/bench_chunks.py                                     # GPU: Qwen2's V, d 2048
    python benches/bench_chunks.py --vocab 1000 --hidden 64 --positions 2048 --chunks 256,512
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from miniplm.models import resolve_device
from miniplm.scoring.nll import ChunkedScorer, default_chunk_tokens
from miniplm.training.losses import DEFAULT_CHUNK, head_losses


class _Decoder(torch.nn.Module):
    """Returns fixed hidden states: the head alone is timed."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden

    def forward(self, input_ids: torch.Tensor, use_cache: bool = False) -> Any:
        return SimpleNamespace(last_hidden_state=self.hidden)


class _HeadOnly(torch.nn.Module):
    def __init__(self, hidden: torch.Tensor, head: torch.nn.Linear):
        super().__init__()
        self.decoder, self.head, self.config = _Decoder(hidden), head, SimpleNamespace()

    def get_decoder(self) -> torch.nn.Module:
        return self.decoder

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.head


def _timed(fn: Any, device: str, repeat: int) -> float:
    fn()  # warm-up (allocator, kernels)
    best = float("inf")
    for _ in range(repeat):
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--positions", type=int, default=16384, help="positions per call")
    ap.add_argument("--chunks", default="1024,2048,4096,8192")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    device = resolve_device(args.device)
    gpu = device.startswith("cuda")
    dt = torch.bfloat16 if gpu else torch.float32
    g = torch.Generator(device=device).manual_seed(0)
    n, d, v = args.positions, args.hidden, args.vocab
    h = torch.randn(n, d, device=device, generator=g).requires_grad_()
    w = (0.02 * torch.randn(v, d, device=device, generator=g)).requires_grad_()
    y = torch.randint(0, v, (n,), device=device, generator=g)
    head = torch.nn.Linear(d, v, bias=False, device=device, dtype=dt)
    # The scorer sees [1, n + 1] ids and [1, n, d] hidden states: n scored positions.
    model = _HeadOnly(h.detach().to(dt)[None], head)
    ids = torch.randint(0, v, (1, n + 1), device=device, generator=g)
    lengths = torch.tensor([n + 1], device=device)
    amp = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=gpu)

    def train_step(chunk: int) -> None:
        with amp:
            loss, _, _ = head_losses(h, w, y, chunk=chunk)
        loss.backward()
        h.grad = w.grad = None

    rows = []
    for chunk in [int(c) for c in args.chunks.split(",") if c]:
        scorer = ChunkedScorer(model, None, chunk_tokens=chunk)
        t_train = _timed(lambda c=chunk: train_step(c), device, args.repeat)
        t_score = _timed(lambda s=scorer: s.score(ids, lengths), device, args.repeat)
        rows.append(
            {
                "chunk": chunk,
                "train_s": t_train,
                "train_positions_per_s": n / t_train,
                "score_s": t_score,
                "score_positions_per_s": n / t_score,
            }
        )
        print(
            f"chunk {chunk:>6}: loss fwd+bwd {t_train * 1e3:8.2f} ms "
            f"({n / t_train:,.0f} pos/s), scorer head {t_score * 1e3:8.2f} ms "
            f"({n / t_score:,.0f} pos/s)"
        )
    defaults = {"loss_chunk": DEFAULT_CHUNK, "score_chunk": default_chunk_tokens(v)}
    print(f"defaults: {defaults}; V {v}, d {d}, {n} positions, {device}")
    if args.json:
        run = {"device": device, "vocab": v, "hidden": d, "positions": n, "rows": rows}
        Path(args.json).write_text(json.dumps({**run, "defaults": defaults}, indent=1))


if __name__ == "__main__":
    main()
