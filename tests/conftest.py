"""Shared fixtures: migrated SQLite and Postgres databases, a loaded demo study, the scripted model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# The suite never reads a developer's .env or data folder.
os.environ["LAB_ENV_FILE"] = os.devnull

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
PG_URL = os.environ.get("TEST_DATABASE_URL")


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'data' / 'lab.db'}")
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture(autouse=True)
def _no_backoff_sleep() -> Iterator[None]:
    """Retries after transient failures happen at once (tests/llm records the waits instead)."""
    from lab.llm import using_retry_policy

    async def skip(_seconds: float) -> None:
        return None

    with using_retry_policy(sleep=lambda _seconds: None, asleep=skip, jitter=0.0):
        yield


@pytest.fixture(autouse=True)
def _scripted_reset() -> Iterator[None]:
    from lab.llm import scripted

    scripted.reset()
    yield
    scripted.reset()


def _reset_postgres(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite database in a temporary folder."""
    from lab.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'lab.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    """A migrated, emptied Postgres database (skipped without TEST_DATABASE_URL)."""
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    from lab.db import make_engine, migrate

    engine = make_engine(PG_URL)
    _reset_postgres(engine)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Engine:
    """The same test on SQLite and on Postgres."""
    return request.getfixturevalue("sqlite_engine" if request.param == "sqlite" else "pg_engine")


@pytest.fixture
def demo_spec_path() -> Path:
    return ROOT / "studies" / "demo.yaml"


@pytest.fixture
def shared_datasets() -> Path:
    """The datasets beside the project (skipped when absent, as on a user's fresh clone)."""
    path = SHARED / "datasets"
    if not path.is_dir():
        pytest.skip("../shared/datasets is not present")
    return path


def write_spec(tmp_path: Path, body: str, items: str | None = None) -> Path:
    """Write a spec (and optionally an item file beside it) for a test."""
    path = tmp_path / "study.yaml"
    path.write_text(body)
    if items is not None:
        (tmp_path / "items.jsonl").write_text(items)
    return path
