"""No function of the library or the pages runs to 80 lines: a long one is split into named parts.

A function's length counts from its ``def`` line to its last line, docstring included
(decorators not). A function that truly reads better whole goes in ``ALLOWED`` with the
reason beside it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LIMIT = 80
"""A function this long or longer fails the test."""

ALLOWED: dict[str, str] = {}
"""``path:function`` → why it stays whole. Empty: every long function had parts worth a name."""


def long_functions(root: Path, folders: tuple[str, ...] = ("lab", "pages"), limit: int = LIMIT) -> list[str]:
    """``path:function (N lines)`` for every function of ``limit`` lines or more under ``folders``."""
    found = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    if length >= limit:
                        found.append(f"{path.relative_to(root).as_posix()}:{node.name} ({length} lines)")
    return found


def test_no_function_runs_to_80_lines() -> None:
    too_long = [f for f in long_functions(ROOT) if f.partition(" ")[0] not in ALLOWED]
    assert not too_long, "split these into named parts: " + ", ".join(too_long)


def test_every_allowed_function_is_still_long() -> None:
    names = {f.partition(" ")[0] for f in long_functions(ROOT)}
    assert not set(ALLOWED) - names, f"no longer long, so leave ALLOWED: {sorted(set(ALLOWED) - names)}"


def test_a_long_function_is_found(tmp_path: Path) -> None:
    (tmp_path / "lab").mkdir()
    body = "".join(f"    x{n} = {n}\n" for n in range(LIMIT - 1))
    (tmp_path / "lab" / "long.py").write_text(f"def short() -> None:\n    pass\n\n\nasync def long() -> None:\n{body}")
    assert long_functions(tmp_path) == [f"lab/long.py:long ({LIMIT} lines)"]
    (tmp_path / "lab" / "long.py").write_text(f"def nearly() -> None:\n{body[: body.rindex('    x')]}")
    assert long_functions(tmp_path) == []
