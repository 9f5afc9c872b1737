"""Slow, obviously-correct references the native core is checked against."""

from __future__ import annotations

import math
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

MASK = (1 << 64) - 1
CODES = {
    np.dtype(np.uint8): 1,
    np.dtype(np.int8): 2,
    np.dtype(np.int16): 3,
    np.dtype(np.int32): 4,
    np.dtype(np.int64): 5,
    np.dtype(np.uint16): 8,
}
DTYPES = {v: k for k, v in CODES.items()}


# ---------------------------------------------------------------- Megatron layout
def megatron_write(prefix: Path, seqs: list[npt.NDArray[Any]], dtype: Any) -> None:
    """Megatron-LM's MMapIndexedDataset layout, written byte by byte with struct."""
    dt = np.dtype(dtype)
    sizes = [len(s) for s in seqs]
    pointers, p = [], 0
    for n in sizes:
        pointers.append(p)
        p += n * dt.itemsize
    with open(f"{prefix}.bin", "wb") as f:
        for s in seqs:
            f.write(np.asarray(s, dtype=dt.newbyteorder("<")).tobytes())
    with open(f"{prefix}.idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00")
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<B", CODES[dt]))
        f.write(struct.pack("<Q", len(seqs)))
        f.write(struct.pack("<Q", len(seqs) + 1))
        f.write(struct.pack(f"<{len(sizes)}i", *sizes))
        f.write(struct.pack(f"<{len(pointers)}q", *pointers))
        f.write(struct.pack(f"<{len(seqs) + 1}q", *range(len(seqs) + 1)))


def megatron_read(prefix: Path) -> tuple[np.dtype[Any], list[npt.NDArray[Any]]]:
    """Read one shard the way Megatron-LM's reader does (header, then three arrays)."""
    idx = Path(f"{prefix}.idx").read_bytes()
    assert idx[:9] == b"MMIDIDX\x00\x00"
    (version,) = struct.unpack_from("<Q", idx, 9)
    assert version == 1
    dt = DTYPES[idx[17]]
    (n,) = struct.unpack_from("<Q", idx, 18)
    (d,) = struct.unpack_from("<Q", idx, 26)
    sizes = np.frombuffer(idx, dtype="<i4", count=n, offset=34)
    pointers = np.frombuffer(idx, dtype="<i8", count=n, offset=34 + 4 * n)
    docs = np.frombuffer(idx, dtype="<i8", count=d, offset=34 + 12 * n)
    assert len(sizes) == docs[-1]
    data = Path(f"{prefix}.bin").read_bytes()
    seqs = [
        np.frombuffer(data, dtype=dt.newbyteorder("<"), count=int(s), offset=int(p))
        for s, p in zip(sizes, pointers)
    ]
    return dt, seqs


# ---------------------------------------------------------------- randomness (FORMATS.md)
def splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def rand_u64(seed: int, i: int) -> int:
    return splitmix64(splitmix64(seed) ^ i)


def gumbel(seed: int, i: int) -> float:
    u = ((rand_u64(seed, i) >> 11) + 0.5) * 2.0**-53
    return -math.log(-math.log(u))


# ---------------------------------------------------------------- selection
def ref_select(
    n: int,
    teacher: npt.NDArray[np.float64] | None,
    reference: npt.NDArray[np.float64] | None,
    *,
    exclude: npt.NDArray[Any] | None = None,
    by: str = "diff",
    keep: str | None = None,
    mode: str = "top",
    ratio: float | None = None,
    count: int | None = None,
    seed: int = 0,
    temperature: float = 1.0,
) -> dict[str, Any]:
    """Sort-everything reference of FORMATS.md's selection rules."""
    keep = keep or ("highest" if by == "diff" else "lowest")
    excluded = np.zeros(n, dtype=bool)
    if exclude is not None and len(exclude):
        excluded[np.asarray(exclude, dtype=np.int64)] = True
    with np.errstate(invalid="ignore"):
        if by == "diff":
            value = None if teacher is None else reference - teacher  # type: ignore[operator]
        else:
            value = teacher if by == "teacher" else reference
    nan = np.zeros(n, dtype=bool) if value is None else np.isnan(value)
    eligible = ~excluded & ~nan
    # K: the floor of the decimal ratio the user wrote (its shortest repr) times the pool.
    m = int(n - excluded.sum())
    k = math.floor(Fraction(repr(ratio)) * m) if ratio is not None else int(count)  # type: ignore[arg-type]
    ids = np.flatnonzero(eligible)
    if mode == "random":
        order = sorted(range(len(ids)), key=lambda j: (-rand_u64(seed, int(ids[j])), ids[j]))
    else:
        assert value is not None
        sign = 1.0 if keep == "highest" else -1.0
        key = [sign * float(value[i]) + 0.0 for i in ids]  # + 0.0 folds -0.0 into +0.0
        if mode == "gumbel":
            key = [kv / temperature + gumbel(seed, int(i)) for kv, i in zip(key, ids)]
        order = sorted(range(len(ids)), key=lambda j: (-key[j], ids[j]))
    chosen = [int(ids[j]) for j in order[:k]]
    out: dict[str, Any] = {
        "ids": np.array(sorted(chosen), dtype=np.uint64),
        "k": k,
        "num_selected": len(chosen),
        "num_excluded": int(excluded.sum()),
        "num_nan": int((nan & ~excluded).sum()),
        "num_eligible": int(eligible.sum()),
    }
    if mode != "random" and chosen:
        t = key[order[len(chosen) - 1]]
        keys_all = np.array(key)
        out["threshold"] = t
        out["ties_at_threshold"] = int((keys_all == t).sum())
        out["ties_kept"] = sum(1 for j in order[: len(chosen)] if key[j] == t)
    return out
