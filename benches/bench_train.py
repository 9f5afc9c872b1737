"""Training throughput: `miniplm train` beside the plain Hugging Face training loop a user
would write (``model(input_ids, labels=...)`` with full fp32 logits, AdamW, the same
micro/global batch with gradient accumulation, bf16 autocast on GPU), same model, same
data, same run.

    python benches/bench_train.py                                  # CPU: preset "small"
    python benches/bench_train.py --preset 200M --seq-len 1024 --micro-batch-size 16 \
        --global-batch-size 64 --steps 20                          # GPU (the issue's target)

Both loops skip their first two steps (warm-up, lazy allocations) and time the rest.
Prints tokens/s, peak memory (process anon RSS; GPU: torch peak allocated) and, on CUDA,
MFU with training FLOPs = 6 x parameters x tokens against the GPU's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

import miniplm

from _measure import alternate, python, throughput_table

COMMON = """
import json, sys, time, numpy as np, torch, miniplm
preset, data, out, device, seq_len, micro, glob, steps = sys.argv[1:9]
seq_len, micro, glob, steps = int(seq_len), int(micro), int(glob), int(steps)
def peak():
    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0
def sync():
    if device.startswith("cuda"):
        torch.cuda.synchronize()
"""

# The loop of a typical HF pre-training script: labels=input_ids (HF shifts inside and
# materialises [B, L, V] fp32 logits), mean loss per micro-batch / accumulation steps.
PLAIN = (
    COMMON
    + """
from miniplm.training.presets import preset_config
from transformers import AutoModelForCausalLM
torch.manual_seed(0)
ds = miniplm.TokenDataset(data)
cfg = preset_config(preset, 32000, "qwen2", 4096, 2)
model = AutoModelForCausalLM.from_config(cfg).to(device).train()
opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.98), eps=1e-6,
                        weight_decay=0.01, fused=device.startswith("cuda") or None)
accum = glob // micro
rng = np.random.default_rng(0)
order = rng.permutation(len(ds)).astype(np.uint64)
amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else None
pos, tokens, t0 = 0, 0, None
for step in range(steps):
    if step == 2:
        sync(); t0 = time.perf_counter(); tokens = 0
    for m in range(accum):
        ids = order[pos % len(ds): pos % len(ds) + micro]; pos += micro
        x, n = ds.gather(ids, seq_len + 1, pad_id=2)
        x = torch.from_numpy(x).to(device)
        lab = x.clone()
        lab[torch.arange(seq_len + 1, device=device)[None] >= torch.from_numpy(
            n.astype(np.int64)).to(device)[:, None]] = -100
        if amp is not None:
            with amp:
                loss = model(input_ids=x, labels=lab).loss
        else:
            loss = model(input_ids=x, labels=lab).loss
        (loss / accum).backward()
        tokens += int(n.astype(np.int64).sum() - len(n))
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step(); opt.zero_grad(set_to_none=True)
sync(); dt = time.perf_counter() - t0
params = sum(p.numel() for p in model.parameters())
print(json.dumps({"tokens": tokens, "seconds": dt, "peak_gpu_mb": peak(), "params": params}))
"""
)

# miniplm train with log_every=1: time steps 3..N from metrics.jsonl (no checkpoint in the
# timed window: the only save is after the last step).
OURS = (
    COMMON
    + """
from miniplm.training.trainer import TrainOptions, train
o = TrainOptions(data=data, out=out, preset=preset, vocab_size=32000, seq_len=seq_len,
                 max_steps=steps, micro_batch_size=micro, global_batch_size=glob,
                 warmup_steps=0, lr=3e-4, device=device, log_every=1, save_every=10**9,
                 overwrite=True, progress=False)
s = train(o)
recs = [json.loads(l) for l in open(out + "/metrics.jsonl")]
a, b = recs[1], recs[-1]
print(json.dumps({"tokens": b["tokens"] - a["tokens"], "seconds": b["elapsed_s"] - a["elapsed_s"],
                  "peak_gpu_mb": peak(), "params": s["parameters"]}))
"""
)


def make_data(d: Path, n: int, seq_len: int, vocab: int) -> None:
    # A packed corpus: most instances full (L+1), a tail of shorter end-of-source chunks.
    rng = np.random.default_rng(0)
    lens = np.where(rng.random(n) < 0.85, seq_len + 1, rng.integers(2, seq_len + 1, n))
    miniplm.write_dataset(
        d, (rng.integers(3, vocab, m) for m in lens), vocab_size=vocab, overwrite=True
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--micro-batch-size", type=int, default=8)
    ap.add_argument("--global-batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--repeat", type=int, default=1, help="alternate runs, keep the best")
    ap.add_argument("--dir", default="/tmp/miniplm-bench-train")
    args = ap.parse_args()
    import torch

    from miniplm.models import resolve_device

    device = resolve_device(args.device)
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    n = args.global_batch_size * args.steps
    data = root / f"data-{args.seq_len}-{n}"
    if not data.exists():
        make_data(data, n, args.seq_len, 32000)
    argv = [
        args.preset,
        str(data),
        str(root / "run"),
        device,
        str(args.seq_len),
        str(args.micro_batch_size),
        str(args.global_batch_size),
        str(args.steps),
    ]
    plain, ours = alternate([python(PLAIN, *argv), python(OURS, *argv)], args.repeat)
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else ""
    tab, res = throughput_table([("plain HF loop", plain), ("miniplm train", ours)], 6.0, gpu)
    params = json.loads(plain.stdout.strip().splitlines()[-1])["params"]
    print(
        f"train: preset {args.preset} ({params / 1e6:.1f}M params), L = {args.seq_len}, "
        f"micro {args.micro_batch_size} x accum "
        f"{args.global_batch_size // args.micro_batch_size}, {args.steps} steps "
        f"(first 2 untimed), {device} {gpu}".rstrip()
    )
    print(tab)
    speedup = res["miniplm train"]["tokens_per_s"] / res["plain HF loop"]["tokens_per_s"]
    print(f"speed-up: {speedup:.2f}x")
    if args.json:
        run = {"device": device, "gpu": gpu, "args": vars(args), "speedup": speedup, **res}
        Path(args.json).write_text(json.dumps(run, indent=1))
    shutil.rmtree(root / "run", ignore_errors=True)


if __name__ == "__main__":
    main()
