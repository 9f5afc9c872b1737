"""LM loss on a text set (``evaluate(texts=...)``, ``miniplm eval --texts``) against a slow
token-by-token loop of Hugging Face's own loss, its bits per byte and standard errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from miniplm.cli import main
from miniplm.errors import InputError
from miniplm.evaluation import evaluate
from miniplm.evaluation.texts import ratio_stderr

from tiny_lm import make_model, tiny_bpe

VOCAB = 300
DOCS = [
    "It is a truth universally acknowledged, that a single man in possession of a good "
    "fortune, must be in want of a wife.",
    "Call me Ishmael.",
    "Naïve café — «quotes», and windows: " + "the whale, the sea, the ship; " * 3,
    "To be, or not to be, that is the question.",
]


def _tokenizer(model_dir: Path) -> PreTrainedTokenizerFast:
    tok = tiny_bpe(DOCS * 5, VOCAB, ["<s>", "</s>"])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(model_dir)
    return fast


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("texts")
    model = make_model(root / "model", "qwen2", seed=4, vocab=VOCAB)
    tok = _tokenizer(model)
    return {"root": root, "model": model, "tok": tok}


def _hf_reference(
    model_dir: Path, tok: Any, docs: list[str], width: int, by_token: bool
) -> list[float]:
    """Each document's summed NLL from HF's own loss (``labels``). Window j of
    [BOS] + ids predicts ids[j*W : (j+1)*W] from that window's tokens only. ``by_token``:
    each predicted token alone, on the window's prefix up to it, every other label
    ignored (slow, obviously right); else one call per window, the mean loss times the
    window's predictions."""
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # hundreds of tiny forwards: threads only contend
    try:
        return _hf_sums(model, tok, docs, width, by_token)
    finally:
        torch.set_num_threads(threads)


def _hf_sums(model: Any, tok: Any, docs: list[str], width: int, by_token: bool) -> list[float]:
    out = []
    with torch.no_grad():
        for d in docs:
            seq = [tok.bos_token_id, *tok.encode(d, add_special_tokens=False)]
            total = 0.0
            for s in range(0, len(seq) - 1, width):
                win = seq[s : s + width + 1]
                if not by_token:
                    x = torch.tensor([win])
                    total += float(model(input_ids=x, labels=x).loss) * (len(win) - 1)
                    continue
                for k in range(1, len(win)):
                    x = torch.tensor([win[: k + 1]])
                    labels = torch.full_like(x, -100)
                    labels[0, k] = win[k]
                    total += float(model(input_ids=x, labels=labels).loss)
            out.append(total)
    return out


@pytest.mark.parametrize("seq_len", [None, 11])
def test_text_loss_equals_hf_loss(tiny: dict[str, Any], seq_len: int | None) -> None:
    width = seq_len or 128  # the tiny model's max_position_embeddings
    # Token by token for the windowed case; per window (still HF's loss) for the one
    # window per document of the model's length.
    want = _hf_reference(tiny["model"], tiny["tok"], DOCS, width, by_token=seq_len is not None)
    r = evaluate(tiny["model"], texts=DOCS, seq_len=seq_len, device="cpu", batch_size=3)["texts"]
    tokens = [len(tiny["tok"].encode(d, add_special_tokens=False)) for d in DOCS]
    nbytes = [len(d.encode()) for d in DOCS]
    assert r["documents"] == len(DOCS)
    assert r["tokens"] == sum(tokens) and r["bytes"] == sum(nbytes)
    assert r["seq_len"] == width
    assert r["windows"] == sum(math.ceil(t / width) for t in tokens)
    if seq_len is not None:
        assert r["windows"] > len(DOCS)  # the long document spans several windows
    assert r["nll_sum"] == pytest.approx(sum(want), rel=1e-5)
    assert r["mean_nll"] == pytest.approx(sum(want) / sum(tokens), rel=1e-5)
    assert r["bits_per_byte"] == pytest.approx(sum(want) / math.log(2) / sum(nbytes), rel=1e-5)
    assert r["perplexity"] == pytest.approx(math.exp(r["mean_nll"]), rel=1e-12)
    # Standard errors over documents: the ratio estimator, by hand.
    a, t = np.array(want), np.array(tokens, dtype=float)
    mean = a.sum() / t.sum()
    n = len(a)
    se = math.sqrt(n / (n - 1) * ((a - mean * t) ** 2).sum()) / t.sum()
    assert r["mean_nll_stderr"] == pytest.approx(se, rel=1e-4)
    assert r["stderr_unit"] == "documents"


def test_batch_size_does_not_change_the_loss(tiny: dict[str, Any]) -> None:
    a = evaluate(tiny["model"], texts=DOCS, seq_len=17, device="cpu", batch_size=1)["texts"]
    b = evaluate(tiny["model"], texts=DOCS, seq_len=17, device="cpu", batch_size=64)["texts"]
    assert a["nll_sum"] == pytest.approx(b["nll_sum"], rel=1e-6)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.1, 10.0), min_size=2, max_size=30), st.floats(1.0, 50.0))
def test_ratio_stderr_with_equal_units_is_the_plain_mean_stderr(a: list[float], b: float) -> None:
    x = np.array(a)
    want = np.std(x / b, ddof=1) / math.sqrt(len(x))
    assert ratio_stderr(x, np.full(len(x), b)) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_jsonl_groups_and_cli(tiny: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "target.jsonl"
    rows = [{"text": d, "source": "s", "work": "AB"[i % 2]} for i, d in enumerate(DOCS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "r.json"
    argv = ["eval", "--model", str(tiny["model"]), "--texts", str(path), "--texts-group", "work"]
    assert main([*argv, "--device", "cpu", "--seq-len", "31", "--out", str(out), "--quiet"]) == 0
    r = json.loads(out.read_text())["texts"]
    direct = evaluate(tiny["model"], texts=DOCS, seq_len=31, device="cpu")["texts"]
    assert r["nll_sum"] == pytest.approx(direct["nll_sum"], rel=1e-6)
    assert r["path"] == str(path.resolve())
    groups = r["by_group"]
    assert list(groups) == ["A", "B"]
    assert sum(g["tokens"] for g in groups.values()) == r["tokens"]
    assert sum(g["nll_sum"] for g in groups.values()) == pytest.approx(r["nll_sum"], rel=1e-9)
    assert groups["A"]["documents"] == 2


def test_errors(tiny: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no documents"):
        evaluate(tiny["model"], texts=[], device="cpu")
    with pytest.raises(FileNotFoundError):
        evaluate(tiny["model"], texts=tmp_path / "missing.jsonl", device="cpu")
    small = make_model(tmp_path / "small", "llama", vocab=97)
    tiny["tok"].save_pretrained(small)
    with pytest.raises(InputError, match="outside the model's vocabulary"):
        evaluate(small, texts=DOCS, device="cpu")


def test_one_document_takes_its_windows_as_units(tiny: dict[str, Any]) -> None:
    r = evaluate(tiny["model"], texts=[DOCS[2]], seq_len=11, device="cpu")["texts"]
    assert r["documents"] == 1 and r["windows"] > 2
    assert r["stderr_unit"] == "windows"
    assert r["bytes"] == len(DOCS[2].encode())
    assert r["mean_nll_stderr"] is not None and r["mean_nll_stderr"] > 0
    assert r["bits_per_byte"] == pytest.approx(r["nll_sum"] / math.log(2) / r["bytes"])
