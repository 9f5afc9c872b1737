"""Progress on a terminal: training shows steps with an ETA and the loss, scoring tokens
per second with an ETA, tokenize documents, export instances and eval tokens (ETAs where
the total is known), also on a terminal that does not report its size (0 x 0, where tqdm
printed nothing: the silent reference stage of `miniplm run`); piped or --quiet, no bar
at all, transformers' own ("Writing model shards") included."""

from __future__ import annotations

import io
import os
import re
import sys
from pathlib import Path

import pytest

from miniplm.corpus.export import export
from miniplm.corpus.tokenize import tokenize_corpus
from miniplm.evaluation import evaluate
from miniplm.scoring.runner import ScoreOptions, score
from miniplm.training.trainer import TrainOptions, train

from tiny_lm import make_dataset, make_model, tiny_bpe

VOCAB = 97
ETA = re.compile(r"\d+:\d\d<\d+:\d\d")  # tqdm's "[elapsed<remaining"


class FakeTerminal(io.StringIO):
    """stderr as a terminal of ``size`` (columns, rows) that keeps what is written."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]):
        super().__init__()
        monkeypatch.setattr(sys, "stderr", self)
        monkeypatch.setattr(os, "get_terminal_size", lambda *a: os.terminal_size(size))

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return 2


def _train(data: Path, out: Path, progress: bool | None) -> None:
    opt = TrainOptions(
        data=str(data), out=str(out), preset="tiny", vocab_size=VOCAB, seq_len=24,
        max_steps=4, micro_batch_size=4, global_batch_size=8, warmup_steps=1,
        log_every=1, save_every=100, device="cpu", progress=progress,
    )  # fmt: skip
    train(opt)


@pytest.mark.parametrize("size", [(0, 0), (80, 24)])
def test_training_bar_has_steps_eta_and_loss(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: tuple[int, int],
) -> None:
    make_dataset(tmp_path / "d", n=32, max_len=25)
    term = FakeTerminal(monkeypatch, size)
    _train(tmp_path / "d", tmp_path / "run", progress=None)  # None: on a terminal
    err = term.getvalue()
    assert ETA.search(err), err
    assert "4/4" in err and "step" in err and "loss=" in err


@pytest.mark.parametrize("size", [(0, 0), (80, 24)])
def test_scoring_bar_has_tokens_per_second_and_eta(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: tuple[int, int],
) -> None:
    make_dataset(tmp_path / "d", n=12, max_len=20)
    model = str(make_model(tmp_path / "m"))
    term = FakeTerminal(monkeypatch, size)
    score([model], tmp_path / "d", [tmp_path / "s"], ScoreOptions(device="cpu"))
    err = term.getvalue()
    assert ETA.search(err) and "tok/s" in err, err


def test_piped_or_quiet_shows_no_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_dataset(tmp_path / "d", n=32, max_len=25)
    model = str(make_model(tmp_path / "m"))
    capsys.readouterr()  # the fixture's own save_pretrained bar
    for k, progress in enumerate((None, False)):  # None: stderr is captured, not a tty
        _train(tmp_path / "d", tmp_path / f"run{k}", progress=progress)
        opt = ScoreOptions(device="cpu", progress=progress)
        score([model], tmp_path / "d", [tmp_path / f"s{k}"], opt)
        err = capsys.readouterr().err
        assert "\r" not in err and not ETA.search(err), err


def _tokenizer(path: Path) -> str:
    """A tiny byte-level BPE with EOS ``<eos>``, saved as ``path``."""
    tiny_bpe(["the cat sat on the mat"] * 10).save(str(path))
    return str(path)


def _corpus(tmp: Path, progress: bool | None) -> Path:
    docs = tmp / "docs.jsonl"
    docs.write_text("".join(f'{{"text": "the cat {i} sat on the mat"}}\n' for i in range(30)))
    out = tmp / "corpus"
    tok = _tokenizer(tmp / "tok.json")
    opts = {"seq_len": 8, "workers": 1, "eos_token": "<eos>", "overwrite": True}
    tokenize_corpus(docs, out, tok, progress=progress, **opts)  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize("size", [(0, 0), (80, 24)])
def test_tokenize_and_export_bars_count_documents_and_instances(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: tuple[int, int],
) -> None:
    term = FakeTerminal(monkeypatch, size)
    corpus = _corpus(tmp_path, progress=None)
    err = term.getvalue()
    assert re.search(r"30(\.0)? docs", err) and "tok/s" in err, err  # no total: no ETA
    term.seek(0)
    term.truncate()
    export(corpus, tmp_path / "x.jsonl")
    err = term.getvalue()
    assert ETA.search(err) and "instances/s" in err, err


@pytest.mark.parametrize("size", [(0, 0), (80, 24)])
def test_eval_bar_has_tokens_and_eta(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: tuple[int, int],
) -> None:
    make_dataset(tmp_path / "d", n=12, max_len=20)
    model = str(make_model(tmp_path / "m"))
    term = FakeTerminal(monkeypatch, size)
    evaluate(model, data=tmp_path / "d", device="cpu", progress=True)
    err = term.getvalue()
    assert ETA.search(err) and "held-out" in err and "tok" in err, err


def test_piped_corpus_and_eval_show_no_bar_nor_transformers_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = _corpus(tmp_path, progress=None)  # None: stderr is captured, not a tty
    export(corpus, tmp_path / "x.jsonl")
    err = capsys.readouterr().err
    make_dataset(tmp_path / "d", n=12, max_len=20)
    model = str(make_model(tmp_path / "m"))
    capsys.readouterr()  # the fixture's own save_pretrained bar
    evaluate(model, data=tmp_path / "d", device="cpu", progress=False)
    err += capsys.readouterr().err
    assert "\r" not in err and not ETA.search(err), err
