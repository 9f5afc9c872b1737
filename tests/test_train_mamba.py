"""`miniplm train --arch mamba`: the mamba presets, a tiny Mamba student trained through
the fused head loss, resumed from a checkpoint to the uninterrupted run's curve, reloaded
with AutoModelForCausalLM and evaluated with `miniplm eval --data`; `[students] arch`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import VOCAB, _curve, patterned
from transformers import AutoModelForCausalLM, MambaForCausalLM

from miniplm.cli import main as cli_main
from miniplm.errors import InputError
from miniplm.pipeline.config import load_config
from miniplm.training.losses import head_losses
from miniplm.training.model import flops_per_token as _flops_per_token
from miniplm.training.presets import count_parameters, preset_config

from tiny_lm import reference_scores, torchrun_miniplm


def test_mamba_presets_and_refusals() -> None:
    cfg = preset_config("tiny", VOCAB, "mamba", eos_token_id=2)
    assert cfg.model_type == "mamba" and cfg.tie_word_embeddings
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.state_size) == (64, 2, 16)
    assert (cfg.eos_token_id, cfg.pad_token_id) == (2, None)
    # The paper's Mamba-130M: mamba-130m's shape, ~129M parameters with its 50280 vocab.
    big = preset_config("130M", 50280, "mamba")
    assert (big.hidden_size, big.num_hidden_layers, big.intermediate_size) == (768, 24, 1536)
    with torch.device("meta"):
        n = count_parameters(AutoModelForCausalLM.from_config(big))
    assert 128e6 < n < 131e6, n
    with pytest.raises(InputError, match=r"--preset '200M': unknown for --arch mamba.*130M"):
        preset_config("200M", VOCAB, "mamba")
    with pytest.raises(InputError, match=r"--preset '130M': unknown for --arch qwen2"):
        preset_config("130M", VOCAB, "qwen2")
    with pytest.raises(InputError, match=r"--arch 'rwkv': unknown"):
        preset_config("tiny", VOCAB, "rwkv")


def test_mamba_flops_have_no_attention_term() -> None:
    """MFU's FLOPs per token: 6 N plus, for Mamba, the selective scan (9 d_inner N_state
    per layer forward, x3 for training) instead of attention's 12 l d L."""
    with torch.device("meta"):
        m = AutoModelForCausalLM.from_config(preset_config("130M", 50280, "mamba"))
    n = count_parameters(m)
    assert _flops_per_token(m, 1024) == 6.0 * n + 27.0 * 24 * 1536 * 16
    assert _flops_per_token(m, 1024) == _flops_per_token(m, 4096)  # linear in L


def _args(data: Path, steps: int = 16) -> list[str]:
    return [
        "train",
        "--arch",
        "mamba",
        "--preset",
        "tiny",
        "--vocab-size",
        str(VOCAB),
        "--data",
        str(data),
        "--seq-len",
        "32",
        "--max-steps",
        str(steps),
        "--micro-batch-size",
        "8",
        "--global-batch-size",
        "16",
        "--lr",
        "1e-2",
        "--warmup-steps",
        "2",
        "--log-every",
        "1",
        "--save-every",
        "4",
        "--keep-checkpoints",
        "10",
        "--device",
        "cpu",
        "--quiet",
    ]


def test_mamba_trains_resumes_reloads_and_evaluates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seqs = patterned(tmp_path / "d", n=96)
    full = tmp_path / "full"
    assert cli_main([*_args(tmp_path / "d"), "--out", str(full)]) == 0
    loss = _curve(full)
    assert len(loss) == 16 and loss[-1] < loss[0] - 0.5, loss
    run = json.loads((full / "run.json").read_text())
    assert run["settings"]["arch"] == "mamba"

    # The final directory is a plain HF Mamba whose loss is the trainer's fused head loss.
    model = AutoModelForCausalLM.from_pretrained(full / "final").eval()
    assert isinstance(model, MambaForCausalLM) and model.config.hidden_size == 64
    x = torch.tensor(np.stack([s[:20] for s in seqs[:8]]).astype(np.int64))
    with torch.no_grad():
        hf = model(input_ids=x, labels=x).loss.item()
        hidden = model.get_decoder()(input_ids=x[:, :-1]).last_hidden_state.reshape(-1, 64)
        _, ce, _ = head_losses(
            hidden, model.get_output_embeddings().weight, x[:, 1:].reshape(-1), chunk=7
        )
    assert abs(hf - ce.item() / hidden.shape[0]) < 1e-5

    # Resume from a checkpoint of the run (the state a kill after step 8 leaves behind):
    # the same curve and bit-identical weights.
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "final")
    (cut / "summary.json").unlink()
    for c in (cut / "checkpoints").iterdir():
        if int(c.name.split("-")[1]) > 8:
            shutil.rmtree(c)
    assert cli_main([*_args(tmp_path / "d"), "--out", str(cut), "--resume"]) == 0
    assert _curve(cut) == loss
    a = AutoModelForCausalLM.from_pretrained(full / "final").state_dict()
    b = AutoModelForCausalLM.from_pretrained(cut / "final").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # `miniplm eval --data` on it: the held-out NLL of the plain float64 computation.
    out = tmp_path / "eval.json"
    argv = ["eval", "--model", str(full / "final"), "--data", str(tmp_path / "d")]
    assert cli_main([*argv, "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    h = json.loads(out.read_text())["heldout"]
    nll, cnt = reference_scores(full / "final", seqs, ignore_id=h["ignore_id"])
    assert h["scored_tokens"] == int(cnt.sum()) > 1000
    assert h["mean_nll"] == pytest.approx(nll.sum() / cnt.sum(), rel=1e-5)


def test_students_arch_accepts_the_three_families(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    for arch in ("qwen2", "llama", "mamba"):
        f.write_text(f'[students]\narch = "{arch}"\n')
        assert load_config(str(f), "smoke").students.arch == arch
    f.write_text('[students]\narch = "mamba"\npreset = "200M"\n')
    with pytest.raises(InputError, match=r"students\.preset '200M': unknown for students\.arch"):
        load_config(str(f), "smoke")
    f.write_text('[students]\narch = "gpt2"\n')
    with pytest.raises(InputError, match=r"students\.arch 'gpt2': unknown"):
        load_config(str(f), "smoke")


def test_mamba_grad_checkpointing_keeps_the_curve(tmp_path: Path) -> None:
    patterned(tmp_path / "d", n=32)
    args = [*_args(tmp_path / "d", steps=3)]
    assert cli_main([*args, "--out", str(tmp_path / "plain")]) == 0
    assert cli_main([*args, "--grad-checkpointing", "--out", str(tmp_path / "gc")]) == 0
    np.testing.assert_allclose(_curve(tmp_path / "gc"), _curve(tmp_path / "plain"), rtol=1e-5)


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_mamba_fsdp_two_ranks_equal_one_process(tmp_path: Path) -> None:
    """FSDP2 shards each Mamba block (get_decoder().layers) like a transformer layer."""
    patterned(tmp_path / "d", n=32)
    args = [*_args(tmp_path / "d", steps=3), "--micro-batch-size", "4"]
    torchrun_miniplm([*args, "--fsdp", "--out", str(tmp_path / "two")])
    assert cli_main([*args, "--out", str(tmp_path / "one")]) == 0
    np.testing.assert_allclose(_curve(tmp_path / "two"), _curve(tmp_path / "one"), rtol=1e-4)
    assert (tmp_path / "two" / "final" / "model.safetensors").is_file()
