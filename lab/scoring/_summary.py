"""Summary items (Summary of a Haystack): insight coverage and citation, judged by a model.

As the Lost in Conversation summary task scores them (``tasks/summary``, after Laban et
al.'s SummHay evaluation):

- The whole reply is the summary; each line is a bullet. Past 300 words every bullet is cut
  by the same share of its words (keeping at least one).
- For each reference insight of the item, the judge model says whether a bullet covers it
  fully (1), partly (0.5) or not at all (0), and which bullet.
- For a covered insight, the citations of that bullet (``[3]``, ``[3, 7]``) are compared
  with the documents that hold the insight: citation score = F1 of precision and recall.
- Joint score of an insight = coverage × citation; the item's score is the mean joint
  score over its insights (the score the authors report).

Without a judge model the reply is marked ``needs_judge``; a judge reply that cannot be
read marks it ``error``. No score is ever guessed. The judge prompt is the lab's own
wording of the authors' instructions (labels ``FULL_COVERAGE``, ``PARTIAL_COVERAGE``,
``NO_COVERAGE`` and a bullet number, as JSON), versioned as :data:`PROMPT_VERSION`.
"""

from __future__ import annotations

import json
import re
from statistics import mean
from typing import Any

from lab import llm
from lab.judge import parse_json_object

from ._evaluation import Evaluation, not_scored

EVALUATOR = "lic-summary-summhay"
VERSION = "1"
FAMILY = "summary"
PROMPT_VERSION = "summhay-coverage-1"
MAX_WORDS = 300
PARTIAL = 0.5

Judge = tuple[str, dict[str, Any]]
"""A judge model: litellm model string and its parameters."""

PROMPT = """You compare a summary with one reference insight.

The summary is given as numbered bullet points.
Decide whether the reference insight is covered by the bullet points:
- "FULL_COVERAGE": a bullet states the insight completely;
- "PARTIAL_COVERAGE": a bullet states part of it, or states it only vaguely;
- "NO_COVERAGE": no bullet states it.
When it is covered, give the number of the bullet that covers it best.
Do not call an insight covered unless a bullet really states it.

Reference insight:
{insight}

Bullet points:
{bullets}

Reply with the JSON object only, nothing else:
{{"coverage": "FULL_COVERAGE" or "PARTIAL_COVERAGE" or "NO_COVERAGE",
 "bullet_id": the bullet's number, or "NA" when not covered}}"""

_CITATION = re.compile(r"\[([\d, ]+)\]")
_LABELS = ("FULL_COVERAGE", "PARTIAL_COVERAGE", "NO_COVERAGE")


def bullets(summary: str) -> tuple[list[str], float]:
    """The summary's lines, cut proportionally past :data:`MAX_WORDS` words; and the share cut."""
    lines = summary.split("\n")
    counts = [len(line.split()) for line in lines]
    total = sum(counts)
    if total <= MAX_WORDS:
        return lines, 0.0
    excess = (total - MAX_WORDS) / total
    cut = [
        line if n == 0 else " ".join(line.split()[: max(1, int(n * (1 - excess)))]) for line, n in zip(lines, counts, strict=True)
    ]
    return cut, excess


def citations(bullet: str) -> list[int]:
    """Document numbers cited in a bullet: ``[3]``, ``[3, 7]``, ``[3][7]``."""
    found: list[int] = []
    for group in _CITATION.findall(bullet):
        found += [int(part) for part in group.split(",") if part.strip()]
    return found


def prompts(gold: dict[str, Any], reply: str) -> list[tuple[str, str]]:
    """(insight id, judge prompt) for each reference insight of the item."""
    lines, _ = bullets(reply)
    listed = json.dumps({"bullets": [{"bullet_id": i + 1, "text": b} for i, b in enumerate(lines)]}, indent=1)
    return [
        (str(ins.get("insight_id")), PROMPT.format(insight=ins.get("insight", ""), bullets=listed)) for ins in gold["insights"]
    ]


def read_judgement(text: str) -> dict[str, Any] | None:
    """The judge's ``{coverage, bullet_id}``, or None when its reply holds no such object."""
    found = parse_json_object(text)
    if not found or str(found.get("coverage", "")).upper() not in _LABELS:
        return None
    return {"coverage": str(found["coverage"]).upper(), "bullet_id": found.get("bullet_id")}


def scores(gold: dict[str, Any], reply: str, judgements: list[dict[str, Any]]) -> dict[str, Any]:
    """Coverage, citation and joint scores from the judge's verdicts, as the authors compute them."""
    lines, trimmed = bullets(reply)
    refs: dict[str, Any] = gold.get("insightid2ref_citations") or {}
    coverage, citation, joint, precision, recall = [], [], [], [], []
    for judged in judgements:
        cov = cit = 0.0
        if judged["coverage"] in ("FULL_COVERAGE", "PARTIAL_COVERAGE"):
            cov = 1.0 if judged["coverage"] == "FULL_COVERAGE" else PARTIAL
            try:
                index = int(judged["bullet_id"])
            except (TypeError, ValueError):
                index = -1
            # As the authors index: bullet n is lines[n - 1], so an unreadable number (-1) reads lines[-2].
            try:
                bullet = lines[index - 1]
            except IndexError:
                bullet = ""
            cited = set(citations(bullet))
            wanted = set(refs.get(judged["insight_id"], []))
            p = len(cited & wanted) / len(cited) if cited else 0.0
            r = len(cited & wanted) / len(wanted) if wanted else 0.0
            cit = 2 * p * r / (p + r) if p + r else 0.0
            citation.append(cit)
            precision.append(p)
            recall.append(r)
        coverage.append(cov)
        joint.append(cov * cit)

    def avg(values: list[float]) -> float | None:
        return mean(values) if values else None

    return {
        "coverage_score": avg(coverage),
        "citation_score": avg(citation),
        "joint_score": avg(joint),
        "citation_precision": avg(precision),
        "citation_recall": avg(recall),
        "trim_ratio": trimmed,
    }


def _usable(gold: dict[str, Any]) -> bool:
    insights = gold.get("insights")
    return isinstance(insights, list) and bool(insights) and all(isinstance(i, dict) and i.get("insight") for i in insights)


def _question(judge: Judge, prompt: str) -> tuple[str, list[dict[str, str]], dict[str, Any]]:
    """The judge call that asks about one insight: model string, messages and parameters."""
    return judge[0], [{"role": "user", "content": prompt}], dict(judge[1])


def _judge_failed(judge: Judge, message: str) -> Evaluation:
    """The verdict when a call to the judge model fails (``message`` is the gateway's)."""
    return not_scored(FAMILY, EVALUATOR, VERSION, "error", f"The judge model failed: {message}", judge=judge[0])


def _finish(gold: dict[str, Any], reply: str, judge: Judge, replies: list[tuple[str, str]]) -> Evaluation:
    judgements: list[dict[str, Any]] = []
    for insight_id, text in replies:
        judged = read_judgement(text)
        if judged is None:
            return not_scored(
                FAMILY,
                EVALUATOR,
                VERSION,
                "error",
                f"The judge's reply on insight {insight_id} holds no coverage verdict.",
                judge=judge[0],
                prompt=PROMPT_VERSION,
                reply=text[:500],
            )
        judgements.append(judged | {"insight_id": insight_id})
    result = scores(gold, reply, judgements)
    value = result["joint_score"] or 0.0
    details = result | {"judge": judge[0], "prompt": PROMPT_VERSION, "insights": judgements}
    return Evaluation(
        FAMILY,
        EVALUATOR,
        VERSION,
        "scored",
        value,
        f"Joint coverage and citation score {value:.2f} over {len(judgements)} insights (judge {judge[0]}).",
        reply.strip(),
        details,
    )


def _needs(gold: dict[str, Any], judge: Judge | None) -> Evaluation | None:
    if not _usable(gold):
        return not_scored(FAMILY, EVALUATOR, VERSION, "not_scorable", "The item has no reference insights.")
    if judge is None:
        return not_scored(
            FAMILY, EVALUATOR, VERSION, "needs_judge", "Needs judge: the study names no judge model to score summaries."
        )
    return None


def evaluate(gold: dict[str, Any], reply: str, judge: Judge | None) -> Evaluation:
    """Score a summary with the judge model (blocks on the model calls; see :func:`aevaluate`)."""
    missing = _needs(gold, judge)
    if missing is not None:
        return missing
    assert judge is not None
    try:
        replies = [(insight_id, llm.complete(*_question(judge, prompt)).text) for insight_id, prompt in prompts(gold, reply)]
    except llm.ModelError as e:
        return _judge_failed(judge, e.message)
    return _finish(gold, reply, judge, replies)


async def aevaluate(gold: dict[str, Any], reply: str, judge: Judge | None) -> Evaluation:
    """Score a summary with the judge model without blocking the event loop."""
    missing = _needs(gold, judge)
    if missing is not None:
        return missing
    assert judge is not None
    try:
        replies = [
            (insight_id, (await llm.acomplete(*_question(judge, prompt))).text) for insight_id, prompt in prompts(gold, reply)
        ]
    except llm.ModelError as e:
        return _judge_failed(judge, e.message)
    return _finish(gold, reply, judge, replies)
