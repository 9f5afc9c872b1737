"""``miniplm run``'s ``[corpus]`` table accepts what ``miniplm tokenize`` accepts (globs,
source names, text split, packing, min tokens, shard size, EOS), checked up front, and its
data stage writes what the tokenize CLI writes with the same options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from miniplm.cli import main
from miniplm.errors import InputError
from miniplm.pipeline.config import load_config
from miniplm.pipeline.stages import Context, build_stages, run_stage

from tiny_lm import tiny_bpe

TEXTS = [f"document {i}: the cat sat on the mat. where is the dog {i}?" for i in range(30)]


def _tokenizer(d: Path) -> Path:
    tok = tiny_bpe(TEXTS)
    d.mkdir()
    tok.save(str(d / "tokenizer.json"))
    return d / "tokenizer.json"


def _corpus(root: Path) -> None:
    (root / "pile").mkdir()
    for k in range(2):
        rows = "".join(json.dumps({"body": t}) + "\n" for t in TEXTS[k::2])
        (root / "pile" / f"part{k}.jsonl").write_text(rows)
    (root / "books").mkdir()
    (root / "books" / "a.txt").write_text("\n".join(TEXTS[:10]) + "\n")


def _config(root: Path, corpus: str, **tables: str) -> Path:
    f = root / "c.toml"
    extra = "".join(f"[{k}]\n{v}\n" for k, v in tables.items())
    f.write_text(f"[corpus]\n{corpus}\n{extra}")
    return f


CORPUS = """inputs = ["pile/*.jsonl", "books"]
sources = ["web", "books"]
text_field = "body"
source_field = ""
text_split = "lines"
packing = "fixed"
min_tokens = 3
shard_size = "256"
eos_token = "<eos>"
seq_len = 16
"""


def test_corpus_table_accepts_globs_and_the_tokenize_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _corpus(tmp_path)
    tok = _tokenizer(tmp_path / "tok")
    toml = _config(tmp_path, CORPUS, tokenizer=f'path = "{tok}"\ntrain_bpe_vocab = 0')
    cfg = load_config(str(toml), "smoke")
    assert cfg.corpus.inputs == ["pile/*.jsonl", "books"]
    ctx = Context(cfg=cfg, root=tmp_path / "run", quiet=True)
    for stage in build_stages(cfg):
        if stage.name in ("tokenizer", "data"):
            run_stage(stage, ctx)
    got = Path(ctx.path("data", "dataset"))
    assert (
        main(
            [
                "tokenize",
                "pile/*.jsonl",
                "books",
                "--source",
                "web",
                "--source",
                "books",
                "--text-field",
                "body",
                "--text-split",
                "lines",
                "--packing",
                "fixed",
                "--min-tokens",
                "3",
                "--shard-size",
                "256",
                "--eos-token",
                "<eos>",
                "--seq-len",
                "16",
                "--reference-fraction",
                str(cfg.corpus.reference_fraction),
                "--seed",
                str(cfg.seed),
                "--tokenizer",
                str(tok),
                "--out",
                str(tmp_path / "cli"),
                "--quiet",
            ]
        )
        == 0
    )
    want = tmp_path / "cli"
    names = sorted(p.name for p in want.iterdir() if p.name != "tokenize.json")
    assert len([n for n in names if n.endswith(".bin")]) > 1  # shard_size took effect
    assert sorted(p.name for p in got.iterdir() if p.name != "tokenize.json") == names
    for n in names:
        assert (got / n).read_bytes() == (want / n).read_bytes(), n
    meta = json.loads((got / "tokenize.json").read_text())
    assert sorted(meta["sources"]) == ["books", "web"]


def test_corpus_table_is_checked_up_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _corpus(tmp_path)

    def bad(corpus: str, match: str) -> None:
        with pytest.raises(InputError, match=match):
            load_config(str(_config(tmp_path, corpus)), "smoke")

    bad('inputs = ["pile/*.parquet"]', r"corpus\.inputs: pile/\*\.parquet: no files match")
    bad('inputs = ["nowhere.jsonl"]', r"corpus\.inputs: nowhere\.jsonl: no such file")
    (tmp_path / "x.csv").write_text("a,b\n")
    bad('inputs = ["x.csv"]', r"corpus\.inputs: x\.csv: unknown input format")
    bad('inputs = ["books"]\nsources = ["a", "b"]', r"corpus\.sources: 2 source names for 1 input")
    bad('sources = ["a"]', r"corpus\.sources: .*corpus\.inputs")
    bad('inputs = ["books"]\ntext_split = "pages"', r"corpus\.text_split: .*'pages'")
    bad('inputs = ["books"]\nmin_tokens = 0', r"corpus: min_tokens must be >= 1, got 0")
    bad('inputs = ["books"]\nshard_size = "12Q"', r"corpus\.shard_size: .*12Q")
    bad('inputs = ["books"]\neos_id = 3\neos_token = "<eos>"', r"corpus: .*eos_id.*eos_token")
    bad('inputs = ["books"]\nworkers = -1', r"corpus\.workers")
    bad('inputs = ["books"]\nmax_sources = 0', r"corpus\.max_sources: must be >= 1")
    bad(
        'inputs = ["pile/*.jsonl"]\nsource_field = ""\nmax_sources = 1',
        r"corpus\.inputs: 2 input files .* make 2 sources, more than --max-sources \(1\)",
    )
