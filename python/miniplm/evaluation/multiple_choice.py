"""Zero-shot multiple choice from local jsonl files, computed the way lm-evaluation-harness
(lm-eval 0.4) computes its ``multiple_choice`` tasks, without lm-eval installed.

Each line is ``{"context": str, "choices": [str, ...], "label": int}``. A choice's score
is the log-likelihood of its tokens after the context's; the strings are taken as given
(a task that wants "context" + " " + choice puts the space into the choice). As lm-eval
does it (``LM.loglikelihood``, ``TemplateLM._encode_pair``, ``HFLM._loglikelihood_tokens``):

- trailing whitespace of the context moves to the front of the continuation;
- ``context`` and ``whole = context + continuation`` are encoded separately and the
  continuation tokens are ``whole[len(context_enc):]``;
- an empty context is replaced by the prefix token (BOS, else EOS), unless the
  continuation already starts with it;
- the input is ``(context_enc + continuation_enc)[-(max_length + 1):][:-1]`` (left
  truncation) and the continuation is read from the last positions.

``acc`` is the share of documents whose highest log-likelihood is the label's; ``acc_norm``
ranks by log-likelihood divided by the choice's length in characters (not tokens, not
bytes): lm-eval ``ConfigurableTask.process_results`` in ``lm_eval/api/task.py``, branch
``OUTPUT_TYPE == "multiple_choice"``::

    completion_len = np.array([float(len(i)) for i in choices])
    pred = np.argmax(lls)
    pred_norm = np.argmax(lls / completion_len)

where ``choices`` are the task's choice strings without the target delimiter. Ties go to
the first choice (``np.argmax``)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from miniplm._deps import require
from miniplm._progress import progress_bar
from miniplm.data import PathLike
from miniplm.errors import FormatError, InputError
from miniplm.evaluation.model import EvalModel, prefix_token_id
from miniplm.models import model_device
from miniplm.scoring.nll import ChunkedScorer

if TYPE_CHECKING:  # mypy checks the real torch; at run time, a missing torch names its extra
    import torch
else:
    torch = require("torch")

# lm-eval's default when neither the config nor the tokenizer gives a context length.
DEFAULT_MAX_LENGTH = 2048
_TOKENIZER_INFINITY = 1e29  # transformers' "model_max_length not set" is 1e30


@dataclass(frozen=True)
class MCDoc:
    context: str
    choices: tuple[str, ...]
    label: int
    line: int  # 1-based line number in its file


def load_mc_file(path: PathLike) -> list[MCDoc]:
    """Read and validate a multiple-choice jsonl file; errors name the file and line."""
    p = Path(path)
    docs: list[MCDoc] = []
    with open(p, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            docs.append(_parse_line(p, lineno, raw))
    if not docs:
        raise FormatError(f"{p}: no documents (expected one JSON object per line)")
    return docs


def _parse_line(p: Path, lineno: int, raw: str) -> MCDoc:
    where = f"{p}:{lineno}"
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        raise FormatError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise FormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in ("context", "choices", "label") if k not in obj]
    if missing:
        raise FormatError(
            f"{where}: missing key(s) {', '.join(map(repr, missing))} "
            '(each line is {"context": str, "choices": [str, ...], "label": int})'
        )
    context, choices, label = obj["context"], obj["choices"], obj["label"]
    if not isinstance(context, str):
        raise FormatError(f"{where}: 'context' must be a string, got {type(context).__name__}")
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise FormatError(f"{where}: 'choices' must be a list of strings")
    if not choices:
        raise FormatError(f"{where}: 'choices' is empty")
    empty = [i for i, c in enumerate(choices) if not c]
    if empty:
        raise FormatError(
            f"{where}: choice {empty[0]} is the empty string (acc_norm divides by its length)"
        )
    if isinstance(label, bool) or not isinstance(label, int):
        raise FormatError(f"{where}: 'label' must be an integer, got {label!r}")
    if not 0 <= label < len(choices):
        raise FormatError(
            f"{where}: label {label} is out of range for {len(choices)} choices "
            f"(0..{len(choices) - 1})"
        )
    return MCDoc(context, tuple(choices), label, lineno)


def _encode(tokenizer: Any, text: str, prefix_str: str | None) -> list[int]:
    """lm-eval ``HFLM.tok_encode`` with ``add_bos_token`` unset: the tokenizer's own
    special-token default, except that a string already starting with the prefix
    token's text gets no special tokens."""
    kwargs: dict[str, Any] = {}
    if prefix_str is not None and text.startswith(prefix_str):
        kwargs["add_special_tokens"] = False
    return list(tokenizer.encode(text, **kwargs))


def encode_pair(
    tokenizer: Any, context: str, continuation: str, prefix_id: int
) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens) as lm-eval's ``loglikelihood`` makes them."""
    if context == "":
        cont = list(tokenizer.encode(continuation, add_special_tokens=False))
        if cont and cont[0] == prefix_id:
            return cont[:1], cont[1:]
        return [prefix_id], cont
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    prefix_str = tokenizer.decode(prefix_id)
    whole = _encode(tokenizer, context + continuation, prefix_str)
    ctx = _encode(tokenizer, context, prefix_str)
    return ctx, whole[len(ctx) :]


def max_length_of(em: EvalModel, seq_len: int | None = None) -> int:
    """Context window for scoring: ``seq_len``, else lm-eval's rule (config
    ``n_positions`` / ``max_position_embeddings`` / ``n_ctx``, then the tokenizer's
    ``model_max_length``, then 2048)."""
    if seq_len is not None:
        return seq_len
    cfg = em.model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        v = getattr(cfg, name, None)
        if v:
            return int(v)
    tml = getattr(em.tokenizer, "model_max_length", None)
    if tml and tml < _TOKENIZER_INFINITY:
        return int(tml)
    return DEFAULT_MAX_LENGTH


def loglikelihoods(
    model: Any,
    requests: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    batch_size: int,
    max_length: int,
    chunk_tokens: int | None = None,
    progress: bool = False,
    desc: str = "choices",
) -> npt.NDArray[np.float64]:
    """Sum of log p(continuation token | prefix) for each (context, continuation) token
    pair, in float64 from fp32 log-softmax. Batches are right-padded and run without an
    attention mask: under causal attention no real position sees the padding."""
    if batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    scorer = ChunkedScorer(model, None, chunk_tokens)
    device = model_device(model)
    inps: list[list[int]] = []
    conts: list[list[int]] = []
    for ctx, cont in requests:
        if not cont:
            raise InputError("a continuation encodes to no tokens")
        if len(cont) > max_length:
            raise InputError(
                f"a continuation of {len(cont)} tokens exceeds the context window {max_length}"
            )
        inps.append((list(ctx) + list(cont))[-(max_length + 1) :][:-1])
        conts.append(list(cont))
    out = np.zeros(len(requests), dtype=np.float64)
    # Longest first (ties by request order): similar lengths share a batch.
    order = sorted(range(len(inps)), key=lambda i: -len(inps[i]))
    bar = progress_bar(len(order), "choice", desc, progress)
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            width = max(len(inps[i]) for i in idx)
            x = torch.zeros((len(idx), width), dtype=torch.long)
            rows: list[int] = []
            cols: list[int] = []
            targets: list[int] = []
            for r, i in enumerate(idx):
                x[r, : len(inps[i])] = torch.tensor(inps[i], dtype=torch.long)
                first = len(inps[i]) - len(conts[i])
                rows.extend([r] * len(conts[i]))
                cols.extend(range(first, len(inps[i])))
                targets.extend(conts[i])
            decoded = scorer.decoder(input_ids=x.to(device), use_cache=False)
            hidden: torch.Tensor = decoded.last_hidden_state
            rt = torch.tensor(rows, device=device)
            ct = torch.tensor(cols, device=device)
            tt = torch.tensor(targets, device=device)
            acc = torch.zeros(len(idx), dtype=torch.float64, device=device)
            for a in range(0, len(rows), scorer.chunk_tokens):
                b = a + scorer.chunk_tokens
                logits = scorer.logits(hidden[rt[a:b], ct[a:b]])
                lp = logits.gather(1, tt[a:b, None])[:, 0] - torch.logsumexp(logits, -1)
                acc.index_add_(0, rt[a:b], lp.double())
            out[idx] = acc.cpu().numpy()
            if bar is not None:
                bar.update(len(idx))
    if bar is not None:
        bar.close()
    return out


def score_docs(
    em: EvalModel,
    docs: Sequence[MCDoc],
    *,
    batch_size: int = 16,
    seq_len: int | None = None,
    source: str = "<docs>",
    progress: bool = False,
) -> list[npt.NDArray[np.float64]]:
    """Each document's per-choice log-likelihoods."""
    tok = em.require_tokenizer("multiple-choice evaluation")
    prefix = prefix_token_id(tok, em.model.config)
    requests: list[tuple[list[int], list[int]]] = []
    for d in docs:
        for k, choice in enumerate(d.choices):
            ctx, cont = encode_pair(tok, d.context, choice, prefix)
            if not cont:
                raise FormatError(f"{source}:{d.line}: choice {k} {choice!r} encodes to no tokens")
            requests.append((ctx, cont))
    lls = loglikelihoods(
        em.model,
        requests,
        batch_size=batch_size,
        max_length=max_length_of(em, seq_len),
        progress=progress,
        desc=Path(source).stem,
    )
    per_doc = []
    i = 0
    for d in docs:
        per_doc.append(lls[i : i + len(d.choices)])
        i += len(d.choices)
    return per_doc


def _mean_stderr(x: npt.NDArray[np.float64]) -> float | None:
    """lm-eval's ``mean_stderr``: sample standard deviation / sqrt(n)."""
    if len(x) < 2:
        return None
    return float(np.std(x, ddof=1) / math.sqrt(len(x)))


def mc_metrics(docs: Sequence[MCDoc], lls: Sequence[npt.NDArray[np.float64]]) -> dict[str, Any]:
    """acc and acc_norm (with lm-eval's standard errors) from per-choice log-likelihoods."""
    acc = np.zeros(len(docs))
    acc_norm = np.zeros(len(docs))
    for j, (d, ll) in enumerate(zip(docs, lls)):
        completion_len = np.array([float(len(c)) for c in d.choices])
        acc[j] = float(int(np.argmax(ll)) == d.label)
        acc_norm[j] = float(int(np.argmax(ll / completion_len)) == d.label)
    return {
        "docs": len(docs),
        "acc": float(acc.mean()) if len(docs) else None,
        "acc_stderr": _mean_stderr(acc),
        "acc_norm": float(acc_norm.mean()) if len(docs) else None,
        "acc_norm_stderr": _mean_stderr(acc_norm),
    }


def limited(n: int, limit: int | float | None) -> int:
    """How many of ``n`` documents ``--limit`` keeps, as lm-eval counts: an int is a
    number of documents, a float below 1 a fraction (rounded up)."""
    if limit is None:
        return n
    if limit < 0:
        raise InputError(f"--limit {limit}: must be >= 0")
    if isinstance(limit, float) and limit < 1:
        return min(n, math.ceil(n * limit))
    return min(n, int(limit))


def evaluate_mc_file(
    em: EvalModel,
    path: PathLike,
    *,
    batch_size: int = 16,
    seq_len: int | None = None,
    limit: int | float | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Zero-shot acc / acc_norm of ``em`` on one jsonl file (its first ``limit`` documents,
    as :func:`limited` counts them)."""
    docs = load_mc_file(path)
    docs = docs[: limited(len(docs), limit)]
    lls = score_docs(
        em, docs, batch_size=batch_size, seq_len=seq_len, source=os.fspath(path), progress=progress
    )
    return {"source": "mc-file", "path": os.path.abspath(path), **mc_metrics(docs, lls)}
