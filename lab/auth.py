"""Who is visiting: staff sign in with a password and carry a signed HttpOnly cookie.

Participants never sign in: their link token identifies them. Staff roles come from the
``account`` table. Streamlit scripts cannot set an HttpOnly cookie, so signing in happens
on plain HTTP routes the app mounts beside Streamlit (:func:`routes`):

- ``GET/POST /auth/login``: a small self-contained sign-in form. A good password sets the
  ``lab_staff`` cookie (HttpOnly, SameSite=Lax, Secure over HTTPS): the account id and a
  digest of its password hash, signed with the lab's secret. A new password therefore
  ends every older sign-in, and a disabled account loses access at its next page.
- ``GET/POST /auth/logout``: deletes the cookie.
- ``GET/POST /auth/setup?token=…``: the one-time setup link that creates the first admin
  while no account exists (``python -m lab init`` prints it).

The POST routes refuse requests from other sites: the ``Origin`` header must name this
server, and a double-submit token (a random value in a SameSite=Strict cookie and in the
form) must match. Failed sign-ins are rate-limited per username and per client address in
a sliding window held in this process's memory (each app process counts on its own). Every
refusal says the same "wrong username or password", so the form never tells whether an
account exists.

Every page calls :func:`require_role` at its top, because Streamlit can serve a file in
``pages/`` by URL before the app's navigation has run.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlparse

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .settings import load_settings

COOKIE = "lab_staff"
COOKIE_MAX_AGE = 14 * 24 * 3600
"""Seconds a sign-in lasts."""
CSRF_COOKIE = "lab_csrf"
SETUP_MAX_AGE = 24 * 3600
"""Seconds a setup link stays valid (and only while no account exists)."""
STAFF_ROLES = ("admin", "experimenter", "annotator")
LOGIN_FAILED = "Wrong username or password. After several failed attempts, sign-in pauses for a few minutes."
"""The one answer to every refused sign-in, whatever the reason."""


@dataclass(frozen=True)
class Visitor:
    """The person behind the current page session."""

    role: str | None = None
    """admin, experimenter, annotator, or None for anyone not signed in."""
    username: str | None = None
    account_id: int | None = None

    @property
    def is_staff(self) -> bool:
        """Whether the visitor is signed in with a staff role."""
        return self.role in STAFF_ROLES

    def can(self, *roles: str) -> bool:
        """Whether the visitor has one of ``roles`` (admins have every staff role)."""
        return self.role is not None and (self.role in roles or (self.role == "admin" and bool(set(roles) & set(STAFF_ROLES))))


# --- the signed cookie ----------------------------------------------------------------------


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(load_settings().secret_key, salt=salt)


def sign_account(account_id: int, fingerprint: str) -> str:
    """Cookie value for a signed-in account.

    Args:
        account_id: The account's id.
        fingerprint: :func:`lab.accounts.password_fingerprint` of its current password hash.
    """
    return _serializer("lab-staff-cookie").dumps({"a": account_id, "f": fingerprint})


def cookie_for(account: Any) -> str:
    """Cookie value for an ``Account`` row."""
    from .accounts import password_fingerprint

    return sign_account(account.id, password_fingerprint(account.password_hash))


def account_from_cookie(value: str | None) -> tuple[int, str] | None:
    """The account id and password fingerprint in a valid, unexpired cookie value."""
    if not value or len(value) > 4096:
        return None
    try:
        data = _serializer("lab-staff-cookie").loads(value, max_age=COOKIE_MAX_AGE)
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(data, dict):
        return None
    account, fingerprint = data.get("a"), data.get("f")
    if not isinstance(account, int) or not isinstance(fingerprint, str):
        return None
    return account, fingerprint


def visitor_from_cookie(value: str | None) -> Visitor:
    """Resolve a cookie value against the database (anyone not signed in when it fails)."""
    found = account_from_cookie(value)
    if found is None:
        return Visitor()
    from sqlalchemy.orm import Session

    from .accounts import password_fingerprint
    from .db import get_engine
    from .schema import Account

    account_id, fingerprint = found
    with Session(get_engine()) as s:
        account = s.get(Account, account_id)
        if account is None or not account.active or not secrets.compare_digest(password_fingerprint(account.password_hash), fingerprint):
            return Visitor()
        return Visitor(account.role, account.username, account.id)


# --- inside a Streamlit page ----------------------------------------------------------------


def _request_cookie() -> str | None:
    """The staff cookie sent with the page session's first request."""
    import streamlit as st

    return st.context.cookies.get(COOKIE)


def current_visitor() -> Visitor:
    """The visitor of the running Streamlit page session."""
    from .ui import engine

    engine()  # the first visit of a server process migrates before anything is read
    return visitor_from_cookie(_request_cookie())


def _current_path() -> str:
    import streamlit as st

    try:
        url = st.context.url
    except Exception:  # noqa: BLE001 - outside a browser session there is no URL
        url = None
    return safe_next(urlparse(url).path if url else "/")


def sign_in_url(next_path: str = "/") -> str:
    """Path of the sign-in form that returns to ``next_path`` afterwards."""
    return "/auth/login?" + urlencode({"next": safe_next(next_path)})


def link(url: str, label: str) -> str:
    """An HTML link that opens in the same tab (Streamlit's own links open new tabs)."""
    return f'<a href="{html.escape(url, quote=True)}" target="_self">{html.escape(label)}</a>'


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
        st.info("Please sign in to see this page.", icon=":material/lock:")
        st.markdown(link(sign_in_url(_current_path()), "Sign in"), unsafe_allow_html=True)
    else:
        st.error(f"Your account ({visitor.role}) does not have access to this page.", icon=":material/block:")
    st.stop()
    raise AssertionError("unreachable")


# --- rate limits ----------------------------------------------------------------------------


class SlidingWindow:
    """Counts events per key over the last ``window`` seconds (this process only).

    Args:
        limit: Events within the window that make a key blocked.
        window: Length of the window in seconds.
        max_keys: Most keys kept; the stalest are dropped first, so a flood of new keys
            cannot grow memory without bound.
    """

    def __init__(self, limit: int, window: float, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _prune(self, key: str, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - self.window:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events

    def blocked(self, key: str, now: float | None = None) -> bool:
        """Whether ``key`` has reached the limit within the window."""
        now = time.monotonic() if now is None else now
        with self._lock:
            events = self._prune(key, now)
            return events is not None and len(events) >= self.limit

    def hit(self, key: str, now: float | None = None) -> None:
        """Record one event for ``key``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            events = self._prune(key, now)
            if events is None:
                if len(self._events) >= self.max_keys:
                    stalest = min(self._events, key=lambda k: self._events[k][-1])
                    del self._events[stalest]
                events = self._events[key] = deque()
            events.append(now)

    def reset(self, key: str) -> None:
        """Forget ``key``."""
        with self._lock:
            self._events.pop(key, None)


@dataclass
class LoginLimits:
    """Failed sign-ins allowed per username and per client address."""

    per_user: SlidingWindow
    per_address: SlidingWindow

    @classmethod
    def default(cls) -> LoginLimits:
        """5 failures per username and 20 per address in 15 minutes."""
        return cls(SlidingWindow(5, 15 * 60), SlidingWindow(20, 15 * 60))

    def allowed(self, username: str, address: str) -> bool:
        """Whether a sign-in may be tried now."""
        return not (self.per_user.blocked(username.lower()) or self.per_address.blocked(address))

    def failed(self, username: str, address: str) -> None:
        """Count a refused sign-in."""
        self.per_user.hit(username.lower())
        self.per_address.hit(address)

    def succeeded(self, username: str) -> None:
        """A good password clears the username's count."""
        self.per_user.reset(username.lower())


LOGIN_LIMITS = LoginLimits.default()
"""The process's sign-in limits."""


# --- setup link -----------------------------------------------------------------------------


def setup_token() -> str:
    """A setup token: signed with the lab's secret, valid for a day while no account exists.

    Nothing about it is stored, so a copy of the database cannot be used to make one; it
    stops working the moment the first account exists.
    """
    return _serializer("lab-setup").dumps({"n": secrets.token_urlsafe(16)})


def setup_link(base_url: str | None = None) -> str:
    """The one-time setup link (``{LAB_PUBLIC_URL}/auth/setup?token=…``)."""
    base = (base_url or load_settings().public_url).rstrip("/")
    return f"{base}/auth/setup?token={quote(setup_token())}"


def setup_token_valid(token: str | None) -> bool:
    """Whether a setup token is genuine and unexpired (the caller also checks no account exists)."""
    if not token or len(token) > 500:
        return False
    try:
        _serializer("lab-setup").loads(token, max_age=SETUP_MAX_AGE)
    except (BadSignature, SignatureExpired):
        return False
    return True


# --- HTTP routes ----------------------------------------------------------------------------


def safe_next(path: str | None) -> str:
    """A local path to return to after signing in (anything else becomes ``/``)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path or len(path) > 500:
        return "/"
    if any(ord(c) < 32 for c in path):
        return "/"
    return path


def landing_path(next_path: str, role: str) -> str:
    """Where to send a visitor after signing in.

    The app serves a visitor's default page at ``/``; its own path would answer "page not
    found" once the navigation is built, so it becomes ``/``.
    """
    from .navigation import pages_for

    _, default = pages_for(Visitor(role, "", 0), {})
    return "/" if next_path.split("?")[0].rstrip("/") == f"/{default.url_path}" else next_path


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f6f7f9;color:#1f2328;margin:0}
main{max-width:22rem;margin:12vh auto;background:#fff;border:1px solid #d8dde3;border-radius:10px;padding:2rem}
h1{font-size:1.35rem;margin:0 0 1.2rem}label{display:block;font-size:.9rem;margin:.8rem 0 .3rem}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.55rem;border:1px solid #b8c0c8;
border-radius:6px;font-size:1rem}button{margin-top:1.2rem;width:100%;padding:.6rem;border:0;border-radius:6px;
background:#d6336c;color:#fff;font-size:1rem;cursor:pointer}.msg{padding:.6rem .8rem;border-radius:6px;margin-bottom:.8rem;
font-size:.9rem}.err{background:#fdecea;color:#8a1c12}.ok{background:#e8f4ea;color:#1b5e20}p{font-size:.9rem}a{color:#d6336c}
"""


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)} · Repair Lab</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def _login_form(csrf: str, next_path: str, error: str | None) -> str:
    msg = f"<div class='msg err' role='alert'>{html.escape(error)}</div>" if error else ""
    return _page(
        "Sign in",
        "<h1>Repair Lab · staff sign in</h1>"
        f"{msg}<form method='post' action='/auth/login'>"
        f"<input type='hidden' name='csrf' value='{html.escape(csrf, quote=True)}'>"
        f"<input type='hidden' name='next' value='{html.escape(next_path, quote=True)}'>"
        "<label for='username'>Username</label>"
        "<input id='username' name='username' type='text' autocomplete='username' required autofocus>"
        "<label for='password'>Password</label>"
        "<input id='password' name='password' type='password' autocomplete='current-password' required>"
        "<button type='submit'>Sign in</button></form>"
        "<p>Taking part in a study? Use the link you were given; no sign-in is needed.</p>",
    )


def _setup_form(csrf: str, token: str, error: str | None) -> str:
    msg = f"<div class='msg err' role='alert'>{html.escape(error)}</div>" if error else ""
    return _page(
        "Set up",
        "<h1>Create the first admin account</h1>"
        "<p>This link works once: it stops working as soon as the first account exists.</p>"
        f"{msg}<form method='post' action='/auth/setup'>"
        f"<input type='hidden' name='csrf' value='{html.escape(csrf, quote=True)}'>"
        f"<input type='hidden' name='token' value='{html.escape(token, quote=True)}'>"
        "<label for='username'>Username</label>"
        "<input id='username' name='username' type='text' autocomplete='username' required autofocus>"
        "<label for='password'>Password (at least 10 characters)</label>"
        "<input id='password' name='password' type='password' autocomplete='new-password' required>"
        "<label for='password2'>Password again</label>"
        "<input id='password2' name='password2' type='password' autocomplete='new-password' required>"
        "<button type='submit'>Create account and sign in</button></form>",
    )


def _message_page(title: str, text: str, link_to: str = "/", link_label: str = "Back to the lab") -> str:
    return _page(
        title,
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
        f"<p><a href='{html.escape(link_to, quote=True)}'>{html.escape(link_label)}</a></p>",
    )


def _logout_form(csrf: str) -> str:
    return _page(
        "Sign out",
        "<h1>Sign out of Repair Lab?</h1>"
        f"<form method='post' action='/auth/logout'><input type='hidden' name='csrf' value='{html.escape(csrf, quote=True)}'>"
        "<button type='submit'>Sign out</button></form>",
    )


_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def _ready_engine() -> Any:
    """The configured engine, migrated once per process (a route may be a server's first request)."""
    from .db import get_engine, migrate

    engine = get_engine()
    key = engine.url.render_as_string(hide_password=True)
    if key not in _migrated:
        with _migrate_lock:
            if key not in _migrated:
                migrate(engine)
                _migrated.add(key)
    return engine


def _is_https(request: Any) -> bool:
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip() == "https"


def _same_site_request(request: Any) -> bool:
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


def _csrf_value(request: Any) -> str:
    value = request.cookies.get(CSRF_COOKIE, "")
    return value if 20 <= len(value) <= 100 else secrets.token_urlsafe(24)


def _set_csrf(response: Any, value: str, request: Any) -> None:
    response.set_cookie(CSRF_COOKIE, value, max_age=3600, path="/auth", httponly=True, samesite="strict", secure=_is_https(request))


def _csrf_ok(request: Any, form: Any) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = str(form.get("csrf", ""))
    return bool(cookie) and secrets.compare_digest(cookie.encode(), sent.encode()) and _same_site_request(request)


def _client_address(request: Any) -> str:
    return request.client.host if request.client else "unknown"


def _set_staff_cookie(response: Any, value: str, request: Any) -> None:
    response.set_cookie(COOKIE, value, max_age=COOKIE_MAX_AGE, path="/", httponly=True, samesite="lax", secure=_is_https(request))


def routes(limits: LoginLimits | None = None) -> list[Any]:
    """HTTP routes the app mounts: sign-in, sign-out and first-admin setup.

    Args:
        limits: Sign-in rate limits (default: the process-wide :data:`LOGIN_LIMITS`).
    """
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, RedirectResponse, Response
    from starlette.routing import Route

    guard = limits or LOGIN_LIMITS
    no_store = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}

    def html_response(body: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(body, status_code=status, headers=no_store)

    def expired() -> HTMLResponse:
        return html_response(
            _message_page("Form expired", "This form was sent from another page or has expired; open it again.", "/auth/login", "Sign in"), 403
        )

    def _check_password(username: str, password: str) -> tuple[int, str, str] | None:
        from sqlalchemy.orm import Session

        from .accounts import authenticate, password_fingerprint

        with Session(_ready_engine()) as s, s.begin():
            account = authenticate(s, username, password)
            return (account.id, password_fingerprint(account.password_hash), account.role) if account is not None else None

    def _signed_in(cookie: str) -> bool:
        _ready_engine()
        return visitor_from_cookie(cookie).is_staff

    async def login(request: Request) -> Response:
        if request.method == "GET":
            next_path = safe_next(request.query_params.get("next"))
            if request.cookies.get(COOKIE) and await run_in_threadpool(_signed_in, request.cookies.get(COOKIE)):
                return RedirectResponse(next_path, status_code=303)
            csrf = _csrf_value(request)
            error = LOGIN_FAILED if request.query_params.get("failed") else None
            response = html_response(_login_form(csrf, next_path, error))
            _set_csrf(response, csrf, request)
            return response
        form = await request.form()
        if not _csrf_ok(request, form):
            return expired()
        username, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
        next_path = safe_next(str(form.get("next", "/")))
        address = _client_address(request)
        found = None
        if username and password and guard.allowed(username, address):
            # Argon2 takes tens of milliseconds: keep it off the event loop that serves every page.
            found = await run_in_threadpool(_check_password, username, password)
        if found is None:
            guard.failed(username, address)
            return RedirectResponse("/auth/login?" + urlencode({"failed": "1", "next": next_path}), status_code=303)
        guard.succeeded(username)
        account_id, fingerprint, role = found
        response = RedirectResponse(landing_path(next_path, role), status_code=303)
        _set_staff_cookie(response, sign_account(account_id, fingerprint), request)
        return response

    async def logout(request: Request) -> Response:
        if request.method == "GET" and request.headers.get("sec-fetch-site") not in ("same-origin", "none"):
            # A link from another site cannot sign anyone out; ask instead.
            csrf = _csrf_value(request)
            response = html_response(_logout_form(csrf))
            _set_csrf(response, csrf, request)
            return response
        if request.method == "POST" and not _csrf_ok(request, await request.form()):
            return expired()
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=_is_https(request))
        return response

    def _no_account_yet() -> bool:
        from sqlalchemy.orm import Session

        from .accounts import count_accounts

        with Session(_ready_engine()) as s:
            return count_accounts(s) == 0

    def _create_admin(username: str, password: str) -> tuple[int, str]:
        from .accounts import create_first_admin, password_fingerprint
        from .db import transaction

        with transaction(_ready_engine()) as s:
            account = create_first_admin(s, username, password)
            return account.id, password_fingerprint(account.password_hash)

    invalid_setup = _message_page(
        "Setup link not valid",
        "This setup link has expired or was already used. Ask an admin for an account, "
        "or run `python -m lab init` on the server for a new link while no account exists.",
        "/auth/login",
        "Sign in",
    )

    async def setup(request: Request) -> Response:
        from .accounts import AccountError

        if request.method == "GET":
            token = request.query_params.get("token", "")
            if not setup_token_valid(token) or not await run_in_threadpool(_no_account_yet):
                return html_response(invalid_setup, 403)
            csrf = _csrf_value(request)
            response = html_response(_setup_form(csrf, token, None))
            _set_csrf(response, csrf, request)
            return response
        form = await request.form()
        if not _csrf_ok(request, form):
            return expired()
        token = str(form.get("token", ""))
        if not setup_token_valid(token) or not await run_in_threadpool(_no_account_yet):
            return html_response(invalid_setup, 403)
        username, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
        csrf = request.cookies.get(CSRF_COOKIE, "")
        if password != str(form.get("password2", "")):
            return html_response(_setup_form(csrf, token, "The two passwords differ."), 400)
        try:
            found = await run_in_threadpool(_create_admin, username, password)
        except AccountError as e:
            return html_response(_setup_form(csrf, token, str(e)), 400)
        response = RedirectResponse("/", status_code=303)
        _set_staff_cookie(response, sign_account(*found), request)
        return response

    return [
        Route("/auth/login", login, methods=["GET", "POST"]),
        Route("/auth/logout", logout, methods=["GET", "POST"]),
        Route("/auth/setup", setup, methods=["GET", "POST"]),
    ]
