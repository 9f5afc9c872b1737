"""Pipeline stages as objects: a stage sees only the stages it declares (an undeclared
read is our bug, raised at once), and its key covers exactly those, so changing a
declared input re-runs it and its followers while an unrelated change skips it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from miniplm.errors import InternalError
from miniplm.pipeline.config import RunConfig
from miniplm.pipeline.stage import Context, Inputs, Outputs, Stage, run_stage


@dataclass
class Num(Outputs):
    value: int
    file: str


class Source(Stage[Num]):
    outputs = Num

    def __init__(self, name: str, value: int) -> None:
        super().__init__(name, (), {"value": value})

    def run(self, sdir: Path, inp: Inputs) -> Num:
        (sdir / "v.txt").write_text(str(self.params["value"]))
        return Num(self.params["value"], inp.record(sdir / "v.txt"))


class Sum(Stage[Num]):
    """Adds up the stages it declares, and (to test the guard) the ones in ``peek``."""

    outputs = Num

    def __init__(self, name: str, reads: tuple[str, ...], peek: tuple[str, ...] = ()) -> None:
        super().__init__(name, reads, {})
        self.peek = peek

    def run(self, sdir: Path, inp: Inputs) -> Num:
        total = sum(inp.get(r, Num).value for r in (*self.reads, *self.peek))
        files = [Path(inp.resolve(inp.get(r, Num).file)).read_text() for r in self.reads]
        assert [int(f) for f in files] == [inp.get(r, Num).value for r in self.reads]
        return Num(total, "")


def _run(root: Path, stages: list[Stage[Num]]) -> Context:
    ctx = Context(cfg=RunConfig(), root=root, quiet=True)
    for s in stages:
        run_stage(s, ctx)
    return ctx


def _pipeline(a: int, b: int) -> list[Stage[Num]]:
    return [Source("a", a), Source("b", b), Sum("sum_a", ("a",)), Sum("sum_b", ("b",))]


def test_a_stage_that_reads_an_undeclared_input_fails(tmp_path: Path) -> None:
    with pytest.raises(InternalError, match="'sneaky' reads 'b' without declaring it"):
        _run(tmp_path, [Source("a", 1), Source("b", 2), Sum("sneaky", ("a",), peek=("b",))])
    # Declared, the same read works.
    ctx = _run(tmp_path / "ok", [Source("a", 1), Source("b", 2), Sum("fine", ("a", "b"))])
    assert ctx.outputs("fine", Num).value == 3


def test_a_read_of_the_wrong_type_or_of_a_stage_not_run_is_internal(tmp_path: Path) -> None:
    @dataclass
    class Other(Outputs):
        x: int

    class Wrong(Stage[Num]):
        outputs = Num

        def run(self, sdir: Path, inp: Inputs) -> Num:
            inp.get("a", Other)
            raise AssertionError("unreachable")

    with pytest.raises(InternalError, match="read as Other"):
        _run(tmp_path, [Source("a", 1), Wrong("w", ("a",), {})])
    with pytest.raises(InternalError, match="which have not run"):
        _run(tmp_path / "2", [Sum("early", ("a",))])


def test_changing_a_declared_input_reruns_the_stage_and_its_followers(tmp_path: Path) -> None:
    ctx = _run(tmp_path, _pipeline(1, 2))
    assert ctx.ran == ["a", "b", "sum_a", "sum_b"]
    ctx = _run(tmp_path, _pipeline(1, 2))
    assert ctx.ran == [] and ctx.skipped == ["a", "b", "sum_a", "sum_b"]
    # b changes: b and what reads it rerun; sum_a, which does not read b, is skipped.
    ctx = _run(tmp_path, _pipeline(1, 5))
    assert ctx.ran == ["b", "sum_b"] and ctx.skipped == ["a", "sum_a"]
    assert ctx.outputs("sum_b", Num).value == 5 and ctx.outputs("sum_a", Num).value == 1
    record = json.loads((tmp_path / "b" / "stage.json").read_text())
    assert record["outputs"] == {"value": 5, "file": "b/v.txt"} and record["complete"]
    assert record["paths"] == "run-relative"


def test_a_record_of_an_older_outputs_layout_reruns(tmp_path: Path) -> None:
    _run(tmp_path, _pipeline(1, 2))
    meta_path = tmp_path / "sum_a" / "stage.json"
    meta = json.loads(meta_path.read_text())
    del meta["outputs"]["file"]  # as written by a version whose Num had no `file`
    meta_path.write_text(json.dumps(meta))
    ctx = _run(tmp_path, _pipeline(1, 2))
    assert ctx.ran == ["sum_a"]
    assert json.loads(meta_path.read_text())["outputs"] == {"value": 1, "file": ""}
