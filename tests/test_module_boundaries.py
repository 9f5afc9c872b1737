"""No import circle among ``python/miniplm`` modules. Imports inside functions count (a
circle that only closes at call time is still a circle); imports under
``if TYPE_CHECKING:`` do not (they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "python" / "miniplm"


def _module_names(root: Path) -> dict[str, Path]:
    names = {}
    for path in sorted(root.rglob("*.py*")):
        if path.suffix not in (".py", ".pyi") or path.name.startswith("."):
            continue
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.setdefault(".".join(parts), path)
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """Every module named by an import in `tree` (nested ones too), resolved to absolute.
    `from pkg import sub` names the submodule `pkg.sub` when there is one, else `pkg`."""
    found: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in modules else source)
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = _module_names(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if path.suffix == ".pyi":  # the native module: imports nothing of ours
            graph[name] = set()
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        named = _imports(tree, name, path.name == "__init__.py", set(modules))
        graph[name] = {m for m in named if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_find_cycle_sees_a_circle_through_a_nested_import(tmp_path: Path) -> None:
    pkg = tmp_path / "miniplm"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from miniplm import _core\n")
    (pkg / "_core.pyi").write_text("")
    (pkg / "data.py").write_text("from miniplm import _core\nimport os\n")
    (pkg / "sampling.py").write_text("from miniplm.data import PathLike\n")
    assert find_cycle(import_graph(pkg)) is None
    (pkg / "data.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from miniplm.sampling import select\n"
        "def f():\n    from . import sampling\n"
    )
    assert find_cycle(import_graph(pkg)) == ["miniplm.data", "miniplm.sampling", "miniplm.data"]


def test_type_checking_imports_are_not_a_circle(tmp_path: Path) -> None:
    pkg = tmp_path / "miniplm"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import miniplm.b\n")
    (pkg / "b.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    import miniplm.a\n")
    assert find_cycle(import_graph(pkg)) is None


def test_no_import_circle_in_miniplm() -> None:
    graph = import_graph(PACKAGE)
    assert "miniplm.data" in graph and "miniplm.scoring.runner" in graph
    assert find_cycle(graph) is None


def test_the_shared_model_loader_is_not_a_scoring_module() -> None:
    """Scoring, training and evaluation load models from ``miniplm.models``; the old
    ``miniplm.scoring.models`` is only a re-export for outside code."""
    graph = import_graph(PACKAGE)
    users = sorted(m for m, deps in graph.items() if "miniplm.scoring.models" in deps)
    assert not users, users
    assert "miniplm.models" in graph["miniplm.training.trainer"]


def test_one_builder_of_the_score_run_manifest() -> None:
    """A dict literal with a ``"format"`` key and the score run's FORMAT: only in
    ``miniplm.scores.score_run_manifest``."""
    sites = []
    for path in sorted(PACKAGE.rglob("*.py")):
        nodes = list(ast.walk(ast.parse(path.read_text(encoding="utf-8"))))
        its_format = path == PACKAGE / "scores.py" or any(
            isinstance(n, ast.ImportFrom)
            and n.module == "miniplm.scores"
            and any(a.name == "FORMAT" for a in n.names)
            for n in nodes
        )
        for node in nodes if its_format else ():
            if isinstance(node, ast.Dict) and any(
                isinstance(k, ast.Constant)
                and k.value == "format"
                and isinstance(v, ast.Name)
                and v.id == "FORMAT"
                for k, v in zip(node.keys, node.values)
            ):
                sites.append(str(path.relative_to(PACKAGE)))
    assert sites == ["scores.py"], sites
