"""Tiny random causal LMs, tokenizers and token datasets for tests (nothing is
downloaded), and the torchrun launch the distributed tests share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

import miniplm

VOCAB = 97
EOS = 3


def write_docs(path: Path, docs: list[tuple[str, str]]) -> Path:
    """``(source, text)`` documents as a UTF-8 jsonl file of ``source`` / ``text`` rows."""
    lines = [json.dumps({"source": s, "text": t}, ensure_ascii=False) for s, t in docs]
    path.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return path


def tiny_bpe(
    texts: Iterable[str], vocab_size: int = 300, special: Sequence[str] = ("<eos>",)
) -> Tokenizer:
    """A byte-level BPE trained on ``texts``, every byte in its alphabet (so any text
    encodes), with ``special`` tokens first: the tests' tokenizer."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def make_model(
    out: Path,
    arch: str = "llama",
    seed: int = 0,
    vocab: int = VOCAB,
    hidden: int = 32,
    layers: int = 2,
    pad_token_id: int | None = None,
    **extra: Any,
) -> Path:
    """Save a random ``arch`` model (safetensors) to ``out`` and return ``out``."""
    torch.manual_seed(seed)
    common: dict[str, Any] = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        eos_token_id=EOS,
        bos_token_id=1,
        pad_token_id=pad_token_id,
        **extra,
    )
    model: PreTrainedModel
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(tie_word_embeddings=True, **common))
    else:
        raise ValueError(arch)
    # Wider weights than the init's 0.02 so the NLLs differ clearly between instances.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    model.save_pretrained(out)
    return out


def make_dataset(
    out: Path, n: int = 40, max_len: int = 40, seed: int = 0, vocab: int = VOCAB, eos_every: int = 7
) -> list[np.ndarray]:
    """Instances of mixed lengths (0 .. max_len) with EOS tokens inside them."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n):
        s = rng.integers(4, vocab, int(rng.integers(0, max_len + 1)))
        s[rng.random(len(s)) < 1.0 / eos_every] = EOS
        seqs.append(s)
    miniplm.write_dataset(out, seqs, vocab_size=vocab, overwrite=True)
    return seqs


def reference_scores(
    model_dir: Path, seqs: list[np.ndarray], ignore_id: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """The plain computation: each instance alone, the whole model in float64, full
    log-softmax, positions whose input token is ``ignore_id`` left out."""
    model = AutoModelForCausalLM.from_pretrained(model_dir).double().eval()
    nll = np.zeros(len(seqs))
    cnt = np.zeros(len(seqs), np.int64)
    with torch.no_grad():
        for i, s in enumerate(seqs):
            if len(s) < 2:
                continue
            x = torch.tensor(s[None, :-1].astype(np.int64))
            logp = torch.log_softmax(model(x).logits[0], -1)
            y = torch.tensor(s[1:].astype(np.int64))
            tok = -logp[torch.arange(len(y)), y]
            keep = torch.ones(len(y), dtype=torch.bool)
            if ignore_id is not None:
                keep = x[0] != ignore_id
            nll[i] = float(tok[keep].sum())
            cnt[i] = int(keep.sum())
    return nll, cnt


def one_thread_env() -> dict[str, str]:
    """This environment with one OpenMP thread per process: torchrun's ranks share the
    test machine's few cores."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun_miniplm(argv: list[str], nproc: int = 2) -> None:
    """``torchrun --standalone --nproc-per-node NPROC -m miniplm ARGV``; raises if it fails.
    Run as this interpreter's ``-m torch.distributed.run``: a ``torchrun`` on PATH may be
    another Python's, without this environment's miniplm."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc-per-node", str(nproc), "-m", "miniplm"]
    subprocess.run([*cmd, *argv], check=True, env=one_thread_env())
