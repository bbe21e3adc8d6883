"""Stored text in a real browser: a participant message with a Markdown image, an HTML image, a link
and bold, and a model reply echoing it, on every page that shows stored text.

Each page is opened while the browser records every request: nothing may leave the lab's own
address (an image from example.com would tell an outside server who reads the conversation),
and the participant's words must be on the page as written.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from annotation_data import accounts, conversations, load
from sqlalchemy import update
from sqlalchemy.orm import Session
from staff_server import CHROMIUM, StaffServer, sign_in, staff_server, wait_for_app

from lab import annotation as ann
from lab.schema import ChatSession, Turn

pytestmark = pytest.mark.browser
MESSAGE = "![pic](http://example.com/x.png) see <img src=http://example.com/y.png> and [this](http://example.com/z) **bold**"
ECHO = f"You said: {MESSAGE}"
LOCAL = {"127.0.0.1", "localhost", ""}


def store_hostile_conversations(engine: Any) -> None:
    """Two conversations of the annotation test study whose first exchange is ``MESSAGE`` and ``ECHO``,
    labelled differently by two annotators (so Adjudicate and the disagreements show them)."""
    with Session(engine) as s, s.begin():
        study = load(s)
        ids = conversations(s, study, 2)
        for role, text in (("user", MESSAGE), ("assistant", ECHO)):
            s.execute(update(Turn).where(Turn.session_id.in_(ids), Turn.role == role, Turn.index <= 2).values(content=text))
        names = {"annotator1": s.scalar(ann.select(ann.Account.id).where(ann.Account.username == "annotator1"))}
        names |= {a.username: a.id for a in accounts(s, ["annotator2"])}
        ann.assign(s, "blindtest", list(names), 2)
        for name, code in (("annotator2", "CLARIFY"), ("annotator1", "ACK")):
            slot = ann.claim_next(s, "blindtest", names[name])
            assert slot is not None
            first = ann.conversation_view(s, slot.id, names[name]).turns[0]
            ann.record_label(s, slot.id, names[name], first.id, "G", code)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaffServer]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with staff_server(tmp_path_factory.mktemp("stored")) as srv:
        store_hostile_conversations(srv.engine)
        yield srv


def outside(requests: list[str]) -> list[str]:
    """The requests that left the lab's own address."""
    return [u for u in requests if urlparse(u).scheme not in ("data", "blob", "about") and urlparse(u).hostname not in LOCAL]


def open_recording(chromium: Any, width: int = 1400, height: int = 1000) -> tuple[Any, Any, list[str]]:
    """A fresh context and page that records every request the page makes."""
    ctx = chromium.new_context(viewport={"width": width, "height": height})
    ctx.set_default_timeout(60_000)
    page = ctx.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    return ctx, page, requests


def assert_shown_as_text(page: Any, requests: list[str]) -> None:
    """The participant's words are on the page as written, the reply's bold is bold, and no request left."""
    page.wait_for_timeout(1500)  # an image would be requested as soon as it is drawn
    main = page.locator("[data-testid=stMain]")
    assert MESSAGE in main.inner_text(), "the participant's words, literally"
    assert main.locator("img[src*='example.com']").count() == 0
    # the participant's "**bold**" is not bold; the model's is (it is Markdown)
    assert main.locator("[data-testid=stText]").filter(has_text="**bold**").count() >= 1
    assert outside(requests) == [], outside(requests)


@pytest.mark.parametrize("viewport", [(1400, 1000), (390, 844)], ids=["desktop", "phone"])
def test_annotate_shows_stored_text_as_text(server: StaffServer, chromium: Any, viewport: tuple[int, int]) -> None:
    ctx, page, requests = open_recording(chromium, *viewport)
    sign_in(page, server.url, "annotator1", "/annotate", timeout=120_000)
    page.get_by_role("heading", name="Turn 1 of").first.wait_for()
    assert_shown_as_text(page, requests)
    reply = page.locator("[data-testid=stMain] [data-testid=stMarkdownContainer]").filter(has_text="You said:")
    assert reply.first.locator("strong", has_text="bold").count() == 1  # model text is Markdown…
    assert reply.first.locator("a", has_text="image: pic").count() == 1  # …whose image became a link, never loaded
    ctx.close()


def test_adjudicate_and_monitor_show_stored_text_as_text(server: StaffServer, chromium: Any) -> None:
    ctx, page, requests = open_recording(chromium)
    sign_in(page, server.url, "experimenter1", "/adjudicate?slug=blindtest", timeout=120_000)
    page.get_by_text("Disagreement 1 of").wait_for()
    assert_shown_as_text(page, requests)
    page.goto(f"{server.url}/monitor?slug=blindtest")
    wait_for_app(page)
    page.get_by_text("Latest conversations").wait_for()
    page.get_by_text("You said:").first.wait_for()
    assert_shown_as_text(page, requests)
    ctx.close()


def test_agreement_disagreements_load_nothing_from_outside(server: StaffServer, chromium: Any) -> None:
    ctx, page, requests = open_recording(chromium)
    sign_in(page, server.url, "experimenter1", "/agreement?slug=blindtest", timeout=120_000)
    page.get_by_role("tab", name="Disagreements").click()
    wait_for_app(page)
    page.get_by_text("Open conversation").wait_for()
    page.wait_for_timeout(1500)
    # The tables draw their cells on a canvas; their text is what the table was given.
    grids = page.locator("[data-testid=stDataFrame]")
    assert grids.count() >= 2
    assert outside(requests) == [], outside(requests)
    ctx.close()


def test_the_html_report_loads_nothing_and_shows_stored_text_literally(
    server: StaffServer, chromium: Any, tmp_path: Path
) -> None:
    from lab import metrics, report, synth
    from lab.analysis_data import load_study

    synth.make_study(server.engine, "hostile", 12, exchanges=2, items_per_kind=2, seed=1)
    with Session(server.engine) as s, s.begin():
        s.execute(
            update(ChatSession)
            .where(ChatSession.study_id.in_(ann.select(ann.Study.id).where(ann.Study.slug == "hostile")))
            .values(model=MESSAGE)
        )
    out = report.write_html(report.build(load_study(server.engine, "hostile"), metrics.Options(draws=10)), tmp_path / "r.html")
    assert html.escape(MESSAGE) in out.read_text(encoding="utf-8")
    ctx, page, requests = open_recording(chromium)
    page.goto(out.as_uri())
    page.wait_for_timeout(1000)
    assert MESSAGE in page.inner_text("body")
    assert page.locator("img").count() == 0 and page.locator("a").count() == 0
    assert [u for u in requests if not u.startswith("file://")] == []
    ctx.close()
