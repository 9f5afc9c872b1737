"""Scoring throughput: `miniplm score` beside the plain Hugging Face loop of the original
MiniPLM code (fp16 model on GPU / fp32 on CPU, full fp32 logits, cross-entropy with
reduction none, batch 16, corpus order), same model, same data, same run.

    python benches/bench_score.py                       # CPU: a small random Llama
    python benches/bench_score.py --model smollm2       # the real SmolLM2-135M (GGUF)
    python benches/bench_score.py --model 1b --seq-len 1024 --n 512   # GPU: ~1.1B Llama
    python benches/bench_score.py --model qwen1.8b --seq-len 1024 --n 256  # Qwen1.5-1.8B shape
    python benches/bench_score.py --model smollm2 --seq-len 128 --dtype bfloat16  # CPU bf16

``--dtype`` and ``--attn`` set our scorer's (the plain loop stays the original's: fp16 on
GPU, fp32 on CPU, the model's default attention). It also prints the largest per-instance
|mean NLL difference| between the two (what a lower precision costs).

Prints tokens/s, peak memory (process RSS; GPU: torch peak allocated) and, on CUDA, MFU
with forward FLOPs = 2 x parameters x tokens against the GPU's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

import miniplm

from _measure import alternate, python, throughput_table

# Shared by both children: load the model, time only the scoring loop.
COMMON = """
import json, sys, time, numpy as np, torch, miniplm
model_spec, data, out, device, dtype, batch, attn = sys.argv[1:8]
batch = int(batch)
def peak():
    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0
def sync():
    if device.startswith("cuda"):
        torch.cuda.synchronize()
"""

PLAIN = (
    COMMON
    + """
from miniplm.models import split_spec
from transformers import AutoModelForCausalLM
d, g = split_spec(model_spec)
kw = {"gguf_file": g} if g else {}
dt = torch.float16 if device.startswith("cuda") else torch.float32
model = AutoModelForCausalLM.from_pretrained(d, dtype=dt, **kw).to(device).eval()
cfg = model.config
pad = cfg.pad_token_id if cfg.pad_token_id is not None else cfg.eos_token_id
pad = pad[0] if isinstance(pad, list) else pad
ds = miniplm.TokenDataset(data)
lengths = ds.lengths()
nll_out = np.zeros(len(ds))
sync(); t0 = time.perf_counter(); tokens = 0
with torch.no_grad():
    for s in range(0, len(ds), batch):
        ids = np.arange(s, min(len(ds), s + batch), dtype=np.uint64)
        width = int(lengths[s:s + batch].max())
        x, n = ds.gather(ids, width, pad_id=pad)
        x = torch.from_numpy(x).to(device)
        n = torch.from_numpy(n.astype(np.int64)).to(device)
        inp, lab = x[:, :-1], x[:, 1:]
        att = (torch.arange(width - 1, device=device)[None] < (n[:, None] - 1)).long()
        logits = model(input_ids=inp, attention_mask=att).logits.float()
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), lab.reshape(-1), reduction="none"
        ).view(lab.shape)
        mask = (inp != pad) & att.bool()
        nll_out[s:s + len(ids)] = (loss * mask).sum(1).double().cpu().numpy()
        tokens += int(n.sum())
sync(); dt_s = time.perf_counter() - t0
params = sum(p.numel() for p in model.parameters())
np.save(out + ".plain-nll.npy", nll_out)
print(json.dumps({"tokens": tokens, "seconds": dt_s, "peak_gpu_mb": peak(), "params": params}))
"""
)

OURS = (
    COMMON
    + """
from miniplm.scoring.runner import ScoreOptions, score
opt = ScoreOptions(batch_size=batch, device=device, dtype=dtype, progress=False, overwrite=True,
                   checkpoint_interval=1e9, attn_implementation=attn or None)
s = score([model_spec], data, [out], opt)[0]  # scoring_s: the scoring loop, without loading
print(json.dumps({"tokens": int(miniplm.TokenDataset(data).num_tokens), "seconds": s["scoring_s"],
                  "peak_gpu_mb": peak(), "params": None}))
"""
)


def make_model(kind: str, root: Path, vocab: int) -> tuple[str, int]:
    if kind == "smollm2":
        from miniplm.bundled import smollm2_gguf

        return str(smollm2_gguf()), 49152
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    if kind == "qwen1.8b":  # Qwen1.5-1.8B's shape (random weights: speed does not need them)
        vocab = 151936
        sizes = dict(hidden_size=2048, intermediate_size=5504, num_hidden_layers=24)
    else:
        sizes = {
            "small": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4),
            "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16),
        }[kind]
    heads = sizes["hidden_size"] // 64
    d = root / f"model-{kind}"
    if not d.exists():
        torch.manual_seed(0)
        kw = dict(
            vocab_size=vocab,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=4096,
            eos_token_id=2,
            **sizes,
        )
        cfg = Qwen2Config(**kw) if kind.startswith("qwen") else LlamaConfig(**kw)
        # Built on the GPU where there is one: initialising 1.8B weights on the CPU is slow.
        where = "cuda" if torch.cuda.is_available() else "cpu"
        with torch.device(where):
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        model.save_pretrained(d)
    return str(d), vocab


def make_data(d: Path, n: int, seq_len: int, vocab: int) -> None:
    # A packed corpus: most instances full (L+1), a tail of shorter end-of-source chunks.
    rng = np.random.default_rng(0)
    lens = np.where(rng.random(n) < 0.85, seq_len + 1, rng.integers(2, seq_len + 1, n))
    miniplm.write_dataset(
        d, (rng.integers(3, vocab, m) for m in lens), vocab_size=vocab, overwrite=True
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="small", choices=["small", "smollm2", "1b", "qwen1.8b"])
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto", help="our scorer's dtype (auto: as miniplm score)")
    ap.add_argument("--attn", default="", help="our scorer's attn_implementation (sdpa, eager)")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--repeat", type=int, default=1, help="alternate runs, keep the best")
    ap.add_argument("--dir", default="/tmp/miniplm-bench-score")
    args = ap.parse_args()
    import torch

    from miniplm.models import resolve_device

    device = resolve_device(args.device)
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    spec, vocab = make_model(args.model, root, 32000)
    data = root / f"data-{args.model}-{args.seq_len}-{args.n}"
    if not data.exists():
        make_data(data, args.n, args.seq_len, vocab)
    argv = [spec, str(data), str(root / "run"), device, args.dtype, str(args.batch_size), args.attn]
    plain, ours = alternate([python(PLAIN, *argv), python(OURS, *argv)], args.repeat)
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else ""
    tab, res = throughput_table([("plain HF loop", plain), ("miniplm score", ours)], 2.0, gpu)
    params = json.loads(plain.stdout.strip().splitlines()[-1])["params"]
    print(
        f"score: {args.model} ({params / 1e6:.1f}M params), {args.n} instances of <= "
        f"{args.seq_len + 1} tokens, batch {args.batch_size}, {device} {gpu}".rstrip()
    )
    print(tab)
    speedup = res["miniplm score"]["tokens_per_s"] / res["plain HF loop"]["tokens_per_s"]
    print(f"speed-up: {speedup:.2f}x")
    # The plain loop pads with the pad id and masks those inputs: compare scored rows only.
    ours_run = miniplm.load_scores(root / "run")
    n = ours_run["n_scored"].astype(np.float64)
    plain_nll = np.load(str(root / "run") + ".plain-nll.npy")
    keep = n > 0
    max_dnll = float(np.abs(ours_run["nll_sum"][keep] / n[keep] - plain_nll[keep] / n[keep]).max())
    print(f"max |mean NLL ours - plain| per instance: {max_dnll:.2e} nats")
    if args.json:
        run = {
            "device": device,
            "gpu": gpu,
            "args": vars(args),
            "speedup": speedup,
            "max_abs_mean_nll_diff": max_dnll,
            **res,
        }
        Path(args.json).write_text(json.dumps(run, indent=1))
    shutil.rmtree(root / "run", ignore_errors=True)
    Path(str(root / "run") + ".plain-nll.npy").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
