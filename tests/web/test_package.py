"""The web package's shape: only it (and ``lab.ui``) import Streamlit, and no lab module imports one that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

LAB = Path(__file__).resolve().parents[2] / "lab"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LAB.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (lazy imports inside functions too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{alias.name}" for alias in node.names)
    return out


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in LAB.rglob("*.py")}
    return {name: {m for m in imports(path) if m in files and m != name} for name, path in files.items()}


def test_only_the_web_layer_imports_streamlit() -> None:
    users = {module_name(p) for p in LAB.rglob("*.py") if any(m.split(".")[0] == "streamlit" for m in imports(p))}
    assert users == {"lab.ui", "lab.web.guard"}


def test_web_modules_and_navigation_import_no_circle() -> None:
    g = graph()
    web = {m for m in g if m.startswith("lab.web") or m in ("lab.navigation", "lab.ui", "lab.accounts", "lab.cli", "lab.errors")}
    for start in web:
        seen: set[str] = set()
        stack = list(g[start])
        while stack:
            m = stack.pop()
            assert m != start, f"{start} imports a module that imports it back"
            if m not in seen:
                seen.add(m)
                stack.extend(g[m])


def test_the_domain_never_imports_the_web_package() -> None:
    """``lab.web`` imports the domain (accounts, db, navigation); only the interfaces import ``lab.web``."""
    g = graph()
    interfaces = {"lab.ui", "lab.cli"}
    offenders = {
        m: sorted(t for t in targets if t.startswith("lab.web"))
        for m, targets in g.items()
        if not m.startswith("lab.web") and m not in interfaces
    }
    assert not {m: t for m, t in offenders.items() if t}
