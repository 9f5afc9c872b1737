"""The ``train`` and ``score`` command lines are derived from their options dataclasses:
the flags, choices and metavars are those of before the derivation (public interface),
the defaults the parser gives are the dataclass defaults, and ``to_argv`` round-trips."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from miniplm.cli import build_parser

PRESETS = ("tiny", "mini", "small", "ref-104M", "200M", "300M", "500M", "1.2B", "130M")
# flag -> (required, choices, metavar), as the hand-written parsers had them.
TRAIN_FLAGS = {
    "--preset": (False, PRESETS, None), "--model-config": (False, None, None),
    "--init-from": (False, None, None), "--arch": (False, ("qwen2", "llama", "mamba"), None),
    "--vocab-size": (False, None, None), "--data": (True, None, None),
    "--selection": (False, None, None), "--seq-len": (False, None, None),
    "--epochs": (False, None, None), "--max-steps": (False, None, None),
    "--no-shuffle": (False, None, None), "--seed": (False, None, None),
    "--lr": (False, None, None), "--warmup-steps": (False, None, None),
    "--min-lr-ratio": (False, None, None), "--weight-decay": (False, None, None),
    "--clip": (False, None, None), "--micro-batch-size": (False, None, None),
    "--global-batch-size": (False, None, None), "--loss-chunk": (False, None, None),
    "--out": (True, None, None), "--device": (False, None, None),
    "--compile": (False, None, None), "--grad-checkpointing": (False, None, None),
    "--fsdp": (False, None, None), "--save-every": (False, None, None),
    "--keep-checkpoints": (False, None, None), "--log-every": (False, None, None),
    "--resume": (False, None, None), "--overwrite": (False, None, None),
    "--tensorboard": (False, None, None), "--quiet": (False, None, None),
    "--kd-teacher": (False, None, None), "--kd-ratio": (False, None, None),
    "--allow-tokenizer-mismatch": (False, None, None),
}  # fmt: skip
SCORE_FLAGS = {
    "--model": (True, None, "M"), "--data": (True, None, None), "--out": (True, None, "RUN"),
    "--batch-size": (False, None, None), "--device": (False, None, None),
    "--dtype": (False, ("auto", "float32", "bfloat16", "float16"), None),
    "--ignore-id": (False, None, None), "--part-size": (False, None, None),
    "--checkpoint-interval": (False, None, None), "--chunk-tokens": (False, None, None),
    "--attn-implementation": (False, None, None), "--trust-remote-code": (False, None, None),
    "--allow-tokenizer-mismatch": (False, None, None), "--skip-ids": (False, None, "IDS.npy"),
    "--overwrite": (False, None, None), "--quiet": (False, None, None),
}  # fmt: skip
# What the parser gave with no optional flag, before the derivation (the old literals).
TRAIN_DEFAULTS = dict(
    selection=None, preset=None, model_config=None, init_from=None, arch="qwen2",
    vocab_size=None, seq_len=1024, epochs=None, max_steps=None, shuffle=True, seed=0,
    lr=6e-4, min_lr_ratio=0.1, warmup_steps=2000, weight_decay=0.01, clip=1.0,
    micro_batch_size=8, global_batch_size=512, device="auto", compile=False,
    grad_checkpointing=False, fsdp=False, loss_chunk=1024, save_every=1000,
    keep_checkpoints=2, log_every=10, resume=False, overwrite=False, kd_teacher=None,
    kd_ratio=0.5, allow_tokenizer_mismatch=False, tensorboard=False, progress=None,
)  # fmt: skip
SCORE_DEFAULTS = dict(
    batch_size=16, part_size=65536, device="auto", dtype="auto", ignore_id=None,
    chunk_tokens=None, checkpoint_interval=300.0, trust_remote_code=False,
    allow_tokenizer_mismatch=False, attn_implementation=None, skip_ids=None,
    overwrite=False, progress=None,
)  # fmt: skip


def _sub(name: str) -> argparse.ArgumentParser:
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices[name]
    return parser


@pytest.mark.parametrize(("name", "want"), [("train", TRAIN_FLAGS), ("score", SCORE_FLAGS)])
def test_flags_are_those_of_before(name: str, want: dict[str, tuple[object, ...]]) -> None:
    got = {
        a.option_strings[0]: (a.required, tuple(a.choices) if a.choices else None, a.metavar)
        for a in _sub(name)._actions
        if not isinstance(a, argparse._HelpAction)
    }
    assert got == want
    assert all(len(a.option_strings) == 1 for a in _sub(name)._actions[1:])  # no short forms
    assert all(a.help for a in _sub(name)._actions)  # every option says what it is


def test_parsed_defaults_are_the_old_ones_and_the_dataclass_defaults() -> None:
    from miniplm.scoring.cli import from_args as score_args
    from miniplm.scoring.runner import ScoreOptions
    from miniplm.training.cli import from_args as train_args
    from miniplm.training.trainer import TrainOptions

    parse = build_parser().parse_args
    t = train_args(parse(["train", "--data", "d", "--out", "o"]))
    assert t == TrainOptions(data="d", out="o")
    assert {f.name: getattr(t, f.name) for f in fields(t)} == {
        "data": "d", "out": "o", **TRAIN_DEFAULTS, "betas": (0.9, 0.98), "eps": 1e-6, "extra": {}
    }  # fmt: skip
    s = score_args(parse(["score", "--model", "m", "--data", "d", "--out", "o"]))
    assert s == ScoreOptions()
    assert {f.name: getattr(s, f.name) for f in fields(s)} == SCORE_DEFAULTS
    # Switches parse to the dataclass's other value.
    t = train_args(parse(["train", "--data", "d", "--out", "o", "--quiet", "--no-shuffle"]))
    assert t.progress is False and t.shuffle is False
    s = score_args(parse(["score", "--model", "m", "--data", "d", "--out", "o", "--quiet"]))
    assert s.progress is False


def test_score_to_argv_round_trips() -> None:
    from miniplm.scoring.cli import from_args, to_argv
    from miniplm.scoring.runner import ScoreOptions

    opt = ScoreOptions(
        batch_size=3, part_size=10, dtype="float32", ignore_id=-1, chunk_tokens=7,
        checkpoint_interval=0.0, trust_remote_code=True, skip_ids="x.npy", progress=False,
    )  # fmt: skip
    argv = to_argv(["m1", "m2"], "d", ["o1", "o2"], opt)
    args = build_parser().parse_args(argv)
    assert from_args(args) == opt and args.model == ["m1", "m2"] and args.out == ["o1", "o2"]
    with pytest.raises(ValueError, match="progress"):
        to_argv(["m"], "d", ["o"], ScoreOptions(progress=True))
