"""Starting ``streamlit run app.py`` for the browser tests; the staff tests' server has the demo study and staff accounts.

Each server gets its own temporary database and secret, so a test can start one "cold"
(nothing has been opened yet) and make its very first request to a staff page's URL.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery"
DEMO_TITLE = "Repair in conversation: piece-by-piece tasks, loaded questions, missing details"
STARTUP_SECONDS = 60


@dataclass
class StaffServer:
    """A running app, its database and the environment it runs with."""

    url: str
    engine: Engine
    log: Path
    env: dict[str, str]


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthy(url: str) -> bool:
    """Whether Streamlit answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return bool(response.read().decode().strip() == "ok")
    except OSError:
        return False


def prepare(folder: Path) -> Engine:
    """A migrated database in ``folder`` with the demo study and one account per staff role."""
    from lab.accounts import create_account
    from lab.db import make_engine, migrate
    from lab.spec import load_spec_file
    from lab.studies import load_study

    engine = make_engine(f"sqlite:///{folder / 'lab.db'}")
    migrate(engine)
    demo = ROOT / "studies" / "demo.yaml"
    with Session(engine) as s, s.begin():
        load_study(s, load_spec_file(demo), str(demo))
        for role in ("annotator", "experimenter", "admin"):
            create_account(s, f"{role}1", role, PASSWORD)
    return engine


@contextmanager
def serve(folder: Path, **env_extra: str) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """Run ``streamlit run app.py`` as ``make run`` does, on a free port, with its database in
    ``folder``; yields the URL, the server log and the environment, and stops it after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{folder / 'lab.db'}",
        "LAB_DATA_DIR": str(folder),
        "LAB_ENV_FILE": os.devnull,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LAB_PUBLIC_URL": url,
        **env_extra,
    }
    log = folder / "server.log"
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
        "--global.developmentMode", "false", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield url, log, env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def staff_server(folder: Path) -> Iterator[StaffServer]:
    """The app with the demo study and one account per staff role, its own secret and database."""
    engine = prepare(folder)
    try:
        with serve(folder, LAB_SECRET_KEY=f"browser-test-secret-{folder.name}") as (url, log, env):
            yield StaffServer(url, engine, log, env)
    finally:
        engine.dispose()


def wait_for_app(page: object, timeout: float = 30_000) -> None:
    """Wait until the Streamlit page is connected and its script has finished running."""
    page.wait_for_selector("[data-testid='stApp'][data-test-connection-state='CONNECTED']", timeout=timeout)  # type: ignore[attr-defined]
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout)  # type: ignore[attr-defined]
    page.wait_for_function("document.querySelectorAll('[data-testid=stSkeleton]').length === 0", timeout=timeout)  # type: ignore[attr-defined]


def sign_in(page: object, base: str, username: str, next_path: str, timeout: float = 30_000) -> None:
    """Sign ``username`` in through the form and wait until ``next_path`` has been drawn."""
    page.goto(f"{base}/auth/login?next={next_path}")  # type: ignore[attr-defined]
    page.fill("#username", username)  # type: ignore[attr-defined]
    page.fill("#password", PASSWORD)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url(f"{base}{next_path}")  # type: ignore[attr-defined]
    wait_for_app(page, timeout)
