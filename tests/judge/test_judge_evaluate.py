"""Measuring the judges: the labelled sets, the figures, the published-text targets and the command."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from lab.cli import main
from lab.items import PresuppositionItem
from lab.judge import (
    ABSTAIN,
    GROUNDING_CODES,
    PRESUPPOSITION_CODES,
    STRATEGY_CODES,
    EvalSet,
    Judgement,
    LLMJudge,
    RuleJudge,
    default_sets,
    evaluate,
    format_evaluation,
    split_codes,
)
from lab.judge._evaluate import Case, clamber_questions, falseqa_rebuttals, target_lines
from lab.llm import scripted

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("name", "codes", "minimum"),
    [
        ("heldout_strategy.jsonl", STRATEGY_CODES, 40),
        ("heldout_presupposition.jsonl", tuple(c for c in PRESUPPOSITION_CODES if c != "NA"), 40),
        ("dev_presupposition.jsonl", tuple(c for c in PRESUPPOSITION_CODES if c != "NA"), 30),
        ("heldout_grounding.jsonl", tuple(c for c in GROUNDING_CODES), 30),
    ],
)
def test_labelled_sets_are_well_formed(name: str, codes: tuple[str, ...], minimum: int) -> None:
    rows = _rows(name)
    assert len(rows) >= minimum
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    seen: Counter[str] = Counter()
    for r in rows:
        expected = r["expected"] if isinstance(r["expected"], list) else [r["expected"]]
        assert set(expected) <= set(codes), r["id"]
        assert r["reason"].strip(), r["id"]
        seen.update(expected)
    assert set(seen) == set(codes), f"{name}: codes without an example: {set(codes) - set(seen)}"


def test_heldout_and_development_do_not_share_replies() -> None:
    dev = {json.loads(line)["reply"] for line in (ROOT / "tests" / "judge" / "labelled_turns.jsonl").read_text().splitlines()}
    dev |= {r["reply"] for r in _rows("dev_presupposition.jsonl")}
    held = {r["reply"] for r in _rows("heldout_strategy.jsonl")}
    held |= {r["reply"] for r in _rows("heldout_presupposition.jsonl")}
    substantial = {r for r in dev & held if len(r.split()) >= 3}  # empty or token-only "missing" replies may coincide
    assert not substantial


class Fixed:
    """A judge that answers from a table (layer S), for checking the arithmetic."""

    name = "fixed"
    model = None

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def classify(self, reply: str, *, item: object = None) -> Judgement:
        code = self.answers[reply]
        return Judgement(layer="S", code=code, confidence=0.5, judge="fixed", version="1", model=None)


def test_precision_recall_abstention_and_confusion() -> None:
    def case(i: int, gold: str) -> Case:
        return Case(str(i), f"r{i}", gold, frozenset({gold}))

    cases = [case(1, "refuse"), case(2, "refuse"), case(3, "refuse"), case(4, "hedge"), case(5, "hedge")]
    answers = {"r1": "refuse", "r2": ABSTAIN, "r3": "hedge", "r4": "hedge", "r5": "refuse"}
    ev = evaluate(Fixed(answers), EvalSet("toy", "S", "held-out", cases))
    assert ev.judge == "auto:fixed"
    assert (ev.n, ev.accuracy, ev.abstention_rate) == (5, 0.4, 0.2)
    assert ev.answered_accuracy == 0.5
    figures = {f.code: f for f in ev.per_code}
    assert (figures["refuse"].support, figures["refuse"].predicted) == (3, 2)
    assert (figures["refuse"].precision, figures["refuse"].recall, figures["refuse"].abstained) == (0.5, 1 / 3, 1 / 3)
    assert (figures["hedge"].precision, figures["hedge"].recall, figures["hedge"].abstained) == (0.5, 0.5, 0.0)
    assert ev.confusion() == {
        "refuse": Counter({"refuse": 1, ABSTAIN: 1, "hedge": 1}),
        "hedge": Counter({"hedge": 1, "refuse": 1}),
    }
    text = format_evaluation(ev)
    assert "abstained 20.0%" in text and "confusion (rows gold, columns judge)" in text
    assert target_lines(ev) == []  # targets apply to published text only


def test_multilabel_grounding_figures() -> None:
    sets = default_sets(ROOT, None, ("G",))
    (held,) = [s for s in sets if s.name == "heldout-G"]
    ev = evaluate(RuleJudge(), held)
    figures = {f.code: f for f in ev.per_code}
    assert set(figures) == set(GROUNDING_CODES)
    gold_ack = sum("ACK" in split_codes(c.expected) for c in held.cases)
    assert figures["ACK"].support == gold_ack
    # A floor on held-out text: the rules must not silently get worse (0.917 when written).
    assert ev.accuracy >= 0.85


def test_rule_judge_floors_on_heldout_replies() -> None:
    """Floors under the held-out figures reported in the README, so a rule change cannot hide a loss."""
    by_name = {s.name: evaluate(RuleJudge(), s) for s in default_sets(ROOT, None, ("S", "P"))}
    assert by_name["heldout-S"].accuracy >= 0.88
    held_p = by_name["heldout-P"]
    assert held_p.answered_accuracy is not None and held_p.answered_accuracy >= 0.75
    assert held_p.abstention_rate < 0.25
    accommodate = {f.code: f for f in held_p.per_code}["ACCOMMODATE"]
    assert accommodate.precision is not None and accommodate.precision >= 0.7


def test_falseqa_rebuttal_is_never_its_own_correction(shared_datasets: Path) -> None:
    held = falseqa_rebuttals(shared_datasets / "falseqa" / "test.csv", held_out=True)
    dev = falseqa_rebuttals(shared_datasets / "falseqa" / "test.csv", held_out=False)
    assert len(held.cases) + len(dev.cases) == 2061
    assert not {c.id.split("/")[0] for c in held.cases} & {c.id.split("/")[0] for c in dev.cases}
    for c in held.cases:
        assert isinstance(c.item, PresuppositionItem)
        assert c.reply not in c.item.correction and c.accept == {"REJECT", "REJECT_CORRECT"}


def test_targets_on_published_text(shared_datasets: Path) -> None:
    falseqa = evaluate(RuleJudge(), falseqa_rebuttals(shared_datasets / "falseqa" / "test.csv", held_out=True))
    assert falseqa.share({"ACCOMMODATE", "AMPLIFY"}) <= 0.10
    assert falseqa.abstention_rate < 0.25
    clamber = evaluate(RuleJudge(), clamber_questions(shared_datasets / "clamber" / "clamber_benchmark.jsonl", held_out=True))
    assert len(clamber.set.cases) == 801
    assert clamber.share({"clarification", "interrogation"}) >= 0.90
    assert clamber.abstention_rate < 0.25
    assert all("— met" in line for line in target_lines(falseqa) + target_lines(clamber))


def test_llm_judge_measured_the_same_way() -> None:
    (held,) = [s for s in default_sets(ROOT, None, ("S",)) if s.name == "heldout-S"]
    held.cases = held.cases[:4]
    outputs = [
        json.dumps({"category": held.cases[0].expected, "reason": "right"}),
        json.dumps({"category": "refuse", "reason": "wrong"}),
        "no json here",
        json.dumps({"category": held.cases[3].expected, "reason": "right"}),
    ]
    scripted.enqueue(*outputs)
    ev = evaluate(LLMJudge("lab/scripted"), held)
    assert ev.judge == "auto:llm:lab/scripted"
    assert ev.predicted[2] == "(error)" and ev.error_rate == 0.25
    assert ev.accuracy == 0.5 and ev.answered_accuracy == pytest.approx(2 / 3)
    assert scripted.pending() == 0


def test_llm_grounding_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    scripted.enqueue(json.dumps({"codes": ["display", "ACK"], "reason": "repeats the time"}), json.dumps({"codes": ["NOD"]}))
    judge = LLMJudge("lab/scripted")
    j = judge.classify_grounding("Got it, 6:40.", speaker="user", previous="Your flight is at 6:40.")
    assert (j.layer, j.code, j.version, j.model) == ("G", "ACK+DISPLAY", "llm-grounding-1", "lab/scripted")
    bad = judge.classify_grounding("Hm.", speaker="user", previous="Hi")
    assert not bad.ok and "NOD" in (bad.error or "") and bad.version == "llm-grounding-1"


def test_evaluate_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["judge", "evaluate", "--set", "heldout-S", "--datasets", str(ROOT / "no-such-folder")]) == 0
    out, err = capsys.readouterr()
    assert "== heldout-S (layer S, held-out, 47 cases) — auto:rules" in out
    assert "prec recall abstain" in out and "confusion (rows gold, columns judge):" in out
    assert "FalseQA and CLAMBER are left out" in err
    assert main(["judge", "evaluate", "--layer", "R"]) == 0
    out = capsys.readouterr().out
    assert "== heldout-R (layer R, held-out, 14 conversations, 12 marked sequences) — auto:rules" in out
    assert "initiation turns found: precision" in out
    assert main(["judge", "evaluate", "--set", "nosuch"]) == 1
    assert main(["judge", "demo", "--limit", "3"]) == 1
    assert "belong to `python -m lab judge evaluate`" in capsys.readouterr().err


def test_repair_finder_figures() -> None:
    from lab.judge._evaluate import evaluate_repairs

    ev = evaluate_repairs(DATA / "heldout_repair.jsonl")
    precision, recall = ev.detection
    assert ev.conversations == 14 and len(ev.expected) == 12
    # Floors under the README's figures (100 % and 92 % when written).
    assert precision is not None and precision >= 0.9
    assert recall is not None and recall >= 0.8
    figures = {f.code: f for f in ev.per_type()}
    assert figures["TPR"].recall == 1.0


def test_targets_are_not_met_by_unusable_output() -> None:
    """A judge whose every output was unusable (a missing key, a model that writes no JSON) meets no target."""
    from lab.judge._evaluate import ERROR, Evaluation

    cases = [Case(str(i), f"r{i}", "REJECT", frozenset({"REJECT"})) for i in range(4)]
    falseqa = EvalSet("falseqa-heldout", "P", "held-out", cases)
    none = Evaluation(falseqa, "auto:llm:m", [ERROR] * 4, [False] * 4)
    assert target_lines(none) == ["target: labelled ACCOMMODATE or AMPLIFY — not judged: no usable judge output"]
    half = Evaluation(falseqa, "auto:llm:m", [ERROR, ERROR, "REJECT", "REJECT"], [False, False, True, True])
    assert all("NOT met" in line for line in target_lines(half))  # the unusable half could have been anything
