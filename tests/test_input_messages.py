"""Bad inputs get messages that name the file or option and say what is wrong (issue 15:
each of these once gave a misleading one)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

import miniplm
from miniplm.errors import FormatError, InputError


def _sample(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["miniplm-sample", *argv], capture_output=True, text=True)


def _scores(tmp_path: Path, n: int = 20) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "t.npy", rng.normal(size=n))
    np.save(tmp_path / "r.npy", rng.normal(size=n))
    return tmp_path / "t.npy", tmp_path / "r.npy"


@pytest.mark.parametrize(
    "dtype", ["uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64"]
)
def test_exclude_of_any_integer_dtype(tmp_path: Path, dtype: str) -> None:
    t, r = _scores(tmp_path)
    np.save(tmp_path / "ex.npy", np.array([5, 1, 7], dtype=dtype))
    rep = miniplm.select(
        tmp_path / "o", teacher_nll=t, reference_nll=r, count=20, exclude=tmp_path / "ex.npy"
    )
    assert rep["num_excluded"] == 3
    ids = miniplm.load_selection(tmp_path / "o")[0]
    np.testing.assert_array_equal(ids, np.setdiff1d(np.arange(20), [1, 5, 7]))


def test_exclude_errors_say_which_dtypes(tmp_path: Path) -> None:
    t, r = _scores(tmp_path)
    np.save(tmp_path / "f.npy", np.array([1.0, 2.0]))
    with pytest.raises(FormatError, match=r"f\.npy: .*integers \(uint8, .*int64\), found float64"):
        miniplm.select(
            tmp_path / "o", teacher_nll=t, reference_nll=r, count=2, exclude=tmp_path / "f.npy"
        )
    np.save(tmp_path / "neg.npy", np.array([3, -1], dtype=np.int16))
    with pytest.raises(InputError, match=r"neg\.npy.*-1"):
        miniplm.select(
            tmp_path / "o", teacher_nll=t, reference_nll=r, count=2, exclude=tmp_path / "neg.npy"
        )


def test_directory_as_score_npy(tmp_path: Path) -> None:
    _, r = _scores(tmp_path)
    run = miniplm.write_score_run(tmp_path / "run", np.ones(20), np.ones(20))
    (tmp_path / "plain").mkdir()
    for d, hint in ((run, "--teacher"), (tmp_path / "plain", "directory")):
        with pytest.raises(InputError, match=rf"{d}: .*directory.*\.npy") as e:
            miniplm.select(tmp_path / "o", teacher_nll=d, reference_nll=r, count=2)
        assert hint in str(e.value) and "No such device" not in str(e.value)
    out = _sample(
        "select",
        "--teacher-nll",
        str(run),
        "--reference-nll",
        str(r),
        "--count",
        "2",
        "--out",
        str(tmp_path / "o"),
    )
    assert out.returncode == 1
    assert (
        f"{run}: " in out.stderr
        and "--teacher" in out.stderr
        and "No such device" not in out.stderr
    )
    assert not (tmp_path / "o").exists()


def test_score_npy_as_a_run(tmp_path: Path) -> None:
    """The converse mistake: a .npy of mean NLLs where a score run is asked for."""
    t, r = _scores(tmp_path)
    with pytest.raises(InputError, match=rf"{t}: is a file, not a score run directory") as e:
        miniplm.select(tmp_path / "o", teacher=t, reference_nll=r, count=2)
    assert "--teacher-nll" in str(e.value) and "Not a directory" not in str(e.value)
    assert not (tmp_path / "o").exists()


def test_negative_ratio_is_a_value_not_a_flag(tmp_path: Path) -> None:
    t, r = _scores(tmp_path)
    for value in ("-0.1", "-1e-3"):
        out = _sample(
            "select",
            "--teacher-nll",
            str(t),
            "--reference-nll",
            str(r),
            "--ratio",
            value,
            "--out",
            str(tmp_path / "o"),
        )
        assert out.returncode == 1, out.stderr
        assert f"ratio must lie in [0, 1], got {float(value)}" in out.stderr
    out = _sample(
        "select",
        "--teacher-nll",
        str(t),
        "--reference-nll",
        str(r),
        "--ratio",
        "0.5",
        "--temperature",
        "-2",
        "--out",
        str(tmp_path / "o"),
    )
    assert out.returncode == 1 and "temperature must be finite and > 0, got -2" in out.stderr
    assert not (tmp_path / "o").exists()


def test_skip_ids_that_are_not_npy(tmp_path: Path) -> None:
    from miniplm.scoring.runner import ScoreOptions, score

    from tiny_lm import make_dataset, make_model

    model = make_model(tmp_path / "m")
    make_dataset(tmp_path / "data", n=8)
    (tmp_path / "ids.txt").write_text("1\n2\n3\n")
    (tmp_path / "ids.npy").write_bytes(b"\x93NUMPY\x01\x00{garbage")
    for bad in (tmp_path / "ids.txt", tmp_path / "ids.npy"):
        opt = ScoreOptions(device="cpu", progress=False, skip_ids=str(bad))
        with pytest.raises(FormatError, match=rf"--skip-ids {bad}: not a \.npy file") as e:
            score([str(model)], tmp_path / "data", [tmp_path / "out"], opt)
        assert "pickle" not in str(e.value)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    opt = ScoreOptions(device="cpu", progress=False, skip_ids=str(tmp_path / "obj.npy"))
    with pytest.raises(FormatError, match=r"obj\.npy: .*object"):
        score([str(model)], tmp_path / "data", [tmp_path / "out"], opt)
    opt = ScoreOptions(device="cpu", progress=False, skip_ids=str(tmp_path))
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        score([str(model)], tmp_path / "data", [tmp_path / "out"], opt)


def _config(d: Path, **fields: object) -> Path:
    d.mkdir()
    (d / "config.json").write_text(json.dumps(fields))
    return d


def test_train_refuses_custom_code_models_by_name(tmp_path: Path) -> None:
    from miniplm.training.trainer import TrainOptions, train

    from tiny_lm import make_dataset

    make_dataset(tmp_path / "data", n=8)
    remote = {"AutoConfig": "my_model.MyConfig", "AutoModelForCausalLM": "my_model.MyLM"}
    custom = _config(tmp_path / "custom", model_type="my_model", auto_map=remote)
    mapped = _config(tmp_path / "mapped", model_type="llama", auto_map=remote)
    unknown = _config(tmp_path / "unknown", model_type="not_a_transformers_model")
    (tmp_path / "cfg.json").write_text(json.dumps({"model_type": "my_model", "auto_map": remote}))
    cases = [
        ("init_from", custom, "auto_map"),
        ("init_from", mapped, "auto_map"),
        ("model_config", custom, "auto_map"),
        ("model_config", unknown, "not_a_transformers_model"),
        ("model_config", tmp_path / "cfg.json", "auto_map"),
    ]
    for key, path, why in cases:
        opt = TrainOptions(
            data=str(tmp_path / "data"),
            out=str(tmp_path / "out"),
            max_steps=1,
            device="cpu",
            **{key: str(path)},
        )  # type: ignore[arg-type]
        with pytest.raises(InputError) as e:
            train(opt)
        msg = str(e.value)
        flag = "--" + key.replace("_", "-")
        assert f"{flag} {path}" in msg and why in msg and "--trust-remote-code" in msg, msg
        assert "Traceback" not in msg
    assert not (tmp_path / "out").exists()


def _dataset_with_tokenizer(d: Path) -> Path:
    from tokenizers import Tokenizer, models

    from tiny_lm import VOCAB, make_dataset

    make_dataset(d, n=6, max_len=12)
    vocab = {f"t{i}": i for i in range(VOCAB)}
    Tokenizer(models.WordLevel(vocab, unk_token="t0")).save(str(d / "tokenizer.json"))
    return d


def test_model_without_tokenizer_files_is_refused_unless_allowed(tmp_path: Path) -> None:
    from miniplm.evaluation import evaluate
    from miniplm.scoring.runner import ScoreOptions, score
    from miniplm.training.trainer import TrainOptions, train

    from tiny_lm import make_model

    model = make_model(tmp_path / "m")
    data = _dataset_with_tokenizer(tmp_path / "data")

    def refused(run: object) -> None:
        with pytest.raises(InputError) as e:
            run()  # type: ignore[operator]
        msg = str(e.value)
        assert f"{model}: " in msg and "no tokenizer" in msg, msg
        assert str(data / "tokenizer.json") in msg and "--allow-tokenizer-mismatch" in msg, msg

    def score_with(allow: bool) -> None:
        opt = ScoreOptions(device="cpu", progress=False, allow_tokenizer_mismatch=allow)
        score([str(model)], data, [tmp_path / f"run{allow}"], opt)

    def train_with(allow: bool, **kw: str) -> None:
        opt = TrainOptions(
            data=str(data),
            out=str(tmp_path / f"train{allow}{sorted(kw)}"),
            max_steps=1,
            seq_len=8,
            micro_batch_size=2,
            global_batch_size=2,
            warmup_steps=0,
            device="cpu",
            progress=False,
            allow_tokenizer_mismatch=allow,
            **kw,  # type: ignore[arg-type]
        )
        train(opt)

    refused(lambda: score_with(False))
    refused(lambda: evaluate(str(model), data=data, device="cpu"))
    refused(lambda: train_with(False, init_from=str(model)))
    refused(lambda: train_with(False, preset="tiny", kd_teacher=str(model)))
    score_with(True)
    assert evaluate(str(model), data=data, device="cpu", allow_tokenizer_mismatch=True)["heldout"]
    train_with(True, init_from=str(model))
    train_with(True, preset="tiny", kd_teacher=str(model))
