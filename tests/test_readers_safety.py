"""The corpus readers refuse what they cannot read faithfully, naming the file (and line),
rather than dropping, merging or crashing: lone surrogates, directories they cannot
list or reach through links, globs matching directories, default source names that
collide, empty inputs, source fields that are not names, and broken JSON metadata."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from miniplm.corpus.readers import check_columns, discover, read_documents
from miniplm.corpus.tokenize import check_sources, tokenize_corpus
from miniplm.corpus.tokenizer import load_tokenizer
from miniplm.dataset_meta import read_dataset_meta
from miniplm.errors import FormatError, InputError

from tiny_lm import tiny_bpe


@pytest.fixture(scope="module")
def tok_json(tmp_path_factory: pytest.TempPathFactory) -> str:
    tok = tiny_bpe(["hello world. this is a test.\n"] * 20)
    d = tmp_path_factory.mktemp("tok")
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<eos>"}))
    return str(d / "tokenizer.json")


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _docs(*inputs: Any, **kw: Any) -> list[tuple[str, str]]:
    return list(read_documents(discover(list(inputs)), **kw))


def _sources(*inputs: Any) -> list[tuple[str, str]]:
    base = os.path.commonpath([os.fspath(i) for i in inputs])
    return [(os.path.relpath(f.path, base), f.source) for f in discover(list(inputs))]


# ---------------------------------------------------------------- 1. lone surrogates
_RAW = b'{"text": "bad \xed\xa0\x80 x", "src": "a"}\n'  # the UTF-8-like bytes of U+D800
_ESCAPED = b'{"text": "bad \\ud800 x", "src": "a"}\n'
_IN_SOURCE = b'{"text": "fine", "src": "b\\udfff"}\n'


@pytest.mark.parametrize(
    ("line", "field"), [(_RAW, "text"), (_ESCAPED, "text"), (_IN_SOURCE, "src")]
)
def test_lone_surrogate_is_a_format_error_naming_the_line(
    tmp_path: Path, line: bytes, field: str
) -> None:
    p = tmp_path / "s.jsonl"
    p.write_bytes(b'{"text": "h\xc3\xa9llo \xf0\x9f\x98\x80", "src": "a"}\n' + line)
    with pytest.raises(FormatError, match=rf"s\.jsonl:2: field '{field}' is not valid UTF-8"):
        _docs(p, source_field="src")


@pytest.mark.parametrize("workers", [1, 2])
def test_lone_surrogate_stops_tokenize_without_a_partial(
    tmp_path: Path, tok_json: str, workers: int
) -> None:
    """Bad input: the run fails with the line, and no checkpointed partial is kept (it
    would only fail again the same way on resume)."""
    p = tmp_path / "docs.jsonl"
    p.write_bytes(b"".join(b'{"text": "hello world %d"}\n' % i for i in range(40)) + _ESCAPED)
    out = tmp_path / "out"
    with pytest.raises(FormatError, match=r"docs\.jsonl:41: field 'text' is not valid UTF-8"):
        tokenize_corpus(
            [p], out, tok_json, seq_len=8, workers=workers, batch_docs=5,
            checkpoint_every=0, progress=False,
        )  # fmt: skip
    assert not out.exists() and not (tmp_path / ".out.partial").exists()


# ---------------------------------------------------------------- 2. directories
def test_directory_follows_symlinked_subdirectories_once(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    _jsonl(real / "b.jsonl", [{"text": "linked"}])
    d = tmp_path / "corpus"
    _jsonl(d / "a.jsonl", [{"text": "plain"}])
    (d / "more").symlink_to(real, target_is_directory=True)
    (d / "again").symlink_to(real, target_is_directory=True)  # the same place twice
    (d / "more" / "up").symlink_to(d, target_is_directory=True)  # a cycle
    assert [t for t, _ in _docs(d)] == ["plain", "linked"]
    assert {s for _, s in _docs(d)} == {"corpus"}


def test_unreadable_subdirectory_is_an_input_error(tmp_path: Path) -> None:
    """A directory that cannot be listed (mocked: the tests may run as root) would drop
    its files."""
    d = tmp_path / "corpus"
    _jsonl(d / "a.jsonl", [{"text": "plain"}])
    _jsonl(d / "locked" / "b.jsonl", [{"text": "hidden"}])
    scandir = os.scandir

    def denied(path: Any) -> Any:
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    with (
        mock.patch("os.scandir", denied),
        pytest.raises(InputError, match=r"locked: cannot list this directory"),
    ):
        discover([d])


def test_directory_skips_underscore_and_dot_names(tmp_path: Path) -> None:
    d = tmp_path / "corpus"
    _jsonl(d / "a.jsonl", [{"text": "kept"}])
    _jsonl(d / "_metadata.jsonl", [{"text": "skipped"}])
    _jsonl(d / ".a.jsonl", [{"text": "skipped"}])
    _jsonl(d / ".cache" / "c.jsonl", [{"text": "skipped"}])
    _jsonl(d / "_under" / "u.jsonl", [{"text": "kept too"}])  # only files' names count
    assert [t for t, _ in _docs(d)] == ["kept too", "kept"]  # sorted: "_" < "a"


# ---------------------------------------------------------------- 3. globs of directories
def test_glob_matching_directories_reads_their_files(tmp_path: Path) -> None:
    g = tmp_path / "g"
    _jsonl(g / "web" / "part-0.jsonl", [{"text": "w"}])
    _jsonl(g / "web" / "z" / "part-1.jsonl", [{"text": "w2"}])
    _jsonl(g / "books" / "part-0.jsonl", [{"text": "b"}])
    _jsonl(g / "top.jsonl", [{"text": "t"}])
    assert _docs(f"{g}/*") == [("b", "books"), ("t", "top"), ("w", "web"), ("w2", "web")]
    # A file below matching directories belongs to the closest one, and is read once.
    assert _docs(f"{g}/**/") == [("t", "g"), ("b", "books"), ("w", "web"), ("w2", "z")]
    assert [t for t, _ in _docs(f"{g}/web/**")] == ["w", "w2"]
    with pytest.raises(FileNotFoundError, match="no files match"):
        discover([f"{tmp_path}/nothing*"])


# ---------------------------------------------------------------- 4. colliding sources
def test_inputs_with_one_default_source_name_are_refused(tmp_path: Path) -> None:
    g = tmp_path / "g"
    web = _jsonl(g / "web" / "part-0.jsonl", [{"text": "w"}])
    books = _jsonl(g / "books" / "part-0.jsonl", [{"text": "b"}])
    for inputs in ([web, books], [f"{g}/*/part-0.jsonl"], [f"{g}/**/*.jsonl"]):
        files = discover(inputs)
        with pytest.raises(InputError, match=r"would both be source 'part-0'.*--source"):
            check_sources(files, None, 100)
        with pytest.raises(InputError, match=r"would both be source 'part-0'"):
            check_sources(files, None, None)
    # Named on purpose, one source; as directories, two; with a source field, no matter.
    check_sources(discover([web, books], ["web", "web"]), None, 100)
    check_sources(discover([g / "web", g / "books"]), None, 100)
    check_sources(discover([web, books]), "src", 100)
    check_sources(discover([web, web]), None, 100)  # one file twice: no other data


def test_colliding_sources_fail_tokenize_before_any_work(tmp_path: Path, tok_json: str) -> None:
    a = _jsonl(tmp_path / "x" / "data.jsonl", [{"text": "hello"}])
    b = _jsonl(tmp_path / "y" / "data" / "d.jsonl", [{"text": "world"}])
    with pytest.raises(InputError, match=r"both be source 'data'"):
        tokenize_corpus([a, b.parent], tmp_path / "out", tok_json, workers=1, progress=False)
    assert not (tmp_path / "out").exists()
    meta = tokenize_corpus(
        [a, b.parent], tmp_path / "out", tok_json, sources=["x", "y"], seq_len=8,
        workers=1, progress=False,
    )  # fmt: skip
    assert meta["sources"] == ["x", "y"]


# ---------------------------------------------------------------- 5. empty inputs
@pytest.mark.parametrize("name", ["books.jsonl", "books.txt", "books.parquet"])
def test_empty_input_warns_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    web = _jsonl(tmp_path / "web.jsonl", [{"text": "w"}])
    books = tmp_path / name
    if name.endswith(".parquet"):
        pq.write_table(pa.table({"text": pa.array([], pa.string())}), books)
        split = "document"
        what = "no documents in this file"
    else:
        books.write_bytes(b"")
        split = "lines" if name.endswith(".txt") else "document"
        what = "empty file"
    assert _docs(web, books, text_split=split) == [("w", "web")]
    err = capsys.readouterr().err
    assert f"warning: {books}: {what}; source 'books' gets none from it" in err
    assert "web.jsonl" not in err


def test_only_empty_documents_warn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _jsonl(tmp_path / "e.jsonl", [{"text": ""}, {"text": ""}])
    assert _docs(p) == [("", "e"), ("", "e")]
    assert f"{p}: only empty documents (2) in this file" in capsys.readouterr().err


def test_empty_compressed_input_stays_a_format_error(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl.gz").write_bytes(b"")
    with pytest.raises(FormatError, match="empty file, no gzip member"):
        _docs(tmp_path / "a.jsonl.gz")
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(b""))  # a valid empty member
    assert _docs(tmp_path / "b.jsonl.gz") == []


# ---------------------------------------------------------------- 6. source field values
@pytest.mark.parametrize(
    ("value", "kind"),
    [({"a": 1}, "object"), ([1], "array"), (1.5, "number"), (True, "boolean")],
)
def test_source_field_must_be_a_string_or_integer(tmp_path: Path, value: Any, kind: str) -> None:
    p = _jsonl(tmp_path / "d.jsonl", [{"text": "a", "src": "web"}, {"text": "b", "src": value}])
    with pytest.raises(FormatError, match=rf"d\.jsonl:2: source field 'src' is a JSON {kind}"):
        _docs(p, source_field="src")


def test_integer_source_field_is_a_name(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "d.jsonl", [{"text": "a", "src": 7}, {"text": "b", "src": "web"}])
    assert _docs(p, source_field="src") == [("a", "7"), ("b", "web")]


def test_arrow_source_column_must_hold_strings_or_integers(tmp_path: Path) -> None:
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a"], "src": [1.5], "n": [3]}), p)
    with pytest.raises(FormatError, match=r"d\.parquet: source column 'src' holds double"):
        _docs(p, source_field="src")
    assert _docs(p, source_field="n") == [("a", "3")]


def test_source_field_with_txt_inputs_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("some text\n")
    with pytest.raises(InputError, match=r"a\.txt: a \.txt file has no fields .* 'src'"):
        _docs(p, source_field="src")
    with pytest.raises(InputError, match=r"a\.txt: a \.txt file has no fields"):
        check_columns(discover([p]), "text", "src")
    assert _docs(p) == [("some text\n", "a")]


# ---------------------------------------------------------------- 7. broken JSON metadata
@pytest.mark.parametrize(
    ("config", "match"),
    [("{not json", "not a JSON file"), ("[1, 2]", "a JSON array, expected an object")],
)
def test_broken_tokenizer_config_is_an_input_error(
    tmp_path: Path, tok_json: str, config: str, match: str
) -> None:
    d = tmp_path / "tok"
    d.mkdir()
    (d / "tokenizer.json").write_text(Path(tok_json).read_text())
    (d / "tokenizer_config.json").write_text(config)
    with pytest.raises(InputError, match=rf"tokenizer_config\.json: {match}"):
        load_tokenizer(d / "tokenizer.json")


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ("{broken", "not a JSON file"),
        ("[]", "a JSON array"),
        ('{"tokenizer": 3}', "its 'tokenizer' entry is a JSON number"),
        ('{"tokenizer": null}', "its 'tokenizer' entry is a JSON null"),
        ('{"tokenizer": {"vocab_size": "300"}}', "tokenizer.vocab_size is '300'"),
    ],
)
def test_broken_tokenize_json_is_a_format_error(tmp_path: Path, meta: str, match: str) -> None:
    (tmp_path / "tokenize.json").write_text(meta)
    with pytest.raises(FormatError, match=rf"tokenize\.json: {match}"):
        read_dataset_meta(tmp_path)


def test_tokenize_json_without_a_tokenizer_entry_says_nothing(tmp_path: Path) -> None:
    (tmp_path / "tokenize.json").write_text('{"sources": []}')
    assert read_dataset_meta(tmp_path)[:3] == (None, None, None)


def test_broken_tokenizer_json_beside_data_is_a_format_error(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{broken")
    with pytest.raises(FormatError, match=r"tokenizer\.json: not a tokenizers JSON file"):
        read_dataset_meta(tmp_path)
