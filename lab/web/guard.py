"""Inside a Streamlit page: the visitor of the page session, and the role check every page runs.

Every staff page calls :func:`require_role` at its top, because Streamlit can serve a
file in ``pages/`` by URL before the app's navigation has run.
"""

from __future__ import annotations

import json
from urllib.parse import urlparse

import streamlit as st

from ..db import ready_engine
from .paths import link, safe_next, sign_in_url
from .visitor import COOKIE, Visitor, visitor_from_cookie


def _request_cookie() -> str | None:
    """The staff cookie sent with the page session's first request."""
    return st.context.cookies.get(COOKIE)


def current_visitor() -> Visitor:
    """The visitor of the running Streamlit page session."""
    ready_engine()  # the first visit of a server process migrates before anything is read
    return visitor_from_cookie(_request_cookie())


def page_url() -> str | None:
    """The page's address in the visitor's browser (None outside a browser session)."""
    try:
        return st.context.url
    except Exception:  # noqa: BLE001 - outside a browser session there is no URL
        return None


def current_path() -> str:
    """The local path of the page the browser asked for (``/`` outside a browser session)."""
    url = page_url()
    return safe_next(urlparse(url).path if url else "/")


def require_role(*roles: str) -> Visitor:
    """Stop the page unless the visitor has one of ``roles``.

    Anyone not signed in sees a sign-in link; a signed-in visitor without the role sees
    that the page is not for them. Nothing else of the page is rendered.
    """
    visitor = current_visitor()
    if visitor.can(*roles):
        return visitor
    if visitor.role is None:
        st.info("Please sign in to see this page.", icon=":material/lock:")
        st.markdown(link(sign_in_url(current_path()), "Sign in"), unsafe_allow_html=True)
    else:
        st.error(f"This page is not available to your role ({visitor.role}).", icon=":material/block:")
    st.stop()
    raise AssertionError("unreachable")


def go_to(path: str) -> None:
    """Send the browser on to a local path of this server (``path`` must be one).

    Streamlit pages cannot answer with an HTTP redirect; a one-line script replaces the
    page's address instead, so the back button does not return to the page that sent it on.

    Raises:
        ValueError: for anything but a local path (another site, ``//host``, a script URL).
    """
    if safe_next(path) != path:
        raise ValueError(f"not a local path: {path!r}")
    # The path goes in as a JSON string with "<" escaped, so it cannot close the script.
    target = json.dumps(path).replace("<", "\\u003c")
    st.html(f"<script>window.location.replace({target});</script>", unsafe_allow_javascript=True)
