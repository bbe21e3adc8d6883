"""The README documents every setting, every command and every spec field (datasette's rule)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from lab.cli import build_parser
from lab.settings import SETTINGS
from lab.spec import ConditionSpec, ModelSpec, PlanSpec, StudySpec

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_setting_documented(name: str) -> None:
    assert f"`{name}`" in README


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix} {name}".strip()
                subs = _commands(sub, full)
                out.extend(subs or [full])
    return out


@pytest.mark.parametrize("command", _commands(build_parser()))
def test_command_documented(command: str) -> None:
    assert f"python -m lab {command}" in README


@pytest.mark.parametrize(
    "field",
    [f for model in (StudySpec, ModelSpec, ConditionSpec, PlanSpec) for f in model.model_fields],
)
def test_spec_field_documented(field: str) -> None:
    assert f"`{field}`" in README
