"""`train --resume` continues only what it can continue exactly: inputs rewritten in place
(same paths, other content) are refused, a damaged checkpoint or metrics line names the
file and what to do, a resume at the last step keeps the real final loss (summary.json
stays strict JSON), and checkpoints / the final model are durable before old ones go."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_train import VOCAB, _opts, patterned

import miniplm
from miniplm.errors import FormatError, InputError
from miniplm.training import checkpoint as ckpt_mod
from miniplm.training.trainer import train

from tiny_lm import make_model

KW: dict[str, Any] = dict(max_steps=4, save_every=2, keep_checkpoints=5, seq_len=16)


def _run(tmp_path: Path, **kw: Any) -> dict[str, Any]:
    return train(_opts(tmp_path / "d", tmp_path / "run", **{**KW, **kw}))


def _ckpt(tmp_path: Path, step: int) -> Path:
    return tmp_path / "run" / "checkpoints" / f"step-{step:08d}"


def _strict(text: str) -> Any:
    def refuse(c: str) -> Any:
        raise ValueError(f"not JSON: {c}")

    return json.loads(text, parse_constant=refuse)


def test_resume_refuses_a_dataset_rewritten_in_place(tmp_path: Path) -> None:
    patterned(tmp_path / "d", n=64, seed=0)
    _run(tmp_path)
    shutil.rmtree(_ckpt(tmp_path, 4))
    patterned(tmp_path / "d", n=64, seed=123)  # same path, same count, other tokens
    with pytest.raises(InputError, match=r"content of an input changed.*--data .*xxh3c:"):
        _run(tmp_path, resume=True)
    patterned(tmp_path / "d", n=64, seed=0)  # the original content again: resumes
    assert _run(tmp_path, resume=True)["steps"] == 4
    assert (_ckpt(tmp_path, 4) / "state.json").is_file()


def test_resume_refuses_a_selection_rewritten_in_place(tmp_path: Path) -> None:
    patterned(tmp_path / "d", n=64)
    ds = miniplm.TokenDataset(tmp_path / "d")
    sel = ds.write_selection(tmp_path / "sel", np.arange(0, 64, 2), "test")
    _run(tmp_path, selection=str(sel))
    shutil.rmtree(_ckpt(tmp_path, 4))
    ds.write_selection(sel, np.arange(1, 64, 2), "test", overwrite=True)  # 32 ids again
    with pytest.raises(InputError, match=r"--selection .*blake2b:"):
        _run(tmp_path, selection=str(sel), resume=True)


def test_resume_refuses_a_teacher_rewritten_in_place(tmp_path: Path) -> None:
    patterned(tmp_path / "d", n=64)
    teacher = str(make_model(tmp_path / "teacher", vocab=VOCAB, seed=0))
    kd: dict[str, Any] = dict(kd_teacher=teacher, kd_ratio=0.5, vocab_size=None)
    _run(tmp_path, **kd)
    shutil.rmtree(_ckpt(tmp_path, 4))
    make_model(tmp_path / "teacher", vocab=VOCAB, seed=1)  # other weights, same path
    with pytest.raises(InputError, match=r"--kd-teacher .*sha256:"):
        _run(tmp_path, resume=True, **kd)


def test_checkpoint_of_an_older_miniplm_resumes_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patterned(tmp_path / "d", n=64)
    _run(tmp_path)
    shutil.rmtree(_ckpt(tmp_path, 4))
    state_file = _ckpt(tmp_path, 2) / "state.json"
    state = json.loads(state_file.read_text())
    del state["settings"]["inputs"], state["last_loss"]
    state_file.write_text(json.dumps(state))
    capsys.readouterr()
    assert _run(tmp_path, resume=True)["steps"] == 4
    assert "does not record the fingerprints of its inputs" in capsys.readouterr().err
    # The checkpoints it writes record them.
    assert (
        "data" in json.loads((_ckpt(tmp_path, 4) / "state.json").read_text())["settings"]["inputs"]
    )


@pytest.mark.parametrize("name", ["optimizer.pt", "rng.pt", "state.json"])
def test_damaged_latest_checkpoint_names_the_file_and_what_to_do(tmp_path: Path, name: str) -> None:
    patterned(tmp_path / "d", n=64)
    _run(tmp_path)
    f = _ckpt(tmp_path, 4) / name
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError) as err:
        _run(tmp_path, resume=True)
    msg = str(err.value)
    assert msg.startswith(f"{f}: damaged checkpoint")
    assert (
        f"delete {_ckpt(tmp_path, 4)} to resume from the previous checkpoint step-00000002" in msg
    )
    shutil.rmtree(_ckpt(tmp_path, 4))  # what the message says: then it resumes
    assert _run(tmp_path, resume=True)["steps"] == 4


def test_damaged_only_checkpoint_says_to_start_over(tmp_path: Path) -> None:
    patterned(tmp_path / "d", n=64)
    _run(tmp_path, max_steps=2)
    f = _ckpt(tmp_path, 2) / "optimizer.pt"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(FormatError, match="no earlier checkpoint is left: start over"):
        _run(tmp_path, max_steps=2, resume=True)


def test_cut_off_last_metrics_line_is_dropped_a_bad_middle_line_refused(
    tmp_path: Path,
) -> None:
    patterned(tmp_path / "d", n=64)
    _run(tmp_path)
    metrics = tmp_path / "run" / "metrics.jsonl"
    whole = metrics.read_text()
    shutil.rmtree(_ckpt(tmp_path, 4))
    with open(metrics, "a") as f:
        f.write('{"step": 5, "lo')  # a line cut by a crash or a full disk
    _run(tmp_path, resume=True)
    lines = metrics.read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in lines] == [1, 2, 3, 4]
    assert lines[:2] == whole.splitlines()[:2]  # the kept part untouched
    assert not list(metrics.parent.glob(".metrics.jsonl.tmp-*"))
    # Damage before the last line is not a torn write: refused, naming the line.
    shutil.rmtree(_ckpt(tmp_path, 4))
    lines[1] = lines[1][:10]
    metrics.write_text("".join(ln + "\n" for ln in lines))
    with pytest.raises(FormatError, match=f"{re.escape(str(metrics))}: line 2 is not"):
        _run(tmp_path, resume=True)


def test_resume_at_the_last_step_keeps_the_final_loss(tmp_path: Path) -> None:
    patterned(tmp_path / "d", n=64)
    first = _run(tmp_path, max_steps=2)
    summary = tmp_path / "run" / "summary.json"
    loss = _strict(summary.read_text())["final_loss"]
    assert isinstance(loss, float) and np.isfinite(loss) and loss == first["final_loss"]
    # Killed after the last checkpoint, before the final model and summary.
    shutil.rmtree(tmp_path / "run" / "final")
    summary.unlink()
    again = _run(tmp_path, max_steps=2, resume=True)
    assert _strict(summary.read_text())["final_loss"] == loss == again["final_loss"]
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


def test_checkpoint_rename_is_synced_before_old_ones_are_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    patterned(tmp_path / "d", n=64)
    events: list[tuple[str, str]] = []
    real_fsync_dir, real_rmtree = ckpt_mod.fsync_dir, shutil.rmtree

    def fsync_dir(p: Path) -> None:
        events.append(("fsync", os.fspath(p)))
        real_fsync_dir(p)

    def rmtree(p: Any, *a: Any, **k: Any) -> None:
        events.append(("rmtree", os.fspath(p)))
        real_rmtree(p, *a, **k)

    monkeypatch.setattr(ckpt_mod, "fsync_dir", fsync_dir)
    monkeypatch.setattr(ckpt_mod.shutil, "rmtree", rmtree)
    _run(tmp_path, keep_checkpoints=1)
    root = os.fspath(tmp_path / "run" / "checkpoints")
    # Step 4's files synced (in its temporary directory), renamed, the root synced, and
    # only then step 2 pruned (keep 1).
    written = max(i for i, e in enumerate(events) if ".step-00000004.tmp-" in e[1])
    prune = events.index(("rmtree", os.fspath(_ckpt(tmp_path, 2))))
    assert ("fsync", root) in events[written:prune]


def test_final_model_files_are_fsynced_before_they_are_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    patterned(tmp_path / "d", n=64)
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    _run(tmp_path, max_steps=2)
    run = re.escape(os.fspath((tmp_path / "run").resolve()))
    assert any(re.fullmatch(rf"{run}/\.final\.tmp-\d+/model\.safetensors", p) for p in synced)
    assert any(re.fullmatch(rf"{run}/\.final\.tmp-\d+/config\.json", p) for p in synced)
    # A second publish replaces the old final whole, leaving nothing beside it.
    _run(tmp_path, max_steps=2, resume=True)
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".final")]
