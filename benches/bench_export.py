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

The export rows also show what resuming costs: a checkpoint every chunk (the most there
can be) beside the default 60 s, the parquet parts merged at the end and the zstd frames
recompressed into one, and `export_identity` (the fingerprints a resume checks), timed
on its own; and gzip at level 6 (ours, zlib's default) beside Python's default 9.
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
import json, os, sys, time
import miniplm
from miniplm.corpus import export_output
from miniplm.corpus.export import export_identity
data, out, every = sys.argv[1], sys.argv[2], float(sys.argv[3])
if len(sys.argv) > 4:  # another gzip level than ours
    export_output._GZIP_LEVEL = int(sys.argv[4])
t0 = time.perf_counter()
export_identity(data)
identity_s = time.perf_counter() - t0
t0 = time.perf_counter()
info = miniplm.export(data, out, overwrite=True, progress=False, checkpoint_every=every)
info.update(seconds=time.perf_counter() - t0, identity_s=identity_s, size=os.path.getsize(out))
print(json.dumps(info))
"""

BASELINE = """
import json, os, sys, time
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
seconds = time.perf_counter() - t0
print(json.dumps({"instances": n, "rows": rows, "seconds": seconds, "size": os.path.getsize(out)}))
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
        ours = [
            (f"miniplm export {suffix}, checkpoint {label}", suffix, every)
            for suffix in (".parquet", ".jsonl", ".jsonl.gz", ".jsonl.zst")
            for label, every in (("every 60 s", "60"), ("every chunk", "0"))
            if every == "60" or suffix in (".parquet", ".jsonl")
        ]
        identity: list[float] = []
        for name, cmd in [
            *((name, python(OURS, data, f"{tmp}/out{sfx}", every)) for name, sfx, every in ours),
            (
                "miniplm export .jsonl.gz at Python's gzip level 9",
                python(OURS, data, f"{tmp}/out9.jsonl.gz", "60", "9"),
            ),
            (
                "user loop: ds[i] + tokenizers decode, .jsonl",
                python(BASELINE, data, f"{tmp}/base.jsonl", str(a.baseline_instances)),
            ),
        ]:
            m = run(cmd)
            r = json.loads(m.stdout.strip().splitlines()[-1])
            if "identity_s" in r:
                identity.append(r["identity_s"])
            rows.append(
                [
                    name,
                    f"{r['instances']:,}",
                    f"{r['rows']:,}",
                    f"{m.wall_s:.1f}",
                    f"{r['instances'] / m.wall_s:,.0f}",
                    f"{m.peak_anon_mb:.0f}",
                    f"{r['size'] / 1e6:,.1f}",
                ]
            )
            print(rows[-1], file=sys.stderr)
            for f in glob.glob(f"{tmp}/*.jsonl*") + glob.glob(f"{tmp}/*.parquet"):
                Path(f).unlink()  # one output on disk at a time
    header = ["", "instances", "rows", "wall s", "instances/s", "peak anon MB", "output MB"]
    print(table(header, rows))
    print(
        f"\nexport_identity (the resume check's fingerprints): {min(identity):.3f} s best, "
        f"{max(identity):.3f} s worst of {len(identity)}"
    )


if __name__ == "__main__":
    main()
