"""Answer rules: is an answer attempt right by the item's ``answer`` rule?

Lost in Conversation items are scored the way the task's authors score them
(:mod:`lab.scoring`, whose :func:`lab.scoring.score` sends math and other rule-scored items
here); this module knows the rules only and imports nothing of :mod:`lab.scoring`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from ._judgement import ASKING_CODES, STRATEGY_CODES
from ._text import BOXED, HASH_ANSWER, final_number, format_number, parse_number, read_reply

if TYPE_CHECKING:
    from lab.items import Answer, ClarificationItem, PresuppositionItem

NEEDS_JUDGE = "needs a human or LLM judge"
"""Reason given for answers that rules cannot score (``answer.type == "none"``)."""

_ANSWER_TEXT = re.compile(r"\banswer\s*(?:is|:|=)\s*(.+)", re.I)
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_DECOR = "*_`\"'“”‘’ \t"


@dataclass
class Score:
    """The automatic score of one reply against an item's gold answer."""

    value: float | None
    """1.0 correct, 0.0 wrong, None when not scorable."""

    scorable: bool
    """False when rules cannot score this item (a person or an LLM judge must)."""

    extracted: str | None
    """What was compared with the gold answer (a number written plainly, or text)."""

    method: str
    """The answer type used: ``number``, ``exact``, ``normalized``, ``choice`` or ``none``."""

    reason: str
    """One sentence saying why."""

    evaluator: str = "lab-answer-rules"
    """Which evaluator scored (``lic-code``, ``lic-actions-bfcl-ast``, … or the lab's answer rules)."""

    version: str = "1"
    """The evaluator's version."""

    status: str = "scored"
    """``scored``, ``deferred`` (scored once the reply is stored), ``needs_database``,
    ``needs_judge``, ``not_scorable`` or ``error``."""

    details: dict[str, Any] = field(default_factory=dict)
    """Evaluator-specific facts (BLEU, the parsed calls…)."""


@dataclass
class ClarificationScore:
    """Whether the assistant asked when it should have (clarification items)."""

    needed: bool
    """The item needs clarification."""

    asked: bool
    """The turn asked (``clarification`` or ``interrogation``)."""

    outcome: Literal["asked", "missed", "over_asked", "not_needed"]
    """``asked`` when needed, ``missed`` when needed but not asked, ``over_asked`` when not
    needed but asked, ``not_needed`` when neither needed nor asked."""

    value: float
    """1.0 when asking matched the need, else 0.0."""


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: lower-case, drop punctuation, drop articles, collapse spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _clean(text: str) -> str:
    text = text.strip().strip(_DECOR)
    text = re.sub(r"[.!]+$", "", text).strip().strip(_DECOR)
    return text


def extract_answer_text(reply: str) -> tuple[str, str]:
    r"""The part of a reply that states its answer, for text matching.

    In order: the text after the last ``####``; after the last "answer is" / "Answer:"
    (to the end of its sentence); inside the last ``\boxed{}``; the last bold span that is
    not a label ("**Note:**"); otherwise the reply's statements (questions and closing
    offers left out), or its last code block when it has no prose.

    Returns:
        The extracted text (Markdown and a final full stop removed) and how it was found.
    """
    reading = read_reply(reply)
    text = "\n".join(reading.prose_lines)
    for name, pattern in (("####", HASH_ANSWER), ("answer is", _ANSWER_TEXT), ("boxed", BOXED)):
        matches = list(pattern.finditer(text))
        if matches:
            found = matches[-1].group(1)
            if name == "answer is":
                found = re.split(r"(?<=[.!?])\s", found, maxsplit=1)[0]
            if _clean(found):
                return _clean(found), name
    for line in reversed(reading.prose_lines):
        spans = [m.group(1) for m in _BOLD.finditer(line) if not m.group(1).strip().endswith(":")]
        if spans:
            return _clean(spans[-1]), "bold"
    statements = " ".join(s.source for s in reading.statements)
    if statements.strip():
        return _clean(statements), "statements"
    if reading.code:
        return reading.code[-1].text.strip(), "code block"
    return _clean(reply), "reply"


def score_answer(answer: Answer, reply: str) -> Score:
    r"""Score a reply against an answer rule.

    - ``number``: the reply's final number (the number after "####", in ``\boxed{}`` or
      after "answer is" when present, else the last number in its statements) equals ``value`` or a number in ``accept``. "3,360",
      "$3,360.00" and "3360" are equal; "-7" and "−7" are negative; numbers in words are
      not read.
    - ``exact``: the extracted answer (:func:`extract_answer_text`) equals ``value`` or an
      ``accept`` entry, after trimming spaces, Markdown and a final full stop.
    - ``normalized``: equal after :func:`normalize_answer` on both sides.
    - ``choice``: one of ``accept`` (or ``value``) appears, as whole words after
      normalisation, in the extracted answer.
    - ``none``: not scorable.
    """
    if answer.type == "none":
        return Score(None, False, None, "none", NEEDS_JUDGE, status="not_scorable")
    golds = [g for g in [answer.value, *answer.accept] if g]
    if answer.type == "number":
        return _score_number(golds, reply)
    extracted, how = extract_answer_text(reply)
    if answer.type == "exact":
        hit = next((g for g in golds if _clean(g) == extracted), None)
        return _verdict("exact", extracted, hit, f"The extracted answer ({how})")
    if answer.type == "normalized":
        said = normalize_answer(extracted)
        hit = next((g for g in golds if normalize_answer(g) == said), None)
        return _verdict("normalized", extracted, hit, f"The extracted answer ({how}, normalised)")
    said = f" {normalize_answer(extracted)} "
    hit = next((g for g in golds if normalize_answer(g) and f" {normalize_answer(g)} " in said), None)
    return _verdict("choice", extracted, hit, f"The extracted answer ({how})")


def _verdict(method: str, extracted: str, hit: str | None, where: str) -> Score:
    if hit is not None:
        return Score(1.0, True, extracted, method, f"{where} matches the gold answer '{hit}'.")
    return Score(0.0, True, extracted, method, f"{where} '{_short(extracted)}' matches no gold answer.")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _score_number(golds: list[str], reply: str) -> Score:
    values: list[Decimal] = []
    for g in golds:
        value = parse_number(g)
        if value is None:
            return Score(None, False, None, "number", f"The gold answer '{g}' is not a number.", status="not_scorable")
        values.append(value)
    number, how = final_number(reply)
    if number is None:
        return Score(0.0, True, None, "number", "The reply contains no number.")
    said = number.plain()
    if any(number.value == v for v in values):
        return Score(1.0, True, said, "number", f"The final number ({how}) equals the gold answer.")
    gold = format_number(values[0])
    return Score(0.0, True, said, "number", f"The final number ({how}) is {said}, not {gold}.")


def score_probe(item: PresuppositionItem, reply: str) -> Score:
    """Score the reply to an item's direct knowledge probe (did the model know the fact?)."""
    if item.probe is None:
        return Score(None, False, None, "none", f"Item '{item.id}' has no knowledge probe.", status="not_scorable")
    return score_answer(item.probe.answer, reply)


def clarification_score(item: ClarificationItem, category: str) -> ClarificationScore:
    """Whether a turn's strategy fits the item's need for clarification.

    Args:
        item: The clarification item (``needs_clarification`` is the gold).
        category: The turn's layer-S category.

    Raises:
        ValueError: when ``category`` is not one of the seven layer-S categories.
    """
    if category not in STRATEGY_CODES:
        raise ValueError(f"category '{category}' is not one of {', '.join(STRATEGY_CODES)}")
    asked = category in ASKING_CODES
    needed = item.needs_clarification
    if needed:
        outcome: Literal["asked", "missed", "over_asked", "not_needed"] = "asked" if asked else "missed"
    else:
        outcome = "over_asked" if asked else "not_needed"
    return ClarificationScore(needed, asked, outcome, 1.0 if asked == needed else 0.0)
