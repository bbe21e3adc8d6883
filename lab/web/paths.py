"""Where a visitor is sent: local return paths, the sign-in link, the page after signing in."""

from __future__ import annotations

import html
from urllib.parse import urlencode, urlsplit

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


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_and_path(url: str) -> tuple[str, str]:
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    host = (parts.hostname or "").lower()
    return f"{scheme}://{host}:{port}", parts.path.rstrip("/")


def elsewhere(public_url: str, opened_url: str | None) -> str | None:
    """The address a page was opened at, when links made with ``public_url`` would not lead there.

    Args:
        public_url: ``LAB_PUBLIC_URL``, the base of every link the lab makes.
        opened_url: The page's address in the visitor's browser (None when unknown).

    Returns:
        The browser's ``scheme://host[:port]`` when it differs from ``public_url``'s (or the
        page lies outside its path); None when they agree or the address is unknown.
    """
    if not opened_url or not urlsplit(opened_url).netloc:
        return None
    public_origin, public_path = _origin_and_path(public_url)
    opened_origin, opened_path = _origin_and_path(opened_url)
    if opened_origin == public_origin and (opened_path + "/").startswith(public_path + "/"):
        return None
    parts = urlsplit(opened_url)
    return f"{parts.scheme}://{parts.netloc}"
