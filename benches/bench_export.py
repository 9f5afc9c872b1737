"""Export speed: `miniplm export` (parquet and jsonl) of a corpus of N short instances
beside what a user would write (each `TokenDataset` item split at EOS and decoded with
`tokenizers`, one JSON line per piece), same corpus, same run.

    python benches/bench_export.py                        # 1e7 instances, baseline on 1e6
    python benches/bench_export.py --instances 1000000 --baseline-instances 100000

The corpus: real English (the .rst / .md files of this Python installation) tokenized by
`miniplm tokenize` with a byte-level BPE trained here (vocabulary 2000) at L = 8
(instances of <= 9 tokens, boundary packing), then its instances repeated by the core's
DatasetWriter until there are N (with tokenize.json and sources.npy to match), so every
instance is real text and the export is exact. Each side runs in a fresh child process;
the table shows wall time (start-up included), instances/s and peak private memory.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import tempfile
from pathlib import Path

from _measure import python, run, table

MAKE = """
import glob, json, sys, os
import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from miniplm import _core
from miniplm.corpus.tokenize import tokenize_corpus
import miniplm
work, n = sys.argv[1], int(sys.argv[2])
files = sorted(glob.glob(os.path.join(sys.prefix, "**", "*.rst"), recursive=True))
files += sorted(glob.glob(os.path.join(sys.base_prefix, "**", "*.md"), recursive=True))
texts = [t for t in (open(f, encoding="utf-8", errors="replace").read() for f in files[:4000])
         if len(t) > 500][:1500]
if not texts:
    texts = ["The quick brown fox jumps over the lazy dog. " * 40] * 100
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=2000, special_tokens=["<eos>"],
                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tok.save(f"{work}/tok.json")
with open(f"{work}/docs.jsonl", "w", encoding="utf-8") as f:
    for t in texts:
        f.write(json.dumps({"text": t}) + "\\n")
small = f"{work}/small"
meta = tokenize_corpus(f"{work}/docs.jsonl", small, f"{work}/tok.json", seq_len=8,
                       eos_token="<eos>", min_tokens=1, workers=1, progress=False)
ds = miniplm.TokenDataset(small)
base = [np.asarray(ds[i]) for i in range(len(ds))]
src = np.load(f"{small}/sources.npy")
out = f"{work}/big"
os.makedirs(out)
w = _core.DatasetWriter(out, "corpus", "uint16", None)
flat = np.concatenate(base).astype(np.int64)
lengths = np.array([len(b) for b in base], dtype=np.int64)
done = 0
while done < n:
    k = min(len(base), n - done)
    w.add_batch(flat[: int(lengths[:k].sum())], lengths[:k])
    done += k
shards = [{"name": "corpus_0", "num_instances": s["num_instances"],
           "num_tokens": s["num_tokens"]} for s in w.finish()]
np.save(f"{out}/sources.npy", np.resize(src, n))
meta["shards"] = shards
meta["counts"]["instances"] = n
meta["counts"]["tokens"] = sum(s["num_tokens"] for s in shards)
open(f"{out}/tokenize.json", "w").write(json.dumps(meta))
open(f"{out}/tokenizer.json", "w").write(open(f"{small}/tokenizer.json").read())
print(json.dumps({"instances": n, "tokens": meta["counts"]["tokens"]}))
"""

OURS = """
import json, sys, time
import miniplm
data, out = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
info = miniplm.export(data, out, overwrite=True, progress=False)
print(json.dumps({**info, "seconds": time.perf_counter() - t0}))
"""

BASELINE = """
import json, sys, time
import numpy as np
from tokenizers import Tokenizer
import miniplm
data, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.perf_counter()
ds = miniplm.TokenDataset(data)
meta = json.load(open(f"{data}/tokenize.json"))
names, eos = meta["sources"], meta["tokenizer"]["eos_id"]
sources = np.load(f"{data}/sources.npy", mmap_mode="r")
tok = Tokenizer.from_file(f"{data}/tokenizer.json")
rows = 0
with open(out, "w", encoding="utf-8") as f:
    for i in range(n):
        ids = ds[i].tolist()
        piece = []
        for t in ids + [eos]:
            if t == eos:
                if piece:
                    f.write(json.dumps({"id": i, "source": names[sources[i]],
                                        "text": tok.decode(piece)}, ensure_ascii=False) + "\\n")
                    rows += 1
                piece = []
            else:
                piece.append(t)
print(json.dumps({"instances": n, "rows": rows, "seconds": time.perf_counter() - t0}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=10_000_000)
    ap.add_argument("--baseline-instances", type=int, default=1_000_000)
    ap.add_argument("--work", default=None, help="scratch directory (default: a temporary one)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.work) as tmp:
        made = run(python(MAKE, tmp, str(a.instances)))
        print("corpus:", made.stdout.strip().splitlines()[-1], file=sys.stderr)
        data = f"{tmp}/big"
        rows = []
        for name, cmd in [
            ("miniplm export .parquet", python(OURS, data, f"{tmp}/out.parquet")),
            ("miniplm export .jsonl", python(OURS, data, f"{tmp}/out.jsonl")),
            (
                "user loop: ds[i] + tokenizers decode, .jsonl",
                python(BASELINE, data, f"{tmp}/base.jsonl", str(a.baseline_instances)),
            ),
        ]:
            m = run(cmd)
            r = json.loads(m.stdout.strip().splitlines()[-1])
            rows.append(
                [
                    name,
                    f"{r['instances']:,}",
                    f"{r['rows']:,}",
                    f"{m.wall_s:.1f}",
                    f"{r['instances'] / m.wall_s:,.0f}",
                    f"{m.peak_anon_mb:.0f}",
                ]
            )
            print(rows[-1], file=sys.stderr)
        for f in glob.glob(f"{tmp}/*.jsonl"):
            Path(f).unlink()
    header = ["", "instances", "rows", "wall s", "instances/s", "peak anon MB"]
    print(table(header, rows))


if __name__ == "__main__":
    main()
