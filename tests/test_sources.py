"""The sources ``miniplm run`` reports one by one (``pipeline.sources``) and the held-out
figures added up over them (``evaluation.figures``), against obviously-correct
references on random inputs: ties, empty, one source, more than 16-bit indices; and the
sample of a held-out slice under ``eval.max_instances``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miniplm.errors import InternalError
from miniplm.evaluation.figures import nll_figures, pool
from miniplm.pipeline.sources import Shown, corpus_source_sizes, noise_mask, shown_sources


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=60), st.integers(0, 3))
def test_by_source_equals_a_mask_per_source(src_list: list[int], extra: int) -> None:
    """The report's one-sort grouping against the mask per source it replaced (sources
    without instances, one instance, none at all)."""
    from miniplm.pipeline.sources import by_source

    src = np.array(src_list, dtype=np.int64)
    n = 6 + extra
    groups = by_source(src, n)
    assert len(groups) == n
    for k in range(n):
        assert groups[k].tolist() == np.flatnonzero(src == k).tolist()


def test_by_source_past_16_bit_sources() -> None:
    from miniplm.pipeline.sources import by_source

    src = np.array([69999, 3, 65536, 3, 65535], dtype=np.int64)
    groups = by_source(src, 70000)
    assert groups[3].tolist() == [1, 3] and groups[65536].tolist() == [2]
    assert groups[65535].tolist() == [4] and groups[69999].tolist() == [0]
    assert sum(len(g) for g in groups) == len(src)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=40), st.integers(0, 45))
def test_shown_sources_are_the_largest_ties_to_the_smaller_index(
    sizes_list: list[int], top: int
) -> None:
    """Against a sort of (size descending, index) and a cut; 0 or a cut past the end:
    every source. Small sizes: many ties."""
    sizes = np.array(sizes_list, dtype=np.int64)
    got = shown_sources(sizes, top)
    n = len(sizes)
    ranked = sorted(range(n), key=lambda k: (-sizes_list[k], k))
    want = sorted(ranked if top == 0 else ranked[:top])
    assert got.ids.tolist() == want
    assert got.pooled.tolist() == sorted(set(range(n)) - set(want))
    assert got.ids.dtype == got.pooled.dtype == np.int64


def test_shown_sources_edges() -> None:
    assert shown_sources(np.zeros(0, dtype=np.int64), 3).ids.tolist() == []
    one = shown_sources(np.array([5]), 1)
    assert one.ids.tolist() == [0] and one.pooled.tolist() == []
    tied = shown_sources(np.array([2, 2, 2, 2]), 2)
    assert tied.ids.tolist() == [0, 1] and tied.pooled.tolist() == [2, 3]
    assert tied.pooled_label() == "other (2 sources)"
    assert Shown(np.arange(1), np.arange(1)).pooled_label() == "other (1 source)"
    with pytest.raises(InternalError):
        shown_sources(np.array([1, 2]), -1)


def test_corpus_source_sizes_follow_the_names_and_refuse_a_gap() -> None:
    counts = {"per_source": {"b": {"instances": 3}, "a": {"instances": 7}}}
    assert corpus_source_sizes(["a", "b"], counts).tolist() == [7, 3]
    with pytest.raises(InternalError):
        corpus_source_sizes(["a", "b", "c"], counts)
    with pytest.raises(InternalError):
        corpus_source_sizes(["a"], {})


def test_noise_mask_is_the_noise_prefix() -> None:
    from miniplm.default_corpus import NOISE_PREFIX

    names = ["austen", f"{NOISE_PREFIX}x", "noisy", f"{NOISE_PREFIX}"]
    assert noise_mask(names).tolist() == [False, True, False, True]
    assert noise_mask([]).shape == (0,)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 50), st.floats(0, 1e3)), max_size=40),
    st.data(),
)
def test_pooled_figures_equal_the_figures_of_the_union(
    rows: list[tuple[int, int, float]], data: st.DataObject
) -> None:
    """Figures of disjoint parts added up (as the clean slice and the pooled sources are)
    against the figures of all their instances at once: nothing scored gives None."""
    group = np.array([g for g, _, _ in rows], dtype=np.int64)
    scored = np.array([c for _, c, _ in rows], dtype=np.int64)
    tokens = scored + np.array([data.draw(st.integers(0, 3)) for _ in rows], dtype=np.int64)
    nll = np.array([x for _, _, x in rows], dtype=np.float64)
    take = data.draw(st.sets(st.integers(0, 4)))
    parts = [nll_figures(tokens[group == g], scored[group == g], nll[group == g]) for g in take]
    mask = np.isin(group, sorted(take))
    got, want = pool(parts), nll_figures(tokens[mask], scored[mask], nll[mask])
    for k in ("instances", "tokens", "scored_tokens"):
        assert got[k] == want[k]
    assert got["nll_sum"] == pytest.approx(want["nll_sum"], rel=1e-12, abs=1e-9)
    if want["scored_tokens"] == 0:
        assert got["mean_nll"] is None and got["perplexity"] is None
    else:
        assert got["mean_nll"] == pytest.approx(want["nll_sum"] / want["scored_tokens"])
        assert got["perplexity"] == pytest.approx(want["perplexity"])


def test_a_limited_slice_is_a_uniform_seeded_sample_not_the_first_ids(tmp_path: Path) -> None:
    """``eval.max_instances``: past the limit, a sorted sample of the slice's ids, the same
    for the same seed (so every model sees it), each id about equally often over seeds
    (the first ids in id order would be the first sources only); at or under the limit,
    or with no limit, the slice itself, whole."""
    import miniplm
    from miniplm.pipeline.eval_stage import limited_slice

    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    miniplm.write_dataset(data, [rng.integers(1, 50, 5) for _ in range(90)], vocab_size=50)
    held = np.arange(0, 90, 3, dtype=np.uint64)  # 30 ids
    sel = miniplm.TokenDataset(data).write_selection(tmp_path / "held", held, "held")
    assert limited_slice(str(data), str(sel), 0, 1, tmp_path / "s") == (str(sel), True)
    assert limited_slice(str(data), str(sel), 30, 1, tmp_path / "s") == (str(sel), True)
    assert not (tmp_path / "s").exists()
    picks = np.zeros(90, dtype=np.int64)
    first = np.zeros(0, dtype=np.int64)
    for seed in range(300):
        got, whole = limited_slice(str(data), str(sel), 6, seed, tmp_path / "s")
        ids = miniplm.load_selection(got)[0].astype(np.int64)
        assert not whole and len(ids) == 6 and np.all(np.diff(ids) > 0)
        assert np.isin(ids, held.astype(np.int64)).all()
        picks[ids] += 1
        first = ids if seed == 0 else first
    again, _ = limited_slice(str(data), str(sel), 6, 0, tmp_path / "s")
    np.testing.assert_array_equal(miniplm.load_selection(again)[0].astype(np.int64), first)
    counts = picks[held.astype(np.int64)]
    # Each id is drawn with probability 6/30 per seed: 60 of 300 expected, sd ~6.9.
    assert counts.sum() == 300 * 6 and counts.min() > 30 and counts.max() < 90
    assert counts[15:].sum() > 300 * 6 * 0.35  # the second half of the ids is drawn too
    whole_set, w = limited_slice(str(data), None, 10, 2, tmp_path / "all")
    ids = miniplm.load_selection(whole_set)[0]
    assert not w and len(ids) == 10 and int(ids.max()) < 90
