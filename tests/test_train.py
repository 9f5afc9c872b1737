"""`miniplm train`: a tiny model learns a patterned corpus (with and without a selection),
the final model reloads in transformers with the same loss, kill + resume equals an
uninterrupted run, DDP over 2 ranks equals 1 process, Vanilla KD's loss equals its formula
and its chunked form, and the schedule / data order are what they claim."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

import miniplm
from miniplm.cli import main as cli_main
from miniplm.errors import FormatError, InputError
from miniplm.training.losses import head_losses, plain_losses
from miniplm.training.stream import SampleOrder
from miniplm.training.trainer import TrainOptions, cosine_lr, train

from tiny_lm import make_model, torchrun_miniplm

VOCAB = 50


def patterned(out: Path, n: int = 200, seed: int = 0) -> list[np.ndarray]:
    """Arithmetic progressions mod 46 (+4): learnable, far from uniform."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n):
        a, d = rng.integers(4, 50), rng.integers(1, 5)
        seqs.append((a + d * np.arange(rng.integers(20, 34))) % 46 + 4)
    miniplm.write_dataset(out, seqs, vocab_size=VOCAB, overwrite=True)
    return seqs


def _opts(data: Path, out: Path, **kw: object) -> TrainOptions:
    base: dict[str, object] = dict(
        data=str(data),
        out=str(out),
        preset="tiny",
        vocab_size=VOCAB,
        seq_len=32,
        max_steps=30,
        micro_batch_size=8,
        global_batch_size=16,
        lr=3e-3,
        warmup_steps=3,
        log_every=1,
        save_every=10,
        device="cpu",
        progress=False,
    )
    base.update(kw)
    return TrainOptions(**base)  # type: ignore[arg-type]


def _curve(out: Path, key: str = "loss") -> list[float]:
    return [json.loads(ln)[key] for ln in (out / "metrics.jsonl").read_text().splitlines()]


def test_tiny_model_learns_and_reloads_in_transformers(tmp_path: Path) -> None:
    seqs = patterned(tmp_path / "d")
    summary = train(_opts(tmp_path / "d", tmp_path / "run"))
    loss = _curve(tmp_path / "run")
    assert len(loss) == 30 and summary["steps"] == 30
    assert loss[-1] < loss[0] - 1.0, loss  # from ~ln(50) = 3.9 to well below
    rec = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(rec) >= {"step", "loss", "lr", "tokens", "tokens_per_s"}
    assert rec["tokens"] == summary["tokens"] > 0
    # The final model is a plain HF checkpoint with the training loss.
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final").eval()
    x = torch.tensor(np.stack([s[:20] for s in seqs[:16]]).astype(np.int64))
    with torch.no_grad():
        hf = model(input_ids=x, labels=x).loss.item()
        hidden = model.get_decoder()(input_ids=x[:, :-1]).last_hidden_state.reshape(-1, 64)
        _, ce, _ = head_losses(
            hidden, model.get_output_embeddings().weight, x[:, 1:].reshape(-1), chunk=7
        )
    assert abs(hf - ce.item() / hidden.shape[0]) < 1e-5
    assert hf < 3.0
    ckpt = tmp_path / "run" / "checkpoints" / "step-00000030"
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "optimizer.pt").is_file()


def test_training_through_a_selection_reads_only_selected(tmp_path: Path) -> None:
    patterned(tmp_path / "d", n=100)
    ids = np.arange(0, 100, 4, dtype=np.uint64)
    sel = tmp_path / "sel"
    sel.mkdir()
    np.save(sel / "ids.npy", ids)
    (sel / "selection.json").write_text(json.dumps({"format": "miniplm.selection"}))
    summary = train(
        _opts(
            tmp_path / "d",
            tmp_path / "run",
            selection=str(sel),
            max_steps=None,
            epochs=2.0,
            global_batch_size=10,
            micro_batch_size=5,
        )
    )
    assert summary["steps"] == 5  # 2 epochs x 25 instances / 10
    ds = miniplm.TokenDataset(tmp_path / "d")
    targets = sum(len(ds[int(i)]) - 1 for i in ids)
    assert summary["tokens"] == 2 * targets  # each selected instance read exactly twice
    assert _curve(tmp_path / "run")[-1] < _curve(tmp_path / "run")[0]


def test_kill_and_resume_equals_uninterrupted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patterned(tmp_path / "d", n=300)
    args = [
        "train",
        "--preset",
        "mini",
        "--vocab-size",
        str(VOCAB),
        "--data",
        str(tmp_path / "d"),
        "--seq-len",
        "32",
        "--max-steps",
        "40",
        "--micro-batch-size",
        "16",
        "--global-batch-size",
        "32",
        "--lr",
        "2e-3",
        "--warmup-steps",
        "4",
        "--log-every",
        "1",
        "--save-every",
        "5",
        "--device",
        "cpu",
        "--quiet",
    ]
    full = tmp_path / "full"
    cli_main([*args, "--out", str(full)])
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "miniplm", *args, "--out", str(run)], stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (run / "checkpoints" / "step-00000015").is_dir():
            break
        time.sleep(0.002)
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "final").exists()
    assert cli_main([*args, "--out", str(run)]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert cli_main([*args, "--out", str(run), "--resume"]) == 0
    assert _curve(run) == _curve(full)  # bit-identical losses, no duplicated steps
    a = AutoModelForCausalLM.from_pretrained(full / "final").state_dict()
    b = AutoModelForCausalLM.from_pretrained(run / "final").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert cli_main([*args, "--lr", "1e-3", "--out", str(run), "--resume"]) == 2
    assert "refusing to resume with other settings: lr" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_ranks_equal_one_process(tmp_path: Path, mode: str) -> None:
    patterned(tmp_path / "d", n=64)
    args = [
        "train",
        "--preset",
        "tiny",
        "--vocab-size",
        str(VOCAB),
        "--data",
        str(tmp_path / "d"),
        "--seq-len",
        "32",
        "--max-steps",
        "6",
        "--micro-batch-size",
        "4",
        "--global-batch-size",
        "16",
        "--lr",
        "3e-3",
        "--warmup-steps",
        "2",
        "--log-every",
        "1",
        "--save-every",
        "3",
        "--device",
        "cpu",
        "--quiet",
    ]
    extra = ["--fsdp"] if mode == "fsdp" else []
    torchrun_miniplm([*args, *extra, "--out", str(tmp_path / "two")])
    cli_main([*args, "--out", str(tmp_path / "one")])
    np.testing.assert_allclose(_curve(tmp_path / "two"), _curve(tmp_path / "one"), rtol=1e-4)
    assert (tmp_path / "two" / "final" / "model.safetensors").is_file()


def test_kd_losses_equal_formula_and_chunking() -> None:
    g = torch.Generator().manual_seed(0)
    n, d, v = 37, 8, 11
    h = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(v, d, generator=g, dtype=torch.float64, requires_grad=True)
    th = torch.randn(n, 6, generator=g, dtype=torch.float64)
    tw = torch.randn(v, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, v, (n,), generator=g)
    # The formula, written out: CE = -log q[y]; KD = -sum_v p_v log q_v.
    q = torch.exp(h @ w.T) / torch.exp(h @ w.T).sum(1, keepdim=True)
    p = torch.exp(th @ tw.T) / torch.exp(th @ tw.T).sum(1, keepdim=True)
    ce_f = -torch.log(q[torch.arange(n), y]).sum()
    kd_f = -(p * torch.log(q)).sum()
    ce_p, kd_p = plain_losses(h @ w.T, y, th @ tw.T)
    assert torch.allclose(ce_p, ce_f) and torch.allclose(kd_p, kd_f)
    grads = []
    for chunk in (n, 5, 1):
        loss, ce_c, kd_c = head_losses(h, w, y, th, tw, kd_ratio=0.3, chunk=chunk)
        assert abs(ce_c.item() - ce_f.item()) < 1e-4 and abs(kd_c.item() - kd_f.item()) < 1e-4
        assert abs(loss.item() - (0.7 * ce_f + 0.3 * kd_f).item()) < 1e-4
        (2.0 * loss).backward()  # the upstream gradient scales the fused one
        grads.append((h.grad.clone(), w.grad.clone()))  # type: ignore[union-attr]
        h.grad = w.grad = None
    (2.0 * (0.7 * ce_f + 0.3 * kd_f)).backward()
    for gh, gw in grads:
        assert torch.allclose(gh.double(), h.grad, atol=1e-4)  # type: ignore[arg-type]
        assert torch.allclose(gw.double(), w.grad, atol=1e-4)  # type: ignore[arg-type]
    assert kd_f > 0 and ce_f > 0


def test_fused_ce_gradient_equals_autograd() -> None:
    g = torch.Generator().manual_seed(1)
    h = torch.randn(23, 6, generator=g, requires_grad=True)
    w = torch.randn(13, 6, generator=g, requires_grad=True)
    y = torch.randint(0, 13, (23,), generator=g)
    ref = torch.nn.functional.cross_entropy(h @ w.T, y, reduction="sum")
    ref.backward()
    gh, gw = h.grad.clone(), w.grad.clone()  # type: ignore[union-attr]
    h.grad = w.grad = None
    loss, ce, kd = head_losses(h, w, y, chunk=4)
    assert not ce.requires_grad and kd.item() == 0.0
    assert torch.allclose(loss, ref, atol=1e-4) and torch.allclose(ce, ref, atol=1e-4)
    loss.backward()
    assert torch.allclose(h.grad, gh, atol=1e-5) and torch.allclose(w.grad, gw, atol=1e-5)  # type: ignore[arg-type]
    with torch.no_grad():
        loss_ng, _, _ = head_losses(h, w, y, chunk=5)
    assert not loss_ng.requires_grad and torch.allclose(loss_ng, ref, atol=1e-4)


def test_vanilla_kd_trains_and_checks_the_teacher(tmp_path: Path) -> None:
    patterned(tmp_path / "d")
    teacher = make_model(tmp_path / "teacher", vocab=VOCAB)
    summary = train(
        _opts(
            tmp_path / "d",
            tmp_path / "kd",
            kd_teacher=str(teacher),
            kd_ratio=0.5,
            max_steps=10,
            vocab_size=None,
        )
    )
    rec = json.loads((tmp_path / "kd" / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["total_loss"] == pytest.approx(0.5 * rec["loss"] + 0.5 * rec["kd_loss"])
    assert summary["steps"] == 10
    run = json.loads((tmp_path / "kd" / "run.json").read_text())
    assert run["teacher"]["path"] == str(teacher)
    bad = make_model(tmp_path / "bad", vocab=VOCAB + 3)
    with pytest.raises(InputError, match="one vocabulary"):
        train(_opts(tmp_path / "d", tmp_path / "kd2", kd_teacher=str(bad), max_steps=2))


def test_schedule_order_and_options() -> None:
    lrs = [cosine_lr(s, 100, 10, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert cosine_lr(100, 100, 10, 0.1) == pytest.approx(0.1)
    order = SampleOrder(7, seed=3, shuffle=True)
    e0, e1 = order.take(0, 7), order.take(7, 7)
    assert sorted(e0) == list(range(7)) and sorted(e1) == list(range(7))
    assert not np.array_equal(e0, e1)
    np.testing.assert_array_equal(order.take(5, 6), np.concatenate([e0[5:], e1[:4]]))
    np.testing.assert_array_equal(SampleOrder(7, 3, True).take(5, 6), order.take(5, 6))
    np.testing.assert_array_equal(SampleOrder(4, 0, False).take(2, 5), [2, 3, 0, 1, 2])
    with pytest.raises(InputError, match="exactly one of --preset"):
        TrainOptions(data="d", out="o", max_steps=1).check()


def test_bad_options_are_refused(tmp_path: Path) -> None:
    patterned(tmp_path / "d", n=20)
    with pytest.raises(InputError, match="not a multiple"):
        train(_opts(tmp_path / "d", tmp_path / "a", micro_batch_size=3, global_batch_size=8))
    with pytest.raises(InputError, match="exactly one of --epochs"):
        train(_opts(tmp_path / "d", tmp_path / "b", epochs=1.0))
    with pytest.raises(InputError, match="vocabulary size unknown"):
        train(_opts(tmp_path / "d", tmp_path / "c", vocab_size=None))


def test_to_argv_round_trips_through_the_train_parser() -> None:
    from miniplm.cli import build_parser
    from miniplm.training.cli import from_args, to_argv

    opt = TrainOptions(
        data="d",
        out="o",
        selection="s",
        preset="tiny",
        max_steps=7,
        shuffle=False,
        lr=0.005,
        warmup_steps=3,
        micro_batch_size=4,
        global_batch_size=12,
        resume=True,
        kd_teacher="t",
        kd_ratio=0.25,
        allow_tokenizer_mismatch=True,
        save_every=50,
        log_every=1,
        progress=False,
    )
    back = from_args(build_parser().parse_args(to_argv(opt)))
    assert back == opt
    with pytest.raises(ValueError, match="betas"):
        to_argv(TrainOptions(data="d", out="o", betas=(0.9, 0.95)))


def test_token_outside_the_vocabulary_is_refused_before_the_output(tmp_path: Path) -> None:
    seqs = [np.arange(4, 20) for _ in range(10)]
    seqs[6] = np.array([5, 6, VOCAB + 2, 7])
    miniplm.write_dataset(tmp_path / "d", seqs, dtype="int32")
    with pytest.raises(InputError, match=f"instance 6 holds token id {VOCAB + 2}"):
        train(_opts(tmp_path / "d", tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_selection_with_duplicates_or_for_another_dataset_is_refused(tmp_path: Path) -> None:
    patterned(tmp_path / "d", n=20)
    patterned(tmp_path / "e", n=21)
    ds = miniplm.TokenDataset(tmp_path / "d")
    sel = ds.write_selection(tmp_path / "sel", np.array([1, 2, 3]), "test")
    np.save(sel / "ids.npy", np.array([1, 2, 2], dtype=np.uint64))
    with pytest.raises(FormatError, match="ascending"):
        train(_opts(tmp_path / "d", tmp_path / "o", selection=str(sel)))
    ds.write_selection(sel, np.array([1, 2, 3]), "test", overwrite=True)
    with pytest.raises(InputError, match="dataset of 20 instances"):
        train(_opts(tmp_path / "e", tmp_path / "o", selection=str(sel)))
    assert not (tmp_path / "o").exists()


def test_write_dataset_refuses_non_integer_tokens(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="sequence 1 holds float64 values"):
        miniplm.write_dataset(tmp_path / "d", [[1, 2], [1.7, 2.2, 3.9]], vocab_size=VOCAB)
    with pytest.raises(InputError, match="sequence 0 holds bool values"):
        miniplm.write_dataset(tmp_path / "d", [np.array([True, False])], vocab_size=VOCAB)
    assert not (tmp_path / "d").exists()  # nothing half-written
    ds = miniplm.write_dataset(tmp_path / "d", [[], np.arange(4, 9)], vocab_size=VOCAB)
    assert [len(ds[0]), ds[1].tolist()] == [0, [4, 5, 6, 7, 8]]


def test_view_gather_refuses_negative_positions(tmp_path: Path) -> None:
    ds = miniplm.write_dataset(
        tmp_path / "d", [np.arange(4, 20), np.arange(4, 6), []], vocab_size=VOCAB
    )
    view = ds.select(np.array([0, 2]))
    with pytest.raises(IndexError, match="negative position -1 in a view of 2"):
        view.gather(np.array([-1]), 4)
    batch, lens = view.gather(np.array([1, 0]), 4)
    assert batch.tolist() == [[0, 0, 0, 0], [4, 5, 6, 7]] and lens.tolist() == [0, 4]
