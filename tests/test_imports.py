"""The library's modules import one another without circles, imports inside functions included.

An import made inside a function still ties two modules together; a circle through one only
fails when the function runs, so the graph here counts every ``import`` and ``from`` in
``lab/`` wherever it stands. Imports under ``if TYPE_CHECKING:`` never run and are left out.
Importing ``lab.a.b`` from outside ``lab.a`` runs ``lab/a/__init__.py`` first, so such an
import also counts as one of ``lab.a``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "lab"


def _module_names() -> dict[str, Path]:
    names = {}
    for path in LAB.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


MODULES = _module_names()


def _owner(name: str) -> str | None:
    """The module of the library that ``name`` (a module or a name in one) belongs to."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_only(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a module, at any depth, except those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):
                todo.extend(getattr(child, "orelse", []))
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append(child)
            todo.append(child)
    return found


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The library modules one import statement loads (its packages' ``__init__`` included)."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    named: list[str] = []
    if isinstance(node, ast.Import):
        named = [alias.name for alias in node.names]
    else:
        if node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        named = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source for alias in node.names]
    out: set[str] = set()
    for name in named:
        target = _owner(name)
        if target is None:
            continue
        out.add(target)
        parent = target.rpartition(".")[0]
        while parent and not (module == parent or module.startswith(parent + ".")):
            out.add(parent)
            parent = parent.rpartition(".")[0]
    out.discard(module)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module → the library modules it imports (anywhere in its body)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[module] = set().union(*(_targets(module, node) for node in _imports(tree)))
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_no_import_circles() -> None:
    graph = import_graph()
    found = circles(graph)
    described = ["\n".join(f"  {m} -> {', '.join(sorted(graph[m] & set(group)))}" for m in group) for group in found]
    assert not found, "import circles in lab/:\n" + "\n\n".join(described)


def test_the_graph_sees_imports_inside_functions() -> None:
    module = next(iter(MODULES))
    tree = ast.parse("def f():\n    from lab import db\n")
    assert _targets(module, _imports(tree)[0]) >= {"lab.db"}
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_type_checking_imports_are_not_counted() -> None:
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lab import db\n")
    assert [node for node in _imports(tree) if node.module == "lab"] == []


def test_a_submodule_import_from_outside_runs_its_package() -> None:
    targets = _targets("lab.labels", ast.parse("from lab.judge._rules import RuleJudge").body[0])  # type: ignore[arg-type]
    assert targets == {"lab.judge._rules", "lab.judge"}
    inside = _targets("lab.judge._scoring", ast.parse("from ._rules import RuleJudge").body[0])  # type: ignore[arg-type]
    assert inside == {"lab.judge._rules"}
