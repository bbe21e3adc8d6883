"""Layer G rules (grounding acts) and layer R candidates (repair sequences)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.judge import (
    GROUNDING_CODES,
    GROUNDING_RULES,
    GROUNDING_VERSION,
    REPAIR_RULES,
    RuleJudge,
    TurnText,
    classify_grounding,
    find_repairs,
    join_codes,
    split_codes,
)

# Development cases: the rules were written from these (the held-out turns are in tests/data/heldout_grounding.jsonl).
DEV = Path(__file__).resolve().parents[1] / "data" / "dev_grounding.jsonl"
CASES = [
    (r["id"], r["speaker"], r["previous"], r["turn"], join_codes(r["expected"]), r["rules"])
    for r in (json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip())
]


@pytest.mark.parametrize(("name", "speaker", "previous", "turn", "code", "rules"), CASES, ids=[c[0] for c in CASES])
def test_grounding_rules(name: str, speaker: str, previous: str, turn: str, code: str, rules: list[str]) -> None:
    j = classify_grounding(turn, speaker=speaker, previous=previous)
    assert (j.code, j.rules) == (code, rules), j.reason
    assert (j.layer, j.judge, j.version, j.model) == ("G", "rules", GROUNDING_VERSION, None)
    assert j.ok and speaker in j.reason and 0 < j.confidence <= 1


def test_every_grounding_rule_is_exercised() -> None:
    assert {r for c in CASES for r in c[5]} == set(GROUNDING_RULES)
    assert {r.code for r in GROUNDING_RULES.values()} == set(GROUNDING_CODES)


def test_empty_turn_is_an_error() -> None:
    j = RuleJudge().classify_grounding("  ", speaker="user", previous="Hi")
    assert not j.ok and j.code == "" and "empty" in (j.error or "")


def test_codes_join_in_codebook_order() -> None:
    assert join_codes(["DISPLAY", "ACK"]) == "ACK+DISPLAY"
    assert join_codes(["NONE"]) == join_codes([]) == "NONE"
    assert join_codes(["NONE", "ACK"]) == "ACK"
    assert split_codes("ACK+FOLLOWUP") == ["ACK", "FOLLOWUP"]
    assert join_codes(GROUNDING_CODES) == "CLARIFY+CHECK+FOLLOWUP+DISPLAY"  # all five would not fit label.code
    with pytest.raises(ValueError, match="unknown grounding code"):
        join_codes(["ACK", "NOD"])


def _turns(*texts: str) -> list[TurnText]:
    roles = ["user", "assistant"]
    return [TurnText(i + 1, roles[i % 2], t) for i, t in enumerate(texts)]


def test_third_position_repair() -> None:
    (c,) = find_repairs(
        _turns(
            "Who won the Indy race?",
            "The Indianapolis 500 in 2023 was won by Josef Newgarden.",
            "No, I meant the Indy 500 in 1999.",
            "Kenny Bräck won in 1999.",
        )
    )
    assert (c.rule, c.initiation, c.initiator) == ("R-tpr", "TPR", "user")
    assert (c.trouble_turn_id, c.initiation_turn_id, c.repair_turn_id, c.outcome) == (1, 3, 3, "resolved")


def test_repeated_tpr_is_unresolved() -> None:
    found = find_repairs(
        _turns(
            "Book the Paris hotel.",
            "Booked Hotel Paris in Las Vegas.",
            "No, I meant Paris, France.",
            "Booked Hotel Paris in Las Vegas again.",
            "That's not what I asked.",
        )
    )
    assert [(c.rule, c.outcome) for c in found] == [("R-tpr", "unresolved"), ("R-tpr", None)]


def test_clarifying_question_followed_by_the_missing_piece() -> None:
    (c,) = find_repairs(
        _turns("Fix the bug in the file.", "Which file, main.py or utils.py?", "utils.py", "Here is the fix for utils.py.")
    )
    assert (c.rule, c.initiation, c.initiator) == ("R-oi-request", "OI-restricted-request", "assistant")
    assert (c.trouble_turn_id, c.initiation_turn_id, c.repair_turn_id, c.outcome) == (1, 2, 3, "resolved")


def test_open_and_offer_initiations() -> None:
    found = find_repairs(
        _turns("Make it pop.", "Sorry, I didn't follow.", "Brighter colours.", "You mean the header only?", "Yes, the header.")
    )
    assert [(c.rule, c.initiator, c.trouble_turn_id, c.repair_turn_id) for c in found] == [
        ("R-oi-open", "assistant", 1, 3),
        ("R-oi-offer", "assistant", 3, 5),
    ]
    assert found[1].outcome is None  # nothing follows the repair yet


def test_self_repair_and_unanswered_question() -> None:
    found = find_repairs(_turns("Send it on Tuesday, I mean Wednesday.", "Which one, Tuesday or Wednesday?"))
    assert [(c.rule, c.repair_turn_id) for c in found] == [("R-si", 1), ("R-oi-request", None)]


def test_no_repair_in_plain_talk() -> None:
    assert find_repairs(_turns("What is 2 + 2?", "4.", "Thanks!")) == []


def test_every_repair_rule_is_exercised() -> None:
    assert set(REPAIR_RULES) == {"R-tpr", "R-oi-open", "R-oi-offer", "R-oi-request", "R-si"}
