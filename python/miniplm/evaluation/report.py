"""Evaluation results as a JSON file (written atomically) and a markdown table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from miniplm._atomic import atomic_write_text
from miniplm.data import PathLike

AVERAGE_RULE = "acc_norm where the task reports it, else acc"


def primary_metric(task: dict[str, Any]) -> tuple[str, float | None]:
    """The metric a task contributes to the average (the MiniPLM paper's choice)."""
    if task.get("acc_norm") is not None:
        return "acc_norm", float(task["acc_norm"])
    acc = task.get("acc")
    return "acc", None if acc is None else float(acc)


def average(tasks: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Mean of the requested tasks' primary metrics (None when no task has one)."""
    used = {}
    for name, t in tasks.items():
        if not t.get("requested", True):
            continue
        metric, value = primary_metric(t)
        if value is not None:
            used[name] = metric
    if not used:
        return None
    values = [primary_metric(tasks[n])[1] for n in used]
    return {
        "value": sum(v for v in values if v is not None) / len(values),
        "rule": AVERAGE_RULE,
        "tasks": used,
    }


def _clean(x: Any) -> Any:
    """JSON without NaN / Infinity: non-finite floats become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_json(path: PathLike, results: dict[str, Any]) -> Path:
    """Write ``results`` to ``path``: a temporary sibling, fsync, then rename, so the file
    is either the old one or the complete new one."""
    text = json.dumps(_clean(results), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(Path(path), text)


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100.0 * float(x):.2f}"


def _num(x: Any, digits: int = 4) -> str:
    return "-" if x is None else f"{float(x):.{digits}f}"


def _pm(x: Any, se: Any) -> str:
    return _num(x) if se is None else f"{_num(x)} ± {_num(se)}"


def format_table(results: dict[str, Any]) -> str:
    """Markdown tables of the held-out loss and the task accuracies (in %)."""
    lines = [f"model: {results.get('model', {}).get('path', '?')}"]
    h = results.get("heldout")
    if h:
        lines += [
            "",
            "| held-out data | instances | scored tokens | mean NLL | perplexity |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| {h['path']} | {h['instances']} | {h['scored_tokens']} | "
            f"{_num(h['mean_nll'])} | {_num(h['perplexity'], 3)} |",
        ]
        for name, g in (h.get("by_source") or {}).items():
            lines.append(
                f"|   {name} | {g['instances']} | {g['scored_tokens']} | "
                f"{_num(g['mean_nll'])} | {_num(g['perplexity'], 3)} |"
            )
    x = results.get("texts")
    if x:
        lines += [
            "",
            "| text set | documents | tokens | bytes | NLL (nats/token) | bits per byte |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            f"| {x['path'] or 'texts'} | {x['documents']} | {x['tokens']} | {x['bytes']} | "
            f"{_pm(x['mean_nll'], x['mean_nll_stderr'])} | "
            f"{_pm(x['bits_per_byte'], x['bits_per_byte_stderr'])} |",
        ]
        for name, g in (x.get("by_group") or {}).items():
            lines.append(
                f"|   {name} | {g['documents']} | {g['tokens']} | {g['bytes']} | "
                f"{_pm(g['mean_nll'], g['mean_nll_stderr'])} | "
                f"{_pm(g['bits_per_byte'], g['bits_per_byte_stderr'])} |"
            )
    tasks: dict[str, dict[str, Any]] = results.get("tasks") or {}
    if tasks:
        lines += [
            "",
            "| task | source | docs | acc (%) | acc_norm (%) |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for name, t in tasks.items():
            docs = "-" if t.get("docs") is None else str(t["docs"])
            label = name if t.get("requested", True) else f"  {name}"
            lines.append(
                f"| {label} | {t['source']} | {docs} | {_pct(t.get('acc'))} | "
                f"{_pct(t.get('acc_norm'))} |"
            )
        avg = results.get("average")
        if avg:
            lines.append(
                f"| average ({AVERAGE_RULE}) | | {len(avg['tasks'])} task(s) | | "
                f"{_pct(avg['value'])} |"
            )
    return "\n".join(lines)
