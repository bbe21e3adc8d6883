"""The comparison page in a real browser against ``streamlit run app.py``, after a simulated run of the demo study."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from staff_server import CHROMIUM, ROOT, StaffServer, sign_in, staff_server, wait_for_app

from lab import annotation as ann
from lab import charts as lab_charts
from lab import metrics, report
from lab.analysis_data import load_study
from lab.schema import Account

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaffServer]:
    """The app with the demo study after a scripted simulated run (conditions without the local mediator)."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with staff_server(tmp_path_factory.mktemp("compare")) as srv:
        run = [sys.executable, "-m", "lab", "simulate", "demo", "--repeats", "1", "--models", "lab/scripted"]
        run += ["--conditions", "full,sharded,loaded,control,on-request"]
        done = subprocess.run(run, cwd=ROOT, env=srv.env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        unresolved_repair(srv)
        yield srv


def unresolved_repair(srv: StaffServer) -> None:
    """One repair sequence, left unresolved: the repair chart then has one bar, wholly "unresolved"."""
    with Session(srv.engine) as s, s.begin():
        ann.assign(s, "demo", ["annotator1"], 1)
        me = s.scalar(select(Account.id).where(Account.username == "annotator1"))
        assert me is not None
        slot = ann.claim_next(s, "demo", me)
        assert slot is not None
        turns = ann.conversation_view(s, slot.id, me).turns
        ann.save_sequence(
            s,
            slot.id,
            me,
            trouble_turn_id=turns[0].id,
            initiation_turn_id=turns[1].id,
            initiation="OI-open",
            outcome="unresolved",
        )
        for n, turn in enumerate(turns):  # grounding acts, for the grounding chart of the screenshot
            ann.record_label(s, slot.id, me, turn.id, "G", ("ACK", "CLARIFY", "NONE")[n % 3])


def png_height(data: bytes, scale: float = 2.0) -> float:
    """Height in CSS pixels of a PNG rendered at ``scale`` (read from its header)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">I", data[20:24])[0] / scale


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    ctx = chromium.new_context(viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(60_000)
    yield ctx.new_page()
    ctx.close()


def test_experimenter_sees_charts_after_a_simulated_run(server: StaffServer, page: Any, tmp_path: Path) -> None:
    sign_in(page, server.url, "experimenter1", "/compare", timeout=180_000)
    page.get_by_role("heading", name="Compare models").wait_for()
    page.get_by_text("Replies to questions with a false presupposition").first.wait_for()
    body = page.inner_text("body")
    for heading in ("FULL → SHARDED degradation", "Premature answers", "Presupposition handling", "Repair outcomes"):
        assert heading in body
    assert "conversations · version 1" in body
    # Every chart is drawn by Vega in the page (a canvas or an SVG inside each chart).
    page.wait_for_function("document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length >= 5")
    assert page.get_by_role("button", name="CSV").count() >= 5 and page.get_by_role("button", name="PNG").count() >= 5
    # Streamlit scrolls inside the page, so a tall window shows every chart at once.
    page.set_viewport_size({"width": 1400, "height": 3600})
    wait_for_app(page)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(tmp_path / "compare.png"))
    assert (tmp_path / "compare.png").stat().st_size > 10_000
    if folder := os.environ.get("LAB_SCREENSHOT_DIR"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "compare.png", Path(folder) / "compare.png")


def test_annotator_and_visitor_see_no_figures(server: StaffServer, page: Any) -> None:
    page.goto(f"{server.url}/compare")
    wait_for_app(page, 180_000)
    page.get_by_text("Please sign in to see this page.").wait_for()
    assert "lab/scripted" not in page.inner_text("body")
    sign_in(page, server.url, "annotator1", "/compare", timeout=180_000)
    page.get_by_text("This page is not available to your role (annotator).").wait_for()
    assert "lab/scripted" not in page.inner_text("body") and "Compare models" not in page.inner_text("main")


def test_charts_in_the_page_are_drawn_at_least_as_tall_as_their_downloads(server: StaffServer, page: Any) -> None:
    # Streamlit fits a chart, axes and legend included, into the height it is given unless the
    # chart says otherwise: a one-bar chart was squeezed to nothing and its legend clipped.
    sign_in(page, server.url, "experimenter1", "/compare", timeout=180_000)
    page.get_by_text("conversations with a repair sequence").wait_for()
    page.wait_for_function("document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length >= 6")
    data = load_study(server.engine, "demo")
    comparison = report.build(data, metrics.Options(draws=50))  # sizes do not depend on the draws
    figures = lab_charts.all_figures(comparison.table, comparison.laban, "P")
    charts = page.locator("[data-testid=stVegaLiteChart]")
    titles = ["models", "degradation", "premature", "presupposition", "grounding", "repair"]
    assert charts.count() == len(titles) and [f.key for f in figures] == titles
    page.wait_for_timeout(1000)
    for n, title in enumerate(titles):
        # axis labels are plain numbers (a scale with no spread read 0.000000)
        labels = charts.nth(n).evaluate("e => [...e.querySelectorAll('svg text')].map(t => t.textContent)")
        assert "0.000000" not in labels, (title, labels)
        if title == "grounding":
            continue  # faceted: drawn at its own size in both
        charts.nth(n).scroll_into_view_if_needed()
        drawn = charts.nth(n).bounding_box()["height"]
        expected = png_height(lab_charts.image(figures[n].chart, "png"))  # what the PNG button downloads
        # The page's theme sets larger legends, so a chart may be taller there, never squeezed shorter.
        assert drawn >= 0.9 * expected, f"{title}: {drawn:.0f} px in the page, {expected:.0f} px in the PNG"
