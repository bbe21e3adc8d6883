"""The item format: parsing, error messages naming the field, duplicates, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from lab.items import (
    Answer,
    ClarificationItem,
    ItemError,
    OpenItem,
    PresuppositionItem,
    Probe,
    Shard,
    ShardedItem,
    Source,
    item_to_dict,
    parse_item,
    read_items,
    write_items,
)


def _sharded(**extra: object) -> dict[str, object]:
    return {
        "id": "s-1",
        "kind": "sharded",
        "shards": [{"id": 1, "text": "how many apples?"}, {"id": 2, "text": "I have 3 bags of 4"}],
        "answer": {"type": "number", "value": "12"},
    } | extra


def _write_lines(path: Path, records: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def test_parse_each_kind() -> None:
    sharded = parse_item(_sharded())
    assert isinstance(sharded, ShardedItem)
    assert [s.id for s in sharded.shards] == [1, 2]
    assert sharded.answer == Answer(type="number", value="12")
    assert sharded.source == Source(dataset="repair-lab")

    presup = parse_item(
        {
            "id": "p-1",
            "kind": "presupposition",
            "loaded": "Why is the sun cold?",
            "control": "Why is the sun hot?",
            "correction": ["The sun is hot."],
            "probe": {"question": "Is the sun hot?", "answer": {"type": "choice", "accept": ["yes"]}},
        }
    )
    assert isinstance(presup, PresuppositionItem)
    assert presup.probe == Probe(question="Is the sun hot?", answer=Answer(type="choice", accept=["yes"]))

    clar = parse_item(
        {
            "id": "c-1",
            "kind": "clarification",
            "question": "Book a table.",
            "needs_clarification": True,
            "missing": [{"id": 1, "text": "for four people"}],
        }
    )
    assert isinstance(clar, ClarificationItem)
    assert clar.missing == [Shard(id=1, text="for four people")]

    open_item = parse_item({"id": "o-1", "kind": "open", "prompt": "Tell me a story."})
    assert isinstance(open_item, OpenItem)


def test_full_text_falls_back_to_joined_shards() -> None:
    item = parse_item(_sharded())
    assert isinstance(item, ShardedItem)
    assert item.full_text() == "how many apples? I have 3 bags of 4"
    with_full = parse_item(_sharded(full="I have 3 bags of 4 apples; how many apples?"))
    assert isinstance(with_full, ShardedItem)
    assert with_full.full_text() == "I have 3 bags of 4 apples; how many apples?"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"id": "x", "shards": []}, "missing field 'kind'"),
        (["not", "an", "object"], "expected a JSON object, got list"),
        (_sharded(shards=[]), "shards:"),
        (_sharded(shards=[{"id": 1, "text": ""}]), "shards.0.text:"),
        (_sharded(shards=[{"id": 1, "text": "a"}, {"id": 1, "text": "b"}]), "shard ids must be unique"),
        (_sharded(answer={"type": "number"}), "answer: Value error, answer type 'number' needs a 'value'"),
        (_sharded(answer={"type": "choice"}), "needs 'accept' or 'value'"),
        (_sharded(id="has space"), "id: String should match pattern"),
        (_sharded(id="-starts-with-dash"), "id: String should match pattern"),
        (_sharded(colour="blue"), "colour: unknown field"),
        ({"id": "c", "kind": "clarification", "question": "Why?"}, "needs_clarification: required field is missing"),
        ({"id": "p", "kind": "presupposition", "loaded": ""}, "loaded: String should have at least 1 character"),
        ({"id": "q", "kind": "quiz"}, "kind"),
    ],
)
def test_errors_name_the_field(data: object, expected: str) -> None:
    with pytest.raises(ItemError) as info:
        parse_item(data, where="items.jsonl:3")
    assert str(info.value).startswith("items.jsonl:3: ")
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_items_are_frozen() -> None:
    item = parse_item(_sharded())
    with pytest.raises(ValidationError):
        item.id = "other"  # type: ignore[misc]


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    items = [
        parse_item(
            _sharded(
                title="Apples",
                full="full text",
                ordered=True,
                tags=["math"],
                gold={"nested": {"list": [1, 2.5, None, "x"]}},
                source={"dataset": "lost_in_conversation", "id": "sharded-GSM8K/1", "task": "math"},
            )
        ),
        parse_item({"id": "p:1/a", "kind": "presupposition", "loaded": "Why is ice hot?", "correction": ["It is cold."]}),
        parse_item(
            {
                "id": "c.1_b",
                "kind": "clarification",
                "question": "Pick one.",
                "needs_clarification": False,
                "context": "Menu: soup",
                "category": "MC",
            }
        ),
        parse_item(
            {
                "id": "o-1",
                "kind": "open",
                "prompt": "Schreib über Ärger — «quotes» and 中文",
                "answer": {"type": "normalized", "value": "x", "accept": ["y"]},
            }
        ),
    ]
    path = tmp_path / "sub" / "items.jsonl"
    assert write_items(items, path) == 4
    assert read_items(path) == items
    assert not path.with_suffix(".jsonl.tmp").exists()
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert first["kind"] == "sharded" and first["id"] == "s-1"


def test_round_trip_text_with_unicode_line_separators(tmp_path: Path) -> None:
    # JSON leaves U+2028, U+2029 and U+0085 unescaped; they must not split a JSON line.
    item = parse_item({"id": "o-1", "kind": "open", "prompt": "one\u2028two\u2029three\x85four"})
    path = tmp_path / "items.jsonl"
    write_items([item], path)
    assert read_items(path) == [item]


def test_item_to_dict_drops_defaults() -> None:
    data = item_to_dict(parse_item({"id": "o-1", "kind": "open", "prompt": "Hi"}))
    assert data == {"id": "o-1", "kind": "open", "prompt": "Hi"}


def test_read_reports_every_bad_line_and_loads_none(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "items.jsonl",
        [
            _sharded(),
            "{not json",
            "",
            _sharded(id="s-2", shards=[]),
            _sharded(),
            {"id": "o-1", "kind": "open"},
        ],
    )
    with pytest.raises(ItemError) as info:
        read_items(path)
    message = str(info.value)
    assert "4 bad record(s)" in message
    assert "items.jsonl:2: invalid JSON" in message
    assert "items.jsonl:4: shards:" in message
    assert "items.jsonl:5: id: duplicate id 's-1' (first on line 1)" in message
    assert "items.jsonl:6: prompt: required field is missing" in message


def test_read_missing_empty_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(ItemError, match="file not found"):
        read_items(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ItemError, match="no items in file"):
        read_items(empty)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ItemError, match="not UTF-8 text"):
        read_items(binary)


def test_read_caps_the_error_list(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "items.jsonl", ["{bad"] * 25)
    with pytest.raises(ItemError) as info:
        read_items(path)
    assert "25 bad record(s)" in str(info.value)
    assert "… and 5 more" in str(info.value)
