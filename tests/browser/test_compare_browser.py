"""The comparison page in a real browser against ``streamlit run app.py``, after a simulated run of the demo study."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from staff_server import CHROMIUM, ROOT, StaffServer, sign_in, staff_server, wait_for_app

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
        yield srv


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
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    assert (tmp_path / "compare.png").stat().st_size > 10_000


def test_annotator_and_visitor_see_no_figures(server: StaffServer, page: Any) -> None:
    page.goto(f"{server.url}/compare")
    wait_for_app(page, 180_000)
    page.get_by_text("Please sign in to see this page.").wait_for()
    assert "lab/scripted" not in page.inner_text("body")
    sign_in(page, server.url, "annotator1", "/compare", timeout=180_000)
    page.get_by_text("This page is not available to your role (annotator).").wait_for()
    assert "lab/scripted" not in page.inner_text("body") and "Compare models" not in page.inner_text("main")
