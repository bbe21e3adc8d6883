"""Who is visiting: staff sign in with a password and carry a signed HttpOnly cookie.

Participants never sign in: their link token identifies them. Staff roles come from the
``account`` table; the cookie holds the account id and a signature made with the lab's
secret, and is checked against the database on every new page session, so a disabled
account loses access at once. Every page calls :func:`require_role` at its top, because
Streamlit can serve a file in ``pages/`` by URL before the app's navigation has run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .settings import load_settings

COOKIE = "lab_staff"
COOKIE_MAX_AGE = 14 * 24 * 3600
"""Seconds a sign-in lasts."""
STAFF_ROLES = ("admin", "experimenter", "annotator")


@dataclass(frozen=True)
class Visitor:
    """The person behind the current page session."""

    role: str | None = None
    """admin, experimenter, annotator, or None for anyone not signed in."""
    username: str | None = None
    account_id: int | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    def can(self, *roles: str) -> bool:
        """Whether the visitor has one of ``roles`` (admins have every staff role)."""
        return self.role is not None and (self.role in roles or (self.role == "admin" and bool(set(roles) & set(STAFF_ROLES))))


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(load_settings().secret_key, salt="lab-staff-cookie")


def sign_account(account_id: int) -> str:
    """Cookie value for a signed-in account."""
    return _serializer().dumps({"a": account_id})


def account_from_cookie(value: str | None) -> int | None:
    """The account id in a valid, unexpired cookie value."""
    if not value:
        return None
    try:
        data = _serializer().loads(value, max_age=COOKIE_MAX_AGE)
    except (BadSignature, SignatureExpired):
        return None
    account = data.get("a") if isinstance(data, dict) else None
    return account if isinstance(account, int) else None


def visitor_from_cookie(value: str | None) -> Visitor:
    """Resolve a cookie value against the database."""
    account_id = account_from_cookie(value)
    if account_id is None:
        return Visitor()
    from sqlalchemy.orm import Session

    from .db import get_engine
    from .schema import Account

    with Session(get_engine()) as s:
        account = s.get(Account, account_id)
        if account is None or not account.active:
            return Visitor()
        return Visitor(account.role, account.username, account.id)


def current_visitor() -> Visitor:
    """The visitor of the running Streamlit page session."""
    import streamlit as st

    from .ui import engine

    engine()  # the first visit of a server process migrates before anything is read
    return visitor_from_cookie(st.context.cookies.get(COOKIE))


def require_role(*roles: str) -> Visitor:
    """Stop the page unless the visitor has one of ``roles``.

    Anyone not signed in sees a sign-in link; a signed-in visitor without the role sees
    that the page is not for them. Nothing else of the page is rendered.
    """
    import streamlit as st

    visitor = current_visitor()
    if visitor.can(*roles):
        return visitor
    if visitor.role is None:
        st.info("Please sign in to see this page.")
        st.page_link("pages/login.py", label="Sign in")
    else:
        st.error("Your account does not have access to this page.")
    st.stop()
    raise AssertionError("unreachable")


def routes() -> list[Any]:
    """HTTP routes the app mounts: sign-in and sign-out."""
    from starlette.requests import Request
    from starlette.responses import RedirectResponse, Response
    from starlette.routing import Route

    async def login(request: Request) -> Response:
        from sqlalchemy.orm import Session

        from .accounts import authenticate
        from .db import get_engine

        form = await request.form()
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        with Session(get_engine()) as s, s.begin():
            account = authenticate(s, username, password)
            account_id = account.id if account is not None else None
        if account_id is None:
            return RedirectResponse("/login?failed=1", status_code=303)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, sign_account(account_id), max_age=COOKIE_MAX_AGE, httponly=True, samesite="lax")
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    return [Route("/auth/login", login, methods=["POST"]), Route("/auth/logout", logout, methods=["POST", "GET"])]
