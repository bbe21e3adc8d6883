"""Items for the scoring tests: hand-made ones, and real ones carried in tests/data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RECORDS = Path(__file__).resolve().parents[1] / "data" / "lost_in_conversation" / "records.json"
"""The few real Lost in Conversation records the tests score (their licence: the README beside them)."""
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "datasets" / "lost_in_conversation" / "sample.json"


def shared_records(task: str) -> list[dict[str, Any]]:
    """Real Lost in Conversation records of one task, carried in tests/data so they run on any clone."""
    return [r for r in json.loads(RECORDS.read_text(encoding="utf-8")) if isinstance(r, dict) and r.get("task") == task]


def fixture_record(task: str) -> dict[str, Any]:
    """The project's own sample record of one task (tests/fixtures)."""
    records = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return next(r for r in records if isinstance(r, dict) and r.get("task") == task and len(r) > 2)
