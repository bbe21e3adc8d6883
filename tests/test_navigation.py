"""The page table agrees with the pages: each run sends one layout, the page's own."""

from __future__ import annotations

import ast
from pathlib import Path

from lab.navigation import HOME, LOGIN, PARTICIPANT, STAFF

ROOT = Path(__file__).resolve().parents[1]


def _layouts(path: Path) -> list[str | None]:
    """The ``layout=`` of every ``st.set_page_config`` call in a script (None when not given)."""
    found: list[str | None] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "set_page_config":
            value = next((k.value for k in node.keywords if k.arg == "layout"), None)
            found.append(value.value if isinstance(value, ast.Constant) else None if value is None else "computed")
    return found


def test_every_page_runs_with_the_layout_it_asks_for() -> None:
    # Two different layouts in one run (the app's, then the page's) can reach the browser
    # together, and it may keep the first: a wide page then jumps to the narrow layout.
    for page in (PARTICIPANT, HOME, LOGIN, *STAFF):
        asked = {v for v in _layouts(ROOT / page.path) if v is not None}
        assert asked <= {page.layout}, f"{page.path} asks for {asked}, the table says {page.layout}"
    assert _layouts(ROOT / "app.py") == [None, "computed"]  # no layout before the page is known


def test_every_page_script_is_in_the_table_once() -> None:
    """A new page cannot be forgotten: each script under pages/ has one entry, each entry a script."""
    entries = (PARTICIPANT, HOME, LOGIN, *STAFF)
    paths = [p.path for p in entries]
    scripts = sorted(f"pages/{p.name}" for p in (ROOT / "pages").glob("*.py") if not p.name.startswith("_"))
    assert sorted(paths) == scripts
    assert len({p.url_path for p in entries}) == len(entries)
    assert all(p.section for p in STAFF), "every staff page names its menu section"


def test_the_table_imports_no_page_and_no_server() -> None:
    """Navigation is a plain table: the web layer reads it, never the reverse, and no page is imported."""
    tree = ast.parse((ROOT / "lab" / "navigation.py").read_text(encoding="utf-8"))
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert not {m for m in imported if m.startswith(("streamlit", "pages", "lab.web", ".web", "web"))}, imported
