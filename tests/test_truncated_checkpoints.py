"""Truncated safetensors (a copy cut short, a killed save) name the file as a FormatError
wherever a model is loaded (score, eval, train's init and resume), and a resumed run
clears a killed run's temporary final model and checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

import miniplm
from miniplm.scoring.runner import ScoreOptions, score
from miniplm.training.trainer import TrainOptions, train

from tiny_lm import VOCAB, make_dataset, make_model


def _truncate(f: Path, keep: int) -> None:
    f.write_bytes(f.read_bytes()[:keep])


@pytest.mark.parametrize("keep", [5, 100, -1000])
def test_truncated_safetensors_names_the_file(tmp_path: Path, keep: int) -> None:
    from miniplm.evaluation.model import load_eval_model
    from miniplm.scoring.models import load_model

    model = make_model(tmp_path / "m")
    f = model / "model.safetensors"
    _truncate(f, keep if keep > 0 else f.stat().st_size + keep)
    make_dataset(tmp_path / "data", n=10)
    pat = f"{f}: bad (header|data)"
    with pytest.raises(miniplm.FormatError, match=pat):
        load_model(str(model), device="cpu", dtype=None)
    with pytest.raises(miniplm.FormatError, match=pat):
        load_eval_model(str(model), device="cpu")
    with pytest.raises(miniplm.FormatError, match=pat):
        score([str(model)], tmp_path / "data", [tmp_path / "run"], ScoreOptions(device="cpu"))
    opts = TrainOptions(
        data=str(tmp_path / "data"),
        out=str(tmp_path / "out"),
        init_from=str(model),
        seq_len=16,
        max_steps=1,
        device="cpu",
        progress=False,
    )
    with pytest.raises(miniplm.FormatError, match=pat):
        train(opts)
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()


def test_resume_clears_debris_and_a_truncated_checkpoint_names_the_file(tmp_path: Path) -> None:
    make_dataset(tmp_path / "data", n=20)
    opts = TrainOptions(
        data=str(tmp_path / "data"),
        out=str(tmp_path / "run"),
        preset="tiny",
        vocab_size=VOCAB,
        seq_len=16,
        max_steps=2,
        save_every=1,
        micro_batch_size=2,
        global_batch_size=2,
        device="cpu",
        progress=False,
    )
    train(opts)
    # A killed run's temporary final model and checkpoint go when the run is resumed.
    debris = [tmp_path / "run" / ".final.tmp-7", tmp_path / "run" / "checkpoints" / ".step-3.tmp-7"]
    for d in debris:
        d.mkdir()
    opts.resume = True
    train(opts)
    assert not any(d.exists() for d in debris)
    last = sorted((tmp_path / "run" / "checkpoints").glob("step-*"))[-1] / "model.safetensors"
    _truncate(last, last.stat().st_size - 10)
    with pytest.raises(miniplm.FormatError, match=f"{last}: bad data"):
        train(opts)
