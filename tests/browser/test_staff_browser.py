"""Staff pages in a real browser against ``streamlit run app.py``.

- Cold server: a fresh server whose very first request is a staff page's URL serves that
  page's file straight from ``pages/`` (no navigation has run yet); the page's own role
  check must show a sign-in prompt and no data. Once per staff page, and once for a
  signed-in annotator visiting every experimenter page.
- Warm server: once the app's navigation has run, every staff address opened signed out
  in a fresh browser still shows the sign-in prompt (not "Page not found"), keeps its
  address, and after signing in shows the page asked for, or says it is not available to
  the role.
- Signing in through the form sets an HttpOnly cookie that survives a reload and a new
  tab; signing out ends it.
- No page asks a host other than the lab for anything (the page icon included).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from staff_server import CHROMIUM, DEMO_TITLE, PASSWORD, StaffServer, staff_server, wait_for_app

pytestmark = pytest.mark.browser

STAFF_PAGES = ("studies", "links", "monitor", "models", "export", "accounts", "account")
SECRETS = (DEMO_TITLE, "RLDEMO01", "local/smollm2-135m", "experimenter1", "admin1", "PROLIFIC_PID")
"""Things only a signed-in experimenter or admin may see."""


@pytest.fixture
def context(chromium: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies)."""
    ctx = chromium.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(30_000)
    yield ctx
    ctx.close()


@pytest.fixture
def cold_server(tmp_path: Path) -> Iterator[StaffServer]:
    """A server nobody has opened yet."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with staff_server(tmp_path) as server:
        yield server


@pytest.fixture(scope="module")
def warm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaffServer]:
    """One server shared by the sign-in tests."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with staff_server(tmp_path_factory.mktemp("warm")) as server:
        yield server


def body_of(page: Any) -> str:
    return page.content() + "\n" + page.inner_text("body")


def sign_in(page: Any, base: str, username: str, password: str, next_path: str = "/") -> None:
    page.goto(f"{base}/auth/login?next={next_path}")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")


@pytest.mark.parametrize("name", STAFF_PAGES)
def test_cold_server_staff_page_shows_sign_in_and_no_data(name: str, cold_server: StaffServer, context: Any) -> None:
    page = context.new_page()
    page.goto(f"{cold_server.url}/{name}")  # the server's very first request
    wait_for_app(page)
    page.get_by_text("Please sign in to see this page.").wait_for()
    body = body_of(page)
    for secret in SECRETS:
        assert secret not in body, f"{secret!r} shown on /{name} to a visitor who is not signed in"
    assert page.locator("[data-testid=stSidebarNav]").count() == 0  # no list of the staff pages either
    link = page.get_by_role("link", name="Sign in", exact=True)
    assert link.get_attribute("href") == f"/auth/login?next=%2F{name}"
    # The prompt leads to the form, and the form back to the page.
    link.click()
    page.wait_for_url(f"**/auth/login?next=%2F{name}")
    page.fill("#username", "admin1")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    # The page asked for is returned to (staff land on a home page at "/", so every menu page keeps its address).
    page.wait_for_url(f"{cold_server.url}/{name}")
    wait_for_app(page)
    assert "Page not found" not in page.inner_text("body")
    page.get_by_text("Signed in as").first.wait_for()
    assert "Please sign in" not in page.inner_text("body")


def test_cold_server_annotator_sees_no_experimenter_data(cold_server: StaffServer, context: Any) -> None:
    page = context.new_page()
    sign_in(page, cold_server.url, "annotator1", PASSWORD, "/studies")  # the form is a plain route: the app is still cold
    page.wait_for_url(f"{cold_server.url}/studies")
    for name in ("studies", "links", "monitor", "models", "accounts"):
        if name != "studies":
            page.goto(f"{cold_server.url}/{name}")
        wait_for_app(page)
        page.get_by_text("This page is not available to your role (annotator).").wait_for()
        body = body_of(page)
        for secret in SECRETS:
            assert secret not in body, f"{secret!r} shown on /{name} to an annotator"
    page.goto(f"{cold_server.url}/account")
    wait_for_app(page)
    page.get_by_text("Username: annotator1").wait_for()


def test_sign_in_survives_reload_and_new_tab_and_sign_out_ends_it(warm_server: StaffServer, context: Any) -> None:
    base = warm_server.url
    page = context.new_page()
    page.goto(base + "/")
    wait_for_app(page)
    page.get_by_text("Staff sign in").first.click()
    page.wait_for_url("**/auth/login**")

    # A wrong password and an unknown name get the same answer.
    answers = []
    for username, password in (("experimenter1", "not the password"), ("nobody-here", "not the password")):
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url("**/auth/login?failed=1**")
        answers.append(page.inner_text("[role=alert]"))
    assert answers[0] == answers[1] and answers[0].startswith("Wrong username or password.")

    page.fill("#username", "experimenter1")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    wait_for_app(page)
    page.get_by_role("heading", name="Repair Lab").wait_for()
    page.get_by_role("link", name="Live monitor").first.wait_for()  # the home page's shortcuts
    page.goto(base + "/studies")
    wait_for_app(page)
    page.get_by_role("heading", name="Studies").wait_for()
    cookie = next(c for c in context.cookies() if c["name"] == "lab_staff")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert page.evaluate("document.cookie").find("lab_staff") == -1  # page scripts cannot read it

    page.reload()
    wait_for_app(page)
    page.get_by_role("heading", name="Studies").wait_for()
    assert "Signed in as experimenter1 (experimenter)" in page.inner_text("body")

    tab = context.new_page()
    tab.goto(base + "/monitor")
    wait_for_app(tab)
    tab.get_by_role("heading", name="Live monitor").wait_for()
    tab.get_by_text("Cells: conversations against target").wait_for()

    tab.get_by_role("link", name="Sign out").first.click()
    tab.wait_for_url(base + "/")
    wait_for_app(tab)
    tab.get_by_text("Staff sign in").first.wait_for()
    assert not [c for c in context.cookies() if c["name"] == "lab_staff"]
    page.reload()
    wait_for_app(page)
    page.get_by_text("Please sign in to see this page.").wait_for()  # the studies page, kept at its address
    assert DEMO_TITLE not in body_of(page)
    page.goto(base + "/studies")
    wait_for_app(page)
    assert DEMO_TITLE not in body_of(page)


def test_sign_in_goes_straight_to_the_form(warm_server: StaffServer, context: Any) -> None:
    """One click on "Staff sign in" (or the sign-in page's address) shows the form itself."""
    base = warm_server.url
    page = context.new_page()
    page.goto(base + "/")
    wait_for_app(page)
    page.get_by_text("Staff sign in").first.click()
    page.wait_for_url(f"{base}/auth/login?next=%2F")
    page.locator("#username").wait_for()
    assert page.locator("#password").count() == 1
    page.go_back()  # back leads home, not into the page that sent the browser on
    page.wait_for_url(base + "/")
    wait_for_app(page)
    page.get_by_text("Staff sign in").first.wait_for()

    page.goto(base + "/login?next=/studies")
    page.wait_for_url(f"{base}/auth/login?next=%2Fstudies")
    page.fill("#username", "experimenter1")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/studies")
    wait_for_app(page)
    page.get_by_role("heading", name="Studies").wait_for()


def choose_study(page: Any, slug: str, shows: str | None) -> None:
    """Pick a study in the page's chooser and wait until the page shows ``shows`` for it."""
    page.get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name=slug, exact=True).click()
    if shows is not None:
        page.get_by_text(shows).first.wait_for()
    wait_for_app(page)


UPLOAD = """\
slug: e2e
title: End to end study
consent: ok
instructions: chat
models: {bot: {model: lab/scripted}}
conditions: {full: {model: bot}, sharded: {model: bot, reveal: SHARDED}}
items:
  - {id: one, kind: sharded, shards: [{id: 1, text: "first part"}, {id: 2, text: "second part"}]}
  - {id: two, kind: sharded, shards: [{id: 1, text: "another task"}]}
plan: {items_per_participant: 2}
completion: {code: E2E-DONE}
"""


def test_from_a_yaml_file_to_an_open_study_links_in_hand_watching_live(
    warm_server: StaffServer, context: Any, tmp_path: Path
) -> None:
    from sqlalchemy.orm import Session

    from lab.assign import assign
    from lab.dialogue import start_session
    from lab.participants import by_token
    from lab.schema import Turn

    base = warm_server.url
    page = context.new_page()
    sign_in(page, base, "experimenter1", PASSWORD, "/studies")
    page.wait_for_url(base + "/studies")
    wait_for_app(page)
    assert "Page not found" not in page.inner_text("body")

    # Upload: the validator's verdict and a preview, then save.
    spec = tmp_path / "e2e.yaml"
    spec.write_text(UPLOAD)
    page.get_by_role("tab", name="Upload a spec").click()
    page.locator("input[type=file]").set_input_files(str(spec))
    page.get_by_text("Valid: study 'e2e' with 2 conditions and 2 items.").wait_for()
    page.get_by_role("button", name="Save study").click()
    page.get_by_text("Study 'e2e' created as version 1 (draft).").wait_for()

    # Open it.
    page.get_by_role("tab", name="Open, pause, close").click()
    choose_study(page, "e2e", None)
    page.locator(".st-key-open_e2e button").click()  # keyed by study, so never the previous study's button
    page.get_by_text("Study 'e2e' version 1 is now open.").wait_for()

    # Links in hand: a CSV of personal links, and the open Prolific link with the code.
    page.goto(base + "/links")
    wait_for_app(page)
    choose_study(page, "e2e", "?study=e2e&")
    page.get_by_role("button", name="Make links").click()
    page.get_by_text("10 new link(s) made for version 1").wait_for()
    with page.expect_download() as info:
        page.get_by_role("button", name="Download 10 links (CSV)").click()
    rows = Path(info.value.path()).read_text().strip().splitlines()
    assert rows[0] == "study,version,participant,link" and len(rows) == 11
    assert all(row.startswith("e2e,1,") and f"{base}/?t=" in row for row in rows[1:])
    body = page.inner_text("body")
    assert (
        f"{base}/?study=e2e&PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}&STUDY_ID={{{{%STUDY_ID%}}}}&SESSION_ID={{{{%SESSION_ID%}}}}"
        in body
    )
    assert "E2E-DONE" in body

    # Watch: a participant arrives through their link while the monitor is open.
    page.goto(base + "/monitor")
    wait_for_app(page)
    choose_study(page, "e2e", "Version 1 · open")
    page.get_by_text("No conversations yet.").wait_for()
    token = rows[1].rsplit("?t=", 1)[1]
    with Session(warm_server.engine) as s, s.begin():
        p = by_token(s, token)
        assert p is not None
        p.status = "active"
        plan = assign(s, p)
        chat = start_session(s, p, plan[0].item, plan[0].condition)
        s.add(Turn(session_id=chat.id, index=0, role="user", content="hello from the first participant"))
        label = f"P{p.id}"
    page.get_by_text("hello from the first participant").wait_for(timeout=20_000)  # the fragment refreshes itself
    assert label in page.inner_text("body")


STAFF_ADDRESSES = ("studies", "monitor", "links", "models", "accounts", "account")


@pytest.mark.parametrize("role", ["admin", "annotator"])
@pytest.mark.parametrize("name", STAFF_ADDRESSES)
def test_warm_server_staff_address_signed_out_asks_to_sign_in_and_returns_there(
    name: str, role: str, warm_server: StaffServer, chromium: Any
) -> None:
    base = warm_server.url
    # Warm: someone has already used the app, so its navigation has run on this server.
    warmer = chromium.new_context()
    home = warmer.new_page()
    home.goto(base + "/")
    wait_for_app(home)
    warmer.close()

    context = chromium.new_context(viewport={"width": 1280, "height": 900})  # a fresh browser: no cookies
    context.set_default_timeout(30_000)
    try:
        page = context.new_page()
        page.goto(f"{base}/{name}")
        wait_for_app(page)
        page.get_by_text("Please sign in to see this page.").wait_for()
        assert "Page not found" not in page.inner_text("body")
        assert page.url == f"{base}/{name}"  # the address is kept
        # The prompt's link, not the menu's.
        page.get_by_test_id("stMarkdown").get_by_role("link", name="Sign in", exact=True).click()
        page.wait_for_url(f"**/auth/login?next=%2F{name}")
        page.fill("#username", f"{role}1")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/{name}")
        wait_for_app(page)
        assert "Page not found" not in page.inner_text("body")
        if role == "admin" or name == "account":
            page.get_by_text("Signed in as").first.wait_for()
        else:
            page.get_by_text(f"This page is not available to your role ({role}).").wait_for()
            body = body_of(page)
            for secret in SECRETS:
                assert secret not in body, f"{secret!r} shown on /{name} to an {role}"
    finally:
        context.close()


def test_pages_ask_nothing_of_other_hosts(warm_server: StaffServer, context: Any) -> None:
    from urllib.parse import urlparse

    base = warm_server.url
    asked: list[str] = []
    context.on("request", lambda request: asked.append(request.url))
    page = context.new_page()
    for path in ("/", "/?study=demo"):
        page.goto(base + path)
        wait_for_app(page)
    page.goto(base + "/login")
    page.wait_for_url("**/auth/login**")  # the sign-in page goes straight on to the form
    sign_in(page, base, "admin1", PASSWORD, "/studies")
    page.wait_for_url(base + "/studies")
    wait_for_app(page)
    page.goto(base + "/accounts")
    wait_for_app(page)
    page.wait_for_timeout(1000)  # the page icon is set once the script has run
    remote = [u for u in asked if urlparse(u).scheme in ("http", "https", "ws", "wss")]
    elsewhere = sorted({u for u in remote if urlparse(u).hostname not in ("127.0.0.1", "localhost")})
    assert not elsewhere, f"the pages asked other hosts for {elsewhere}"
    icon = page.evaluate("document.querySelector(\"link[rel='shortcut icon']\").href")
    assert icon.startswith(("data:", base)), icon


def test_add_account_form_is_cleared_after_success(warm_server: StaffServer, context: Any) -> None:
    base = warm_server.url
    page = context.new_page()
    sign_in(page, base, "admin1", PASSWORD, "/accounts")
    page.wait_for_url(base + "/accounts")
    wait_for_app(page)
    form = page.get_by_test_id("stForm")
    form.get_by_label("Username").fill("weakling")
    form.get_by_label("Initial password", exact=False).fill("aaaaaaaaaa")
    form.get_by_role("button", name="Add account").click()
    page.get_by_text("password: too easy to guess").wait_for()
    assert form.get_by_label("Username").input_value() == "weakling"  # kept, to correct it
    form.get_by_label("Username").fill("newcomer")
    form.get_by_label("Initial password", exact=False).fill("pelican orbit lantern")
    form.get_by_role("button", name="Add account").click()
    page.get_by_text("Account 'newcomer' (experimenter) added.").wait_for()
    wait_for_app(page)
    assert form.get_by_label("Username").input_value() == ""
    assert form.get_by_label("Initial password", exact=False).input_value() == ""


def test_links_page_keeps_the_chosen_study_across_a_reload(warm_server: StaffServer, context: Any) -> None:
    from sqlalchemy.orm import Session

    from lab.spec import parse_spec
    from lab.studies import load_study

    spec = UPLOAD.replace("slug: e2e", "slug: zz-kept").replace("completion: {code: E2E-DONE}", "completion: {code: KEPT-01}")
    with Session(warm_server.engine) as s, s.begin():
        load_study(s, parse_spec(spec, "kept.yaml"))
    base = warm_server.url
    page = context.new_page()
    sign_in(page, base, "experimenter1", PASSWORD, "/links")
    page.wait_for_url(base + "/links")
    wait_for_app(page)
    choose_study(page, "zz-kept", "?study=zz-kept&")
    page.get_by_role("button", name="Make links").click()
    page.get_by_text("10 new link(s) made").wait_for()
    assert page.url.endswith("/links?slug=zz-kept")
    page.reload()
    wait_for_app(page)
    page.get_by_text("?study=zz-kept&").first.wait_for()
    assert "KEPT-01" in page.inner_text("body")


def test_links_page_warns_when_opened_at_another_address_than_the_links(warm_server: StaffServer, context: Any) -> None:
    """The server's links are built on 127.0.0.1; the same server opened as localhost is another address."""
    base = warm_server.url
    other = base.replace("127.0.0.1", "localhost")
    page = context.new_page()
    sign_in(page, other, "experimenter1", PASSWORD, "/links")
    page.wait_for_url(other + "/links")
    wait_for_app(page)
    warning = page.get_by_text("but this page was opened at").first
    warning.wait_for()
    text = warning.inner_text()
    assert base in text and other in text and "LAB_PUBLIC_URL" in text
    sign_in(page, base, "experimenter1", PASSWORD, "/links")
    page.wait_for_url(base + "/links")
    wait_for_app(page)
    page.get_by_role("heading", name="Personal links").wait_for()
    assert "but this page was opened at" not in page.inner_text("body")


def test_the_monitor_drops_a_timed_out_participant_at_once(warm_server: StaffServer, context: Any) -> None:
    """Confirming a time out removes the question and the participant without waiting for a refresh or a reload."""
    from sqlalchemy.orm import Session

    from lab.assign import assign
    from lab.participants import create_participant
    from lab.spec import parse_spec
    from lab.studies import load_study

    spec = UPLOAD.replace("slug: e2e", "slug: zz-monitor")
    with Session(warm_server.engine) as s, s.begin():
        study = load_study(s, parse_spec(spec, "monitor.yaml")).study
        p = create_participant(s, study, status="active")
        assign(s, p)
        label = f"P{p.id}"
    base = warm_server.url
    page = context.new_page()
    sign_in(page, base, "experimenter1", PASSWORD, "/monitor?slug=zz-monitor")
    page.wait_for_url(base + "/monitor?slug=zz-monitor")
    wait_for_app(page)
    page.get_by_role("button", name="Time out", exact=True).click()
    page.get_by_text(f"Time out {label}?").wait_for()
    page.get_by_role("button", name=f"Yes, time out {label}").click()
    # The answer and the monitor without them arrive together, not at the next refresh.
    done = page.get_by_text(f"{label} timed out; their cells are free again.")
    done.wait_for(timeout=3_000)
    page.get_by_text("Nobody is in the middle of the study.").wait_for(timeout=1_000)
    body = page.inner_text("body")
    assert done.is_visible() and f"Time out {label}?" not in body
