"""Task scoring: numbers, exact and normalised text, choices, clarification need."""

from __future__ import annotations

import pytest

from lab.items import Answer, ClarificationItem, OpenItem, PresuppositionItem, Probe, Shard, ShardedItem, Source
from lab.judge import (
    NEEDS_JUDGE,
    STRATEGY_CODES,
    clarification_score,
    extract_answer_text,
    normalize_answer,
    score_answer,
    score_probe,
)
from lab.scoring import score


def number(value: str, *accept: str) -> Answer:
    return Answer(type="number", value=value, accept=list(accept))


@pytest.mark.parametrize(
    ("gold", "reply", "value", "extracted"),
    [
        ("3360", "She scores 21 points a game, so 160*21 = 3360 points.\n#### 3360", 1.0, "3360"),
        ("3360", "#### 3,360", 1.0, "3360"),
        ("3360", "In total she scored $3,360.00.", 1.0, "3360"),
        ("1234.5", "That costs $1,234.50.", 1.0, "1234.5"),
        ("42", "The result is 42.0", 1.0, "42"),
        ("42.0", "42", 1.0, "42"),
        ("-7", "The temperature dropped to −7 degrees.", 1.0, "-7"),
        ("-7", "Answer: -7", 1.0, "-7"),
        ("-3", "It went from 5 to -3.", 1.0, "-3"),
        ("5", "Pages 3-5 are relevant.", 1.0, "5"),
        ("10", "The answer is 10, since 5 + 5 = 10 and then step 3 checks it.", 1.0, "10"),
        ("10", "It is 10. Want me to explain step 2?", 1.0, "10"),
        ("3360", "The total is 3,360 points (40 games × 4 years × 21 points).", 1.0, "3360"),
        ("3360", "Final answer: \\boxed{3360}. Check: 160 × 21.", 1.0, "3360"),
        ("3360", "#### 3360\nThat took 4 steps.", 1.0, "3360"),
        ("3360", "She scored 3,200 points.", 0.0, "3200"),
        # The number right after the marker wins over the last number.
        ("3200", "The answer is 3360 minus 160, which is 3200.", 0.0, "3360"),
    ],
)
def test_number_scoring(gold: str, reply: str, value: float, extracted: str) -> None:
    s = score_answer(number(gold), reply)
    assert (s.value, s.scorable, s.extracted, s.method) == (value, True, extracted, "number"), s.reason


def test_number_accepts_alternatives() -> None:
    assert score_answer(number("0.5", "50"), "About 50 percent.").value == 1.0


def test_no_number_is_wrong_not_unscorable() -> None:
    s = score_answer(number("3360"), "She scored a lot of points.")
    assert (s.value, s.scorable, s.extracted) == (0.0, True, None)


def test_gold_that_is_not_a_number_is_unscorable() -> None:
    s = score_answer(number("ten"), "10")
    assert not s.scorable and s.value is None and "'ten'" in s.reason


@pytest.mark.parametrize(
    ("gold", "reply", "value"),
    [
        ("Canberra", "Canberra.", 1.0),
        ("Canberra", "The answer is **Canberra**.", 1.0),
        ("Canberra", "I think so.\n**Canberra**", 1.0),
        ("Canberra", "canberra", 0.0),
        ("Canberra", "Canberra is the capital.", 0.0),
        ("SELECT 1", "```sql\nSELECT 1\n```", 1.0),
    ],
)
def test_exact(gold: str, reply: str, value: float) -> None:
    s = score_answer(Answer(type="exact", value=gold), reply)
    assert s.value == value and s.method == "exact", (s.extracted, s.reason)


@pytest.mark.parametrize(
    ("gold", "reply", "value"),
    [
        ("The Beatles", "beatles!", 1.0),
        ("Canberra", "The answer is: canberra.", 1.0),
        ("New York", "  new   york ", 1.0),
        ("Canberra", "Canberra is the capital of Australia.", 0.0),
        ("an apple", "Apple", 1.0),
    ],
)
def test_normalized(gold: str, reply: str, value: float) -> None:
    assert score_answer(Answer(type="normalized", value=gold), reply).value == value


def test_normalize_answer() -> None:
    assert normalize_answer("  The  Beatles, Inc.! ") == "beatles inc"
    assert normalize_answer("An apple a day") == "apple day"


@pytest.mark.parametrize(
    ("accept", "reply", "value"),
    [
        (["B"], "I would pick option B.", 1.0),
        (["B"], "Not sure, maybe the bridge.", 0.0),
        (["Paris", "Lyon"], "Probably Lyon, going by the map.", 1.0),
        (["B"], "It's not A or B; the answer is C.", 0.0),
    ],
)
def test_choice(accept: list[str], reply: str, value: float) -> None:
    assert score_answer(Answer(type="choice", accept=accept), reply).value == value


def test_none_needs_a_judge() -> None:
    s = score_answer(Answer(), "Anything at all.")
    assert (s.value, s.scorable, s.method, s.reason) == (None, False, "none", NEEDS_JUDGE)


def test_extract_answer_text_order() -> None:
    assert extract_answer_text("Working...\n#### 42") == ("42", "####")
    assert extract_answer_text("So the answer is Canberra. It is small.") == ("Canberra", "answer is")
    assert extract_answer_text("Working. \\boxed{x+1}") == ("x+1", "boxed")
    assert extract_answer_text("**Note:** see below.\nIt is **Lyon**.") == ("Lyon", "bold")
    assert extract_answer_text("Lyon. Would you like more?") == ("Lyon", "statements")


def test_score_dispatches_on_item_kind() -> None:
    sharded = ShardedItem(
        id="m", shards=[Shard(id=1, text="x")], answer=number("3360"), source=Source(dataset="lost_in_conversation", task="math")
    )
    assert score(sharded, "#### 3360").value == 1.0
    open_item = OpenItem(id="o", prompt="Capital of Australia?", answer=Answer(type="normalized", value="Canberra"))
    assert score(open_item, "canberra").value == 1.0
    loaded = PresuppositionItem(id="p", loaded="Why did Einstein fail maths?")
    s = score(loaded, "He did not.")
    assert not s.scorable and "score_probe" in s.reason


def test_score_probe() -> None:
    item = PresuppositionItem(
        id="p",
        loaded="Why did Einstein fail maths?",
        probe=Probe(question="Did Einstein fail maths?", answer=Answer(type="choice", accept=["no"])),
    )
    assert score_probe(item, "No, he did not.").value == 1.0
    assert score_probe(item, "Yes, he did.").value == 0.0
    bare = PresuppositionItem(id="q", loaded="Why did Einstein fail maths?")
    assert not score_probe(bare, "No.").scorable


@pytest.mark.parametrize(
    ("needed", "category", "outcome", "value"),
    [
        (True, "clarification", "asked", 1.0),
        (True, "interrogation", "asked", 1.0),
        (True, "answer_attempt", "missed", 0.0),
        (True, "hedge", "missed", 0.0),
        (False, "clarification", "over_asked", 0.0),
        (False, "answer_attempt", "not_needed", 1.0),
    ],
)
def test_clarification_score(needed: bool, category: str, outcome: str, value: float) -> None:
    item = ClarificationItem(id="c", question="Book the usual place.", needs_clarification=needed)
    s = clarification_score(item, category)
    assert (s.needed, s.outcome, s.value) == (needed, outcome, value)
    assert s.asked == (category in ("clarification", "interrogation"))


def test_clarification_score_rejects_unknown_category() -> None:
    item = ClarificationItem(id="c", question="Book the usual place.", needs_clarification=True)
    with pytest.raises(ValueError, match="category 'question' is not one of"):
        clarification_score(item, "question")
    assert len(STRATEGY_CODES) == 7
