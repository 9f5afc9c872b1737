"""lm-evaluation-harness tasks (hellaswag, arc_easy, ... or local YAML task configs) run
in-process on the already-loaded model: ``lm_eval.simple_evaluate`` over an ``HFLM``
wrapping the model object and its tokenizer. ``lm_eval`` is optional (``miniplm[eval]``)."""

from __future__ import annotations

import copy
import math
import os
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from miniplm._deps import require
from miniplm.data import PathLike
from miniplm.errors import InputError, MiniplmError
from miniplm.evaluation.model import EvalModel


def _task_manager(include_path: str | None, tasks: Sequence[str]) -> Any:
    """A TaskManager that knows ``tasks``. Indexing lm-eval's thousands of built-in task
    YAMLs takes seconds, so local tasks are first looked up in ``include_path`` alone."""
    manager_cls = require("lm_eval.tasks", "eval").TaskManager
    if include_path is not None:
        try:
            local = manager_cls(include_path=include_path, include_defaults=False)
        except TypeError:  # an lm-eval without include_defaults
            local = None
        if local is not None and all(t in local.all_tasks for t in tasks):
            return local
        return manager_cls(include_path=include_path)
    return manager_cls()


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return None if math.isnan(f) else f


def _task_metrics(entry: dict[str, Any]) -> dict[str, float | None]:
    """``{"acc,none": x, "acc_stderr,none": s, ...}`` -> ``{"acc": x, "acc_stderr": s}``
    (the first filter of each metric; non-numeric values such as "N/A" become None)."""
    out: dict[str, float | None] = {}
    for key, value in entry.items():
        if "," not in key:
            continue
        metric = key.split(",", 1)[0]
        if metric not in out:
            out[metric] = _number(value)
    return out


@contextmanager
def _global_rng_kept() -> Iterator[None]:
    """Restore Python's, numpy's and torch's global random states on exit:
    ``simple_evaluate`` reseeds them all (for its own reproducibility), which would
    otherwise change every later draw of the caller (a training run evaluating between
    steps, say)."""
    import numpy as np
    import torch

    states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    initialized = torch.cuda.is_initialized()  # type: ignore[no-untyped-call]
    cuda = torch.cuda.get_rng_state_all() if initialized else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def run_harness(
    em: EvalModel,
    tasks: Sequence[str],
    *,
    include_path: PathLike | None = None,
    batch_size: int = 16,
    num_fewshot: int = 0,
    limit: int | float | None = None,
    seq_len: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Run lm-eval ``tasks`` zero-shot (``num_fewshot``) and return, per task, its acc /
    acc_norm (with standard errors), every other numeric metric and the document count."""
    lm_eval = require("lm_eval", "eval")
    hflm = require("lm_eval.models.huggingface", "eval").HFLM
    if not tasks:
        return {}
    if batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    if include_path is not None and not os.path.isdir(include_path):
        raise FileNotFoundError(f"{include_path}: --include-path is not a directory")
    # HFLM sets a pad token on the tokenizer it is given: keep the caller's untouched.
    tok = copy.deepcopy(em.require_tokenizer("lm-evaluation-harness"))
    names = list(dict.fromkeys(tasks))
    tm = _task_manager(None if include_path is None else os.fspath(include_path), names)
    unknown = [t for t in names if t not in tm.all_tasks]
    if unknown:
        raise InputError(
            f"lm-eval does not know the task(s) {', '.join(unknown)}"
            + ("" if include_path is not None else " (local task YAMLs need --include-path)")
        )
    lm = hflm(pretrained=em.model, tokenizer=tok, batch_size=batch_size, max_length=seq_len)
    try:
        with _global_rng_kept():
            out = lm_eval.simple_evaluate(
                model=lm,
                tasks=names,
                num_fewshot=num_fewshot,
                task_manager=tm,
                limit=limit,
                log_samples=False,
            )
    except ValueError as e:  # lm-eval's complaints about the task list or configs
        raise InputError(f"lm-eval: {e}") from e
    if out is None:
        raise MiniplmError("lm-eval returned no results (not the main process?)")
    results: dict[str, Any] = out.get("results", {})
    n_samples: dict[str, Any] = out.get("n-samples", {})
    summary: dict[str, dict[str, Any]] = {}
    for name, entry in results.items():
        metrics = _task_metrics(entry)
        n = n_samples.get(name, {})
        summary[name] = {
            "source": "lm-eval",
            "docs": n.get("effective") if isinstance(n, dict) else None,
            "acc": metrics.get("acc"),
            "acc_stderr": metrics.get("acc_stderr"),
            "acc_norm": metrics.get("acc_norm"),
            "acc_norm_stderr": metrics.get("acc_norm_stderr"),
            "metrics": metrics,
            "requested": False,
        }
    for name in _averaged(names, summary, out.get("group_subtasks") or {}):
        summary[name]["requested"] = True
    return summary


def _averaged(
    names: list[str], summary: dict[str, dict[str, Any]], groups: dict[str, list[str]]
) -> list[str]:
    """The result entries that stand for the requested names in the average: the entry
    itself when it has acc or acc_norm (a task, or a group lm-eval aggregates), else the
    tasks under it (a group without aggregate: its subtasks; a tag: lm-eval expands it
    before running, so its tasks are the results no other name accounts for)."""

    def scored(n: str) -> bool:
        return n in summary and (
            summary[n]["acc"] is not None or summary[n]["acc_norm"] is not None
        )

    def leaves(n: str) -> list[str]:
        if scored(n) or n not in groups:
            return [n] if scored(n) else []
        return [x for sub in groups[n] for x in leaves(sub)]

    def under(n: str) -> set[str]:
        return {n}.union(*(under(sub) for sub in groups.get(n, [])))

    chosen: list[str] = []
    unresolved: list[str] = []
    for n in names:
        found = leaves(n)
        if found:
            chosen += found
        elif n not in summary and n not in groups:
            unresolved.append(n)
    if unresolved:
        accounted = set().union(*(under(n) for n in names if n not in unresolved))
        rest = [n for n in summary if n not in accounted and n not in groups and scored(n)]
        if not rest:
            raise MiniplmError(f"lm-eval returned no results for {', '.join(unresolved)}")
        chosen += rest
    return list(dict.fromkeys(chosen))
