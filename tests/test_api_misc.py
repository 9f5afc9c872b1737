"""Python-side API: writing datasets, Ctrl-C during a native call, the native stubs."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

import miniplm
from miniplm import InputError

from reference import megatron_read


def test_write_dataset_roundtrip_and_rolls_shards(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 70_000, rng.integers(0, 50)) for _ in range(300)]
    ds = miniplm.write_dataset(tmp_path / "d", seqs, vocab_size=70_000, max_shard_bytes=2000)
    assert ds.dtype == np.int32  # 70k does not fit uint16
    shards = sorted((tmp_path / "d").glob("corpus_*.idx"))
    assert len(shards) > 1
    got = [s for k in range(len(shards)) for s in megatron_read(tmp_path / "d" / f"corpus_{k}")[1]]
    assert len(got) == len(seqs) == len(ds)
    for a, b, i in zip(got, seqs, range(len(seqs))):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ds[i], b)
    with pytest.raises(FileExistsError):
        miniplm.write_dataset(tmp_path / "d", seqs)
    with pytest.raises(InputError, match=r"65535|uint16|range|fit"):
        miniplm.write_dataset(tmp_path / "e", [np.array([70_000])], dtype="uint16")
    assert not (tmp_path / "e").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_ctrl_c_interrupts_a_native_call(tmp_path: Path) -> None:
    n = 30_000_000  # a select of ~0.2 s on one thread: many polls of the signal flag
    rng = np.random.default_rng(0)
    np.save(tmp_path / "t.npy", rng.random(n, dtype=np.float32))
    np.save(tmp_path / "r.npy", rng.random(n, dtype=np.float32))
    # SIGINT every 10 ms, so a timer that wakes late cannot decide the test. The handler
    # raises only while armed, and it is armed just before the call: what it raises comes
    # from the call's own poll of the signal flag (a call that finished first has written
    # its output, which the asserts below refuse).
    armed, stop = [False], threading.Event()

    def on_sigint(signum: int, frame: object) -> None:
        if armed[0]:
            armed[0] = False  # once: the signals that follow must not hit pytest
            raise KeyboardInterrupt

    def send() -> None:
        while not stop.wait(0.01):
            os.kill(os.getpid(), signal.SIGINT)

    select = miniplm.select  # resolved (lazily, in Python) before the signals start
    previous = signal.signal(signal.SIGINT, on_sigint)
    sender = threading.Thread(target=send)
    try:
        sender.start()
        with pytest.raises(KeyboardInterrupt):
            armed[0] = True
            select(
                tmp_path / "sel",
                teacher_nll=tmp_path / "t.npy",
                reference_nll=tmp_path / "r.npy",
                ratio=0.5,
                threads=1,
            )
    finally:
        armed[0] = False
        stop.set()
        sender.join()
        signal.signal(signal.SIGINT, previous)
    assert not (tmp_path / "sel").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.npy", "t.npy"]


def test_public_names_resolve_lazily() -> None:
    import subprocess
    import sys

    assert set(miniplm.__all__) - {"__version__"} == set(miniplm._WHERE)
    for name in miniplm.__all__:
        assert getattr(miniplm, name) is not None
    # The in-process CLI entry (`python -m miniplm._sample`) does not load numpy.
    code = "import sys, miniplm._sample; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
