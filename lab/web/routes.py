"""The plain HTTP routes the app mounts beside Streamlit: sign in, sign out, first-admin setup.

Streamlit scripts cannot set an ``HttpOnly`` cookie, so signing in happens here:

- ``GET/POST /auth/login``: a small self-contained sign-in form. A good password sets the
  ``lab_staff`` cookie (HttpOnly, SameSite=Lax, Secure over HTTPS; see
  :mod:`lab.web.visitor`).
- ``GET/POST /auth/logout``: deletes the cookie.
- ``GET/POST /auth/setup?token=…``: the one-time setup link that creates the first admin
  while no account exists (``python -m lab init`` prints it).

The POST routes refuse requests from other sites: the ``Origin`` header must name this
server, and a double-submit token (a random value in a SameSite=Strict cookie and in the
form) must match. Failed sign-ins are rate-limited per username and per client address,
counted in the database so the limits hold across replicas (:mod:`lab.web.limits`). Every
refusal says the same "wrong username or password", so the form never tells whether an
account exists; once a limit is reached the form says that sign-in is paused, for the
address or the username tried, and for how long.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlparse

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..accounts import MIN_PASSWORD_LENGTH, AccountError, authenticate, count_accounts, create_first_admin, password_fingerprint
from ..db import ready_engine, transaction
from ..settings import load_settings
from .limits import LOGIN_LIMITS, LoginLimits, Pause
from .paths import LOGIN_PATH, LOGOUT_PATH, SETUP_PATH, landing_path, safe_next
from .setup_token import setup_token_valid
from .templates import message_page, render
from .visitor import COOKIE, COOKIE_MAX_AGE, sign_account, visitor_from_cookie

CSRF_COOKIE = "lab_csrf"
"""Name of the double-submit cookie of the sign-in forms."""
LOGIN_FAILED = "Wrong username or password. After several failed attempts, sign-in pauses for a few minutes."
"""The one answer to every refused sign-in, whatever the reason."""
_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}


# --- requests and cookies -------------------------------------------------------------------


def _is_https(request: Request) -> bool:
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip() == "https"


def _same_site_request(request: Request) -> bool:
    """Whether a POST comes from this server's own pages (checked with ``Origin``)."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        netloc = urlparse(origin).netloc.lower()
        allowed = {request.headers.get("host", "").lower(), urlparse(load_settings().public_url).netloc.lower()}
        if netloc not in allowed:
            return False
    elif request.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
        return False
    return True


def _csrf_value(request: Request) -> str:
    value = request.cookies.get(CSRF_COOKIE, "")
    return value if 20 <= len(value) <= 100 else secrets.token_urlsafe(24)


def _set_csrf(response: Response, value: str, request: Request) -> None:
    secure = _is_https(request)
    response.set_cookie(CSRF_COOKIE, value, max_age=3600, path="/auth", httponly=True, samesite="strict", secure=secure)


def _csrf_ok(request: Request, form: FormData) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = str(form.get("csrf", ""))
    return bool(cookie) and secrets.compare_digest(cookie.encode(), sent.encode()) and _same_site_request(request)


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _set_staff_cookie(response: Response, value: str, request: Request) -> None:
    response.set_cookie(COOKIE, value, max_age=COOKIE_MAX_AGE, path="/", httponly=True, samesite="lax", secure=_is_https(request))


def _page(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


def _form(template: str, request: Request, status: int = 200, **values: Any) -> HTMLResponse:
    """A form page carrying a fresh (or the current) double-submit token."""
    csrf = _csrf_value(request)
    response = _page(render(template, csrf=csrf, **values), status)
    _set_csrf(response, csrf, request)
    return response


def _expired() -> HTMLResponse:
    text = "This form was sent from another page or has expired; open it again."
    return _page(message_page("Form expired", text, LOGIN_PATH, "Sign in"), 403)


def _invalid_setup() -> HTMLResponse:
    text = (
        "This setup link has expired or was already used. Ask an admin for an account, "
        "or run `python -m lab init` on the server for a new link while no account exists."
    )
    return _page(message_page("Setup link not valid", text, LOGIN_PATH, "Sign in"), 403)


def _paused(pause: Pause, next_path: str) -> RedirectResponse:
    """Back to the form, which says sign-in is paused, why, and for how long."""
    query = urlencode({"paused": pause.minutes, "by": pause.by, "next": next_path})
    return RedirectResponse(f"{LOGIN_PATH}?{query}", status_code=303)


def _pause_in(query: Mapping[str, str]) -> Pause | None:
    """The pause a redirect to the form describes (anything odd is ignored)."""
    minutes, by = query.get("paused", ""), query.get("by", "")
    if not minutes.isdigit() or not 1 <= int(minutes) <= 24 * 60 or by not in ("address", "username"):
        return None
    return Pause(by, int(minutes) * 60)


# --- database work (run in a thread: Argon2 takes tens of milliseconds) ----------------------


def _check_password(username: str, password: str) -> tuple[int, str, str] | None:
    """The account id, password fingerprint and role of a good sign-in, else None."""
    with Session(ready_engine()) as s, s.begin():
        account = authenticate(s, username, password)
        return (account.id, password_fingerprint(account.password_hash), account.role) if account is not None else None


def _signed_in(cookie: str) -> bool:
    ready_engine()
    return visitor_from_cookie(cookie).is_staff


def _no_account_yet() -> bool:
    with Session(ready_engine()) as s:
        return count_accounts(s) == 0


def _create_admin(username: str, password: str) -> tuple[int, str]:
    with transaction(ready_engine()) as s:
        account = create_first_admin(s, username, password)
        return account.id, password_fingerprint(account.password_hash)


# --- the routes -----------------------------------------------------------------------------


class SignIn:
    """The sign-in, sign-out and setup handlers, sharing one set of sign-in limits.

    Args:
        limits: Sign-in rate limits.
    """

    def __init__(self, limits: LoginLimits) -> None:
        self.limits = limits

    async def login(self, request: Request) -> Response:
        """``/auth/login``: the form (GET) and the password check (POST)."""
        if request.method == "GET":
            return await self._login_form(request)
        return await self._login_post(request)

    async def _login_form(self, request: Request) -> Response:
        next_path = safe_next(request.query_params.get("next"))
        cookie = request.cookies.get(COOKIE)
        if cookie:
            signed_in: bool = await run_in_threadpool(_signed_in, cookie)
            if signed_in:
                return RedirectResponse(next_path, status_code=303)
        error = LOGIN_FAILED if request.query_params.get("failed") else None
        if (pause := _pause_in(request.query_params)) is not None:
            error = pause.message()
        return _form("login.html", request, title="Sign in", next_path=next_path, error=error)

    async def _login_post(self, request: Request) -> Response:
        form = await request.form()
        if not _csrf_ok(request, form):
            return _expired()
        username, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
        next_path = safe_next(str(form.get("next", "/")))
        address = _client_address(request)
        # The limits and the password check read the database: off the event loop that serves every page.
        if (pause := await run_in_threadpool(self.limits.pause, username, address)) is not None:
            return _paused(pause, next_path)  # not counted: no password was tried
        found = None
        if username and password:
            found = await run_in_threadpool(_check_password, username, password)
        if found is None:
            if (pause := await run_in_threadpool(self.limits.failed, username, address)) is not None:
                return _paused(pause, next_path)
            return RedirectResponse(f"{LOGIN_PATH}?" + urlencode({"failed": "1", "next": next_path}), status_code=303)
        await run_in_threadpool(self.limits.succeeded, username)
        account_id, fingerprint, role = found
        response = RedirectResponse(landing_path(next_path, role), status_code=303)
        _set_staff_cookie(response, sign_account(account_id, fingerprint), request)
        return response

    async def logout(self, request: Request) -> Response:
        """``/auth/logout``: sign out (a link from another site only asks)."""
        if request.method == "GET" and request.headers.get("sec-fetch-site") not in ("same-origin", "none"):
            return _form("logout.html", request, title="Sign out")
        if request.method == "POST" and not _csrf_ok(request, await request.form()):
            return _expired()
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=_is_https(request))
        return response

    async def setup(self, request: Request) -> Response:
        """``/auth/setup``: the first admin's form (GET) and its creation (POST)."""
        if request.method == "GET":
            token = request.query_params.get("token", "")
            if not setup_token_valid(token) or not await run_in_threadpool(_no_account_yet):
                return _invalid_setup()
            return _setup_form(request, token, None)
        form = await request.form()
        if not _csrf_ok(request, form):
            return _expired()
        token = str(form.get("token", ""))
        if not setup_token_valid(token) or not await run_in_threadpool(_no_account_yet):
            return _invalid_setup()
        username, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
        if password != str(form.get("password2", "")):
            return _setup_form(request, token, "The two passwords differ.", 400)
        try:
            found = await run_in_threadpool(_create_admin, username, password)
        except AccountError as e:
            return _setup_form(request, token, str(e), 400)
        response = RedirectResponse("/", status_code=303)
        _set_staff_cookie(response, sign_account(*found), request)
        return response


def _setup_form(request: Request, token: str, error: str | None, status: int = 200) -> HTMLResponse:
    return _form("setup.html", request, status, title="Set up", token=token, error=error, min_length=MIN_PASSWORD_LENGTH)


def routes(limits: LoginLimits | None = None) -> list[Route]:
    """HTTP routes the app mounts: sign-in, sign-out and first-admin setup.

    Args:
        limits: Sign-in rate limits (default: :data:`~lab.web.limits.LOGIN_LIMITS`, on the configured database).
    """
    handlers = SignIn(limits or LOGIN_LIMITS)
    return [
        Route(LOGIN_PATH, handlers.login, methods=["GET", "POST"]),
        Route(LOGOUT_PATH, handlers.logout, methods=["GET", "POST"]),
        Route(SETUP_PATH, handlers.setup, methods=["GET", "POST"]),
    ]
