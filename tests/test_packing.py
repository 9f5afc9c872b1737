"""The packer of `miniplm tokenize` against a pure-Python token-by-token reference
(hypothesis), its preference of cut points, and the break table from decoded tokens."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from tokenizers import Tokenizer, models

from miniplm.corpus.packing import EOS, NEWLINE, NONE, SENTENCE, Packer
from miniplm.corpus.tokenizer import break_table


def _reference_pack(
    docs: list[tuple[int, list[int]]], table: list[int], seq_len: int, mode: str
) -> list[tuple[int, list[int]]]:
    """Token by token: a source's buffer is cut while it is too long (boundary: more than
    L+1 tokens, at the last EOS / newline / sentence end of its first L+1 that leaves at
    least half of them; fixed: at L+1)."""
    w = seq_len + 1
    buffers: dict[int, list[int]] = {}
    out = []
    for src, toks in docs:
        buf = buffers.setdefault(src, [])
        buf.extend(toks)
        while len(buf) > w or (mode == "fixed" and len(buf) == w):
            cut = w
            if mode == "boundary":
                for cls in (EOS, NEWLINE, SENTENCE):
                    # only cuts that keep at least half the window: i + 1 >= ceil(w / 2)
                    hits = [i for i in range(w) if table[buf[i]] == cls and 2 * (i + 1) >= w]
                    if hits:
                        cut = hits[-1] + 1
                        break
            out.append((src, buf[:cut]))
            del buf[:cut]
    out.extend((src, buffers[src]) for src in sorted(buffers) if buffers[src])
    return out


@given(
    docs=st.lists(
        st.tuples(st.integers(0, 2), st.lists(st.integers(0, 9), max_size=30)), max_size=25
    ),
    table=st.lists(
        st.sampled_from([NONE, NONE, NONE, SENTENCE, NEWLINE, EOS]), min_size=10, max_size=10
    ),
    seq_len=st.integers(1, 12),
    mode=st.sampled_from(["boundary", "fixed"]),
    group=st.booleans(),
)
def test_packer_matches_reference(
    docs: list[tuple[int, list[int]]], table: list[int], seq_len: int, mode: str, group: bool
) -> None:
    want = _reference_pack(docs, table, seq_len, mode)
    packer = Packer(seq_len, mode, np.array(table, dtype=np.uint8))
    got: list[tuple[int, list[int]]] = []
    # Consecutive documents of one source may arrive in one call: the cuts must not change.
    calls: list[tuple[int, list[int]]] = []
    for src, toks in docs:
        if group and calls and calls[-1][0] == src:
            calls[-1][1].extend(toks)
        else:
            calls.append((src, list(toks)))
    for src, toks in calls:
        got += [(s, c.tolist()) for s, c in packer.add(src, np.array(toks, dtype=np.int32))]
    got += [(s, c.tolist()) for s, c in packer.finish()]
    assert got == want
    assert all(0 < len(c) <= seq_len + 1 for _, c in got)
    for src in {s for s, _ in docs}:
        stream = [t for s, d in docs if s == src for t in d]
        assert [t for s, c in got if s == src for t in c] == stream


def test_boundary_prefers_eos_then_newline_then_sentence() -> None:
    table = np.array([NONE, EOS, NEWLINE, SENTENCE], dtype=np.uint8)
    packer = Packer(5, "boundary", table)
    # window of 6: EOS at 2, newline at 3, sentence at 4 -> cut after the EOS
    chunks = packer.add(0, np.array([0, 0, 1, 2, 3, 0, 0, 0]))
    assert [c.tolist() for _, c in chunks] == [[0, 0, 1]]
    # EOS at 1 would leave 2 of 6 tokens, under half: the newline at 3 wins
    packer = Packer(5, "boundary", table)
    chunks = packer.add(0, np.array([0, 1, 0, 2, 3, 0, 0, 0]))
    assert [c.tolist() for _, c in chunks] == [[0, 1, 0, 2]]
    packer = Packer(5, "boundary", table)
    chunks = packer.add(0, np.array([0, 3, 0, 2, 3, 0, 0, 0]))
    assert [c.tolist() for _, c in chunks] == [[0, 3, 0, 2]]
    packer = Packer(2, "boundary", table)
    chunks = packer.add(0, np.array([0, 0, 0, 0]))  # no break: hard cut at L+1
    assert [c.tolist() for _, c in chunks] == [[0, 0, 0]]


def test_break_table_from_decoded_tokens() -> None:
    vocab = {t: i for i, t in enumerate(["<eos>", "cat", ".", '!"', "\n", "?  ", "3.1", "x\n "])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="cat"))
    table = break_table(tok, 0, len(vocab))
    assert table.tolist() == [EOS, NONE, SENTENCE, SENTENCE, NEWLINE, SENTENCE, NONE, NEWLINE]


def test_the_carry_over_holds_no_view_of_the_input() -> None:
    """What a source keeps waiting is a copy: a view would keep the caller's whole array
    (tokenize's encoded batch) alive, one batch per waiting source."""
    import gc
    import weakref

    for mode in ("boundary", "fixed"):
        packer = Packer(8, mode, np.zeros(16, dtype=np.uint8))
        batch = np.arange(100, dtype=np.int32) % 16
        alive = weakref.ref(batch)
        assert packer.add(0, batch[:3]) == []  # shorter than L+1: waits whole
        assert len(packer.add(1, batch[3:20])) == 1  # one instance, and a rest that waits
        assert packer.add(2, batch[20:29] if mode == "boundary" else batch[20:28]) == []
        del batch
        gc.collect()
        assert alive() is None, mode
        got = [(s, t.tolist()) for s, t in packer.finish()]
        want_last = list(range(20, 29)) if mode == "boundary" else list(range(20, 28))
        assert got[0] == (0, [0, 1, 2])
        assert got[2] == (2, [t % 16 for t in want_last])
