"""The sampling half of MiniPLM end to end on a seeded toy corpus, in seconds on a CPU:

    python -m miniplm.demo OUT_DIR

Corpus: 20,000 instances of 64-256 tokens over a 512-token vocabulary; 70% are "text"
from a sparse Markov chain (each token has 4 likely successors), 30% are "noise"
(uniform word salad). Teacher: the chain's own bigram model (it knows the language).
Reference: a unigram model fitted on a 5% reference slice D_ref. Both are real LMs
whose NLLs are computed here; r = nll_ref - nll_teacher is large where the teacher's
knowledge helps, which is what Difference Sampling keeps. (`miniplm run`, with a real
corpus and a real teacher, is the full pipeline.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

import miniplm

VOCAB = 512
N = 20_000
NOISE = 0.3
REF_FRACTION = 0.05


def corpus(
    rng: np.random.Generator,
) -> tuple[list[npt.NDArray[np.int64]], npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """Seeded toy corpus and the chain's transition matrix (the teacher's knowledge)."""
    succ = rng.integers(0, VOCAB, size=(VOCAB, 4))
    trans = np.full((VOCAB, VOCAB), 0.02 / VOCAB)
    np.add.at(trans, (np.repeat(np.arange(VOCAB), 4), succ.ravel()), 0.98 / 4)
    noise = rng.random(N) < NOISE
    lengths = rng.integers(64, 257, N)
    # All chains advance together: with p = 0.98 one of 4 successors, else any token.
    tok = np.empty((N, 256), dtype=np.int64)
    tok[:, 0] = rng.integers(0, VOCAB, N)
    for j in range(1, 256):
        follow = succ[tok[:, j - 1], rng.integers(0, 4, N)]
        tok[:, j] = np.where(rng.random(N) < 0.98, follow, rng.integers(0, VOCAB, N))
    salad = rng.integers(0, VOCAB, (N, 256))
    tok[noise] = salad[noise]
    return [tok[i, : lengths[i]] for i in range(N)], noise, trans


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    seqs, noise, trans = corpus(rng)
    ds = miniplm.write_dataset(out / "corpus", seqs, vocab_size=VOCAB, overwrite=True)
    np.save(out / "is_noise.npy", noise)

    ref_ids = np.sort(rng.choice(N, int(REF_FRACTION * N), replace=False)).astype(np.uint64)
    np.save(out / "ref_ids.npy", ref_ids)
    counts = np.bincount(np.concatenate([ds[int(i)] for i in ref_ids]), minlength=VOCAB) + 1.0
    log_uni = np.log(counts / counts.sum())
    log_tr = np.log(trans)

    # Mean next-token NLL over positions 1..n-1 (position 0 has no context).
    t_sum, r_sum, n_scored = np.zeros(N), np.zeros(N), np.zeros(N, dtype=np.uint32)
    for i in range(N):
        x = ds[i].astype(np.int64)
        t_sum[i] = -log_tr[x[:-1], x[1:]].sum()
        r_sum[i] = -log_uni[x[1:]].sum()
        n_scored[i] = len(x) - 1
    n_ref = n_scored.copy()
    n_ref[ref_ids.astype(np.int64)] = 0  # D_ref is not scored: the reference has seen it
    miniplm.write_score_run(out / "scores_teacher", t_sum, n_scored, part_size=5000, overwrite=True)
    miniplm.write_score_run(out / "scores_ref", r_sum, n_ref, part_size=5000, overwrite=True)

    rep = miniplm.select(
        out / "selection",
        teacher=out / "scores_teacher",
        reference=out / "scores_ref",
        exclude=out / "ref_ids.npy",
        ratio=0.5,
        overwrite=True,
    )
    built = miniplm.build(out / "corpus", out / "selection", out / "refined", overwrite=True)
    ids, _ = miniplm.load_selection(out / "selection")
    print(f"corpus: {N} instances, {ds.num_tokens} tokens, {noise.mean():.0%} noise")
    print(
        f"kept {rep['num_selected']} of {rep['num_instances']} (excluded {rep['num_excluded']} "
        f"D_ref ids), threshold r = {rep['threshold']:.4f}"
    )
    print(
        f"noise share: corpus {noise.mean():.1%}, refined {noise[ids.astype(np.int64)].mean():.1%}"
    )
    print(
        f"refined corpus: {built['num_instances']} instances, {built['num_tokens']} tokens "
        f"in {out / 'refined'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
