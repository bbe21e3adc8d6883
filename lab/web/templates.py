"""The sign-in routes' pages, rendered from ``lab/web/templates/`` with every value escaped."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

FOLDER = Path(__file__).resolve().parent / "templates"
"""Where the page templates and their style sheet are."""


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(FOLDER),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
    )


def render(name: str, **values: Any) -> str:
    """The page ``name`` (a file in ``templates/``) filled with ``values``, each HTML-escaped."""
    return _environment().get_template(name).render(**values)


def message_page(title: str, text: str, link_to: str = "/", link_label: str = "Back to the lab") -> str:
    """A page that says one thing and offers one link."""
    return render("message.html", title=title, text=text, link_to=link_to, link_label=link_label)
