"""Import CLAMBER clarification queries (Zhang et al. 2024, zt991211/CLAMBER).

The source is JSON Lines in which each line is a JSON *string* holding the record's JSON,
so a line is decoded twice; a line that is already a JSON object is accepted as well.
Record fields: ``question``, ``context``, ``clarifying_question``,
``require_clarification`` (0/1), ``category`` (MC, FD, LA) and ``subclass``. The file
also carries the dataset authors' model outputs (``predict_*``); these are dropped and
kept nowhere, and so is any other field not listed here.

Each line becomes one :class:`~lab.items.ClarificationItem`:
``id`` ``clamber-<line>`` (the line number, zero-padded to four digits; ``source.id`` is
the line number), ``needs_clarification=bool(require_clarification)``,
``clarifying_question`` (absent when empty), ``category``, ``context`` (absent when empty),
``gold={"subclass": …}`` and the tag ``needs-clarification`` or ``clear``. Record numbers
in ``skipped`` are line numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._importer import ImportReport, RecordError, build, read_text, text_field, type_name
from ._item import ClarificationItem, Source

DATASET = "clamber"
_FIELDS = frozenset({"question", "context", "clarifying_question", "require_clarification", "category", "subclass"})
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


def import_clamber(path: str | Path) -> ImportReport:
    """Import a CLAMBER JSON Lines file.

    Args:
        path: The CLAMBER benchmark file (one JSON-encoded record per line).

    Returns:
        One :class:`~lab.items.ClarificationItem` per usable line; bad lines are listed in
        ``skipped`` as ``record N: field: problem`` with N the line number.

    Raises:
        ItemError: when the file is missing, not UTF-8 text, or yields no item.
    """
    path = Path(path)
    text = read_text(path)
    report = ImportReport(dataset="clamber", source=str(path))
    ignored: set[str] = set()
    # Split on "\n" only: str.splitlines would also break at U+2028 and similar
    # characters, which JSON text may hold unescaped.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = _decode(line)
            item = _item_from_record(record, number)
        except RecordError as e:
            report.skip(number, str(e))
            continue
        if report.add(number, [item]):
            ignored.update(k for k in record if k not in _FIELDS and not k.startswith("predict_"))
    if ignored:
        report.notes.append(f"fields not imported: {', '.join(sorted(ignored))}")
    return report.finish()


def _decode(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
        if isinstance(value, str):
            value = json.loads(value)
    except json.JSONDecodeError as e:
        raise RecordError("(record)", f"invalid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise RecordError("(record)", "invalid JSON (nested too deeply)") from None
    if not isinstance(value, dict):
        raise RecordError("(record)", f"expected a JSON object (or a JSON string holding one), got {type_name(value)}")
    return value


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if value is None:
        raise RecordError("require_clarification", "required field is missing")
    raise RecordError("require_clarification", f"expected 0 or 1, got {json.dumps(value)}")


def _item_from_record(record: dict[str, Any], number: int) -> ClarificationItem:
    question = text_field(record, "question")
    needs = _flag(record.get("require_clarification"))
    subclass = text_field(record, "subclass", required=False)
    return build(
        ClarificationItem,
        id=f"clamber-{number:04d}",
        source=Source(dataset=DATASET, id=str(number)),
        gold={"subclass": subclass} if subclass else {},
        tags=["needs-clarification" if needs else "clear"],
        question=question,
        context=text_field(record, "context", required=False),
        needs_clarification=needs,
        clarifying_question=text_field(record, "clarifying_question", required=False),
        category=text_field(record, "category", required=False),
    )
