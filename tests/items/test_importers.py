"""Dataset importers: the project's own small fixtures always, the real files when present."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lab.items import (
    IMPORTERS,
    Answer,
    ClarificationItem,
    ImportReport,
    ItemError,
    PresuppositionItem,
    ShardedItem,
    import_clamber,
    import_falseqa,
    import_lost_in_conversation,
    read_items,
    write_items,
)
from lab.items._importer import safe_id

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"
DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/\-]*$")

needs_datasets = pytest.mark.skipif(not DATASETS.is_dir(), reason="../shared/datasets is not present")


def _by_id(report: ImportReport) -> dict[str, Any]:
    return {item.id: item for item in report.items}


def _assert_round_trip(report: ImportReport, tmp_path: Path) -> None:
    path = tmp_path / f"{report.dataset}.jsonl"
    assert write_items(report.items, path) == len(report.items)
    assert read_items(path) == report.items


def _keys(value: Any) -> set[str]:
    """Every dict key anywhere inside a JSON-like value."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def test_registry_names_the_three_importers() -> None:
    assert {name: entry.read for name, entry in IMPORTERS.items()} == {
        "lost-in-conversation": import_lost_in_conversation,
        "falseqa": import_falseqa,
        "clamber": import_clamber,
    }


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("lic", "math", "GSM8K/1246"), "lic-math-GSM8K/1246"),
        (("lic", "data2text", "totto_-825"), "lic-data2text-totto_-825"),
        (("lic", "riddle", "a b?c"), "lic-riddle-a-b-c"),
        (("", "__x"), "x"),
    ],
)
def test_safe_id(parts: tuple[str, ...], expected: str) -> None:
    assert safe_id(*parts) == expected


def test_safe_id_keeps_long_ids_distinct_and_valid() -> None:
    a, b = safe_id("lic", "x" * 300 + "a"), safe_id("lic", "x" * 300 + "b")
    assert a != b
    assert len(a) == 200 and ID_PATTERN.match(a)


# Lost in Conversation ---------------------------------------------------------------


def test_lost_in_conversation_fixture() -> None:
    report = import_lost_in_conversation(FIXTURES / "lost_in_conversation" / "sample.json")
    assert report.counts == {"sharded": 8}
    assert report.skipped == [
        "record 8: (record): expected a JSON object, got text",
        "record 9: shards: required field is missing",
        "record 10: answer: expected a GSM8K answer ending in '#### <number>'",
        "record 11: shards[1].doc_idxs: no document with document_index 77",
        "record 12: shards[1].shard: expected text, got number",
        "record 13: id: duplicate id 'lic-math-GSM8K/9001' (first made from record 1)",
        "record 14: shards[0].shard: the opening shard is empty",
    ]
    assert report.notes == ["record 7: shards[2]: shard 3 is empty and was dropped"]
    items = _by_id(report)
    assert list(items) == [
        "lic-math-GSM8K/9001",
        "lic-database-spider-val-1-easy",
        "lic-code-HumanEval/900",
        "lic-actions-BFCL/parallel_900",
        "lic-data2text-totto_12345",
        "lic-summary-summary_900",
        "lic-translation-wmt-news-900-de-en",
        "lic-riddle-riddle-1",
    ]
    # Skipped records leave nothing behind.
    assert not any("9002" in i or "9003" in i or "summary_901" in i for i in items)


def test_lost_in_conversation_math() -> None:
    item = _by_id(import_lost_in_conversation(FIXTURES / "lost_in_conversation" / "sample.json"))["lic-math-GSM8K/9001"]
    assert isinstance(item, ShardedItem)
    assert item.answer == Answer(type="number", value="1200")
    assert item.full == "A bakery bakes 40 rolls an hour for 30 hours. How many rolls does it bake?"
    assert item.source.dataset == "lost_in_conversation"
    assert item.source.id == "sharded-GSM8K/9001" and item.source.task == "math"
    assert item.tags == ["math"] and not item.ordered
    assert [s.id for s in item.shards] == [1, 2, 3]
    assert item.shards[0].text == "how many rolls does the bakery bake?"
    assert item.gold["answer"].endswith("#### 1,200")
    assert set(item.gold) == {"question", "answer"}


def test_lost_in_conversation_keeps_task_gold() -> None:
    items = _by_id(import_lost_in_conversation(FIXTURES / "lost_in_conversation" / "sample.json"))
    db = items["lic-database-spider-val-1-easy"]
    assert db.full == "Which authors wrote more than two books?"
    assert set(db.gold) == {"db_id", "fully_specified_question", "reference_sql", "schema_sql", "spider_difficulty"}
    assert db.answer == Answer()

    code = items["lic-code-HumanEval/900"]
    assert code.full.startswith("def double(xs):")
    assert code.gold["metadata"] == {"func_name": "double"}
    assert {"prompt", "public_test_cases", "test", "source"} <= set(code.gold)

    actions = items["lic-actions-BFCL/parallel_900"]
    assert actions.full == "What is the weather in Lyon and in Graz?"
    assert actions.gold["reference_answer"][1] == {"get_weather": {"city": ["Graz"]}}
    assert actions.gold["function"][0]["name"] == "get_weather"

    riddle = items["lic-riddle-riddle-1"]
    assert riddle.full is None and riddle.gold == {"solution": "an echo"}
    assert riddle.shards[1].text == "I answer without a mouth"


def test_lost_in_conversation_data2text() -> None:
    item = _by_id(import_lost_in_conversation(FIXTURES / "lost_in_conversation" / "sample.json"))["lic-data2text-totto_12345"]
    assert item.ordered
    assert item.shards[0].text.startswith("Describe this table in one sentence.")
    assert 'class="highlighted"' in item.full and "Invented club history" in item.full
    assert item.gold["references"] == ["In 2001 the player was at Harbour FC."]


def test_lost_in_conversation_summary_shards_are_built_from_documents() -> None:
    item = _by_id(import_lost_in_conversation(FIXTURES / "lost_in_conversation" / "sample.json"))["lic-summary-summary_900"]
    assert item.ordered
    assert [s.id for s in item.shards] == [0, 1]
    opening, more = item.shards
    assert "Is the cost of the bridge discussed?" in opening.text
    assert "A town debates a new bridge." in opening.text
    assert "2 insights" in opening.text
    assert "Document 9:\nCommuters expect to save ten minutes a day." in opening.text
    assert "council" not in opening.text
    assert more.text.startswith("Here are more documents.")
    assert "Document 4:\nThe council says" in more.text and "Document 12:\nA bakery opened" in more.text
    assert [s["doc_idxs"] for s in item.gold["source_shards"]] == [[9], [4, 12]]
    assert len(item.gold["documents"]) == 3
    # The full instruction holds every document once, in index order.
    assert item.full.index("Document 4:") < item.full.index("Document 9:") < item.full.index("Document 12:")
    assert "batches" not in item.full


def test_lost_in_conversation_translation() -> None:
    item = _by_id(import_lost_in_conversation(FIXTURES / "lost_in_conversation" / "sample.json"))[
        "lic-translation-wmt-news-900-de-en"
    ]
    assert item.ordered
    assert [s.id for s in item.shards] == [1, 2]
    assert "German" in item.shards[0].text and item.shards[0].text.endswith("Chunk 1:\n\nDer Hund schläft.")
    assert item.shards[1].text.endswith("Chunk 2:\n\nDie Katze spielt.")
    assert item.full.endswith("Der Hund schläft.\nDie Katze spielt.")
    assert item.gold["document_en"].startswith("The dog")
    assert len(item.gold["source_shards"]) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ('{"task_id": "x"}', "expected a JSON list of records, got a JSON object"),
        ("[]", "no records in file"),
        ('["a", 1]', "no record could be imported (2 skipped; first: record 1: (record): expected a JSON object"),
    ],
)
def test_lost_in_conversation_unreadable_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "data.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ItemError) as info:
        import_lost_in_conversation(path)
    assert message in str(info.value)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


def test_missing_and_binary_files_raise(tmp_path: Path) -> None:
    for entry in IMPORTERS.values():
        with pytest.raises(ItemError, match="file not found"):
            entry.read(tmp_path / "nope")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\xfa not text")
    for entry in IMPORTERS.values():
        with pytest.raises(ItemError, match="not UTF-8 text"):
            entry.read(binary)


# FalseQA --------------------------------------------------------------------------


def test_falseqa_fixture() -> None:
    report = import_falseqa(FIXTURES / "falseqa" / "sample.csv")
    assert report.skipped == [
        "record 2: answer: is not a Python list literal of rebuttals (pair 2 left out with its twin, record 6)",
        "record 4: label: expected 0 or 1, got 'x'",
    ]
    assert report.counts == {"presupposition": 4}
    assert report.tag_counts == {"loaded": 2, "control": 2}
    items = _by_id(report)
    assert list(items) == ["falseqa-0001-loaded", "falseqa-0001-control", "falseqa-0003-loaded", "falseqa-0003-control"]

    loaded = items["falseqa-0003-loaded"]
    assert isinstance(loaded, PresuppositionItem)
    assert loaded.loaded == "Why does the moon, made of cheese, smell?"
    assert loaded.control == "Why does the moon, made of rock, look grey?"
    assert loaded.correction == ["The moon is made of rock, not cheese."]
    assert loaded.tags == ["loaded"]
    assert loaded.gold == {"label": 1, "pair": 3, "twin": "falseqa-0003-control"}
    assert loaded.source.dataset == "falseqa" and loaded.source.id == "3"

    control = items["falseqa-0003-control"]
    assert control.loaded == "Why does the moon, made of rock, look grey?"
    assert control.control is None and control.correction == []
    assert control.tags == ["control"]
    assert control.gold == {
        "label": 0,
        "pair": 3,
        "twin": "falseqa-0003-loaded",
        "answer": "Its surface is covered with grey dust and rock.",
    }
    assert control.source.id == "7"

    assert items["falseqa-0001-loaded"].correction == [
        "Fish live in water and do not use umbrellas.",
        "Rain doesn't bother fish.",
    ]


def test_falseqa_never_runs_answer_text(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "data.csv"
    path.write_text(
        "question,answer,label\n"
        f"\"Why?\",\"__import__('pathlib').Path('{marker}').touch()\",1\n"
        "Why not?,Because.,0\n"
        "How?,\"['fine']\",1\n"
        "How so?,Like this.,0\n",
        encoding="utf-8",
    )
    report = import_falseqa(path)
    assert not marker.exists()
    assert len(report.items) == 2 and report.skipped[0].startswith("record 1: answer:")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("question,answer\nWhy?,x\n", "missing CSV column(s) label"),
        ("", "empty file"),
        ("question,answer,label\n", "no records in file"),
        (
            "question,answer,label\nWhy?,\"['a']\",1\nWhy not?,\"['b']\",1\nHow?,Fine.,0\n",
            "cannot pair questions: 2 false-premise rows (label 1) but 1 true-premise rows (label 0)",
        ),
    ],
)
def test_falseqa_unreadable_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "data.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ItemError) as info:
        import_falseqa(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_falseqa_header_in_any_order_and_case(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("Label,Question,Answer\n1,Why?,\"['No.']\"\n0,How?,Thus.\n", encoding="utf-8")
    report = import_falseqa(path)
    assert [i.loaded for i in report.items] == ["Why?", "How?"]


# CLAMBER --------------------------------------------------------------------------


def test_clamber_fixture() -> None:
    report = import_clamber(FIXTURES / "clamber" / "sample.jsonl")
    assert report.skipped == [
        "record 5: (record): invalid JSON (Expecting property name enclosed in double quotes at column 2)",
        'record 6: require_clarification: expected 0 or 1, got "maybe"',
        "record 7: (record): expected a JSON object (or a JSON string holding one), got number",
        "record 8: question: required field is missing",
    ]
    assert report.notes == ["fields not imported: annotator"]
    assert report.counts == {"clarification": 4}
    assert report.tag_counts == {"needs-clarification": 3, "clear": 1}
    items = _by_id(report)
    assert list(items) == ["clamber-0001", "clamber-0002", "clamber-0003", "clamber-0009"]

    laptop = items["clamber-0001"]
    assert isinstance(laptop, ClarificationItem)
    assert laptop.needs_clarification is True
    assert laptop.clarifying_question == "What will you mainly use it for, and what is your budget?"
    assert laptop.category == "MC" and laptop.gold == {"subclass": "what"}
    assert laptop.context is None
    assert laptop.source.dataset == "clamber" and laptop.source.id == "1"

    water = items["clamber-0002"]
    assert water.needs_clarification is False and water.clarifying_question is None

    single = items["clamber-0003"]
    assert single.context == "The new library and the old museum are on the same street."
    assert single.needs_clarification is True

    for item in report.items:
        dumped = json.dumps(item.model_dump(mode="json"))
        assert "predict" not in dumped and "MODEL OUTPUT" not in dumped and "annotator" not in dumped


def test_clamber_file_of_other_things_raises(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('[1, 2]\n"just a string"\n', encoding="utf-8")
    with pytest.raises(ItemError, match="no record could be imported"):
        import_clamber(path)


# The real dataset files -------------------------------------------------------------


@needs_datasets
@pytest.mark.parametrize(
    ("name", "relative", "expected"),
    [
        ("lost-in-conversation", "lost_in_conversation/thirdparty_sample_5_per_task.json", {"sharded": 30}),
        ("lost-in-conversation", "lost_in_conversation/sharded_translation.json", {"sharded": 30}),
        ("falseqa", "falseqa/test.csv", {"presupposition": 1374}),
        ("clamber", "clamber/clamber_benchmark.jsonl", {"clarification": 3202}),
    ],
)
def test_real_file_imports_whole(name: str, relative: str, expected: dict[str, int], tmp_path: Path) -> None:
    report = IMPORTERS[name].read(DATASETS / relative)
    assert report.skipped == []
    assert report.counts == expected
    ids = [item.id for item in report.items]
    assert len(set(ids)) == len(ids) and all(ID_PATTERN.match(i) for i in ids)
    assert IMPORTERS[name].read(DATASETS / relative).items == report.items  # stable
    _assert_round_trip(report, tmp_path)


@needs_datasets
def test_real_lost_in_conversation_sample() -> None:
    report = import_lost_in_conversation(DATASETS / "lost_in_conversation" / "thirdparty_sample_5_per_task.json")
    # Imported without --spider-databases, the database items are tagged as needing one.
    tasks = {t: 5 for t in ("code", "database", "actions", "math", "data2text", "summary")}
    assert report.tag_counts == tasks | {"needs-database": 5}
    for item in report.items:
        assert all(shard.text.strip() for shard in item.shards), item.id
        assert item.full and item.full.strip(), item.id
        assert item.ordered == (item.source.task in ("summary", "data2text")), item.id
        assert "shards" not in item.gold and "task_id" not in item.gold
    math = [i for i in report.items if i.source.task == "math"]
    assert all(i.answer.type == "number" and float(i.answer.value) == float(i.gold["answer"].split("####")[-1]) for i in math)
    assert {i.answer.value for i in math} == {"3360", "2350", "34", "5", "19"}
    for item in report.items:
        if item.source.task == "summary":
            assert item.shards[0].id == 0 and "query" in item.gold
            assert all(s.text.count("Document ") >= 1 for s in item.shards)
            assert all("doc_idxs" in s for s in item.gold["source_shards"])
        if item.source.task == "database":
            assert {"reference_sql", "schema_sql", "db_id", "fully_specified_question"} <= set(item.gold)
            assert item.system is not None and item.gold["schema_sql"].strip() in item.system
        if item.source.task == "code":
            assert {"prompt", "public_test_cases", "test", "metadata"} <= set(item.gold)
        if item.source.task == "actions":
            assert {"function", "reference_answer", "fully_specified_question"} <= set(item.gold)
            assert item.system is not None and all(f["name"] in item.system for f in item.gold["function"])
        if item.source.task not in ("database", "actions"):
            assert item.system is None
        if item.source.task == "data2text":
            assert item.gold["references"]


@needs_datasets
def test_real_lost_in_conversation_translation() -> None:
    report = import_lost_in_conversation(DATASETS / "lost_in_conversation" / "sharded_translation.json")
    assert report.tag_counts == {"translation": 30}
    assert all(item.ordered and all(s.text.strip() for s in item.shards) for item in report.items)
    # Two records end with an empty chunk; it is dropped and said so.
    assert len(report.notes) == 2
    assert sum(len(item.shards) for item in report.items) == 146 - 2
    assert all({"document_de", "document_en"} <= set(item.gold) for item in report.items)


@needs_datasets
def test_real_falseqa() -> None:
    report = import_falseqa(DATASETS / "falseqa" / "test.csv")
    assert report.tag_counts == {"loaded": 687, "control": 687}
    items = _by_id(report)
    for k in range(1, 688):
        loaded, control = items[f"falseqa-{k:04d}-loaded"], items[f"falseqa-{k:04d}-control"]
        assert loaded.control == control.loaded
        assert loaded.correction and all(loaded.correction)
        assert control.control is None and not control.correction and control.gold["answer"]
    assert items["falseqa-0002-control"].loaded.startswith("If my sister's amniotic fluid")


@needs_datasets
def test_real_clamber() -> None:
    report = import_clamber(DATASETS / "clamber" / "clamber_benchmark.jsonl")
    assert sum(item.needs_clarification for item in report.items) == 1601
    assert report.tag_counts == {"needs-clarification": 1601, "clear": 1601}
    assert all(item.clarifying_question for item in report.items if item.needs_clarification)
    assert {item.category for item in report.items} == {"MC", "FD", "LA"}
    for item in report.items:
        assert not any(key.startswith("predict_") for key in _keys(item.model_dump(mode="json")))
