"""The answer-attempt gate measured like a judge, and the authors' approach with the scripted model."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab.cli import main
from lab.scoring import last_attempt
from lab.scoring._gate import LLMGate, RuleGate, evaluate_gate, gate_cases, gate_messages

DATA = Path(__file__).resolve().parents[1] / "data"


def test_labelled_turns_cover_the_families_and_the_halves_do_not_overlap() -> None:
    dev, held = gate_cases(DATA / "dev_gate.jsonl"), gate_cases(DATA / "heldout_gate.jsonl")
    assert {c.task for c in held} >= {"math", "code", "database", "actions", "data2text"}
    assert {c.reply for c in dev}.isdisjoint({c.reply for c in held})
    assert 0 < sum(c.attempt for c in held) < len(held)


def test_rule_gate_figures_are_counted_as_a_judge_is() -> None:
    ev = evaluate_gate(RuleGate(), DATA / "heldout_gate.jsonl", "heldout-gate")
    tp = sum(c.attempt and d is True for c, d in zip(ev.cases, ev.decided, strict=True))
    called = sum(d is True for d in ev.decided)
    assert ev.precision == pytest.approx(tp / called)
    assert ev.recall == pytest.approx(tp / sum(c.attempt for c in ev.cases))
    assert ev.abstention == sum(d is None for d in ev.decided) / len(ev.cases)


def test_judge_evaluate_prints_the_gate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["judge", "evaluate", "--set", "gate"]) == 0
    out = capsys.readouterr().out
    assert "== heldout-gate (answer-attempt gate, 29 turns, 12 attempts) — rules" in out
    assert "precision" in out and "recall" in out and "abstained" in out


def test_llm_gate_sees_the_whole_specification_and_is_measured_the_same_way() -> None:
    case = gate_cases(DATA / "heldout_gate.jsonl")[0]
    prompt = gate_messages(case.item, case.reply)[0]["content"]
    first, *rest = [s.text for s in case.item.shards]
    assert first in prompt and json.dumps(rest) in prompt and case.reply in prompt
    assert "A final numerical answer" in prompt  # the task's answer description

    # The scripted model calls every turn an attempt: recall 100 %, precision the share of attempts.
    always = LLMGate("lab/scripted", {"script": "fixed", "reply": '{"response_type": "answer_attempt"}'})
    ev = evaluate_gate(always, DATA / "heldout_gate.jsonl", "heldout-gate")
    assert ev.gate == "llm:lab/scripted" and ev.recall == 1.0 and ev.precision == pytest.approx(12 / 29)
    # Output with no category is an abstention, not a decision.
    mute = LLMGate("lab/scripted", {"script": "fixed", "reply": "I think it is an answer."})
    assert evaluate_gate(mute, DATA / "heldout_gate.jsonl", "heldout-gate", limit=3).abstention == 1.0


def test_gate_decides_before_the_rules_and_the_rules_decide_where_it_abstains() -> None:
    case = next(c for c in gate_cases(DATA / "heldout_gate.jsonl") if c.id == "ho-math-steps")
    turns = [SimpleNamespace(id=1, index=1, role="assistant", content=case.reply, error=None)]
    assert last_attempt(case.item, turns, reveal="SHARDED") is not None  # the rules: an attempt
    assert last_attempt(case.item, turns, reveal="SHARDED", gate=lambda item, reply: False) is None
    assert last_attempt(case.item, turns, reveal="SHARDED", gate=lambda item, reply: None) is not None
    # FULL replies are attempts whatever the gate says.
    assert last_attempt(case.item, turns, reveal="FULL", gate=lambda item, reply: False) is not None
