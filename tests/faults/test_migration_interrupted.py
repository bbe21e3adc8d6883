"""A migration killed halfway (SIGKILL, after some of its tables exist) can be run again to the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from lab.db import current_revision, head_revision, make_engine
from lab.schema import Base

ROOT = Path(__file__).resolve().parents[2]

CRASH_AFTER_TABLES = 3
"""The migration process kills itself after creating this many tables."""

# Runs ``python -m lab migrate`` in a process that SIGKILLs itself right after its third
# CREATE TABLE: no exception handler, rollback or cleanup of the lab's gets to run.
CRASHING_MIGRATE = f"""
import os, signal, sys
from alembic.operations import Operations
created = []
original = Operations.create_table
def create_table(self, *args, **kwargs):
    result = original(self, *args, **kwargs)
    created.append(args[0])
    if len(created) == {CRASH_AFTER_TABLES}:
        print("created", ",".join(created), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return result
Operations.create_table = create_table
sys.argv = ["lab", "migrate"]
from lab.cli import main
main()
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database with nothing in it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    yield url


def lab(url: str, *args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the lab's command line (or ``code``) against ``url`` in a new process."""
    env = {**os.environ, "DATABASE_URL": url, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "lab", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


def test_a_migration_killed_halfway_can_be_rerun(empty_database: str) -> None:
    crashed = lab(empty_database, code=CRASHING_MIGRATE)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert crashed.stdout.startswith("created ")
    engine = make_engine(empty_database)
    try:
        assert current_revision(engine) is None, "a killed migration must not be recorded as done"

        rerun = lab(empty_database, "migrate")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert "Traceback" not in rerun.stderr
        assert current_revision(engine) == head_revision()
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())

        again = lab(empty_database, "migrate")
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        engine.dispose()
