"""``[students.tokenizer]``: students with their own tokenizer in ``miniplm run``. The
table takes ``[tokenizer]``'s keys and is checked up front; the smoke run with a 300-entry
BPE and Llama students trains every student on its own re-tokenized subset (equal numbers
of their own tokens), evaluates them on re-tokenized held-out slices in bits per byte,
leaves Vanilla KD out with the reason, and re-runs only the student side when the
students' tokenizer changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from miniplm.errors import InputError
from miniplm.pipeline.config import TokenizerSpec, load_config


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
