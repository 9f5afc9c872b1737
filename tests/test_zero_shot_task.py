"""The bundled zero-shot task: what its script writes, made only of target works, in the
built-in multiple-choice format, big enough for a standard error of about 2%."""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from miniplm import bundled
from miniplm import default_corpus as dc
from miniplm.evaluation.multiple_choice import load_mc_file

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
import make_zero_shot_task as task


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    text = bundled.zero_shot_task().read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def _follows(text: str, context: str, answer: str) -> bool:
    at = text.find(context)
    while at >= 0:
        rest = text[at + len(context) :]
        if rest[:1].isspace() and rest.lstrip().startswith(answer):
            return True
        at = text.find(context, at + 1)
    return False


def test_the_file_is_what_the_script_writes(tmp_path: Path) -> None:
    committed = bundled.zero_shot_task().read_bytes()
    assert committed == task.make_task().encode("utf-8")
    out = tmp_path / "t.jsonl"
    assert task.main(["--out", str(out)]) == 0
    assert out.read_bytes() == committed


def test_it_reads_as_a_multiple_choice_task(rows: list[dict[str, Any]]) -> None:
    docs = load_mc_file(bundled.zero_shot_task())
    assert len(docs) == len(rows) >= 500
    assert math.sqrt(0.25 * 0.75 / len(docs)) < 0.021  # stderr at chance, about 2%
    assert all(len(d.choices) == task.CHOICES == len(set(d.choices)) for d in docs)
    labels = Counter(d.label for d in docs)
    assert all(0.18 < labels[k] / len(docs) < 0.32 for k in range(task.CHOICES)), labels
    # Every target work contributes.
    assert {(r["source"], r["work"]) for r in rows} == set(dc.target_works())


def test_contexts_and_choices_come_only_from_target_works(rows: list[dict[str, Any]]) -> None:
    texts: dict[tuple[str, str], list[str]] = {}
    for r in dc.target_documents():
        texts.setdefault((r["source"], r["work"]), []).append(r["text"])
    corpus = "\n".join(t for _, t in dc.default_documents(noise=False))
    for r in rows:
        work = texts[(r["source"], r["work"])]
        context, choices = r["context"], r["choices"]
        assert len(context) >= task.MIN_CONTEXT
        assert any(context in t for t in work)
        for c in choices:
            assert c.startswith(" ") and any(c[1:] in t for t in work), c
        # The answer follows the context in the work, after whitespace.
        answer = choices[r["label"]]
        assert any(_follows(t, context, answer[1:]) for t in work), (context[-80:], answer)
        # The answer is no sentence the corpus holds (nothing to remember it from).
        assert answer[1:] not in corpus, answer
