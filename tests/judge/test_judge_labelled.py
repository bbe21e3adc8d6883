"""The rule judge against hand-labelled assistant turns (tests/judge/labelled_turns.jsonl)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from lab.items import Answer, Item, Shard, ShardedItem, Source
from lab.judge import RULES_VERSION, STRATEGY_CODES, RuleJudge

LABELLED = Path(__file__).with_name("labelled_turns.jsonl")


def _examples() -> list[dict]:
    return [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]


def item_for(task: str | None) -> Item | None:
    """A Lost-in-Conversation-like item of the task (math items have a number answer)."""
    if task is None:
        return None
    answer = Answer(type="number", value="3360") if task == "math" else Answer()
    return ShardedItem(
        id=f"labelled-{task}",
        shards=[Shard(id=1, text="the opening request"), Shard(id=2, text="one more detail")],
        answer=answer,
        source=Source(dataset="lost_in_conversation", task=task),
    )


def test_labelled_file_is_well_formed() -> None:
    examples = _examples()
    assert len(examples) >= 60
    ids = [e["id"] for e in examples]
    assert len(ids) == len(set(ids)), "duplicate example ids"
    for e in examples:
        assert set(e) == {"id", "task", "expected", "reason", "reply"}, e["id"]
        assert e["expected"] in STRATEGY_CODES, e["id"]
        assert e["reason"].strip(), e["id"]
    counts = Counter(e["expected"] for e in examples)
    assert set(counts) == set(STRATEGY_CODES), f"categories without examples: {set(STRATEGY_CODES) - set(counts)}"
    assert min(counts.values()) >= 4


def test_rule_judge_labels_every_example() -> None:
    judge = RuleJudge()
    misses = []
    for e in _examples():
        j = judge.classify(e["reply"], item=item_for(e["task"]))
        if j.code != e["expected"]:
            misses.append(f"{e['id']}: expected {e['expected']}, got {j.code} by {j.rules} ({e['reason']})")
    assert not misses, "\n".join(misses)


@pytest.mark.parametrize("example", _examples(), ids=lambda e: e["id"])
def test_judgement_is_complete(example: dict) -> None:
    j = RuleJudge().classify(example["reply"], item=item_for(example["task"]))
    assert j.layer == "S" and j.judge == "rules" and j.version == RULES_VERSION and j.model is None
    assert j.error is None and j.ok
    assert j.rules, "a judgement names the rules that fired"
    assert j.reason
    assert 0 < j.confidence <= 1
    assert j.n_questions is not None and j.n_questions >= 0
    if j.code == "answer_attempt":
        assert j.extracted, "an answer attempt carries its extracted answer"
    else:
        assert j.extracted is None
    if j.code == "clarification":
        assert j.n_questions == 1
    if j.code == "interrogation":
        assert j.n_questions >= 2
