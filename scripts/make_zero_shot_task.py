"""Make the bundled zero-shot task ``assets/tasks/continuation.jsonl`` from the target set
(the works held out of the default corpus): given a passage, pick its true next sentence
among four.

Deterministic (no clock, no global random state): the same assets give the same bytes, and
the tests check that the committed file is what this writes. Run as::

    python scripts/make_zero_shot_task.py        # rewrites the committed file

Each target work is walked document by document. An item's context is whole sentences
(at least ``MIN_CONTEXT`` characters, from a sentence start); its answer is the sentence
that follows (``MIN_CHOICE`` .. ``MAX_CHOICE`` characters). The three distractors are
sentences of the same work (so style and vocabulary give nothing away), of a similar
length (``LENGTH_RATIO``), from outside the item's passage. A label the next sentence
starts with (a verse number, a speaker's name) stays in the context, so numbering and
turn-taking are no cue; choices start with one space, whatever whitespace the text had.
Items do not overlap: the next context starts after the answer.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from miniplm._atomic import atomic_write_text
from miniplm.default_corpus import target_documents

MIN_CONTEXT = 200  # characters
MIN_CHOICE = 40
MAX_CHOICE = 200
LENGTH_RATIO = 1.6  # distractors are within this factor of the answer's length
CHOICES = 4
SEED = "miniplm-zero-shot-continuation"
OUT = Path(__file__).resolve().parent.parent / "python/miniplm/assets/tasks/continuation.jsonl"

# A sentence ends at . ! or ? (and any closing quotes or brackets) before whitespace, and
# at the end of a verse (a line before a numbered one): no choice holds a verse number.
_END = re.compile(r"[.!?][\"'\u2019\u201d)\]]*(?=\s)|(?<=\S)(?=\n\d+ )")
# What a sentence may start with that is not its text: a verse number, a speaker's name.
_LABEL = re.compile(r"(\d+|[A-Z][A-Z' ]{1,25}\.)(?=\s)")


@dataclass(frozen=True)
class Span:
    doc: int
    start: int  # of the label, if any (the context ends here, or after the label)
    text_start: int  # of the sentence's text
    end: int


def _sentences(doc: int, text: str) -> list[Span]:
    """The sentences of ``text`` that can be an answer or a distractor."""
    out = []
    ends = [m.end() for m in _END.finditer(text)]
    for a, b in zip(ends, ends[1:]):
        start = a + (len(text[a:b]) - len(text[a:b].lstrip()))
        body = start
        m = _LABEL.match(text, start)
        if m is not None:
            body = m.end() + (len(text[m.end() : b]) - len(text[m.end() : b].lstrip()))
        if MIN_CHOICE <= b - body <= MAX_CHOICE:
            out.append(Span(doc, start, body, b))
    return out


def _choice(texts: list[str], s: Span) -> str:
    return " " + texts[s.doc][s.text_start : s.end]


def make_task() -> str:
    """The task file's text: one JSON object a line."""
    rows = target_documents()
    lines = []
    works = list(dict.fromkeys((r["source"], r["work"]) for r in rows))
    for source, work in works:
        idx = [i for i, r in enumerate(rows) if (r["source"], r["work"]) == (source, work)]
        texts = {i: rows[i]["text"] for i in idx}
        tlist = [rows[i]["text"] if i in texts else "" for i in range(len(rows))]
        pool = [s for i in idx for s in _sentences(i, texts[i])]
        rng = random.Random(f"{SEED}:{source}:{work}")
        for i in idx:
            text = texts[i]
            ends = [0] + [m.end() for m in _END.finditer(text)]
            floor = 0  # the next context starts here or later
            for ans in (s for s in pool if s.doc == i):
                ctx_to = ans.text_start  # after the answer's label, if it has one
                # The latest sentence start that leaves MIN_CONTEXT characters.
                starts = [e for e in ends if floor <= e < ctx_to]
                starts = [e for e in starts if len(text[e:ctx_to].strip()) >= MIN_CONTEXT]
                if not starts:
                    continue
                context = text[max(starts) : ctx_to].strip()
                ctx_from = ctx_to - len(text[max(starts) : ctx_to].lstrip())
                answer = _choice(tlist, ans)
                n = len(answer)
                others = [
                    s
                    for s in pool
                    if not (s.doc == i and s.end > ctx_from and s.start < ans.end)
                    and n / LENGTH_RATIO <= s.end - s.text_start + 1 <= n * LENGTH_RATIO
                    and _choice(tlist, s) != answer
                ]
                picked: list[str] = []
                for s in rng.sample(others, len(others)):
                    c = _choice(tlist, s)
                    if c not in picked:
                        picked.append(c)
                    if len(picked) == CHOICES - 1:
                        break
                if len(picked) < CHOICES - 1:
                    continue
                label = rng.randrange(CHOICES)
                choices = [*picked[:label], answer, *picked[label:]]
                item = {"context": context, "choices": choices, "label": label}
                lines.append(
                    json.dumps({**item, "source": source, "work": work}, ensure_ascii=False) + "\n"
                )
                floor = ans.end
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, default=OUT, help="where to write (the bundled file)")
    args = ap.parse_args(argv)
    text = make_task()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, text)
    print(f"{text.count(chr(10))} items -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
