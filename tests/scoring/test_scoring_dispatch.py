"""Which evaluator scores an item, and what the reply-time scorer does for each family."""

from __future__ import annotations

from pathlib import Path

from conftest import FIXTURE

from lab.items import import_lost_in_conversation, parse_item
from lab.scoring import DEFERRED, describe, evaluate, family_of, is_attempt, no_attempt_evaluation, quick, score


def items() -> dict[str, object]:
    report = import_lost_in_conversation(FIXTURE)
    return {item.source.task: item for item in report.items}


def test_families_of_imported_items() -> None:
    found = items()
    for task in ("code", "database", "actions", "data2text", "summary", "translation", "math"):
        assert family_of(found[task]) == task
    assert family_of(found["riddle"]) is None
    own = parse_item({"id": "q", "kind": "open", "prompt": "Capital of France?", "answer": {"type": "exact", "value": "Paris"}})
    assert family_of(own) == "other"
    loaded = parse_item({"id": "p", "kind": "presupposition", "loaded": "Why is the sky green?"})
    assert family_of(loaded) is None


def test_reply_time_scoring_defers_what_runs_code_queries_or_calls_a_judge() -> None:
    found = items()
    for task in sorted(DEFERRED):
        sc = score(found[task], "```python\ndef double(xs):\n    return [2 * x for x in xs]\n```")
        assert (sc.value, sc.scorable, sc.status, sc.method) == (None, False, "deferred", task)
        assert sc.evaluator.startswith("lic-")
    calls = score(found["actions"], "[get_weather(city='Lyon'), get_weather(city='Graz')]")
    assert (calls.value, calls.evaluator, calls.status) == (1.0, "lic-actions-bfcl-ast", "scored")
    text = score(found["data2text"], "In 2001 the player was at Harbour FC.")
    assert text.evaluator == "lic-data2text-bleu" and text.value is not None and text.value > 0.99
    number = score(found["math"], "#### 1200")
    assert (number.value, number.evaluator) == (1.0, "lab-answer-rules")


def test_blocking_evaluation_of_every_family(tmp_path: Path) -> None:
    found = items()
    assert evaluate(found["code"], "```python\ndef twice(xs):\n    return [x * 2 for x in xs]\n```").value == 1.0
    # The authors rename by plain text replacement: a one-letter name also rewrites "def" and fails.
    assert evaluate(found["code"], "```python\ndef d(xs):\n    return [x * 2 for x in xs]\n```").value == 0.0
    assert evaluate(found["database"], "SELECT 1").status == "needs_database"
    assert evaluate(found["summary"], "- a summary").status == "needs_judge"
    assert quick(found["code"], "x") is None
    assert evaluate(found["riddle"], "x").status == "not_scorable"
    assert {row["family"]: row["deferred"] for row in describe()} == {
        "code": True,
        "database": True,
        "actions": False,
        "data2text": False,
        "translation": False,
        "summary": True,
        "math": False,
    }


def test_every_full_and_concat_reply_is_an_attempt_and_no_attempt_scores_zero() -> None:
    found = items()
    musing = "Let me think about how the rolls add up before settling on anything."
    # Under SHARDED the gate decides; under FULL and CONCAT the authors score every reply.
    assert not is_attempt(found["math"], "math", musing, reveal="SHARDED")
    assert is_attempt(found["math"], "math", musing, reveal="FULL")
    assert is_attempt(found["math"], "math", musing, reveal="CONCAT")
    # The lab's own items keep the gate in every mode.
    own = parse_item({"id": "q", "kind": "open", "prompt": "Capital of France?", "answer": {"type": "exact", "value": "Paris"}})
    assert not is_attempt(own, "other", musing, "discussion", reveal="FULL")
    zero = no_attempt_evaluation("code")
    assert (zero.status, zero.value, zero.details) == ("scored", 0.0, {"no_attempt": True})
    assert no_attempt_evaluation("other").value is None


def test_math_records_the_authors_strict_comparison_beside_the_lab_rule() -> None:
    found = items()
    lenient = quick(found["math"], "That is 1200.0 rolls in all.")
    assert lenient is not None and lenient.value == 1.0  # the lab's rule: 1200.0 is 1200
    assert lenient.details["authors_value"] == 0.0  # the authors' string comparison: it is not
    same = quick(found["math"], "It bakes 1,200 rolls.")
    assert same is not None and (same.value, same.details["authors_value"]) == (1.0, 1.0)
