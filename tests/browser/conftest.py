"""Real-browser fixtures: ``streamlit run app.py`` on a free port with its own database, and Debian's chromium.

The server is the app exactly as ``make run`` starts it, with ``DATABASE_URL`` and
``LAB_DATA_DIR`` pointing at a temporary folder; tests write studies and participants
into that database directly and read back what the page stored. Chromium is launched by
its path (``playwright install`` cannot download a browser here); the tests are skipped
only when chromium is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from staff_server import CHROMIUM, CHROMIUM_ARGS, serve


@dataclass
class LabServer:
    """A running app and its database."""

    url: str
    engine: Engine
    log: Path

    def load(self, spec: str, name: str = "spec.yaml", base_dir: Path | None = None) -> int:
        """Load a spec (YAML text) and open the study; returns the study id."""
        from lab.spec import parse_spec
        from lab.studies import load_study, set_status

        with Session(self.engine) as s, s.begin():
            study = load_study(s, parse_spec(spec, name, base_dir)).study
            set_status(s, study.slug, "open")
            return study.id

    def invite(self, study_id: int, plan: list[dict[str, str]] | None = None) -> tuple[int, str]:
        """A participant with a personal link; returns (participant id, token)."""
        from lab.participants import create_participant, new_token
        from lab.schema import Study

        token = new_token()
        with Session(self.engine) as s, s.begin():
            study = s.get(Study, study_id)
            assert study is not None
            p = create_participant(s, study, token=token)
            if plan is not None:
                p.plan = plan
            return p.id, token


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """``streamlit run app.py`` with a fresh, migrated SQLite database."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from lab.db import make_engine, migrate

    folder = tmp_path_factory.mktemp("lab")
    engine = make_engine(f"sqlite:///{folder / 'lab.db'}")
    migrate(engine)
    try:
        with serve(folder) as (url, log, _env):
            yield LabServer(url, engine, log)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's chromium driven by Playwright."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh browser context and page (no cookies), 1280×900."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()
