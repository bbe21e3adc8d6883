"""The lab's own item format: one study task or question per JSON line.

An item file is UTF-8 JSON Lines. Each line is one object with an ``id`` and a ``kind``;
the other fields depend on the kind. Items carry their gold data (answers, corrections,
gold clarifying questions) and where they came from, so exports can be joined back to
the source dataset.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from ..errors import LabError

ItemKind = Literal["sharded", "presupposition", "clarification", "open"]
ITEM_KINDS: tuple[str, ...] = get_args(ItemKind)
"""Every item kind, in the order of :data:`ItemKind`."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Shard(_Strict):
    """One piece of a sharded instruction."""

    id: int = Field(ge=0)
    """Position of the shard in the source (1 is the opening request)."""

    text: str = Field(min_length=1)
    """What the shard says, in plain words."""


class Answer(_Strict):
    """How an answer attempt is scored automatically."""

    type: Literal["number", "exact", "normalized", "choice", "none"] = "none"
    """``number``: the final number in the reply must equal ``value``; ``exact``: the
    reply's extracted answer equals ``value``; ``normalized``: equal after lowercasing and
    dropping punctuation and articles; ``choice``: one of ``accept`` appears; ``none``:
    not scorable automatically (a human or an LLM judge must score it)."""

    value: str | None = None
    """The gold answer (a number is kept as its string)."""

    accept: list[str] = Field(default_factory=list)
    """Further accepted answers."""

    @model_validator(mode="after")
    def _needs_value(self) -> Answer:
        if self.type in ("number", "exact", "normalized") and not self.value:
            raise ValueError(f"answer type '{self.type}' needs a 'value'")
        if self.type == "choice" and not (self.accept or self.value):
            raise ValueError("answer type 'choice' needs 'accept' or 'value'")
        return self


class Source(_Strict):
    """Where an item came from."""

    dataset: str
    """Dataset name, e.g. ``lost_in_conversation``, ``falseqa``, ``clamber``, ``repair-lab``."""

    id: str | None = None
    """The record's id in that dataset."""

    task: str | None = None
    """Task or subset within the dataset (e.g. ``math``)."""


class _ItemBase(_Strict):
    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/\-]*$")
    """Unique within a study; letters, digits and ``_ . : / -``."""

    title: str | None = None
    """Short human label for consoles and exports."""

    source: Source = Field(default_factory=lambda: Source(dataset="repair-lab"))
    """Provenance."""

    gold: dict[str, Any] = Field(default_factory=dict)
    """Dataset-specific gold data kept verbatim (reference SQL, test cases, references…).
    Never shown to participants or to the model under test."""

    tags: list[str] = Field(default_factory=list)
    """Free labels for filtering."""


class ShardedItem(_ItemBase):
    """A fully specified task that can also be revealed piece by piece."""

    kind: Literal["sharded"] = "sharded"
    shards: list[Shard] = Field(min_length=1)
    """Shard 1 (the first) states the high-level request; each later shard adds one piece."""

    full: str | None = None
    """The fully specified instruction for FULL conditions; when absent the shards are
    joined into one paragraph."""

    answer: Answer = Field(default_factory=Answer)
    """How answer attempts are scored."""

    ordered: bool = False
    """True when the shards must be revealed in order (translation, summary, data2text)."""

    system: str | None = None
    """Context the model needs in every condition (a database schema, the functions it may
    call), sent as a system message; never a shard."""

    @field_validator("shards")
    @classmethod
    def _unique_ids(cls, shards: list[Shard]) -> list[Shard]:
        ids = [s.id for s in shards]
        if len(set(ids)) != len(ids):
            raise ValueError("shard ids must be unique")
        return shards

    def full_text(self) -> str:
        """The fully specified instruction."""
        return self.full or " ".join(s.text.strip() for s in self.shards)


class Probe(_Strict):
    """A direct knowledge question asked to the model in a separate single-turn call."""

    question: str = Field(min_length=1)
    answer: Answer = Field(default_factory=Answer)


class PresuppositionItem(_ItemBase):
    """A loaded question (false presupposition) with its control twin and a knowledge probe."""

    kind: Literal["presupposition"] = "presupposition"
    loaded: str = Field(min_length=1)
    """The question that presupposes something false."""

    control: str | None = None
    """The minimally different question without the false presupposition."""

    presupposition: str | None = None
    """The false assumption, stated plainly."""

    correction: list[str] = Field(default_factory=list)
    """What a correcting reply would say (rebuttals)."""

    probe: Probe | None = None
    """Does the model know the fact when asked directly?"""


class ClarificationItem(_ItemBase):
    """A request that may lack what is needed to answer it."""

    kind: Literal["clarification"] = "clarification"
    question: str = Field(min_length=1)
    """What the user asks."""

    context: str | None = None
    """Context shown with the question, if any."""

    needs_clarification: bool
    """True when a good assistant should ask before answering."""

    clarifying_question: str | None = None
    """A gold clarifying question."""

    missing: list[Shard] = Field(default_factory=list)
    """Withheld information the user supplies when asked (ON_REQUEST)."""

    answer: Answer = Field(default_factory=Answer)
    category: str | None = None
    """Ambiguity category from the source dataset."""


class OpenItem(_ItemBase):
    """A free task with no reveal structure."""

    kind: Literal["open"] = "open"
    prompt: str = Field(min_length=1)
    answer: Answer = Field(default_factory=Answer)


Item = Annotated[Union[ShardedItem, PresuppositionItem, ClarificationItem, OpenItem], Field(discriminator="kind")]
"""Any item; ``kind`` selects the type."""

_item_adapter: TypeAdapter[Item] = TypeAdapter(Item)


class ItemError(LabError, ValueError):
    """An item record that does not fit the format."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


def parse_item(data: Any, where: str = "item") -> Item:
    """Validate one item record.

    Args:
        data: The decoded JSON object.
        where: Location used in error messages (``file:line``).

    Returns:
        The typed item.

    Raises:
        ItemError: naming the field and what is expected.
    """
    if not isinstance(data, dict):
        raise ItemError(where, f"expected a JSON object, got {type(data).__name__}")
    if "kind" not in data:
        raise ItemError(where, "missing field 'kind' (one of sharded, presupposition, clarification, open)")
    if (field := _nul_field(data)) is not None:
        # Postgres text cannot hold U+0000, and no task needs it: refuse it here, not at insert.
        raise ItemError(where, f"{field or '(record)'}: contains a NUL character (U+0000)")
    try:
        return _item_adapter.validate_python(data)
    except ValidationError as e:
        raise ItemError(where, format_validation_error(e)) from None


def _nul_field(value: Any, path: str = "") -> str | None:
    """The dotted path of the first text in ``value`` holding U+0000, or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, child in items:
        if isinstance(key, str) and "\x00" in key:
            return path or "(record)"
        found = _nul_field(child, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def format_validation_error(e: ValidationError) -> str:
    """Turn a pydantic error into one readable line: ``field.path: problem``."""
    parts = []
    for err in e.errors():
        loc = [str(p) for p in err["loc"] if p not in ("sharded", "presupposition", "clarification", "open")]
        field = ".".join(loc) or "(record)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required field is missing"
        parts.append(f"{field}: {msg}")
    return "; ".join(parts)


def item_to_dict(item: Item) -> dict[str, Any]:
    """The item as a JSON-ready dict, without defaulted empty fields."""
    return item.model_dump(mode="json", exclude_defaults=True) | {"id": item.id, "kind": item.kind}


def read_items(path: str | Path) -> list[Item]:
    """Read an item file; every bad line is reported, none half-loaded.

    Raises:
        ItemError: listing each bad line as ``file:line: field: problem``.
    """
    path = Path(path)
    items: list[Item] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ItemError(str(path), "file not found") from None
    except UnicodeDecodeError as e:
        raise ItemError(str(path), f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    # Split on "\n" only: str.splitlines also breaks at U+2028, U+2029 and U+0085,
    # which json.dumps(ensure_ascii=False) leaves unescaped inside strings.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{lineno}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{where}: invalid JSON ({e.msg} at column {e.colno})")
            continue
        except RecursionError:
            errors.append(f"{where}: invalid JSON (nested too deeply)")
            continue
        try:
            item = parse_item(data, where)
        except ItemError as e:
            errors.append(str(e))
            continue
        if item.id in seen:
            errors.append(f"{where}: id: duplicate id '{item.id}' (first on line {seen[item.id]})")
            continue
        seen[item.id] = lineno
        items.append(item)
    if errors:
        shown = errors[:20]
        more = f"\n… and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise ItemError(str(path), f"{len(errors)} bad record(s):\n" + "\n".join(shown) + more)
    if not items:
        raise ItemError(str(path), "no items in file")
    return items


def iter_item_lines(items: Iterable[Item]) -> Iterator[str]:
    """Serialize items as JSON lines (no trailing newline on each)."""
    for item in items:
        yield json.dumps(item_to_dict(item), ensure_ascii=False)


def write_items(items: Iterable[Item], path: str | Path) -> int:
    """Write items to a JSONL file atomically; returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for line in iter_item_lines(items):
            f.write(line + "\n")
            n += 1
    tmp.replace(path)
    return n
