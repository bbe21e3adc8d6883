"""Compare replies in a real browser: two annotators judge the same comparisons, one on a phone; the experimenter sees agreement.

The server holds the branched preference study (tests/preference_data.py) with annotator1
and annotator2 assigned, two per comparison, so both meet every comparison in their own
order. annotator1 works at desktop width, where the two replies stand side by side;
annotator2 at 390×844, where they stack. Both always answer "Reply 1", so they agree
exactly where the same reply was drawn to their left; the experimenter then finds the
figures the library computes on the agreement page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from preference_data import COMPARISONS, MODEL_WORDS, SLUG, build_in_subprocess
from sqlalchemy import select
from sqlalchemy.orm import Session
from staff_server import CHROMIUM, PASSWORD, StaffServer, sign_in, staff_server, wait_for_app

from lab import annotation as ann
from lab import preference as pref
from lab.accounts import create_account
from lab.schema import PreferenceJudgement

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StaffServer]:
    """A server with the branched preference study and two annotators assigned to it."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with staff_server(tmp_path) as srv:
        with Session(srv.engine) as s, s.begin():
            create_account(s, "annotator2", "annotator", PASSWORD)
        # Playwright's event loop runs in this thread, so the study is built as the commands do.
        build_in_subprocess(srv.env, tmp_path)
        with Session(srv.engine) as s, s.begin():
            ann.assign(s, SLUG, ["annotator1", "annotator2"], 2)
        yield srv


def reply_box(page: Any, name: str) -> dict[str, float]:
    """Where the heading of one candidate reply is drawn."""
    box = page.locator("[data-testid=stMarkdownContainer] strong", has_text=re.compile(f"^{name}$")).bounding_box()
    assert box is not None
    return dict(box)


def judge_everything(page: Any, phone: bool) -> list[str]:
    """Answer "Reply 1" with a reason on every comparison; returns what each screen showed."""
    seen = []
    for n in range(1, COMPARISONS + 1):
        page.get_by_text(f"Comparison {n} of {COMPARISONS}").wait_for()
        one, two = reply_box(page, "Reply 1"), reply_box(page, "Reply 2")
        if phone:  # stacked: the second reply under the first
            assert two["y"] > one["y"] + one["height"] and abs(two["x"] - one["x"]) < 2, (one, two)
        else:  # side by side
            assert abs(two["y"] - one["y"]) < 2 and two["x"] > one["x"] + one["width"], (one, two)
        seen.append(page.inner_text("body"))
        page.locator("[data-testid=stRadio]").get_by_text("Reply 1", exact=True).click()
        page.get_by_label("Your reason (required)").fill(f"asks for what is missing ({n})")
        page.get_by_role("button", name="Save and next").click()
        wait_for_app(page)
    page.get_by_text("Nothing left for you to compare in this study").wait_for()
    return seen


def test_two_annotators_judge_the_same_comparisons_and_the_experimenter_sees_agreement(
    server: StaffServer, chromium: Any
) -> None:
    base = server.url
    desk = chromium.new_context(viewport={"width": 1400, "height": 1000})
    desk.set_default_timeout(30_000)
    ada = desk.new_page()
    sign_in(ada, base, "annotator1", "/prefer")
    ada.get_by_text(f"Comparison 1 of {COMPARISONS}").wait_for()
    # a choice without a reason is refused, and nothing is stored
    ada.locator("[data-testid=stRadio]").get_by_text("Reply 2", exact=True).click()
    ada.get_by_role("button", name="Save and next").click()
    wait_for_app(ada)
    ada.get_by_text("Give a short reason for your choice").wait_for()
    with Session(server.engine) as s:
        assert s.scalars(select(PreferenceJudgement)).first() is None
    shown = judge_everything(ada, phone=False)
    desk.close()

    phone = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone.set_default_timeout(30_000)
    bo = phone.new_page()
    sign_in(bo, base, "annotator2", "/prefer")
    shown += judge_everything(bo, phone=True)
    phone.close()

    text = "\n".join(shown).lower()
    for word in (*MODEL_WORDS, "branch", "original", "clarification", "rollout"):
        assert word.lower() not in text, word
    assert "which reply serves the user better at this point?" in text
    with Session(server.engine) as s:
        rows = s.scalars(select(PreferenceJudgement)).all()
        expected = pref.preference_agreement(s, SLUG, bootstrap=0)
    assert len(rows) == 2 * COMPARISONS and {r.annotator for r in rows} == {"annotator1", "annotator2"}
    assert {r.left for r in rows} == {"a", "b"} and all(r.choice == r.left for r in rows)  # "Reply 1" is the left reply
    assert expected.shared == COMPARISONS and expected.value("raw") is not None

    lead = chromium.new_context(viewport={"width": 1400, "height": 1000})
    lead.set_default_timeout(60_000)
    exp = lead.new_page()
    sign_in(exp, base, "experimenter1", f"/agreement?slug={SLUG}")
    exp.get_by_role("tab", name="Reply preferences").click()
    wait_for_app(exp)
    panel = exp.locator("[data-testid=stTabs] [role=tabpanel]:visible")
    panel.get_by_text("Judged by two or more").wait_for()
    metrics = panel.locator("[data-testid=stMetric]")
    values = {
        metrics.nth(i).locator("label").inner_text(): metrics.nth(i).locator("[data-testid=stMetricValue]").inner_text()
        for i in range(metrics.count())
    }
    assert values["Judged by two or more"] == str(COMPARISONS)
    assert values["Percent agreement"] == f"{expected.value('raw'):.0%}"
    lead.close()
