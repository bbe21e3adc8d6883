"""Staff accounts and sign-in: cookies, routes, CSRF, rate limits, the setup link, account rules."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.applications import Starlette

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its test client; httpx works the same for these tests.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from lab.accounts import (
    AccountError,
    authenticate,
    change_password,
    count_accounts,
    create_account,
    create_first_admin,
    list_accounts,
    reset_password,
    set_active,
    set_role,
)
from lab.db import get_engine, migrate
from lab.schema import Account
from lab.web.limits import LoginLimits
from lab.web.paths import landing_path, safe_next
from lab.web.routes import CSRF_COOKIE, LOGIN_FAILED, routes
from lab.web.setup_token import setup_token, setup_token_valid
from lab.web.visitor import COOKIE, COOKIE_MAX_AGE, Visitor, cookie_for, sign_account, visitor_from_cookie

BASE = "http://testserver"
PASSWORD = "correct horse battery"


@pytest.fixture
def db() -> Engine:
    """The configured (temporary) database, migrated."""
    engine = get_engine()
    migrate(engine)
    return engine


def add(engine: Engine, username: str, role: str, password: str = PASSWORD) -> Account:
    with Session(engine, expire_on_commit=False) as s, s.begin():
        return create_account(s, username, role, password)


@pytest.fixture
def limits(db: Engine) -> LoginLimits:
    return LoginLimits.default(db)


@pytest.fixture
def client(db: Engine, limits: LoginLimits) -> Iterator[TestClient]:
    app = Starlette(routes=routes(limits))
    with TestClient(app, base_url=BASE, follow_redirects=False) as c:
        yield c


def csrf_of(client: TestClient, path: str = "/auth/login") -> str:
    page = client.get(path)
    assert page.status_code == 200
    token = client.cookies.get(CSRF_COOKIE)
    assert token and f"value='{token}'" in page.text
    return token


def sign_in(client: TestClient, username: str, password: str, next_path: str = "/links", **headers: str):
    client.cookies.delete(COOKIE)
    token = csrf_of(client)
    return client.post(
        "/auth/login",
        data={"username": username, "password": password, "csrf": token, "next": next_path},
        headers={"Origin": BASE, **headers},
    )


# --- visitors and cookies --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (None, set()),
        ("annotator", {"annotator"}),
        ("experimenter", {"experimenter"}),
        ("admin", {"admin", "experimenter", "annotator"}),
    ],
)
def test_visitor_roles(role: str | None, allowed: set[str]) -> None:
    v = Visitor(role, "u" if role else None, 1 if role else None)
    assert {r for r in ("admin", "experimenter", "annotator") if v.can(r)} == allowed
    assert v.is_staff == (role is not None)


def test_cookie_resolves_to_the_account(db: Engine) -> None:
    account = add(db, "erin", "experimenter")
    v = visitor_from_cookie(cookie_for(account))
    assert v == Visitor("experimenter", "erin", account.id)


def test_tampered_or_foreign_cookies_are_anonymous(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    account = add(db, "erin", "experimenter")
    good = cookie_for(account)
    assert visitor_from_cookie(good[:-2] + ("AA" if not good.endswith("AA") else "BB")) == Visitor()
    assert visitor_from_cookie("") == Visitor()
    assert visitor_from_cookie("not-a-cookie") == Visitor()
    assert visitor_from_cookie(sign_account(account.id + 99, "x" * 16)) == Visitor()
    monkeypatch.setenv("LAB_SECRET_KEY", "another lab's secret")
    assert visitor_from_cookie(good) == Visitor()


def test_expired_cookie_is_anonymous(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    import itsdangerous.timed

    account = add(db, "erin", "experimenter")
    real = itsdangerous.timed.TimestampSigner.get_timestamp
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: real(self) - COOKIE_MAX_AGE - 5)
    old = cookie_for(account)
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", real)
    assert visitor_from_cookie(old) == Visitor()


def test_disabled_account_and_new_password_end_sign_ins(db: Engine) -> None:
    admin = add(db, "root", "admin")
    account = add(db, "erin", "experimenter")
    cookie = cookie_for(account)
    with Session(db) as s, s.begin():
        set_active(s, account.id, False)
    assert visitor_from_cookie(cookie) == Visitor()
    with Session(db) as s, s.begin():
        set_active(s, account.id, True)
    assert visitor_from_cookie(cookie).username == "erin"
    with Session(db) as s, s.begin():
        change_password(s, account.id, PASSWORD, "a brand new passphrase")
    assert visitor_from_cookie(cookie) == Visitor()
    assert visitor_from_cookie(cookie_for(admin)).role == "admin"


@pytest.mark.parametrize(
    ("role", "given", "expected"),
    [
        ("experimenter", "/home", "/"),
        ("experimenter", "/studies", "/studies"),
        ("experimenter", "/monitor", "/monitor"),
        ("admin", "/home/", "/"),
        ("admin", "/accounts", "/accounts"),
        ("annotator", "/home", "/"),
        ("annotator", "/account", "/account"),
    ],
)
def test_landing_avoids_the_default_pages_own_path(role: str, given: str, expected: str) -> None:
    # The navigation serves the default (home) page at "/" only.
    assert landing_path(given, role) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/monitor", "/monitor"),
        ("/studies?x=1", "/studies?x=1"),
        ("//evil.example/x", "/"),
        ("https://evil.example", "/"),
        ("/\\evil.example", "/"),
        ("monitor", "/"),
        ("/a\r\nSet-Cookie: x", "/"),
        (None, "/"),
    ],
)
def test_next_is_always_a_local_path(given: str | None, expected: str) -> None:
    assert safe_next(given) == expected


# --- routes ----------------------------------------------------------------------------------


def test_sign_in_sets_an_httponly_lax_cookie(client: TestClient, db: Engine) -> None:
    add(db, "erin", "experimenter")
    r = sign_in(client, "Erin", PASSWORD, "/monitor")
    assert r.status_code == 303 and r.headers["location"] == "/monitor"
    set_cookie = r.headers["set-cookie"]
    assert set_cookie.startswith(f"{COOKIE}=") and "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie
    assert "Secure" not in set_cookie  # plain http in the test
    value = client.cookies.get(COOKIE)
    assert visitor_from_cookie(value).username == "erin"
    # Signed in, the form sends one straight on.
    assert client.get("/auth/login?next=/links").headers["location"] == "/links"


def test_cookie_is_secure_behind_https(client: TestClient, db: Engine) -> None:
    add(db, "erin", "experimenter")
    r = sign_in(client, "erin", PASSWORD, **{"X-Forwarded-Proto": "https"})
    assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]


def test_wrong_password_and_unknown_user_look_the_same(client: TestClient, db: Engine) -> None:
    add(db, "erin", "experimenter")
    add(db, "gone", "experimenter")
    with Session(db) as s, s.begin():
        set_active(s, s.query(Account).filter_by(username="gone").one().id, False)
    answers = []
    for username, password in [("erin", "wrong password!"), ("nobody", "wrong password!"), ("gone", PASSWORD), ("erin", "")]:
        r = sign_in(client, username, password)
        assert r.status_code == 303 and COOKIE not in r.headers.get("set-cookie", "")
        page = client.get(r.headers["location"])
        answers.append((r.headers["location"], page.text.replace(client.cookies.get(CSRF_COOKIE), "TOKEN")))
    assert len(set(answers)) == 1
    assert LOGIN_FAILED.split(".")[0] in answers[0][1]
    assert "erin" not in answers[0][1] and "nobody" not in answers[0][1]


def from_address(db: Engine, limits: LoginLimits, address: str) -> TestClient:
    """A client whose requests come from ``address``."""
    return TestClient(Starlette(routes=routes(limits)), base_url=BASE, follow_redirects=False, client=(address, 50000))


def test_one_address_is_paused_before_it_can_lock_an_account_out(client: TestClient, db: Engine, limits: LoginLimits) -> None:
    add(db, "erin", "experimenter")
    assert limits.per_address.limit < limits.per_user.limit
    for _ in range(limits.per_address.limit - 1):
        assert "failed=1" in sign_in(client, "erin", "wrong password!").headers["location"]
    paused = sign_in(client, "erin", "wrong password!")
    assert "paused=15" in paused.headers["location"] and "by=address" in paused.headers["location"]
    page = client.get(paused.headers["location"]).text
    assert "Too many failed sign-ins from your address: sign-in is paused for 15 minutes." in page
    # Even the right password waits, from this address ...
    assert "paused=" in sign_in(client, "erin", PASSWORD).headers["location"]
    # ... while erin, from her own address, is not locked out.
    with from_address(db, limits, "10.0.0.2") as own:
        assert sign_in(own, "erin", PASSWORD).headers["location"] == "/links"


def test_many_addresses_pause_a_username_and_say_so(db: Engine, limits: LoginLimits) -> None:
    add(db, "erin", "experimenter")
    answers = {}
    for username in ("erin", "nobody"):  # an unknown name is paused the same way
        for n in range(limits.per_user.limit):
            with from_address(db, limits, f"10.1.{n}.{len(username)}") as c:
                last = sign_in(c, username, "wrong password!")
        assert "by=username" in last.headers["location"]
        with from_address(db, limits, "10.9.9.9") as c:
            r = sign_in(c, username, PASSWORD if username == "erin" else "x" * 12)
            assert "by=username" in r.headers["location"] and COOKIE not in r.headers.get("set-cookie", "")
            answers[username] = c.get(r.headers["location"]).text.replace(c.cookies.get(CSRF_COOKIE), "TOKEN")
    assert answers["erin"] == answers["nobody"]
    assert "Too many failed sign-ins for this username: sign-in is paused for 15 minutes." in answers["erin"]


def test_odd_pause_parameters_are_ignored(client: TestClient, db: Engine) -> None:
    for query in ("paused=0&by=address", "paused=99999&by=address", "paused=5&by=<script>", "paused=x&by=username"):
        assert "Too many failed sign-ins" not in client.get(f"/auth/login?{query}").text


def test_success_clears_the_username_count(db: Engine, limits: LoginLimits) -> None:
    add(db, "erin", "experimenter")
    for round_ in range(2):
        for n in range(limits.per_user.limit - 1):
            with from_address(db, limits, f"10.2.{round_}.{n}") as c:
                sign_in(c, "erin", "wrong password!")
        with from_address(db, limits, f"10.3.{round_}.1") as c:
            assert sign_in(c, "erin", PASSWORD).headers["location"] == "/links"


@pytest.mark.parametrize(
    "attack",
    ["no token", "wrong token", "other origin", "cross-site fetch"],
)
def test_sign_in_refuses_cross_site_posts(client: TestClient, db: Engine, attack: str) -> None:
    add(db, "erin", "experimenter")
    token = csrf_of(client)
    data = {"username": "erin", "password": PASSWORD, "csrf": token}
    headers = {"Origin": BASE}
    if attack == "no token":
        data.pop("csrf")
    elif attack == "wrong token":
        data["csrf"] = "x" * len(token)
    elif attack == "other origin":
        headers = {"Origin": "https://evil.example"}
    else:
        headers = {"Sec-Fetch-Site": "cross-site"}
    r = client.post("/auth/login", data=data, headers=headers)
    assert r.status_code == 403 and COOKIE not in r.headers.get("set-cookie", "")


def test_next_cannot_leave_the_site(client: TestClient, db: Engine) -> None:
    add(db, "erin", "experimenter")
    assert sign_in(client, "erin", PASSWORD, "//evil.example/").headers["location"] == "/"
    page = client.get("/auth/login?next=https://evil.example").text
    assert "evil.example" not in page


def test_form_escapes_what_it_echoes(client: TestClient, db: Engine) -> None:
    page = client.get("/auth/login?next=/x'><script>alert(1)</script>").text
    assert "<script>alert(1)</script>" not in page


def test_logout(client: TestClient, db: Engine) -> None:
    add(db, "erin", "experimenter")
    sign_in(client, "erin", PASSWORD)
    assert client.cookies.get(COOKIE)
    # A link from another site only asks.
    asked = client.get("/auth/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert asked.status_code == 200 and "Sign out" in asked.text
    assert f"{COOKIE}=" not in asked.headers.get("set-cookie", "")
    assert client.cookies.get(COOKIE)
    r = client.get("/auth/logout", headers={"Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert f'{COOKIE}=""' in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]


def test_logout_by_form_post(client: TestClient, db: Engine) -> None:
    add(db, "erin", "experimenter")
    sign_in(client, "erin", PASSWORD)
    token = client.cookies.get(CSRF_COOKIE)
    assert client.post("/auth/logout", data={"csrf": "nope-nope-nope-nope-nope"}, headers={"Origin": BASE}).status_code == 403
    r = client.post("/auth/logout", data={"csrf": token}, headers={"Origin": BASE})
    assert r.status_code == 303 and "Max-Age=0" in r.headers["set-cookie"]


# --- the setup link --------------------------------------------------------------------------


def _setup(client: TestClient, token: str, username: str = "root", password: str = PASSWORD, password2: str | None = None):
    page = client.get(f"/auth/setup?token={token}")
    assert page.status_code == 200, page.text
    return client.post(
        "/auth/setup",
        data={
            "token": token,
            "csrf": client.cookies.get(CSRF_COOKIE),
            "username": username,
            "password": password,
            "password2": password2 or password,
        },
        headers={"Origin": BASE},
    )


def test_setup_link_creates_the_first_admin_once(client: TestClient, db: Engine) -> None:
    token = setup_token()
    r = _setup(client, token)
    assert r.status_code == 303 and COOKIE in r.headers["set-cookie"]
    assert visitor_from_cookie(client.cookies.get(COOKIE)).role == "admin"
    with Session(db) as s:
        assert count_accounts(s) == 1
    # Used up: the same link, and any new one, no longer works.
    assert client.get(f"/auth/setup?token={token}").status_code == 403
    assert client.get(f"/auth/setup?token={setup_token()}").status_code == 403
    r = client.post(
        "/auth/setup",
        data={
            "token": token,
            "csrf": client.cookies.get(CSRF_COOKIE),
            "username": "second",
            "password": PASSWORD,
            "password2": PASSWORD,
        },
        headers={"Origin": BASE},
    )
    assert r.status_code == 403
    with Session(db) as s:
        assert count_accounts(s) == 1


def test_setup_refuses_bad_tokens_and_bad_passwords(client: TestClient, db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    assert client.get("/auth/setup?token=forged").status_code == 403
    assert client.get("/auth/setup").status_code == 403
    token = setup_token()
    r = _setup(client, token, password="short", password2="short")
    assert r.status_code == 400 and "at least 10 characters" in r.text
    r = _setup(client, token, password=PASSWORD, password2=PASSWORD + "x")
    assert r.status_code == 400 and "differ" in r.text
    monkeypatch.setenv("LAB_SECRET_KEY", "rotated")
    assert client.get(f"/auth/setup?token={token}").status_code == 403
    with Session(db) as s:
        assert count_accounts(s) == 0


def test_init_prints_a_setup_link_only_while_no_account_exists(db: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main

    assert main(["init"]) == 0
    out = capsys.readouterr().out
    link = re.search(r"(http://\S+/auth/setup\?token=(\S+))", out)
    assert link is not None
    from urllib.parse import unquote

    assert setup_token_valid(unquote(link.group(2)))
    add(db, "root", "admin")
    assert main(["init"]) == 0
    assert "/auth/setup" not in capsys.readouterr().out


# --- account rules ---------------------------------------------------------------------------


def test_no_default_account_and_first_admin_only_once(db: Engine) -> None:
    with Session(db) as s:
        assert count_accounts(s) == 0
        assert authenticate(s, "admin", "admin") is None
    with Session(db) as s, s.begin():
        create_first_admin(s, "root", PASSWORD)
    with pytest.raises(AccountError, match="exists already"), Session(db) as s, s.begin():
        create_first_admin(s, "other", PASSWORD)


def test_last_active_admin_is_kept(db: Engine) -> None:
    root = add(db, "root", "admin")
    with Session(db) as s, s.begin():
        with pytest.raises(AccountError, match="last active admin"):
            set_role(s, root.id, "experimenter")
        with pytest.raises(AccountError, match="last active admin"):
            set_active(s, root.id, False)
    second = add(db, "second", "admin")
    with Session(db) as s, s.begin():
        set_role(s, root.id, "experimenter")
    with Session(db) as s, s.begin(), pytest.raises(AccountError):
        set_active(s, second.id, False)
    with Session(db) as s:
        assert {a.username: a.role for a in list_accounts(s)} == {"root": "experimenter", "second": "admin"}


def test_password_rules(db: Engine) -> None:
    account = add(db, "erin", "experimenter")
    with Session(db) as s, s.begin():
        with pytest.raises(AccountError, match="does not match"):
            change_password(s, account.id, "not the password", "a good new password")
        with pytest.raises(AccountError, match="at least"):
            change_password(s, account.id, PASSWORD, "short")
        with pytest.raises(AccountError, match="at most"):
            reset_password(s, account.id, "x" * 2000)
        with pytest.raises(AccountError, match="taken"):
            create_account(s, "ERIN", "annotator", PASSWORD)
        with pytest.raises(AccountError, match="role"):
            create_account(s, "zed", "superuser", PASSWORD)
        reset_password(s, account.id, "set by an admin")
    with Session(db) as s, s.begin():
        assert authenticate(s, "erin", PASSWORD) is None
        assert authenticate(s, "erin", "set by an admin") is not None
        assert authenticate(s, "erin", "y" * 5000) is None


def test_passwords_are_argon2id_hashes(db: Engine, tmp_path: Path) -> None:
    add(db, "erin", "experimenter")
    with Session(db) as s:
        stored = s.query(Account).one().password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


@pytest.mark.parametrize("weak", ["aaaaaaaaaa", "password123", "qwertyuiop", "1234567890", "erin1234567"])
def test_easily_guessed_passwords_are_refused_everywhere(db: Engine, weak: str, client: TestClient) -> None:
    with Session(db) as s, s.begin(), pytest.raises(AccountError, match="password: too easy to guess"):
        create_account(s, "erin", "experimenter", weak)
    # The setup link (the first admin) refuses it with the same advice.
    r = _setup(client, setup_token(), username="erin", password=weak)
    assert r.status_code == 400 and "too easy to guess" in r.text
    account = add(db, "erin", "experimenter")
    with Session(db) as s, s.begin():
        with pytest.raises(AccountError, match="too easy to guess"):
            change_password(s, account.id, PASSWORD, weak)
        with pytest.raises(AccountError, match="too easy to guess"):
            reset_password(s, account.id, weak)


def test_cli_refuses_an_easily_guessed_password(
    db: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.cli import main

    monkeypatch.setenv("LAB_PASSWORD", "aaaaaaaaaa")
    assert main(["user", "add", "ada", "--role", "admin"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: password: too easy to guess.") and 'Repeats like "aaa"' in err
    with Session(db) as s:
        assert count_accounts(s) == 0
