"""Outputs are safe: never one of the inputs, one writer at a time (a lock naming its
holder), no debris after kill -9 or SIGTERM (the next run clears it and gives the same
bytes), clear errors for unwritable outputs, nothing created before the inputs are
validated, and the user's normal file modes."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import miniplm
from miniplm import _core
from miniplm._atomic import atomic_dir, atomic_write_text, output_lock
from miniplm.corpus.tokenize import tokenize_corpus
from miniplm.errors import InputError, OutputLockedError
from miniplm.scoring.runner import ScoreOptions, score
from miniplm.training.trainer import TrainOptions, train

from tiny_lm import VOCAB, make_dataset, make_model, tiny_bpe

SAMPLE = [os.environ.get("MINIPLM_SAMPLE", "miniplm-sample")]


def _tree(d: Path) -> dict[str, bytes]:
    """Every file under ``d`` (relative name -> bytes)."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _scores(tmp: Path, n: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    t, r = tmp / "t.npy", tmp / "r.npy"
    np.save(t, rng.random(n))
    np.save(r, rng.random(n) + 0.5)
    return t, r


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    """A dataset, its two .npy scores and a selection of half of it."""
    make_dataset(tmp_path / "data", n=50)
    t, r = _scores(tmp_path, 50)
    miniplm.select(tmp_path / "sel", teacher_nll=t, reference_nll=r, ratio=0.5)
    return {"data": tmp_path / "data", "t": t, "r": r, "sel": tmp_path / "sel"}


# ---- 1. an output that is one of the inputs ----------------------------------------------


def test_rule_is_the_cores(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.bin").write_bytes(b"x")
    for out in (tmp_path / "d", tmp_path, tmp_path / "d" / "x.bin"):
        with pytest.raises(InputError, match="refusing to write this output"):
            _core.check_spares_inputs(str(out), [str(tmp_path / "d" / "x.bin")])
    _core.check_spares_inputs(str(tmp_path / "e"), [str(tmp_path / "d")])


def _build_argv(corpus: dict[str, Path], out: Path) -> list[str]:
    argv = [*SAMPLE, "build", "--data", str(corpus["data"]), "--selection", str(corpus["sel"])]
    return [*argv, "--out", str(out), "--quiet"]


@pytest.mark.parametrize("which", ["data", "sel", "parent"])
def test_build_refuses_an_input_as_out(corpus: dict[str, Path], which: str) -> None:
    out = corpus["data"].parent if which == "parent" else corpus[which]
    before = _tree(corpus["data"]), _tree(corpus["sel"])
    with pytest.raises(InputError, match=f"{out}.*input"):
        miniplm.build(corpus["data"], corpus["sel"], out, overwrite=True)
    assert (_tree(corpus["data"]), _tree(corpus["sel"])) == before
    p = subprocess.run(
        [*_build_argv(corpus, out), "--overwrite"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 1 and "refusing to write this output" in p.stderr, p.stderr
    assert (_tree(corpus["data"]), _tree(corpus["sel"])) == before


@pytest.mark.parametrize("which", ["t", "r", "data", "link"])
def test_select_refuses_an_input_as_out(corpus: dict[str, Path], which: str) -> None:
    out = corpus["t"] if which == "link" else corpus[which]
    if which == "link":  # the output is a symlink to an input
        out = corpus["t"].parent / "link"
        out.symlink_to(corpus["t"])
    before = corpus["t"].read_bytes(), _tree(corpus["data"])
    with pytest.raises(InputError, match="input"):
        miniplm.select(
            out,
            teacher_nll=corpus["t"],
            reference_nll=corpus["r"],
            data=corpus["data"],
            ratio=0.5,
            overwrite=True,
        )
    assert (corpus["t"].read_bytes(), _tree(corpus["data"])) == before


@pytest.mark.parametrize("which", ["data", "parent", "shard"])
def test_write_selection_refuses_its_dataset_as_out(corpus: dict[str, Path], which: str) -> None:
    """``TokenDataset.write_selection(..., overwrite=True)`` replaced the dataset itself."""
    data = corpus["data"]
    out = {"data": data, "parent": data.parent, "shard": next(data.glob("*.bin"))}[which]
    before = _tree(data)
    with pytest.raises(InputError, match="refusing to write this output"):
        miniplm.TokenDataset(data).write_selection(out, np.arange(3), "x", overwrite=True)
    assert _tree(data) == before
    got = miniplm.TokenDataset(data).write_selection(data.parent / "s", np.arange(3), "x")
    assert miniplm.load_selection(got)[0].tolist() == [0, 1, 2]


def test_score_and_train_refuse_an_input_as_out(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    make_dataset(tmp_path / "data", n=20)
    before = _tree(tmp_path / "data"), _tree(model)
    for out in (tmp_path / "data", model, tmp_path):
        with pytest.raises(InputError, match="input"):
            score(
                [str(model)], tmp_path / "data", [out], ScoreOptions(device="cpu", overwrite=True)
            )
    base = dict(data=str(tmp_path / "data"), seq_len=16, max_steps=1, device="cpu", overwrite=True)
    for out, model_kw in (
        (tmp_path / "data", {"preset": "tiny", "vocab_size": VOCAB}),
        (model, {"init_from": str(model)}),
    ):
        with pytest.raises(InputError, match="input"):
            train(TrainOptions(out=str(out), **base, **model_kw))  # type: ignore[arg-type]
    assert (_tree(tmp_path / "data"), _tree(model)) == before


# ---- tokenize ----------------------------------------------------------------------------

DOCS = [f"Document number {i} says hello to the world. " * (1 + i % 5) for i in range(400)]


@pytest.fixture(scope="module")
def tok_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import PreTrainedTokenizerFast

    tok = tiny_bpe(DOCS)
    d = tmp_path_factory.mktemp("tok")
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(d)
    return d


def _jsonl(path: Path, n: int = 400) -> Path:
    path.write_text("".join(json.dumps({"text": DOCS[i % len(DOCS)]}) + "\n" for i in range(n)))
    return path


def test_tokenize_refuses_an_input_as_out(tmp_path: Path, tok_json: Path) -> None:
    (tmp_path / "in").mkdir()
    src = _jsonl(tmp_path / "in" / "a.jsonl")
    for out in (src, src.parent, tok_json):
        before = _tree(src.parent), _tree(tok_json)
        with pytest.raises(InputError, match="input"):
            tokenize_corpus([src], out, tok_json, overwrite=True, workers=1, progress=False)
        assert (_tree(src.parent), _tree(tok_json)) == before


# ---- 2. one writer at a time -------------------------------------------------------------


def test_second_writer_is_refused_naming_the_holder(
    corpus: dict[str, Path], tmp_path: Path, tok_json: Path
) -> None:
    out = tmp_path / "out"
    with output_lock(out):
        lock_file = tmp_path / ".out.lock"
        holder = json.loads(lock_file.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] and holder["started"]
        pid = str(os.getpid())
        with pytest.raises(OutputLockedError, match=pid):
            miniplm.build(corpus["data"], corpus["sel"], out)
        with pytest.raises(OutputLockedError, match=pid):
            miniplm.select(out, teacher_nll=corpus["t"], reference_nll=corpus["r"], ratio=0.5)
        with pytest.raises(OutputLockedError, match=pid):
            tokenize_corpus(
                [_jsonl(tmp_path / "a.jsonl", 5)], out, tok_json, workers=1, progress=False
            )
        with pytest.raises(OutputLockedError, match=pid), atomic_dir(out, overwrite=True):
            pass
        model = make_model(tmp_path / "m")
        with pytest.raises(OutputLockedError, match=pid):
            score([str(model)], corpus["data"], [out], ScoreOptions(device="cpu", progress=False))
        p = subprocess.run(
            _build_argv(corpus, out),
            capture_output=True,
            text=True,
        )
        assert p.returncode == 1 and f"pid {pid}" in p.stderr, p.stderr
        assert not out.exists()
    assert not lock_file.exists()
    miniplm.build(corpus["data"], corpus["sel"], out)  # free again
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_train_holds_its_output_lock(tmp_path: Path) -> None:
    make_dataset(tmp_path / "data", n=20)
    out = tmp_path / "run"
    opts = TrainOptions(
        data=str(tmp_path / "data"),
        out=str(out),
        preset="tiny",
        vocab_size=VOCAB,
        seq_len=16,
        max_steps=1,
        micro_batch_size=2,
        global_batch_size=2,
        device="cpu",
        progress=False,
    )
    with output_lock(out), pytest.raises(OutputLockedError, match=str(os.getpid())):
        train(opts)
    assert not out.exists()
    train(opts)
    assert (out / "final").is_dir() and not (tmp_path / ".run.lock").exists()


# ---- 3. debris: kill -9 and SIGTERM ------------------------------------------------------


def _hidden(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


def _killed_when(
    argv: list[str], ready: Callable[[], bool], what: str, sig: signal.Signals = signal.SIGKILL
) -> tuple[int, str]:
    """Run ``argv``, send it ``sig`` once ``ready()`` holds (failing if it ends first or
    after 120 s); its exit code and stderr."""
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready():
        assert proc.poll() is None and time.monotonic() < deadline, f"never {what}"
        time.sleep(0.002)
    proc.send_signal(sig)
    _, err = proc.communicate()
    return proc.returncode, err


def _exist(*paths: Path) -> Callable[[], bool]:
    return lambda: all(p.exists() for p in paths)


def _kill_then_rerun(argv: list[str], out: Path, sig: signal.Signals, points: list[str]) -> None:
    """Run ``argv`` (which writes ``out``) and send ``sig`` once its temporary output holds
    each file of ``points`` in turn (several runs), then run it to the end. SIGTERM must
    leave nothing behind at once; after SIGKILL the debris is the next run's to clear."""
    out.parent.mkdir()
    for point in points:
        tmp = f".{out.name}.tmp-*/{point}"
        rc, err = _killed_when(argv, lambda t=tmp: any(out.parent.glob(t)), point, sig)
        if sig == signal.SIGTERM:
            assert rc == 130 and "interrupted" in err, err
            assert _hidden(out.parent) == [] and not out.exists()
        else:
            assert any(n.startswith(f".{out.name}.tmp-") for n in _hidden(out.parent))
    subprocess.run(argv, check=True, capture_output=True)
    assert _hidden(out.parent) == []


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A dataset large enough that build takes a while, and a selection of all of it."""
    d = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(1)
    seqs = (rng.integers(4, 60000, 200) for _ in range(120_000))
    miniplm.write_dataset(d / "data", seqs, vocab_size=65000)
    np.save(d / "t.npy", np.zeros(120_000))
    np.save(d / "r.npy", np.ones(120_000))
    miniplm.select(d / "sel", teacher_nll=d / "t.npy", reference_nll=d / "r.npy", ratio=1.0)
    return {"data": d / "data", "sel": d / "sel"}


IN_PROCESS = [sys.executable, "-m", "miniplm._sample"]  # the CLI inside the extension


@pytest.mark.parametrize(
    ("sig", "front"),
    [(signal.SIGKILL, SAMPLE), (signal.SIGTERM, SAMPLE), (signal.SIGTERM, IN_PROCESS)],
)
def test_build_killed_leaves_nothing_and_rerun_is_identical(
    big: dict[str, Path], tmp_path: Path, sig: signal.Signals, front: list[str]
) -> None:
    """SIGTERM reaches the job through ctrlc in the binary, and through Python's handler
    and run_long's signal poll in the extension."""
    argv = [*front, "build", "--data", str(big["data"]), "--selection", str(big["sel"])]
    argv += ["--shard-size", "4M", "--quiet", "--out"]
    clean = tmp_path / "clean"
    subprocess.run([*argv, str(clean)], check=True, capture_output=True)
    out = tmp_path / "work" / "out"
    points = ["refined_0.bin", "refined_2.bin"] if sig == signal.SIGKILL else ["refined_1.bin"]
    _kill_then_rerun([*argv, str(out)], out, sig, points)
    a, b = _tree(out), _tree(clean)
    a.pop("build.json"), b.pop("build.json")
    assert a == b


def _tokenize_argv(src: Path, tok: Path, out: Path) -> list[str]:
    argv = [sys.executable, "-m", "miniplm", "tokenize", str(src), "--tokenizer", str(tok)]
    argv += ["--seq-len", "16", "--shard-size", "16K", "--workers", "1", "--quiet"]
    return [*argv, "--out", str(out)]


@pytest.fixture(scope="module")
def tok_clean(tmp_path_factory: pytest.TempPathFactory, tok_json: Path) -> tuple[Path, Path]:
    """A corpus that takes tokenize a few seconds, and its dataset from one clean run."""
    d = tmp_path_factory.mktemp("tok_clean")
    src = _jsonl(d / "a.jsonl", 3_000)
    subprocess.run(_tokenize_argv(src, tok_json, d / "clean"), check=True)
    return src, d / "clean"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_tokenize_killed_resumes_and_ends_identical(
    tmp_path: Path, tok_json: Path, tok_clean: tuple[Path, Path], sig: signal.Signals
) -> None:
    """tokenize killed twice keeps its partial output (checkpointed after every batch
    here); each rerun continues it, and the last run's dataset is the clean run's."""
    src, clean = tok_clean
    out = tmp_path / "work" / "out"
    out.parent.mkdir()
    argv = [*_tokenize_argv(src, tok_json, out), "--batch-docs", "50", "--checkpoint-every", "0"]
    work = out.parent / f".{out.name}.partial"
    for point in ["corpus_2.bin", "corpus_5.bin"]:
        rc, err = _killed_when(argv, _exist(work / point, work / "checkpoint.npz"), point, sig)
        if sig == signal.SIGTERM:
            assert rc == 130 and "interrupted" in err and "kept in" in err, err
        else:
            assert rc == -signal.SIGKILL
        assert (work / "checkpoint.npz").is_file() and not out.exists()
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    assert "resuming" in done.stderr
    assert _hidden(out.parent) == []
    a, b = _tree(out), _tree(clean)
    metas = [json.loads(t.pop("tokenize.json")) for t in (a, b)]
    assert [m.pop("resumed") for m in metas] == [2, 0]
    for m in metas:
        assert m["counts"]["instances"] > 0
        m.pop("elapsed_s"), m.pop("tokens_per_s")
    assert metas[0] == metas[1]
    assert a == b


def test_retokenize_killed_resumes_and_ends_identical(
    tmp_path: Path, tok_json: Path, tok_clean: tuple[Path, Path]
) -> None:
    """retokenize SIGKILLed while tokenizing keeps its export and the tokenizer's partial
    output; the rerun exports nothing again and ends with a clean run's dataset."""
    _, corpus = tok_clean
    script = (
        "import sys; from miniplm.corpus.retokenize import retokenize; "
        "retokenize(sys.argv[1], sys.argv[2], sys.argv[3], seq_len=16, workers=1, "
        "batch_docs=50, checkpoint_every=0, progress=False, overwrite=True)"
    )
    out, clean = tmp_path / "work" / "out", tmp_path / "clean"
    out.parent.mkdir()

    def argv(o: Path) -> list[str]:
        return [sys.executable, "-c", script, str(corpus), str(o), str(tok_json)]

    subprocess.run(argv(clean), check=True)
    work = out.parent / f".{out.name}.partial"
    half = (clean / "corpus_0.bin").stat().st_size // 2

    def halfway() -> bool:  # killed once half the tokens are written and checkpointed
        bin_, ckpt = work / "corpus_0.bin", work / "checkpoint.npz"
        return bin_.exists() and bin_.stat().st_size > half and ckpt.exists()

    _killed_when(argv(out), halfway, "halfway")
    assert (out.parent / f".{out.name}.retokenize" / "export.json").is_file()
    done = subprocess.run(argv(out), check=True, capture_output=True, text=True)
    assert "reusing the text exported" in done.stderr and "resuming" in done.stderr
    assert _hidden(out.parent) == []
    a, b = _tree(out), _tree(clean)
    metas = [json.loads(t.pop("tokenize.json")) for t in (a, b)]
    assert [m.pop("resumed") for m in metas] == [1, 0]
    assert a == b and metas[0]["counts"] == metas[1]["counts"]


def test_export_killed_resumes_and_ends_identical(
    tmp_path: Path, tok_clean: tuple[Path, Path]
) -> None:
    """export SIGKILLed twice (checkpointed after every chunk of 20 instances) keeps its
    partial parquet parts; the last rerun continues them and writes the bytes of a clean
    run, whose one part is renamed into place where the resumed run's are merged."""
    _, corpus = tok_clean
    script = (
        "import sys; from miniplm.corpus import export as m; m._CHUNK_TOKENS = 17 * 20; "
        "print(m.export(sys.argv[1], sys.argv[2], checkpoint_every=float(sys.argv[3]), "
        "progress=False))"
    )
    out, clean = tmp_path / "work" / "x.parquet", tmp_path / "clean.parquet"
    out.parent.mkdir()

    def argv(o: Path, every: float) -> list[str]:
        return [sys.executable, "-c", script, str(corpus), str(o), str(every)]

    subprocess.run(argv(clean, 60), check=True)
    work = out.parent / f".{out.name}.partial"
    for point in ["part-00003.parquet", "part-00008.parquet"]:
        ready = _exist(work / point, work / "checkpoint.json")
        assert _killed_when(argv(out, 0), ready, point)[0] == -signal.SIGKILL
        assert (work / "checkpoint.json").is_file() and not out.exists()
    done = subprocess.run(argv(out, 0), check=True, capture_output=True, text=True)
    assert "export: resuming" in done.stderr and "'resumed': 2" in done.stdout
    assert _hidden(out.parent) == []
    assert out.read_bytes() == clean.read_bytes()


# ---- 4. unwritable outputs ---------------------------------------------------------------


def test_tokenize_into_a_file_names_the_output(tmp_path: Path, tok_json: Path) -> None:
    src = _jsonl(tmp_path / "a.jsonl", 20)
    (tmp_path / "f").write_text("not a directory")
    out = tmp_path / "f" / "out"
    with pytest.raises(OSError, match=str(tmp_path / "f")):
        tokenize_corpus([src], out, tok_json, workers=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "f"]


def test_tokenize_disk_full_leaves_nothing(
    tmp_path: Path, tok_json: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _jsonl(tmp_path / "a.jsonl", 20)
    real = Path.write_text

    def full(self: Path, *a: Any, **k: Any) -> int:
        if self.name == "tokenize.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError, match="No space left"):
        tokenize_corpus([src], tmp_path / "out", tok_json, workers=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl"]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 128 KiB tmpfs (root only: skipped where mounting is not allowed)."""
    d = tmp_path / "small"
    d.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(d)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=True)


def test_tokenize_on_a_full_disk_names_the_output_and_leaves_nothing(
    tmp_path: Path, tok_json: Path, small_fs: Path
) -> None:
    src = _jsonl(tmp_path / "a.jsonl", 3_000)  # about 400 KB of shards
    out = small_fs / "out"
    with pytest.raises(OSError, match=f"{small_fs}/.out.partial/.*No space left"):
        tokenize_corpus([src], out, tok_json, workers=1, progress=False, shard_size="16K")
    assert list(small_fs.iterdir()) == []
    p = subprocess.run(_tokenize_argv(src, tok_json, out), capture_output=True, text=True)
    assert p.returncode == 2 and "No space left" in p.stderr and "Traceback" not in p.stderr
    assert list(small_fs.iterdir()) == []


def test_score_into_a_file_names_the_output(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    make_dataset(tmp_path / "data", n=10)
    (tmp_path / "f").write_text("not a directory")
    with pytest.raises(OSError, match=str(tmp_path / "f")):
        score([str(model)], tmp_path / "data", [tmp_path / "f" / "run"], ScoreOptions(device="cpu"))
    assert (tmp_path / "f").read_text() == "not a directory"


def test_score_disk_full_names_the_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from miniplm.scoring import run_dir

    model = make_model(tmp_path / "m")
    make_dataset(tmp_path / "data", n=10)

    def full(path: Path, a: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(run_dir, "_save_npy", full)
    run = tmp_path / "run"
    with pytest.raises(OSError, match="No space left.*" + str(run)):
        score([str(model)], tmp_path / "data", [run], ScoreOptions(device="cpu", progress=False))
    assert not list(run.glob(".*tmp*")) and not (tmp_path / ".run.lock").exists()


# ---- 5. nothing created before the inputs are validated ----------------------------------


def test_score_early_errors_create_nothing(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    make_dataset(tmp_path / "data", n=10)
    cases: list[tuple[list[str], str, dict[str, Any]]] = [
        ([str(model)], str(tmp_path / "nodata"), {}),
        ([str(tmp_path / "nomodel")], str(tmp_path / "data"), {}),
        ([str(model)], str(tmp_path / "data"), {"skip_ids": str(tmp_path / "none.npy")}),
    ]
    for models_, data, kw in cases:
        out = tmp_path / "out" / "run"
        with pytest.raises((InputError, OSError)):
            score(models_, data, [out], ScoreOptions(device="cpu", progress=False, **kw))
        assert not (tmp_path / "out").exists(), (models_, data, kw)


def test_train_early_errors_create_nothing(tmp_path: Path) -> None:
    make_dataset(tmp_path / "data", n=10)
    data = str(tmp_path / "data")
    tiny = dict(preset="tiny", vocab_size=VOCAB)
    cases: list[dict[str, Any]] = [
        dict(data=str(tmp_path / "nodata"), **tiny),
        dict(data=data, selection=str(tmp_path / "nosel"), **tiny),
        dict(data=data, init_from=str(tmp_path / "nomodel")),
        dict(data=data, micro_batch_size=3, global_batch_size=8, **tiny),
    ]
    for kw in cases:
        opts = TrainOptions(out=str(tmp_path / "out" / "run"), seq_len=16, max_steps=1, **kw)
        opts.device = "cpu"
        with pytest.raises((InputError, OSError)):
            train(opts)
        assert not (tmp_path / "out").exists(), kw


# ---- 6. modes ----------------------------------------------------------------------------


def test_outputs_get_the_users_normal_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        f = atomic_write_text(tmp_path / "a.json", "{}")
        assert f.stat().st_mode & 0o777 == 0o640
        model = make_model(tmp_path / "m")
        make_dataset(tmp_path / "data", n=10)
        run = tmp_path / "run"
        score([str(model)], tmp_path / "data", [run], ScoreOptions(device="cpu", progress=False))
        assert (run / "manifest.json").stat().st_mode & 0o777 == 0o640
        assert run.stat().st_mode & 0o777 == 0o750
        assert (run / "part-000000" / "nll_sum.npy").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_score_resume_clears_a_dead_writers_debris(tmp_path: Path) -> None:
    """Killed between publishing a part and unlinking its checkpoint: the next run removes
    that checkpoint (and temporary files), not only the unfinished parts' debris."""
    model = make_model(tmp_path / "m")
    make_dataset(tmp_path / "data", n=12)
    run = tmp_path / "run"
    opts = ScoreOptions(device="cpu", progress=False, part_size=4)
    score([str(model)], tmp_path / "data", [run], opts)
    man = json.loads((run / "manifest.json").read_text())
    for p in man["parts"]:
        p["complete"] = False
    (run / "manifest.json").write_text(json.dumps(man))
    np.savez(run / "part-000001.checkpoint.npz", nll_sum=np.zeros(4))
    (run / ".part-000002.tmp-99").mkdir()
    score([str(model)], tmp_path / "data", [run], opts)
    assert sorted(p.name for p in run.iterdir()) == [
        "manifest.json",
        "part-000000",
        "part-000001",
        "part-000002",
    ]


def test_eval_refuses_an_input_as_out(tmp_path: Path) -> None:
    from miniplm.evaluation import evaluate

    model = make_model(tmp_path / "m")
    make_dataset(tmp_path / "data", n=10)
    before = _tree(model)
    for out in (model / "config.json", model, tmp_path / "data" / "corpus_0.bin"):
        with pytest.raises(InputError, match="input"):
            evaluate(str(model), data=tmp_path / "data", device="cpu", out=out)
    assert _tree(model) == before
