"""The annotation workbench in a real browser: two annotators label the demo study's simulated conversations.

On a cold server, signed-out visitors and participants reach none of the annotation pages.
Then two annotator accounts label every simulated conversation with the keyboard, one links
a repair sequence, the agreement page shows α, and an experimenter adjudicates.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from staff_server import CHROMIUM, PASSWORD, ROOT, StaffServer, sign_in, staff_server, wait_for_app

from lab import annotation as ann
from lab.accounts import create_account
from lab.schema import Label, RepairSequence

pytestmark = pytest.mark.browser
PAGES = ("annotate", "agreement", "adjudicate")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StaffServer]:
    """A cold server whose demo study has simulated conversations (scripted model) and two annotators assigned."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with staff_server(tmp_path) as srv:
        with Session(srv.engine) as s, s.begin():
            create_account(s, "annotator2", "annotator", PASSWORD)
        # Playwright's event loop runs in this thread, so the simulation runs as the command does.
        command = [
            sys.executable,
            "-m",
            "lab",
            "simulate",
            "demo",
            "--repeats",
            "1",
            "--conditions",
            "full",
            "--models",
            "lab/scripted",
        ]
        subprocess.run(command, cwd=ROOT, env=srv.env, check=True, capture_output=True, timeout=300)
        with Session(srv.engine) as s, s.begin():
            ann.assign(s, "demo", ["annotator1", "annotator2"], 2)
        yield srv


@pytest.fixture
def context(chromium: Any) -> Iterator[Any]:
    ctx = chromium.new_context(viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(30_000)
    yield ctx
    ctx.close()


def record_layouts(page: Any) -> list[str]:
    """Every page layout the server sends this page (``WIDE``/``CENTERED``), read from the websocket.

    One run that sends two different layouts lets the browser keep either, so a wide page
    must only ever send ``WIDE``.
    """
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from streamlit.proto.PageConfig_pb2 import PageConfig

    seen: list[str] = []

    def frame(payload: str | bytes) -> None:
        if isinstance(payload, str):
            return
        msg = ForwardMsg()
        msg.ParseFromString(payload)
        if msg.WhichOneof("type") == "page_config_changed" and msg.page_config_changed.layout != PageConfig.LAYOUT_UNSET:
            seen.append(PageConfig.Layout.Name(msg.page_config_changed.layout))

    page.on("websocket", lambda ws: ws.on("framereceived", frame))
    return seen


def main_width(page: Any) -> float:
    """Width of the page's main column in pixels."""
    return float(page.locator("[data-testid=stMainBlockContainer]").bounding_box()["width"])


def label_everything(page: Any, code_key: str, on_first_turn: str | None = None) -> int:
    """Label every turn of every conversation on layer G with a key, then "Done"; returns conversations done."""
    done = 0
    while True:
        wait_for_app(page)
        heading = page.get_by_role("heading", name="Turn 1 of").first
        finished = page.get_by_text("Nothing left for you in this study")
        heading.or_(finished).first.wait_for()
        if finished.count():
            return done
        total = int(heading.inner_text().split(" of ")[1].split()[0])
        for position in range(1, total + 1):
            page.get_by_role("heading", name=f"Turn {position} of {total}").wait_for()
            page.keyboard.press((on_first_turn or code_key) if position == 1 and done == 0 else code_key)
            wait_for_app(page)
            if position < total:
                page.keyboard.press("ArrowRight")
                wait_for_app(page)
        page.get_by_role("button", name="Done with this conversation").click()
        done += 1


def test_signed_out_visitors_and_participants_reach_no_annotation_page(server: StaffServer, context: Any) -> None:
    page = context.new_page()
    for name in PAGES:
        for query in ("", "?study=demo", "?c=1"):
            page.goto(f"{server.url}/{name}{query}")
            wait_for_app(page)
            body = page.inner_text("body")
            assert "Please sign in to see this page." in body or "Study" in body, body[:300]
            assert "Turn 1 of" not in body and "Annotators' codes" not in body and "α ·" not in body


def test_two_annotators_label_link_a_repair_and_an_experimenter_adjudicates(
    server: StaffServer, context: Any, tmp_path: Path
) -> None:
    base = server.url
    with Session(server.engine) as s:
        conversations = len(ann.my_conversations(s, "demo", 1)) or None
    ada = context.new_page()
    ada_layouts = record_layouts(ada)
    sign_in(ada, base, "annotator1", "/annotate")
    ada.get_by_role("heading", name="Turn 1 of").first.wait_for()
    wide = main_width(ada)

    # a repair sequence on the first conversation: trouble source turn 1, initiation turn 2 (OI-open),
    # first with a span the turn does not hold: refused, naming the field, every choice kept
    ada.get_by_text("Repair sequences").wait_for()
    form = ada.locator("[data-testid=stForm]")
    form.get_by_text("Initiation turn").wait_for()
    for label, choice in (("Initiation turn", "2 (assistant)"), ("Initiation type", "OI-open")):
        form.get_by_label(label).click()
        ada.keyboard.type(choice)
        ada.keyboard.press("Enter")
    span = form.get_by_role("textbox", name="Trouble span (copy the words from the turn)")
    span.fill("words nobody wrote")
    form.get_by_role("button", name="Save sequence").click()
    wait_for_app(ada)
    form.get_by_text("Trouble span: “words nobody wrote” is not in turn 1").wait_for()
    assert span.input_value() == "words nobody wrote"
    for label, choice in (("Initiation turn", "2 (assistant)"), ("Initiation type", "OI-open")):
        assert form.get_by_role("combobox", name=label).input_value() == choice
    for name in ("Skip for now", "Done with this conversation"):
        assert ada.get_by_role("button", name=name).is_visible()
    with Session(server.engine) as s:
        assert s.scalars(select(RepairSequence)).first() is None
    span.fill("")
    form.get_by_role("button", name="Save sequence").click()
    wait_for_app(ada)
    ada.get_by_text("Repair sequence saved.").wait_for()
    ada.wait_for_timeout(500)
    assert set(ada_layouts) == {"WIDE"} and main_width(ada) == wide  # the page keeps its width
    with Session(server.engine) as s:
        seq = s.scalars(select(RepairSequence)).one()
    assert seq.annotator == "annotator1" and seq.initiation == "OI-open" and seq.initiator == "assistant"

    ada.keyboard.press("a")  # ACK on turn 1, before the screenshot
    wait_for_app(ada)
    ada.get_by_role("heading", name="Annotate", exact=True).scroll_into_view_if_needed()
    shot = tmp_path / "annotate.png"
    ada.screenshot(path=str(shot), full_page=False)
    if folder := os.environ.get("LAB_SCREENSHOT_DIR"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / "annotate.png")

    done_ada = label_everything(ada, "n", on_first_turn="a")
    bo_context = context.browser.new_context(viewport={"width": 1400, "height": 1000})
    bo = bo_context.new_page()
    bo.set_default_timeout(30_000)
    sign_in(bo, base, "annotator2", "/annotate")
    done_bo = label_everything(bo, "n", on_first_turn="l")  # CLARIFY where annotator1 said ACK
    bo_context.close()
    assert done_ada == done_bo and done_ada >= 1 and (conversations is None or done_ada == conversations)

    with Session(server.engine) as s:
        p = ann.progress(s, "demo")
        humans = s.execute(select(Label.annotator, Label.code).where(Label.account_id.is_not(None), Label.layer == "G")).all()
    assert p.complete == p.conversations == done_ada
    assert {a for a, _ in humans} == {"annotator1", "annotator2"}

    exp_context = context.browser.new_context(viewport={"width": 1400, "height": 1000})
    exp = exp_context.new_page()
    exp.set_default_timeout(60_000)
    exp_layouts = record_layouts(exp)
    sign_in(exp, base, "experimenter1", "/agreement")
    exp.get_by_text("α · humans").first.wait_for()
    wide = main_width(exp)
    # the confusion matrix is drawn (an unreadable field name left it 0 px high)
    exp.get_by_text("Confusion between human annotators").wait_for()
    heat = exp.locator("[data-testid=stVegaLiteChart]").nth(1)
    heat.scroll_into_view_if_needed()
    exp.wait_for_function("document.querySelectorAll('[data-testid=stVegaLiteChart]')[1].getBoundingClientRect().height > 100")
    # choosing a layer keeps the page's width
    for layer in ("R · Repair initiation", "G · Grounding acts"):
        exp.locator("[data-testid=stRadio]").first.get_by_text(layer).click()
        wait_for_app(exp)
    exp.get_by_text("α · humans").first.wait_for()
    exp.wait_for_timeout(500)
    assert set(exp_layouts) == {"WIDE"} and main_width(exp) == wide
    exp.goto(f"{base}/adjudicate")
    wait_for_app(exp)
    exp.get_by_text("Disagreement 1 of 1").wait_for()
    exp.get_by_role("button", name="Decide CLARIFY").click()
    wait_for_app(exp)
    exp.get_by_text("Decided CLARIFY").wait_for()
    exp_context.close()
    with Session(server.engine) as s:
        gold = s.execute(select(Label.code, Label.meta).where(Label.annotator == "gold")).one()
        resolved = ann.resolved_labels(s, "demo", "G")
    assert gold.code == "CLARIFY" and gold.meta["decided_by"] == "experimenter1"
    assert sum(1 for r in resolved.values() if r.source == "gold") == 1
