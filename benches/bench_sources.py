"""Held-out NLL per source, as ``miniplm run``'s evaluation needs it (all, no noise, per
source): one pass with ``evaluate(by_source=True)`` against what a user would otherwise
run, one ``evaluate`` per slice (the whole held-out, the no-noise slice, then each
source's selection), with the same loaded model. Each side runs in its own process
(wall time, peak memory); the figures of both are compared.

    python benches/bench_sources.py                        # 4000 instances, 8 and 256 sources
    python benches/bench_sources.py --instances 800 --sources 8   # quick
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import run, table

VOCAB = 512


def _corpus(out: Path, n: int, sources: int, seq_len: int, seed: int) -> None:
    """Random instances of 8 .. seq_len + 1 tokens; source sizes Zipf-like (source k
    about 1/(k+1) of the instances), a quarter of them named as noise."""
    import miniplm

    rng = np.random.default_rng(seed)
    seqs = [rng.integers(4, VOCAB, int(rng.integers(8, seq_len + 2))) for _ in range(n)]
    miniplm.write_dataset(out, seqs, vocab_size=VOCAB, overwrite=True)
    p = 1.0 / np.arange(1, sources + 1)
    src = rng.choice(sources, size=n, p=p / p.sum()).astype(np.uint16)
    names = [f"noise-{k}" if k % 4 == 3 else f"src-{k}" for k in range(sources)]
    np.save(out / "sources.npy", src)
    (out / "tokenize.json").write_text(json.dumps({"sources": names}))
    ds = miniplm.TokenDataset(out)
    noisy = np.array([nm.startswith("noise-") for nm in names])
    ds.write_selection(out / "sel-all", np.arange(n, dtype=np.uint64), "all", overwrite=True)
    clean = np.flatnonzero(~noisy[src]).astype(np.uint64)
    ds.write_selection(out / "sel-clean", clean, "clean", overwrite=True)
    for k in range(sources):
        ids = np.flatnonzero(src == k).astype(np.uint64)
        if len(ids):
            ds.write_selection(out / f"sel-{k}", ids, names[k], overwrite=True)


def _model(out: Path, seed: int) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(cfg).save_pretrained(out)


def child(data: str, model: str, mode: str, batch: int) -> None:
    """One side, timed after the model is loaded; prints its figures as JSON."""
    import torch
    from transformers import AutoModelForCausalLM

    from miniplm.evaluation import evaluate

    torch.set_num_threads(1)
    m = AutoModelForCausalLM.from_pretrained(model).eval()
    pair = (m, None)
    d = Path(data)
    kw: dict[str, Any] = {"batch_size": batch, "allow_tokenizer_mismatch": True}
    t0 = time.perf_counter()
    if mode == "one pass":
        h = evaluate(pair, data=d, selection=d / "sel-all", by_source=True, **kw)["heldout"]
        per = {k: g["mean_nll"] for k, g in h["by_source"].items()}
        passes, scored = 1, h["scored_tokens"]
    else:
        h = evaluate(pair, data=d, selection=d / "sel-all", **kw)["heldout"]
        c = evaluate(pair, data=d, selection=d / "sel-clean", **kw)["heldout"]
        names = json.loads((d / "tokenize.json").read_text())["sources"]
        per, passes, scored = {}, 2, h["scored_tokens"] + c["scored_tokens"]
        for k, name in enumerate(names):
            if (d / f"sel-{k}").is_dir():
                g = evaluate(pair, data=d, selection=d / f"sel-{k}", **kw)["heldout"]
                per[name], passes, scored = g["mean_nll"], passes + 1, scored + g["scored_tokens"]
    took = time.perf_counter() - t0
    print(json.dumps({"s": took, "passes": passes, "scored": scored, "per": per}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=4000)
    ap.add_argument("--sources", default="8,256", help="comma-separated source counts")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--child", nargs=3, metavar=("DATA", "MODEL", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child, args.batch_size)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        _model(model, 0)
        for s in (int(x) for x in args.sources.split(",")):
            data = Path(tmp) / f"data-{s}"
            _corpus(data, args.instances, s, args.seq_len, 1)
            got = {}
            for mode in ("one evaluate per slice", "one pass"):
                cmd = [sys.executable, __file__, "--batch-size", str(args.batch_size)]
                m = run([*cmd, "--child", str(data), str(model), mode])
                got[mode] = out = json.loads(m.stdout.strip().splitlines()[-1])
                rows.append(
                    [
                        str(args.instances),
                        str(s),
                        mode,
                        str(out["passes"]),
                        f"{out['scored']:,}",
                        f"{out['s']:.2f}",
                        f"{m.wall_s:.2f}",
                        f"{m.peak_anon_mb:.0f}",
                    ]
                )
            a, b = got["one evaluate per slice"]["per"], got["one pass"]["per"]
            diff = max(abs(a[k] - b[k]) / abs(a[k]) for k in a)
            if a.keys() != b.keys() or diff > 1e-5:
                sys.exit(f"{s} sources: the two sides disagree (max rel diff {diff:.2e})")
            rows[-1].append(f"{diff:.1e}")
            rows[-2].append("")
    header = ["instances", "sources", "how", "passes", "scored tokens", "eval s", "wall s"]
    print(table([*header, "peak anon MB", "max rel diff"], rows))


if __name__ == "__main__":
    main()
