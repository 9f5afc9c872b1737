"""The metadata beside a dataset (tokenizer.json, tokenize.json) is found by one rule, in
``miniplm.dataset_meta``, for a dataset directory and a shard prefix alike."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from miniplm.dataset_meta import (
    TOKENIZE_JSON,
    TOKENIZER_JSON,
    dataset_tokenizer_file,
    read_dataset_meta,
)

PACKAGE = Path(__file__).resolve().parent.parent / "python" / "miniplm"


def test_meta_of_a_directory_and_of_a_shard_prefix(tmp_path: Path) -> None:
    info = {"vocab_size": 300, "eos_token": "</s>", "eos_id": 2}
    (tmp_path / TOKENIZE_JSON).write_text(json.dumps({"tokenizer": info}))
    for data in (tmp_path, tmp_path / "shard_00000"):
        meta = read_dataset_meta(data)
        assert (meta.vocab_size, meta.eos_token, meta.eos_id) == (300, "</s>", 2)
        assert meta.tokenizer_file is None
        assert dataset_tokenizer_file(data) is None


def test_nothing_beside_the_data(tmp_path: Path) -> None:
    assert read_dataset_meta(tmp_path / "x") == (None, None, None, None)


def test_metadata_file_names_are_joined_in_one_module() -> None:
    """`path / "tokenizer.json"` (or tokenize.json) only in miniplm/dataset_meta.py."""
    names = {TOKENIZER_JSON, TOKENIZE_JSON}
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "dataset_meta.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Div)
                and isinstance(node.right, ast.Constant)
                and node.right.value in names
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders, offenders
