"""Summary items: the SummHay joint score from a judge model (the scripted model plays the judge)."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import shared_records

from lab.llm import scripted
from lab.scoring._summary import PROMPT_VERSION, aevaluate, bullets, citations, evaluate, prompts, scores

JUDGE = ("lab/scripted", {})

GOLD = {
    "insights": [
        {"insight_id": "i1", "insight": "The bridge will cost 40 million."},
        {"insight_id": "i2", "insight": "Residents fear more traffic."},
        {"insight_id": "i3", "insight": "The council votes in May."},
    ],
    "insightid2ref_citations": {"i1": [1, 2], "i2": [3], "i3": [4]},
}
SUMMARY = "- The bridge costs 40 million [1][5].\n- People worry about traffic [3].\n- Parking is discussed [2]."


def verdict(coverage: str, bullet: object) -> str:
    return json.dumps({"coverage": coverage, "bullet_id": bullet})


def test_joint_score_from_the_judges_verdicts() -> None:
    scripted.enqueue(verdict("FULL_COVERAGE", 1), "Sure: " + verdict("PARTIAL_COVERAGE", 2), verdict("NO_COVERAGE", "NA"))
    ev = evaluate(GOLD, SUMMARY, JUDGE)
    # i1: coverage 1, citations {1,5} vs {1,2}: P 1/2, R 1/2, F1 1/2 → 0.5
    # i2: coverage 0.5, citations {3} vs {3}: F1 1 → 0.5;  i3: 0.
    assert (ev.status, ev.evaluator, ev.version) == ("scored", "lic-summary-summhay", "1")
    assert ev.value == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert ev.details["coverage_score"] == pytest.approx(0.5)
    assert ev.details["citation_score"] == pytest.approx(0.75)
    assert ev.details["judge"] == "lab/scripted"
    assert ev.details["prompt"] == PROMPT_VERSION


def test_the_prompt_numbers_the_bullets_and_names_the_insight() -> None:
    (insight_id, prompt), *_ = prompts(GOLD, SUMMARY)
    assert insight_id == "i1"
    assert "The bridge will cost 40 million." in prompt
    assert '"bullet_id": 3' in prompt and "Parking is discussed [2]." in prompt


def test_without_a_judge_it_needs_one_and_is_not_guessed() -> None:
    ev = evaluate(GOLD, SUMMARY, None)
    assert (ev.status, ev.value) == ("needs_judge", None)
    assert ev.reason.startswith("Needs judge")


def test_an_unreadable_judge_reply_is_an_error_not_a_score() -> None:
    scripted.enqueue("I think it is covered.", verdict("NO_COVERAGE", "NA"), verdict("NO_COVERAGE", "NA"))
    ev = evaluate(GOLD, SUMMARY, JUDGE)
    assert (ev.status, ev.value) == ("error", None)
    assert "i1" in ev.reason


def test_a_judge_model_error_is_reported() -> None:
    scripted.enqueue(scripted.ModelFailure("auth"))
    ev = asyncio.run(aevaluate(GOLD, SUMMARY, JUDGE))
    assert (ev.status, ev.value) == ("error", None)
    assert "judge model failed" in ev.reason


def test_authors_indexing_of_an_unreadable_bullet_number() -> None:
    # The authors read bullet "NA" as number -1, which Python indexes as the second-to-last line.
    result = scores(GOLD, SUMMARY, [{"coverage": "PARTIAL_COVERAGE", "bullet_id": "NA", "insight_id": "i2"}])
    assert result["citation_score"] == pytest.approx(1.0)
    assert result["joint_score"] == pytest.approx(0.5)


def test_long_summaries_are_cut_proportionally_and_citations_read() -> None:
    lines, cut = bullets("\n".join(["word " * 200, "", "word " * 200]))
    assert cut == pytest.approx(100 / 400)
    assert [len(line.split()) for line in lines] == [150, 0, 150]
    assert citations("Costs rose [1, 3][7] and [x] fell.") == [1, 3, 7]


def test_real_summary_item() -> None:
    record = shared_records("summary")[0]
    insights = record["insights"]
    first = insights[0]["insight_id"]
    docs = sorted(record["insightid2ref_citations"][first])
    summary = f"- {insights[0]['insight']} {''.join(f'[{d}]' for d in docs)}\n- Something else."
    scripted.enqueue(verdict("FULL_COVERAGE", 1), *[verdict("NO_COVERAGE", "NA")] * (len(insights) - 1))
    ev = evaluate(record, summary, JUDGE)
    assert ev.value == pytest.approx(1 / len(insights))
