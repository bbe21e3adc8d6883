"""Each layer-S rule on its own: it fires where it should and stays quiet on a near miss."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.items import Answer, ClarificationItem, Item, OpenItem, PresuppositionItem, Shard, ShardedItem, Source
from lab.judge import (
    GROUNDING_RULES,
    PRESUPPOSITION_RULES,
    REPAIR_RULES,
    RULES,
    RULES_VERSION,
    Judge,
    Judgement,
    LLMJudge,
    RuleJudge,
    classify_turn,
    get_judge,
    label_annotator,
    premature,
    task_of,
)
from lab.judge._ruleset import Rule, rule_table

LONG_DISCUSSION = (
    "A queue between the web process and the workers keeps page loads fast, because slow jobs no longer "
    "hold up requests, and it lets each side scale on its own. The price is one more service to deploy, "
    "to monitor and to back up, and a new class of failures when the broker is down or a message is "
    "delivered twice. Small teams often start with background threads inside the web process and move "
    "to a queue once a job becomes slow enough to matter, which keeps the first version simple while "
    "leaving a clear path for later growth. "
)


def task_item(task: str) -> Item:
    answer = Answer(type="number", value="3360") if task == "math" else Answer()
    return ShardedItem(
        id=f"rule-{task}",
        shards=[Shard(id=1, text="request")],
        answer=answer,
        source=Source(dataset="lost_in_conversation", task=task),
    )


# rule id, task (None: no item), reply, expected category, reply of a near miss, its category
CATEGORY_CASES = [
    ("S-empty", None, " \n\t ", "missing", "ok", "answer_attempt"),
    (
        "S-hedge-branches",
        None,
        "If you mean the file size, it's 2 MB. If you mean the line count, it's 340.",
        "hedge",
        "The file is 2 MB. If you meant the line count, it has 340 lines.",
        "answer_attempt",
    ),
    (
        "S-hedge-depends",
        None,
        "It depends: if the list is sorted, use binary search; otherwise scan it.",
        "hedge",
        "It depends on your budget.",
        "answer_attempt",
    ),
    ("A-number", "math", "So the answer is **3,360**.", "answer_attempt", "Is the answer 3,360?", "clarification"),
    (
        "A-last-number",
        "math",
        "She scored 3,360 points.",
        "answer_attempt",
        "She played 160 games; I'd need the points per game to finish.",
        "discussion",
    ),
    (
        "A-code",
        "code",
        "```python\ndef names(xs):\n    return [str(x) for x in xs]\n```",
        "answer_attempt",
        "For example:\n```\n[1, 2, 3]\n```",
        "discussion",
    ),
    (
        "A-sql",
        "database",
        "```sql\nSELECT country FROM TV_Channel;\n```",
        "answer_attempt",
        "You select the rows you need from the table.",
        "discussion",
    ),
    (
        "A-call",
        "actions",
        "`create_histogram(data=[1, 2, 3], bins=5)`",
        "answer_attempt",
        "The histogram tool can draw both of them.",
        "discussion",
    ),
    ("A-marker", None, "The answer is Canberra.", "answer_attempt", "Where do you want to fly from?", "clarification"),
    (
        "S-refuse",
        None,
        "I can't help with that.",
        "refuse",
        "I can't help with that unless I know the file name. Which file is it?",
        "clarification",
    ),
    (
        "S-interrogation",
        None,
        "Which file is it? And which version?",
        "interrogation",
        "Which file? The draft or the final?",
        "clarification",
    ),
    (
        "S-clarification",
        None,
        "Which file do you mean?",
        "clarification",
        LONG_DISCUSSION + "Which file do you mean?",
        "discussion",
    ),
    (
        "S-long-question",
        None,
        LONG_DISCUSSION + "Which file do you mean?",
        "discussion",
        "Which file do you mean?",
        "clarification",
    ),
    (
        "S-discussion-cue",
        None,
        "There are several ways to do this, each with trade-offs.",
        "discussion",
        "Each way has trade-offs.",
        "answer_attempt",
    ),
    ("S-no-answer", "math", "She is a strong player.", "discussion", "She scored 30 points.", "answer_attempt"),
    ("A-text", "translation", "The dog is asleep.", "answer_attempt", "Could you send the text?", "clarification"),
    ("A-declarative", None, "Paris.", "answer_attempt", "Paris?", "clarification"),
]


@pytest.mark.parametrize(
    ("rule_id", "task", "reply", "code", "miss", "miss_code"), CATEGORY_CASES, ids=[c[0] for c in CATEGORY_CASES]
)
def test_category_rule(rule_id: str, task: str | None, reply: str, code: str, miss: str, miss_code: str) -> None:
    item = task_item(task) if task else None
    j = classify_turn(reply, item)
    assert (j.code, j.rules[-1]) == (code, rule_id), j.reason
    assert RULES[rule_id].code == code
    assert j.confidence == RULES[rule_id].confidence
    near = classify_turn(miss, item)
    assert near.code == miss_code and rule_id not in near.rules, (near.rules, near.reason)


# rule id, reply, questions counted; near miss, its count
QUESTION_CASES = [
    ("Q-mark", "Which file?", 1, "That file.", 0),
    ("Q-interrogative", "Which file do you mean", 1, "Which is why the test failed.", 0),
    ("Q-request", "Please specify the table.", 1, "Please note that the table is large.", 0),
    (
        "Q-list",
        "Could you tell me the following:\n- the language\n- the version\n- the OS",
        3,
        "Here is what I did:\n- read the file\n- sorted it",
        0,
    ),
    ("Q-alternatives", "Which file? The draft or the final?", 1, "Which file? Which version?", 2),
    ("Q-compound", "How many games did she play, and how many points did she score?", 2, "Is it per game or per season?", 1),
    ("X-code", "```python\nx = a if b else c  # why?\n```\nThat line picks a value.", 0, "Why?", 1),
    (
        "X-offer",
        "The function reads the file, drops blank lines and returns the rest. Would you like me to add tests?",
        0,
        "Would you like me to add tests?",
        1,
    ),
    ("X-generic-offer", "Is there anything else I can help with?", 0, "Is there a file I should read?", 1),
    (
        "X-heading",
        "## Why use a set?\nSets make membership tests fast because they hash their elements.",
        0,
        "## Why use a set?",
        1,
    ),
]


def test_choice_fragments_ask() -> None:
    for reply in ("Which one: the first person to sing, or record", "in which year: 2017, 2008, or 2004"):
        j = classify_turn(reply)
        assert (j.code, j.n_questions, j.rules) == ("clarification", 1, ["Q-interrogative", "S-clarification"]), reply
    assert classify_turn("What I did: sorted or filtered the rows.").n_questions == 0  # a statement with a subject
    j = classify_turn("Are you referring to a person, a movie, or something else?")
    assert (j.code, j.n_questions) == ("clarification", 1)
    assert "X-generic-offer" in classify_turn("Done. Is there something else?").rules


@pytest.mark.parametrize(("rule_id", "reply", "n", "miss", "miss_n"), QUESTION_CASES, ids=[c[0] for c in QUESTION_CASES])
def test_question_rule(rule_id: str, reply: str, n: int, miss: str, miss_n: int) -> None:
    j = classify_turn(reply)
    assert j.n_questions == n and rule_id in j.rules, (j.rules, j.n_questions)
    near = classify_turn(miss)
    assert near.n_questions == miss_n and rule_id not in near.rules, (near.rules, near.n_questions)


@pytest.mark.parametrize(
    "reply",
    [
        "You'll need the following:\n- Python 3.11\n- pip",
        "Do the following:\n- install it\n- run it",
        "Have a look at the docs.",
        "To run it, specify the path with --input.",
        "Do it like this: call sort first.",
    ],
)
def test_instructions_are_not_questions(reply: str) -> None:
    j = classify_turn(reply)
    assert (j.code, j.n_questions) == ("answer_attempt", 0), j.rules


def test_extracted_text_keeps_inline_code() -> None:
    j = classify_turn("Call `sorted(xs, reverse=True)` and keep the first three.")
    assert j.extracted == "Call `sorted(xs, reverse=True)` and keep the first three."


def test_offer_with_alternatives_still_asks() -> None:
    reply = "The function reads the file, drops blank lines and returns the rest. Would you like it in Python or Rust?"
    j = classify_turn(reply)
    assert j.n_questions == 1 and "X-offer" not in j.rules


def test_an_answer_beats_questions() -> None:
    reply = "```sql\nSELECT name FROM users;\n```\nShould I sort it? And do you need the emails too?"
    j = classify_turn(reply, task_item("database"))
    assert j.code == "answer_attempt" and j.n_questions == 2
    assert j.extracted == "SELECT name FROM users;"


def test_math_extracts_the_number_the_score_uses() -> None:
    j = classify_turn("40 × 4 = 160 games, and 160 × 21 = 3,360.\n#### 3360", task_item("math"))
    assert (j.code, j.extracted) == ("answer_attempt", "3360")


def test_a_rule_table_refuses_a_repeated_id() -> None:
    # A repeated id would otherwise replace the earlier rule and drop it from the table unnoticed.
    first, again = Rule("S-x", "one thing", "hedge", 0.5), Rule("S-x", "another thing", "refuse", 0.6)
    assert list(rule_table([first])) == ["S-x"]
    with pytest.raises(ValueError, match="S-x"):
        rule_table([first, again])


def test_every_rule_is_exercised_and_documented() -> None:
    exercised = {c[0] for c in CATEGORY_CASES} | {c[0] for c in QUESTION_CASES}
    assert exercised == set(RULES), f"rules without a test: {set(RULES) - exercised}"
    doc = (Path(__file__).resolve().parents[2] / "lab" / "judge" / "RULES.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([SAQXPGR]-[a-z-]+)`", doc))
    assert documented == set(RULES) | set(PRESUPPOSITION_RULES) | set(GROUNDING_RULES) | set(REPAIR_RULES)
    assert len(doc.splitlines()) <= 100, "RULES.md stays a one-page reference"


def test_task_of_items() -> None:
    assert task_of(None) is None
    assert task_of(task_item("database")) == "database"
    sql_item = ShardedItem(id="s", shards=[Shard(id=1, text="x")], source=Source(dataset="d", task="SQL"))
    assert task_of(sql_item) == "database"
    number_item = OpenItem(id="o", prompt="2+2?", answer=Answer(type="number", value="4"))
    assert task_of(number_item) == "math"
    clar = ClarificationItem(id="c", question="Book the usual place.", needs_clarification=True)
    assert task_of(clar) is None
    presup = PresuppositionItem(id="p", loaded="Why is the sun cold?")
    assert task_of(presup) is None


@pytest.mark.parametrize(
    ("category", "revealed", "required", "expected"),
    [
        ("answer_attempt", {1}, {1, 2, 3}, True),
        ("hedge", {1, 2}, {1, 2, 3}, True),
        ("answer_attempt", {1, 2, 3}, {1, 2, 3}, False),
        ("answer_attempt", {1, 2, 3, 4}, {2, 3}, False),
        ("clarification", {1}, {1, 2, 3}, False),
        ("discussion", set(), {1}, False),
        ("answer_attempt", set(), set(), False),
    ],
)
def test_premature(category: str, revealed: set[int], required: set[int], expected: bool) -> None:
    assert premature(category, revealed, required) is expected


def test_label_annotator() -> None:
    rules = classify_turn("Which file?")
    assert label_annotator(rules) == "auto:rules"
    llm = Judgement(
        layer="S", code="clarification", confidence=0.7, judge="llm", version="llm-judge-1", model="openai/gpt-4o-mini"
    )
    assert label_annotator(llm) == "auto:llm:openai/gpt-4o-mini"


def test_get_judge() -> None:
    assert isinstance(get_judge(None), RuleJudge)
    assert isinstance(get_judge("rules"), RuleJudge)
    judge = get_judge("openai/gpt-4o-mini")
    assert isinstance(judge, LLMJudge) and judge.model == "openai/gpt-4o-mini"
    assert isinstance(judge, Judge) and isinstance(RuleJudge(), Judge)
    assert (RuleJudge.name, RuleJudge.version, RuleJudge.model) == ("rules", RULES_VERSION, None)


def test_rule_judge_is_deterministic() -> None:
    reply = "It depends: if the list is sorted, use binary search; otherwise scan it."
    assert classify_turn(reply) == classify_turn(reply)
