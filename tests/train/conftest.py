"""The training tests' base model (a tiny one, see tests/tiny_model.py) and export folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.tiny_model import make_tiny_model, training_stack


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny base model folder, made once per test session."""
    training_stack()
    return make_tiny_model(tmp_path_factory.mktemp("tiny-base") / "tiny")


def write_export(folder: Path, method: str, records: list[dict[str, Any]], meta: dict[str, Any] | None = None) -> Path:
    """An export folder as ``python -m lab export --format sft|dpo`` writes it."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    with (folder / "data" / f"{method}.jsonl").open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    (folder / "bundle.json").write_text(json.dumps({"study": "demo", "format": method, **(meta or {})}))
    return folder
