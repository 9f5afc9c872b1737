"""``[students.tokenizer]``: the table takes ``[tokenizer]``'s keys and is checked up front;
equal budgets of the students' own tokens; bits per byte; the one BPE trainer serves the
corpus tokenizer too. The smoke run with a 300-entry BPE and Llama students is in
test_run.py (it reuses that module's smoke run)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miniplm.errors import InputError
from miniplm.pipeline.config import TokenizerSpec, load_config
from miniplm.pipeline.student_corpus import bits_per_byte, own_token_steps


def _load(tmp_path: Path, text: str, preset: str = "smoke") -> object:
    f = tmp_path / "c.toml"
    f.write_text(text)
    return load_config(str(f), preset)


def test_students_tokenizer_table_is_read_and_checked_up_front(tmp_path: Path) -> None:
    cfg = load_config(None, "smoke")
    assert cfg.students.tokenizer == TokenizerSpec()  # default: the corpus's own
    cfg2 = _load(
        tmp_path, "[students]\narch = 'llama'\n[students.tokenizer]\ntrain_bpe_vocab = 300\n"
    )
    assert cfg2.students.tokenizer.train_bpe_vocab == 300  # type: ignore[attr-defined]
    assert cfg2.students.arch == "llama"  # type: ignore[attr-defined]

    def bad(text: str, match: str) -> None:
        with pytest.raises(InputError, match=match):
            _load(tmp_path, text)

    bad(
        "[students.tokenizer]\ntrain_bpe_vocab = 100\n",
        r"students\.tokenizer\.train_bpe_vocab.*257",
    )
    bad(
        "[students.tokenizer]\npath = '/nonexistent/tok'\n",
        r"students\.tokenizer\.path.*/nonexistent",
    )
    tok = tmp_path / "tok.json"
    tok.write_text("{}")
    bad(
        f"[students.tokenizer]\npath = '{tok}'\ntrain_bpe_vocab = 300\n",
        r"students\.tokenizer: give path or train_bpe_vocab, not both",
    )
    bad("[students.tokenizer]\nvocab = 300\n", r"students\.tokenizer: unknown key")
    bad("[students.tokenizer]\ntrain_bpe_vocab = '300'\n", r"students\.tokenizer\.train_bpe_vocab")
    bad("[tokenizer]\ntrain_bpe_vocab = 200\n", r"tokenizer\.train_bpe_vocab.*257")
    # A student tokenizer given by path must be a tokenizer: refused before any stage runs.
    bad(f"[students.tokenizer]\npath = '{tok}'\n", r"students\.tokenizer\.path")


@given(
    corpora=st.dictionaries(
        st.sampled_from(["miniplm", "random", "ppl"]),
        st.tuples(st.integers(1, 10_000), st.integers(2, 64)),
        min_size=1,
    ),
    epochs=st.floats(0.1, 8.0),
    batch=st.integers(1, 64),
)
def test_own_token_steps_give_every_student_the_smallest_corpus_budget(
    corpora: dict[str, tuple[int, int]], epochs: float, batch: int
) -> None:
    """Each student's steps x batch x mean targets per instance (an instance of n tokens
    trains on n - 1) is the budget epochs x T_min, rounded up by less than one batch; no
    student gets fewer than one step."""
    info = {v: {"instances": n, "tokens": n * per} for v, (n, per) in corpora.items()}
    steps = own_token_steps(info, epochs, batch)
    budget = epochs * min(n * (per - 1) for n, per in corpora.values())
    assert steps.keys() == info.keys()
    for v, (_n, per) in corpora.items():
        per_step = batch * (per - 1)
        assert steps[v] >= 1
        assert steps[v] * per_step >= budget * (1 - 1e-12)
        assert steps[v] == 1 or (steps[v] - 1) * per_step < budget


def test_bits_per_byte_is_nats_over_bytes_and_none_where_not_whole() -> None:
    r = {"nll_sum": 1000 * math.log(2), "mean_nll": 2.0}
    assert bits_per_byte(r, 500, True) == pytest.approx(2.0)
    assert bits_per_byte(r, 500, False) is None  # max_instances cut the slice
    assert bits_per_byte(r, None, True) is None
    assert bits_per_byte({"nll_sum": None}, 500, True) is None


def test_a_corpus_bpe_trains_on_corpus_inputs_of_any_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[tokenizer] train_bpe_vocab`` with ``corpus.inputs`` (no bundled text stage) and
    a parquet input: the one BPE trainer reads the corpus as tokenize does."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    from miniplm.pipeline.stages import Context, build_stages, run_stage

    monkeypatch.chdir(tmp_path)
    texts = [f"document {i}: the cat sat on the mat. where is the dog {i}?" for i in range(40)]
    pq.write_table(pa.table({"body": texts}), tmp_path / "docs.parquet")
    f = tmp_path / "c.toml"
    f.write_text(
        '[corpus]\ninputs = ["docs.parquet"]\ntext_field = "body"\nsource_field = ""\n'
        "[tokenizer]\ntrain_bpe_vocab = 300\n"
    )
    cfg = load_config(str(f), "smoke")
    ctx = Context(cfg=cfg, root=tmp_path / "run", quiet=True)
    for stage in build_stages(cfg):
        if stage.name in ("tokenizer", "data"):
            run_stage(stage, ctx)
    assert len(AutoTokenizer.from_pretrained(ctx.path("tokenizer", "tokenizer"))) == 300
    assert ctx.done["data"]["outputs"]["counts"]["documents"] == 40
