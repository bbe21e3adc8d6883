"""What every dataset importer shares: the import report, record errors and safe ids.

An importer turns one published dataset file into items of the lab's own format. A
record that does not fit is left out whole and reported as ``record N: field: problem``;
a file that cannot be read at all raises :class:`~lab.items.ItemError`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from ..errors import LabError
from ._item import Item, ItemError, format_validation_error

_ID_MAX = 200
_ID_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.:/\-]+")


@dataclass
class ImportReport:
    """The result of importing one dataset file."""

    dataset: str
    """Importer name, e.g. ``falseqa``."""

    source: str
    """The file that was read."""

    items: list[Item] = field(default_factory=list)
    """The imported items, in source order."""

    skipped: list[str] = field(default_factory=list)
    """One line per record left out: ``record N: field: problem``."""

    notes: list[str] = field(default_factory=list)
    """Changes made to records that were imported (e.g. an empty shard dropped)."""

    _seen: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def counts(self) -> dict[str, int]:
        """Number of imported items by kind."""
        return dict(Counter(item.kind for item in self.items))

    @property
    def tag_counts(self) -> dict[str, int]:
        """Number of imported items carrying each tag."""
        return dict(Counter(tag for item in self.items for tag in item.tags))

    def summary(self) -> str:
        """One line for consoles: items by kind and tag, and how many records were skipped."""
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.counts.items()))
        tags = ", ".join(f"{t} {n}" for t, n in sorted(self.tag_counts.items()))
        detail = "; ".join(part for part in (kinds, tags) if part)
        return f"{self.dataset}: {len(self.items)} items ({detail}), {len(self.skipped)} skipped"

    def skip(self, record: int, message: str) -> None:
        """Record that source record ``record`` was left out, and why (``field: problem``)."""
        self.skipped.append(f"record {record}: {message}")

    def note(self, record: int, message: str) -> None:
        """Record a change made while importing source record ``record``."""
        self.notes.append(f"record {record}: {message}")

    def add(self, record: int, items: list[Item], notes: Iterable[str] = ()) -> bool:
        """Add the items made from one source record, all or none.

        Returns:
            False (and the record is reported as skipped) when an item id is already taken.
        """
        batch: set[str] = set()
        for item in items:
            if item.id in self._seen or item.id in batch:
                first = self._seen.get(item.id, record)
                self.skip(record, f"id: duplicate id '{item.id}' (first made from record {first})")
                return False
            batch.add(item.id)
        for item in items:
            self._seen[item.id] = record
        self.items.extend(items)
        for message in notes:
            self.note(record, message)
        return True

    def finish(self) -> ImportReport:
        """Check that something was imported.

        Raises:
            ItemError: when the file held no records, or none could be imported.
        """
        self.skipped.sort(key=_record_number)
        self.notes.sort(key=_record_number)
        if not self.items:
            if self.skipped:
                raise ItemError(
                    self.source,
                    f"no record could be imported ({len(self.skipped)} skipped; first: {self.skipped[0]})",
                )
            raise ItemError(self.source, "no records in file")
        return self


def _record_number(line: str) -> int:
    number = line.removeprefix("record ").partition(":")[0]
    return int(number) if number.isdigit() else 0


class RecordError(LabError):
    """A source record that cannot become an item; the message reads ``field: problem``."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")


T = TypeVar("T")


def build(factory: Callable[..., T], **fields: Any) -> T:
    """Construct an item model, turning a validation error into a :class:`RecordError`."""
    try:
        return factory(**fields)
    except ValidationError as e:
        problem = format_validation_error(e)
        name, _, rest = problem.partition(": ")
        raise RecordError(name, rest or problem) from None


def safe_id(*parts: str) -> str:
    """An item id made from source ids: disallowed characters become ``-``.

    The result matches the item id pattern; a result longer than the limit is cut and
    ends with a short hash so that distinct source ids stay distinct.
    """
    raw = "-".join(parts)
    cleaned = _ID_BAD_CHARS.sub("-", raw).strip("-")
    cleaned = re.sub(r"^[^A-Za-z0-9]+", "", cleaned) or "item"
    if len(cleaned) > _ID_MAX:
        digest = hashlib.sha1(raw.encode("utf-8")).hexdigest()[:10]
        cleaned = cleaned[: _ID_MAX - 11] + "-" + digest
    return cleaned


def read_text(path: Path) -> str:
    """The whole file as text (UTF-8, a byte-order mark allowed).

    Raises:
        ItemError: when the file is missing, a directory, or not UTF-8.
    """
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ItemError(str(path), "file not found") from None
    except IsADirectoryError:
        raise ItemError(str(path), "is a directory, not a file") from None
    except UnicodeDecodeError as e:
        raise ItemError(str(path), f"not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_json(path: Path) -> Any:
    """The file decoded as one JSON document.

    Raises:
        ItemError: when the file cannot be read or is not JSON.
    """
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ItemError(str(path), f"not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise ItemError(str(path), "not usable JSON (nested too deeply)") from None


def type_name(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    names = {dict: "object", list: "list", str: "text", bool: "true/false", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def text_field(record: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    """A text field of a source record, stripped; empty text counts as absent.

    Raises:
        RecordError: when the field is required and absent or empty, or is not text.
    """
    value = record.get(name)
    if value is None:
        if required:
            raise RecordError(name, "required field is missing")
        return None
    if not isinstance(value, str):
        raise RecordError(name, f"expected text, got {type_name(value)}")
    value = value.strip()
    if not value and required:
        raise RecordError(name, "is empty")
    return value or None


Importer = Callable[..., ImportReport]
"""An importer: reads one dataset file (its path first, then importer options such as the
Lost in Conversation ``spider_databases``) and returns what it made of it."""


@dataclass(frozen=True)
class DatasetImporter:
    """One entry of :data:`lab.items.IMPORTERS`: a published dataset the lab can import."""

    read: Importer
    """Reads one file of the dataset."""

    description: str
    """The dataset and its paper, in one line."""
