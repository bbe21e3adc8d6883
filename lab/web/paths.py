"""Where a visitor is sent: local return paths, the sign-in link, the page after signing in."""

from __future__ import annotations

import html
from urllib.parse import urlencode

from ..navigation import pages_for
from .visitor import Visitor

LOGIN_PATH = "/auth/login"
LOGOUT_PATH = "/auth/logout"
SETUP_PATH = "/auth/setup"


def safe_next(path: str | None) -> str:
    """A local path to return to after signing in (anything else becomes ``/``)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path or len(path) > 500:
        return "/"
    if any(ord(c) < 32 for c in path):
        return "/"
    return path


def sign_in_url(next_path: str = "/") -> str:
    """Path of the sign-in form that returns to ``next_path`` afterwards."""
    return f"{LOGIN_PATH}?" + urlencode({"next": safe_next(next_path)})


def link(url: str, label: str) -> str:
    """An HTML link that opens in the same tab (Streamlit's own links open new tabs)."""
    return f'<a href="{html.escape(url, quote=True)}" target="_self">{html.escape(label)}</a>'


def landing_path(next_path: str, role: str) -> str:
    """Where to send a visitor after signing in.

    The app serves a visitor's default page at ``/``; its own path would answer "page not
    found" once the navigation is built, so it becomes ``/``.
    """
    _, default = pages_for(Visitor(role, "", 0), {})
    return "/" if next_path.split("?")[0].rstrip("/") == f"/{default.url_path}" else next_path
