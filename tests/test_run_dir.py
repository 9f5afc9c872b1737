"""`miniplm run`'s hold on its --out: it writes only into a new or empty directory, or a
run directory (marked), never deletes a folder it did not write or one holding an input
of the run, and one run at a time holds the directory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from miniplm.errors import InputError, OutputLockedError
from miniplm.pipeline.config import RunConfig
from miniplm.pipeline.run import RUN_MARK, _claim_run_dir, run_pipeline
from miniplm.pipeline.stage import Context, Inputs, Outputs, Stage, run_stage


@dataclass
class Made(Outputs):
    file: str


class Write(Stage[Made]):
    """A stage that writes one file into its folder."""

    outputs = Made

    def __init__(self, value: int) -> None:
        super().__init__("data", (), {"value": value})

    def run(self, sdir: Path, inp: Inputs) -> Made:
        (sdir / "out.txt").write_text(str(self.params["value"]))
        return Made(inp.record(sdir / "out.txt"))


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_a_users_folder_is_refused_untouched(tmp_path: Path) -> None:
    """The audit's case: --out . in a project with data/corpus.jsonl and a config.json
    of its own. Before, the data stage deleted data/ and config.json was replaced."""
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "data" / "corpus.jsonl").write_text('{"text": "x"}\n')
    (proj / "config.json").write_text("{}")
    before = _tree(proj)
    with pytest.raises(InputError, match="not a `miniplm run` directory"):
        run_pipeline(RunConfig(), proj, quiet=True)
    assert _tree(proj) == before
    with pytest.raises(InputError, match="not a directory"):
        run_pipeline(RunConfig(), proj / "config.json", quiet=True)


def test_new_empty_marked_and_older_run_dirs_are_taken(tmp_path: Path) -> None:
    for d in (tmp_path / "new" / "deep", tmp_path / "empty"):
        if d.name == "empty":
            d.mkdir()
        _claim_run_dir(d)
        assert json.loads((d / RUN_MARK).read_text())["format"] == "miniplm.run"
        _claim_run_dir(d)  # marked: taken again
    old = tmp_path / "old"  # a run of a version before the mark
    (old / "data").mkdir(parents=True)
    (old / "data" / "stage.json").write_text(json.dumps({"key": "k"}))
    (old / "report.md").write_text("# old")
    _claim_run_dir(old)
    assert (old / RUN_MARK).is_file() and (old / "report.md").read_text() == "# old"


def _ctx(root: Path, cfg: RunConfig | None = None) -> Context:
    root.mkdir(parents=True, exist_ok=True)
    return Context(cfg=cfg or RunConfig(), root=root, quiet=True)


def test_a_stage_folder_without_its_record_is_not_deleted(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "data" / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match=r"without its stage.json.*nothing was deleted"):
        run_stage(Write(1), _ctx(run))
    assert (run / "data" / "mine.txt").read_text() == "keep"
    (run / "data" / "mine.txt").unlink()  # an empty folder (a stage killed at once): reused
    ctx = _ctx(run)
    run_stage(Write(1), ctx)
    assert ctx.ran == ["data"] and (run / "data" / "out.txt").read_text() == "1"


def test_a_changed_key_reruns_but_never_deletes_an_input(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_stage(Write(1), _ctx(run))
    run_stage(Write(2), _ctx(run))  # another key: redone from scratch
    assert (run / "data" / "out.txt").read_text() == "2"
    (run / "data" / "corpus.jsonl").write_text('{"text": "x"}\n')
    cfg = RunConfig()
    cfg.corpus.inputs = [str(run / "data" / "corpus.jsonl")]
    with pytest.raises(InputError, match="refusing to write this output"):
        run_stage(Write(3), _ctx(run, cfg))
    assert (run / "data" / "corpus.jsonl").is_file()


@pytest.mark.parametrize("bad", ["not json", json.dumps([1]), json.dumps({"x": 1})])
def test_a_foreign_stage_json_is_refused(tmp_path: Path, bad: str) -> None:
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "data" / "stage.json").write_text(bad)
    with pytest.raises(InputError, match="not a miniplm run stage record"):
        run_stage(Write(1), _ctx(run))
    assert (run / "data" / "stage.json").read_text() == bad


def test_a_stage_name_taken_by_a_file_or_link_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x").write_text("x")
    (run / "data").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InputError, match="a file or a link"):
        run_stage(Write(1), _ctx(run))
    assert (tmp_path / "elsewhere" / "x").read_text() == "x"


def test_a_second_run_on_the_same_dir_is_refused(tmp_path: Path) -> None:
    from miniplm._atomic import output_lock

    run = tmp_path / "run"
    with output_lock(run.resolve()), pytest.raises(OutputLockedError):
        run_pipeline(RunConfig(), run, quiet=True)
