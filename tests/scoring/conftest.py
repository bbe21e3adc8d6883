"""Items for the scoring tests: hand-made ones, and real ones from ../shared/datasets (skipped when absent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

_ROOT = Path(__file__).resolve().parents[2]
# The shared folder sits beside the project, or beside the folder holding its worktrees.
DATASETS = next(
    (
        p / "shared" / "datasets" / "lost_in_conversation"
        for p in (_ROOT.parent, _ROOT.parent.parent)
        if (p / "shared" / "datasets").is_dir()
    ),
    _ROOT.parent / "shared" / "datasets" / "lost_in_conversation",
)
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "datasets" / "lost_in_conversation" / "sample.json"


def shared_records(task: str) -> list[dict[str, Any]]:
    """Real Lost in Conversation records of one task (the test is skipped without the datasets)."""
    name = "sharded_translation.json" if task == "translation" else "thirdparty_sample_5_per_task.json"
    path = DATASETS / name
    if not path.is_file():
        pytest.skip("../shared/datasets/lost_in_conversation is not present")
    return [r for r in json.loads(path.read_text(encoding="utf-8")) if isinstance(r, dict) and r.get("task") == task]


def fixture_record(task: str) -> dict[str, Any]:
    """The project's own sample record of one task (tests/fixtures)."""
    records = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return next(r for r in records if isinstance(r, dict) and r.get("task") == task and len(r) > 2)
