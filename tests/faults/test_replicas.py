"""Two app servers on one Postgres and nothing else shared: participants and staff move between them freely."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from lab.accounts import create_account
from lab.db import make_engine, migrate
from lab.links import make_personal_links
from lab.schema import ChatSession, Turn
from lab.spec import parse_spec
from lab.studies import load_study, set_status
from lab.web import visitor as auth
from lab.web.routes import CSRF_COOKIE
from tests.browser.staff_server import CHROMIUM, CHROMIUM_ARGS, PASSWORD, wait_for_app

from .agent import AppServer, Visit

pytestmark = pytest.mark.postgres

SECRET = "one-secret-for-every-replica-0123456789abcdef"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppServer, AppServer, Engine]]:
    """Servers A and B, each with its own data folder, on one emptied and migrated Postgres."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    migrate(engine)
    with Session(engine) as s, s.begin():
        for name in ("experimenter1", "guessed-on-one", "guessed-on-both"):
            create_account(s, name, "experimenter", PASSWORD)
    a = AppServer(tmp_path_factory.mktemp("replica-a"), url, SECRET)
    b = AppServer(tmp_path_factory.mktemp("replica-b"), url, SECRET)
    try:
        a.start()
        b.start()
        yield a, b, engine
    finally:
        a.stop()
        b.stop()
        engine.dispose()


def wait_for(check: Callable[[], Any], seconds: float, what: str) -> Any:
    """Poll ``check`` until it returns something true."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_participant_who_started_on_one_server_continues_on_the_other(
    replicas: tuple[AppServer, AppServer, Engine], study_spec: Callable[..., str]
) -> None:
    a, b, engine = replicas
    with Session(engine) as s, s.begin():
        study = load_study(s, parse_spec(study_spec("replicas"), "replicas.yaml")).study
        set_status(s, study.slug, "open")
        link = make_personal_links(s, study, 1, public_url=a.url)[0]
    token = link.url.split("?t=", 1)[1]

    on_a = Visit(a, {"t": [token]})
    on_a.press("I agree to take part")
    on_a.press("Start")
    on_a.write("Hello from server A.")
    wait_for(lambda: on_a.refresh() and "You said: Hello from server A." in on_a.text(), 60, "the reply on server A")
    assert not on_a.errors(), on_a.errors()
    on_a.close()

    on_b = Visit(b, {"t": [token]})  # a refresh that the proxy sent to the other replica
    assert not on_b.errors(), on_b.errors()
    assert "Hello from server A." in on_b.text() and "You said: Hello from server A." in on_b.text()
    on_b.write("And now from server B.")
    wait_for(lambda: on_b.refresh() and "You said: And now from server B." in on_b.text(), 60, "the reply on server B")
    on_b.close()

    with Session(engine) as s:
        sessions = list(s.scalars(select(ChatSession).where(ChatSession.participant_id == link.participant_id)))
        assert len(sessions) == 1
        stored = [
            (t.role, t.content) for t in s.scalars(select(Turn).where(Turn.session_id == sessions[0].id).order_by(Turn.index))
        ]
    assert stored == [
        ("user", "Hello from server A."),
        ("assistant", "You said: Hello from server A."),
        ("user", "And now from server B."),
        ("assistant", "You said: And now from server B."),
    ]


def try_sign_in(server: AppServer, username: str, password: str) -> str | None:
    """Sign in on ``server`` as the browser does (form, CSRF cookie, same Origin); the staff cookie, or None when refused."""
    with httpx.Client(base_url=server.url, follow_redirects=False) as client:
        client.get("/auth/login")
        token = client.cookies.get(CSRF_COOKIE)
        assert token
        response = client.post(
            "/auth/login",
            data={"csrf": token, "next": "/", "username": username, "password": password},
            headers={"Origin": server.url},
        )
        assert response.status_code == 303, response.text
        return client.cookies.get(auth.COOKIE)


def sign_in(server: AppServer) -> str:
    """A staff cookie for ``experimenter1`` from ``server``."""
    cookie = try_sign_in(server, "experimenter1", PASSWORD)
    assert cookie
    return cookie


def test_a_staff_sign_in_on_one_server_is_accepted_by_the_other(replicas: tuple[AppServer, AppServer, Engine]) -> None:
    a, b, _engine = replicas
    cookie = sign_in(a)
    with httpx.Client(base_url=b.url, follow_redirects=False, cookies={auth.COOKIE: cookie}) as client:
        # Server B's sign-in route sends a signed-in visitor straight on ...
        signed_in = client.get("/auth/login", params={"next": "/"})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
    with httpx.Client(base_url=b.url, follow_redirects=False) as client:
        # ... and shows the form to anyone else.
        assert client.get("/auth/login", params={"next": "/"}).status_code == 200
    if CHROMIUM is None:
        pytest.skip("chromium is not installed: the staff page on server B is checked over HTTP only")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.set_default_timeout(30_000)
            context.add_cookies([{"name": auth.COOKIE, "value": cookie, "url": b.url}])
            page = context.new_page()
            page.goto(b.url)  # a staff page served by B, with the cookie A signed
            wait_for_app(page)
            page.get_by_text("Signed in as").first.wait_for()
            assert "Please sign in" not in page.inner_text("body")
        finally:
            browser.close()


# The sign-in limit tests below fail five times from this machine's address, which pauses that
# address on server A for the rest of the module: they come after every test that signs in.
def test_failed_sign_ins_pause_the_account_on_the_server_that_counted_them(replicas: tuple[AppServer, AppServer, Engine]) -> None:
    a, _b, _engine = replicas
    for _ in range(5):
        assert try_sign_in(a, "guessed-on-one", "a wrong guess") is None
    assert try_sign_in(a, "guessed-on-one", PASSWORD) is None, "the right password must wait after five failures"


def test_failed_sign_ins_are_counted_across_servers(replicas: tuple[AppServer, AppServer, Engine]) -> None:
    a, b, _engine = replicas
    for server in (a, b, a, b, a):
        assert try_sign_in(server, "guessed-on-both", "a wrong guess") is None
    assert try_sign_in(b, "guessed-on-both", PASSWORD) is None, "five failures over two replicas must pause the account"
