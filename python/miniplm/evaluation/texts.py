"""Language-modelling loss on a text set, for any model with its own tokenizer: nats per
token, and bits per byte, which students with different tokenizers share.

Each document is encoded without special tokens and preceded by the prefix token (BOS,
else EOS: lm-eval's ``prefix_token_id``), so that every token of it is predicted, the
first one included. The sequence is cut into disjoint windows of ``L + 1`` tokens that
overlap by one (``L`` predictions each; ``L`` is ``seq_len``, else the model's context
length): window ``j`` predicts tokens ``j*L + 1 .. (j+1)*L`` of it from the tokens of that
window only. Bits per byte = summed NLL / ln 2 / UTF-8 bytes of the documents.

Standard errors treat documents as the sampled units (windows of one document are not
independent): the ratio estimator's ``sqrt(n / (n - 1) * sum((a_i - R b_i)^2)) / sum(b_i)``
for ``R = sum(a_i) / sum(b_i)``, ``a_i`` a document's NLL and ``b_i`` its tokens (bytes for
bits per byte). With a single document, its windows are the units."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt

from miniplm._deps import require
from miniplm._progress import progress_bar
from miniplm.data import PathLike
from miniplm.errors import InputError
from miniplm.evaluation.figures import perplexity
from miniplm.evaluation.model import EvalModel, prefix_token_id
from miniplm.evaluation.multiple_choice import max_length_of
from miniplm.models import model_device
from miniplm.scoring.nll import ChunkedScorer

if TYPE_CHECKING:  # mypy checks the real torch; at run time, a missing torch names its extra
    import torch
else:
    torch = require("torch")

# A file (any format `miniplm tokenize` reads) or the documents themselves.
Texts = Union[PathLike, Sequence[str]]


def read_texts(
    texts: Texts, *, text_field: str = "text", group_field: str | None = None
) -> tuple[list[str], list[str]]:
    """``(documents, groups)``: the texts of a file (or the given strings) and each one's
    ``group_field`` value ("" without one). Read errors name the file."""
    if isinstance(texts, (str, os.PathLike)):
        from miniplm.corpus.readers import discover, read_documents

        files = discover([texts])
        docs = list(read_documents(files, text_field, group_field or None))
        return [t for t, _ in docs], [g if group_field else "" for _, g in docs]
    if isinstance(texts, bytes) or not all(isinstance(t, str) for t in texts):
        raise InputError("texts must be a path or a list of strings")
    if group_field:
        raise InputError("a group field needs texts from a file")
    return list(texts), [""] * len(texts)


def ratio_stderr(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float | None:
    """Standard error of ``sum(a) / sum(b)`` over the units ``(a_i, b_i)``."""
    n = len(a)
    den = float(b.sum())
    if n < 2 or den == 0:
        return None
    r = float(a.sum()) / den
    return math.sqrt(n / (n - 1) * float(((a - r * b) ** 2).sum())) / den


def _summary(
    nll: npt.NDArray[np.float64], tokens: npt.NDArray[np.float64], nbytes: npt.NDArray[np.float64]
) -> dict[str, Any]:
    scored, size = int(tokens.sum()), int(nbytes.sum())
    mean = float(nll.sum()) / scored if scored else None
    bits = nll / math.log(2)
    return {
        "tokens": scored,
        "bytes": size,
        "nll_sum": float(nll.sum()),
        "mean_nll": mean,
        "mean_nll_stderr": ratio_stderr(nll, tokens),
        "perplexity": perplexity(mean),
        "bits_per_byte": float(bits.sum()) / size if size else None,
        "bits_per_byte_stderr": ratio_stderr(bits, nbytes),
    }


def text_loss(
    em: EvalModel,
    texts: Texts,
    *,
    seq_len: int | None = None,
    batch_size: int = 16,
    text_field: str = "text",
    group_field: str | None = None,
    chunk_tokens: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Loss of ``em`` on the documents of ``texts`` (see the module): the totals, and per
    value of ``group_field`` (e.g. ``"work"`` of the target set) under ``"by_group"``."""
    if batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    if seq_len is not None and seq_len < 1:
        raise InputError("--seq-len must be at least 1")
    where = os.fspath(texts) if isinstance(texts, (str, os.PathLike)) else "<texts>"
    docs, groups = read_texts(texts, text_field=text_field, group_field=group_field)
    if not docs:
        raise InputError(f"{where}: no documents to evaluate")
    tok = em.require_tokenizer("the text loss")
    prefix = prefix_token_id(tok, em.model.config)
    width = max_length_of(em, seq_len)
    # verbose=False: documents longer than the model are expected (they are windowed).
    encoded = tok(docs, add_special_tokens=False, verbose=False)["input_ids"]
    scorer = ChunkedScorer(em.model, None, chunk_tokens)
    windows: list[list[int]] = []  # L + 1 tokens at most
    owner: list[int] = []  # the document of each window
    for i, ids in enumerate(encoded):
        seq = [prefix, *ids]
        if seq and max(seq) >= scorer.vocab_size:
            raise InputError(
                f"{where}: document {i + 1} encodes to token {max(seq)}, outside the model's "
                f"vocabulary of {scorer.vocab_size}: the tokenizer is not the model's"
            )
        for s in range(0, len(ids), width):
            windows.append(seq[s : s + width + 1])
            owner.append(i)
    device = model_device(em.model)
    win_nll = np.zeros(len(windows), dtype=np.float64)
    win_cnt = np.zeros(len(windows), dtype=np.float64)
    order = sorted(range(len(windows)), key=lambda k: -len(windows[k]))  # little padding
    bar = progress_bar(sum(len(w) - 1 for w in windows), "tok", "texts", progress, unit_scale=True)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        x = torch.zeros((len(idx), len(windows[idx[0]])), dtype=torch.long)
        for r, k in enumerate(idx):
            x[r, : len(windows[k])] = torch.tensor(windows[k], dtype=torch.long)
        lens = torch.tensor([len(windows[k]) for k in idx], dtype=torch.long)
        nll, cnt = scorer.score(x.to(device), lens.to(device))
        win_nll[idx] = nll.cpu().numpy()
        win_cnt[idx] = cnt.cpu().numpy()
        if bar is not None:
            bar.update(int(lens.sum()) - len(idx))
    if bar is not None:
        bar.close()
    own = np.asarray(owner, dtype=np.int64)
    doc_nll = np.bincount(own, weights=win_nll, minlength=len(docs)).astype(np.float64)
    doc_cnt = np.bincount(own, weights=win_cnt, minlength=len(docs)).astype(np.float64)
    doc_bytes = np.array([len(d.encode("utf-8")) for d in docs], dtype=np.float64)
    if len(docs) > 1:
        result = _summary(doc_nll, doc_cnt, doc_bytes)
    else:  # one document: its windows are the units (bytes shared out by tokens)
        share = doc_bytes[0] * win_cnt / max(1.0, float(win_cnt.sum()))
        result = _summary(win_nll, win_cnt, share)
        result["bytes"] = int(doc_bytes[0])
    out: dict[str, Any] = {
        "path": os.path.abspath(texts) if isinstance(texts, (str, os.PathLike)) else None,
        "documents": len(docs),
        "windows": len(windows),
        **result,
        "stderr_unit": "documents" if len(docs) > 1 else "windows",
        "seq_len": width,
        "prefix_id": prefix,
        "tokenizer": em.tokenizer_from,
    }
    if group_field:
        names = list(dict.fromkeys(groups))
        g = np.array([names.index(x) for x in groups])
        out["group_field"] = group_field
        out["by_group"] = {
            name: {
                "documents": int((g == k).sum()),
                **_summary(doc_nll[g == k], doc_cnt[g == k], doc_bytes[g == k]),
            }
            for k, name in enumerate(names)
        }
    return out
