"""The package's layers, read from the source with ``ast`` (nothing is imported).

* The ground floor - ``config``, ``resources``, ``checkpoints``, ``distributed`` - imports nothing
  of ``ftbook`` but itself, at module level or inside a function: data, caches and processes
  never depend on training code, so any module may use them.
* No cycle among module-level imports: a cycle only works while every module of it happens to
  be half-initialised in the right order (chapter 9's pre-trained BERT used to sit on one:
  ``resources`` -> ``pretrain`` -> ``resources``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ftbook"
GROUND_FLOOR = {"ftbook.config", "ftbook.resources", "ftbook.checkpoints", "ftbook.distributed"}


def _module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("ftbook", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


MODULES = _module_names()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _targets(node: ast.AST, module: str) -> list[str]:
    """The ftbook modules an ``import`` / ``from ... import`` statement loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "ftbook"]
    if node.level:  # relative: from . / from .. / from .x
        package = module if _is_package(module) else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    if base.split(".")[0] != "ftbook":
        return []
    # `from pkg import name` loads pkg.name when that is a module, else pkg itself
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imports(module: str) -> tuple[set[str], set[str]]:
    """``(module_level, in_functions)``: the ftbook modules ``module`` imports when it is loaded
    (top level, class bodies, try/if blocks; not ``if TYPE_CHECKING:``), and those it imports
    only when one of its functions runs."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"), filename=str(MODULES[module]))
    top, lazy = set(), set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (lazy if in_function else top).update(t for t in _targets(child, module) if t != module)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return top, lazy


GRAPH = {name: _imports(name) for name in MODULES}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as ``[a, b, ..., a]``, or None (iterative DFS)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in sorted(edges):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(edges.get(start, ())))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(edges.get(nxt, ()))))
    return None


def test_the_parser_sees_the_imports_it_should():
    """The checks below are only as good as the graph: spot-check it against known lines."""
    assert GROUND_FLOOR <= MODULES.keys()
    assert "ftbook.config" in GRAPH["ftbook.resources"][0]  # from .config import ... (top level)
    assert "ftbook.pretrain" in GRAPH["ftbook.models"][1]  # from . import pretrain (in a function)
    assert "ftbook.pretrain" not in GRAPH["ftbook.models"][0]
    assert "ftbook.exercises" in GRAPH["ftbook.exercises.ch09"][0]  # from . import exercise
    assert "ftbook.data" in GRAPH["ftbook.training"][0]
    assert len(MODULES) > 30


def test_find_cycle_names_the_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) is None
    assert find_cycle({"x": {"x"}}) == ["x", "x"]


@pytest.mark.parametrize("module", sorted(GROUND_FLOOR))
def test_ground_floor_imports_only_the_ground_floor(module):
    top, lazy = GRAPH[module]
    above = sorted((top | lazy) - GROUND_FLOOR)
    assert not above, (f"{module} is on the ground floor but imports {above}; move the code that "
                       f"needs them up (e.g. ftbook.models for what resolves a trained model)")


def test_no_cycle_among_module_level_imports():
    cycle = find_cycle({name: top for name, (top, _) in GRAPH.items()})
    assert cycle is None, ("module-level import cycle: " + " -> ".join(cycle)
                           + " (make one of these imports lazy, inside the function that needs it)")
