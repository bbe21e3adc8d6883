"""Every registered extension is documented in docs/extending.md, in the section of its table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.items import IMPORTERS
from lab.judge import JUDGES
from lab.llm._providers import IN_PROCESS_PROVIDERS
from lab.scoring import TASK_FAMILIES

DOC = Path(__file__).resolve().parent.parent / "docs" / "extending.md"

TABLES = {
    "lab.scoring.TASK_FAMILIES": TASK_FAMILIES,
    "lab.judge.JUDGES": JUDGES,
    "lab.items.IMPORTERS": IMPORTERS,
    "lab.llm._providers.IN_PROCESS_PROVIDERS": IN_PROCESS_PROVIDERS,
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
    return set(re.findall(r"^\| `([^`]+)` \|", body, flags=re.M))


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
