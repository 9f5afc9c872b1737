"""``miniplm eval``: held-out loss / perplexity on token shards, loss (nats per token, bits
per byte) on a text set, zero-shot multiple choice from local jsonl files, and
lm-evaluation-harness tasks, for one model.

Importing this package is cheap: torch and friends load when ``evaluate`` runs."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miniplm._progress import library_bars, show_progress
from miniplm.errors import InputError

if TYPE_CHECKING:
    from miniplm.data import PathLike
    from miniplm.evaluation.model import ModelLike
    from miniplm.evaluation.texts import Texts

__all__ = ["evaluate"]


def _task_name(path: str, taken: dict[str, Any]) -> str:
    name = Path(path).stem
    if name in taken:
        name = os.path.abspath(path)
    return name


def _texts_input(texts: Any) -> str | None:
    if texts is None:
        return None
    if isinstance(texts, (str, os.PathLike)):
        return os.path.abspath(texts)
    return f"<{len(texts)} documents>"


def evaluate(
    model: ModelLike,
    *,
    data: PathLike | None = None,
    texts: Texts | None = None,
    texts_group: str | None = None,
    mc_files: Sequence[PathLike] = (),
    tasks: Sequence[str] = (),
    include_path: PathLike | None = None,
    batch_size: int = 16,
    device: str = "auto",
    dtype: str | None = None,
    max_instances: int | None = None,
    seq_len: int | None = None,
    selection: PathLike | None = None,
    by_source: bool = False,
    tokenizer: Any = None,
    num_fewshot: int = 0,
    limit: int | float | None = None,
    ignore_id: int | None = None,
    trust_remote_code: bool = False,
    allow_tokenizer_mismatch: bool = False,
    out: PathLike | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` (an HF model directory, a .gguf file, or an already-loaded
    ``(model, tokenizer)`` pair, used on its own device and dtype) and return the results
    (also written to ``out`` as JSON when given):

    - ``data``: held-out token dataset -> ``results["heldout"]`` with the token-weighted
      ``mean_nll = sum(nll_sum) / sum(n_scored)`` and ``perplexity = exp(mean_nll)``,
      scored exactly as ``miniplm score`` does (``selection`` / ``max_instances`` limit
      the instances, ``seq_len`` cuts them to ``seq_len + 1`` tokens; ``by_source``
      adds ``results["heldout"]["by_source"]``, the same figures per source of a corpus
      written by ``miniplm tokenize``, from the same pass);
    - ``texts``: a text file (any format ``miniplm tokenize`` reads: jsonl with a
      ``text`` field, parquet, .txt, ...) or a list of strings -> ``results["texts"]``:
      nats per token, bits per byte, token and byte counts and standard errors over
      documents, with the model's tokenizer, in windows of the model's length (or
      ``seq_len``); ``texts_group`` names a field (e.g. ``"work"``) to break it down by;
    - ``mc_files``: local jsonl multiple-choice tasks, scored like lm-eval;
    - ``tasks``: lm-evaluation-harness task names (``include_path``: local task YAMLs);

    and ``results["average"]``: the mean over tasks of acc_norm where a task reports
    it, else acc. ``tokenizer`` (a path or a tokenizer object) replaces the model's own
    for the text tasks."""
    from miniplm.evaluation.model import load_eval_model
    from miniplm.evaluation.report import average, write_json

    task_list = [t.strip() for item in tasks for t in str(item).split(",") if t.strip()]
    if data is None and texts is None and not mc_files and not task_list:
        raise InputError("nothing to evaluate: give --data, --texts, --mc-file or --tasks")
    if selection is not None and data is None:
        raise InputError("--selection needs --data")
    if by_source and data is None:
        raise InputError("--by-source needs --data")
    if num_fewshot < 0:
        raise InputError("--num-fewshot must be >= 0")
    if out is not None:
        from miniplm._atomic import check_spares_inputs

        text_file = texts if isinstance(texts, (str, os.PathLike)) else None
        inputs = [model, data, text_file, selection, tokenizer, include_path, *mc_files]
        check_spares_inputs(out, inputs)
    if task_list:
        from miniplm._deps import require

        require("lm_eval", "eval")  # before spending time on loading the model
    progress = show_progress(progress)
    t0 = time.perf_counter()
    with library_bars(progress):  # transformers' "Loading weights" bar: ours or none
        em = load_eval_model(
            model,
            device=device,
            dtype=dtype,
            tokenizer=tokenizer,
            need_tokenizer=bool(mc_files or task_list or texts is not None),
            data=None if data is None else os.fspath(data),
            ignore_id=ignore_id,
            trust_remote_code=trust_remote_code,
        )
    results: dict[str, Any] = {
        "model": em.describe(),
        "inputs": {
            "data": None if data is None else os.path.abspath(data),
            "selection": None if selection is None else os.path.abspath(selection),
            "max_instances": max_instances,
            "by_source": by_source,
            "texts": _texts_input(texts),
            "mc_files": [os.path.abspath(f) for f in mc_files],
            "tasks": task_list,
            "include_path": None if include_path is None else os.path.abspath(include_path),
        },
        "settings": {
            "batch_size": batch_size,
            "seq_len": seq_len,
            "num_fewshot": num_fewshot,
            "limit": limit,
        },
        "heldout": None,
        "texts": None,
        "tasks": {},
        "average": None,
    }
    if data is not None:
        from miniplm.evaluation.heldout import heldout_nll

        results["heldout"] = heldout_nll(
            em,
            data,
            batch_size=batch_size,
            selection=selection,
            max_instances=max_instances,
            seq_len=seq_len,
            allow_tokenizer_mismatch=allow_tokenizer_mismatch,
            by_source=by_source,
            progress=progress,
        )
    if texts is not None:
        from miniplm.evaluation.texts import text_loss

        results["texts"] = text_loss(
            em,
            texts,
            seq_len=seq_len,
            batch_size=batch_size,
            group_field=texts_group,
            progress=progress,
        )
    task_results: dict[str, dict[str, Any]] = results["tasks"]
    if mc_files:
        from miniplm.evaluation.multiple_choice import evaluate_mc_file

        for f in mc_files:
            name = _task_name(os.fspath(f), task_results)
            task_results[name] = evaluate_mc_file(
                em, f, batch_size=batch_size, seq_len=seq_len, limit=limit, progress=progress
            )
    if task_list:
        from miniplm.evaluation.harness import run_harness

        harness = run_harness(
            em,
            task_list,
            include_path=include_path,
            batch_size=batch_size,
            num_fewshot=num_fewshot,
            limit=limit,
            seq_len=seq_len,
        )
        for name, r in harness.items():
            task_results[name if name not in task_results else f"lm-eval:{name}"] = r
    results["average"] = average(task_results)
    results["elapsed_s"] = round(time.perf_counter() - t0, 3)
    if out is not None:
        write_json(out, results)
    return results
