"""Every registered extension is documented in docs/extending.md, in the section of its table."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from lab.items import IMPORTERS
from lab.judge import JUDGES
from lab.llm._providers import PROVIDERS
from lab.scoring import TASK_FAMILIES

DOC = Path(__file__).resolve().parent.parent / "docs" / "extending.md"

TABLES = {
    "lab.scoring.TASK_FAMILIES": TASK_FAMILIES,
    "lab.judge.JUDGES": JUDGES,
    "lab.items.IMPORTERS": IMPORTERS,
    "lab.llm._providers.PROVIDERS": PROVIDERS,
}


def sections(text: str) -> dict[str, str]:
    """``## `table` `` heading → that section's text."""
    found = {}
    for part in re.split(r"^## ", text, flags=re.M)[1:]:
        heading, _, body = part.partition("\n")
        for table in re.findall(r"`([\w.]+)`", heading):
            found[table] = body
    return found


def documented(body: str) -> set[str]:
    """Names in the first column of the section's table."""
    return set(rows(body))


def rows(body: str) -> dict[str, str]:
    """The section's table: name in the first column → the rest of its row."""
    return dict(re.findall(r"^\| `([^`]+)` \|(.*)$", body, flags=re.M))


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_registered_extension_is_documented(table: str) -> None:
    body = sections(DOC.read_text(encoding="utf-8")).get(table)
    assert body is not None, f"docs/extending.md has no section for {table}"
    missing = sorted(set(TABLES[table]) - documented(body))
    assert not missing, f"{table}: {', '.join(missing)} registered but not in docs/extending.md"
    stale = sorted(documented(body) - set(TABLES[table]))
    assert not stale, f"docs/extending.md documents {', '.join(stale)} under {table}, which holds no such entry"


def test_an_undocumented_entry_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(IMPORTERS, "undocumented", IMPORTERS["clamber"])
    with pytest.raises(AssertionError, match="undocumented registered but not"):
        test_every_registered_extension_is_documented("lab.items.IMPORTERS")


DESCRIBED = {"lab.items.IMPORTERS": IMPORTERS, "lab.llm._providers.PROVIDERS": PROVIDERS}
"""Tables whose entries carry a one-line description, which their row in the page repeats."""


@pytest.mark.parametrize("table", sorted(DESCRIBED))
def test_every_description_is_the_documented_one(table: str) -> None:
    table_rows = rows(sections(DOC.read_text(encoding="utf-8"))[table])
    for name, entry in DESCRIBED[table].items():
        assert entry.description in table_rows.get(name, ""), f"{table}: {name}'s row does not say {entry.description!r}"


def test_an_undocumented_provider_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROVIDERS, "undocumented", PROVIDERS["lab"])
    with pytest.raises(AssertionError, match="undocumented registered but not"):
        test_every_registered_extension_is_documented("lab.llm._providers.PROVIDERS")


def test_the_import_command_offers_every_importer() -> None:
    from lab.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    dataset = next(a for a in commands.choices["import"]._actions if a.dest == "dataset")
    assert set(dataset.choices) == {*IMPORTERS, "bundle"}
