"""The staff cookie and the sign-in form: forged, expired and foreign cookies are nobody; flags and CSRF hold on a real server."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import itsdangerous
import pytest
from sqlalchemy.orm import Session

from lab.accounts import create_account
from lab.db import get_engine, migrate
from lab.web import visitor as auth
from lab.web.routes import CSRF_COOKIE
from tests.browser.staff_server import PASSWORD, StaffServer, staff_server

SECRET = "the-lab-secret-for-cookie-tests-0123456789"


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """An experimenter account in the configured (temporary) database; the lab's secret is fixed."""
    monkeypatch.setenv("LAB_SECRET_KEY", SECRET)
    engine = get_engine()
    migrate(engine)
    with Session(engine) as s, s.begin():
        account_id = create_account(s, "exp1", "experimenter", PASSWORD).id
    yield account_id


def genuine_cookie(account_id: int) -> str:
    from lab.schema import Account

    with Session(get_engine()) as s:
        row = s.get(Account, account_id)
        assert row is not None
        return auth.cookie_for(row)


def test_a_genuine_cookie_is_the_account(account: int) -> None:
    assert auth.visitor_from_cookie(genuine_cookie(account)) == auth.Visitor("experimenter", "exp1", account)


def test_forged_cookies_are_nobody(account: int) -> None:
    value = genuine_cookie(account)
    payload, _stamp, signature = value.rsplit(".", 2)
    # The same body signed with garbage, another account id in a re-encoded body, bit flips.
    forged_body = base64.urlsafe_b64encode(json.dumps({"a": account + 1, "f": "x"}).encode()).decode().rstrip("=")
    forged = [
        "",
        "nonsense",
        f"{payload}.{_stamp}.{'A' * len(signature)}",
        f"{forged_body}.{_stamp}.{signature}",
        value[:-1] + ("A" if value[-1] != "A" else "B"),
        value[:-5],
        value + "x",
        "x" * 5000,
    ]
    for cookie in forged:
        assert auth.visitor_from_cookie(cookie) == auth.Visitor(), cookie


def test_an_expired_cookie_is_nobody(account: int, monkeypatch: pytest.MonkeyPatch) -> None:
    signed_long_ago = int(time.time()) - auth.COOKIE_MAX_AGE - 60
    with monkeypatch.context() as m:
        m.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: signed_long_ago)
        old = genuine_cookie(account)
    assert auth.visitor_from_cookie(old) == auth.Visitor()


def test_a_cookie_signed_with_another_secret_is_nobody(account: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_SECRET_KEY", "some-other-lab-secret-9876543210")
    foreign = genuine_cookie(account)
    monkeypatch.setenv("LAB_SECRET_KEY", SECRET)
    assert auth.visitor_from_cookie(foreign) == auth.Visitor()
    assert auth.visitor_from_cookie(genuine_cookie(account)).is_staff


# --- on a running server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaffServer]:
    """The app served by ``streamlit run`` with the demo study and one account per staff role."""
    with staff_server(tmp_path_factory.mktemp("cookie-server")) as running:
        yield running


def login_form(client: httpx.Client, headers: dict[str, str] | None = None) -> str:
    """Open the sign-in form; returns its CSRF token (the cookie is kept by the client)."""
    page = client.get("/auth/login", headers=headers or {})
    assert page.status_code == 200
    token = client.cookies.get(CSRF_COOKIE)
    assert token and f"value='{token}'" in page.text
    return token


def set_cookie_header(response: httpx.Response, name: str) -> str:
    """The Set-Cookie header that sets ``name``."""
    found = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    return found[0]


def attributes(header: str) -> dict[str, str]:
    """A Set-Cookie header's attributes, lower-cased names."""
    parts = [p.strip() for p in header.split(";")[1:]]
    return {p.split("=", 1)[0].lower(): (p.split("=", 1)[1] if "=" in p else "") for p in parts}


@pytest.mark.parametrize("tls", [False, True], ids=["http", "behind-tls-proxy"])
def test_sign_in_sets_httponly_samesite_and_secure_behind_tls(server: StaffServer, tls: bool) -> None:
    # Behind a TLS proxy the browser talks https; the proxy forwards plain http with X-Forwarded-Proto.
    proxy = {"X-Forwarded-Proto": "https"} if tls else {}
    origin = server.url.replace("http://", "https://") if tls else server.url
    with httpx.Client(base_url=server.url, follow_redirects=False) as client:
        form = client.get("/auth/login", headers=proxy)
        csrf_header = set_cookie_header(form, CSRF_COOKIE)
        token = csrf_header.split(";", 1)[0].split("=", 1)[1]
        assert f"value='{token}'" in form.text
        # Sent by hand: a client on plain http rightly withholds a Secure cookie.
        response = client.post(
            "/auth/login",
            data={"csrf": token, "next": "/", "username": "experimenter1", "password": PASSWORD},
            headers={"Origin": origin, "Cookie": f"{CSRF_COOKIE}={token}", **proxy},
        )
    assert response.status_code == 303
    attrs = attributes(set_cookie_header(response, auth.COOKIE))
    assert "httponly" in attrs
    assert attrs["samesite"].lower() == "lax"
    assert ("secure" in attrs) is tls
    csrf_attrs = attributes(csrf_header)
    assert "httponly" in csrf_attrs and csrf_attrs["samesite"].lower() == "strict"
    assert ("secure" in csrf_attrs) is tls


def test_sign_in_without_the_csrf_token_or_from_another_site_is_refused(server: StaffServer) -> None:
    good = {"next": "/", "username": "admin1", "password": PASSWORD}
    with httpx.Client(base_url=server.url, follow_redirects=False) as client:
        token = login_form(client)
        attempts = [
            ({**good}, {"Origin": server.url}),  # no token in the form
            ({**good, "csrf": "not-the-cookie-value-0000000"}, {"Origin": server.url}),  # a token that is not the cookie's
            ({**good, "csrf": token}, {"Origin": "https://evil.example"}),  # the right token from a foreign page
            ({**good, "csrf": token}, {"Sec-Fetch-Site": "cross-site"}),  # no Origin, but the browser says cross-site
        ]
        for data, headers in attempts:
            response = client.post("/auth/login", data=data, headers=headers)
            assert response.status_code == 403, (data, headers)
            assert auth.COOKIE not in response.headers.get("set-cookie", ""), (data, headers)
    # Without the CSRF cookie at all (a fresh client), the form's token means nothing.
    with httpx.Client(base_url=server.url, follow_redirects=False) as stranger:
        response = stranger.post("/auth/login", data={**good, "csrf": token}, headers={"Origin": server.url})
        assert response.status_code == 403
    # The control: the same form, sent as the browser sends it, signs in.
    with httpx.Client(base_url=server.url, follow_redirects=False) as client:
        token = login_form(client)
        response = client.post("/auth/login", data={**good, "csrf": token}, headers={"Origin": server.url})
        assert response.status_code == 303 and client.cookies.get(auth.COOKIE)


def test_the_server_log_has_no_password(server: StaffServer) -> None:
    with httpx.Client(base_url=server.url, follow_redirects=False) as client:
        token = login_form(client)
        client.post(
            "/auth/login",
            data={"csrf": token, "next": "/", "username": "admin1", "password": "wrong " + PASSWORD},
            headers={"Origin": server.url},
        )
    assert PASSWORD not in Path(server.log).read_text(errors="replace")
