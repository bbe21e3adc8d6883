"""Which evaluator scores an item, and running it (blocking or on an event loop)."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from . import _actions, _bleu, _code, _database, _summary
from ._evaluation import Evaluation, not_scored
from ._sandbox import Limits

if TYPE_CHECKING:
    from lab.items import Item

FAMILIES = ("code", "database", "actions", "data2text", "translation", "summary", "math")
"""The Lost in Conversation task families, each with the authors' evaluator."""

DEFERRED = frozenset({"code", "database", "summary"})
"""Families whose evaluator runs code, queries databases or calls a judge model: never
inside the transaction that stores a reply, always off the event loop."""

EVERY_REPLY_ATTEMPTS = frozenset({"translation", "summary"})
"""Families where every reply is an answer attempt (the authors skip the turn classifier)."""

MATH_EVALUATOR = "lab-answer-rules"
MATH_VERSION = "1"

_ALIASES = {"sql": "database", "gsm8k": "math", "function_calling": "actions", "python": "code", "totto": "data2text"}


def family_of(item: Item | None) -> str | None:
    """The task family of an item.

    Returns:
        A Lost in Conversation task, ``math`` for a number answer, ``other`` for any other
        item with an answer rule, or None when the item has nothing to score.
    """
    if item is None or item.kind == "presupposition":
        return None
    source = getattr(item, "source", None)
    task = (source.task or "").strip().lower() if source is not None else ""
    task = _ALIASES.get(task, task)
    if task in FAMILIES:
        return task
    answer = getattr(item, "answer", None)
    if answer is not None and answer.type == "number":
        return "math"
    if answer is not None and answer.type != "none":
        return "other"
    return None


def evaluator_of(family: str) -> tuple[str, str]:
    """(evaluator, version) that scores a family now."""
    return {
        "code": (_code.EVALUATOR, _code.VERSION),
        "database": (_database.EVALUATOR, _database.VERSION),
        "actions": (_actions.EVALUATOR, _actions.VERSION),
        "data2text": (_bleu.EVALUATORS["data2text"], _bleu.VERSION),
        "translation": (_bleu.EVALUATORS["translation"], _bleu.VERSION),
        "summary": (_summary.EVALUATOR, _summary.VERSION),
    }.get(family, (MATH_EVALUATOR, MATH_VERSION))


_AUTHORS_NUMBER = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")


def authors_math(reply: str, gold_answer: str) -> float | None:
    """The authors' GSM8K comparison (``task_math.evaluator_function``) applied to the reply.

    Their extraction asks a model for the final answer; here the last number-like token of
    the reply stands in for it. Both sides lose ``,``, ``$``, anything up to ``#### `` and a
    final ``.``, then must be the same string: ``42.0`` is not ``42``.

    Returns:
        1.0 or 0.0; None when the gold answer has no ``####`` line.
    """
    if "####" not in gold_answer:
        return None
    gold = gold_answer.split("####")[1].strip().lower()
    found = _AUTHORS_NUMBER.findall(reply.strip())
    if not found:
        return 0.0
    answer = next(m for m in found[-1] if m)
    if "$" in answer and answer.endswith(".00"):
        answer = answer.rstrip(".0")  # noqa: B005 - the authors' trim (rstrip(".00")), quirk included
    for pattern in (",", "\\$", "(?s).*#### ", "\\.$"):
        answer, gold = re.sub(pattern, "", answer), re.sub(pattern, "", gold)
    return 1.0 if answer == gold else 0.0


def _by_rule(item: Item, family: str, reply: str) -> Evaluation:
    """Math and other items: the lab's answer rules (final number, exact, normalized, choice).

    A Lost in Conversation math item's evaluation also records, as ``authors_value``, the
    authors' stricter string comparison (:func:`authors_math`), for ``--math-as-published``.
    """
    from lab.judge import score_answer

    sc = score_answer(item.answer, reply)  # type: ignore[union-attr]
    if not sc.scorable:
        return not_scored(family, MATH_EVALUATOR, MATH_VERSION, "not_scorable", sc.reason)
    details: dict[str, Any] = {"rule": sc.method}
    gold = (getattr(item, "gold", None) or {}).get("answer") if family == "math" else None
    if isinstance(gold, str) and (strict := authors_math(reply, gold)) is not None:
        details["authors_value"] = strict
    return Evaluation(family, MATH_EVALUATOR, MATH_VERSION, "scored", sc.value, sc.reason, sc.extracted, details)


def quick(item: Item, reply: str) -> Evaluation | None:
    """Score at once when the family's evaluator is cheap.

    Returns:
        The evaluation; None for :data:`DEFERRED` families and items with nothing to score.
    """
    family = family_of(item)
    if family is None or family in DEFERRED:
        return None
    gold = item.gold
    if family == "actions":
        return _actions.evaluate(gold, reply)
    if family in ("data2text", "translation"):
        return _bleu.evaluate(family, gold, reply)
    return _by_rule(item, family, reply)


def evaluate(item: Item, reply: str, *, judge: _summary.Judge | None = None, limits: Limits | None = None) -> Evaluation:
    """Score an answer attempt as the task's authors do (blocks: code runs, queries, judge calls).

    Args:
        item: The item.
        reply: The assistant's reply (the extraction is the task's own).
        judge: The study's judge model (``(model, params)``) for summaries.
        limits: Limits for running code.
    """
    family = family_of(item)
    if family is None:
        return not_scored("other", "none", "0", "not_scorable", "The item has no answer to score.")
    if family == "code":
        return _code.evaluate(item.gold, reply, limits)
    if family == "database":
        return _database.evaluate(item.gold, reply)
    if family == "summary":
        return _summary.evaluate(item.gold, reply, judge)
    found = quick(item, reply)
    assert found is not None
    return found


async def aevaluate(item: Item, reply: str, *, judge: _summary.Judge | None = None, limits: Limits | None = None) -> Evaluation:
    """:func:`evaluate` without blocking the event loop.

    Code and queries run in worker threads (code in its own process); judge calls are awaited.
    """
    family = family_of(item)
    if family == "code":
        return await _code.aevaluate(item.gold, reply, limits)
    if family == "database":
        return await asyncio.to_thread(_database.evaluate, item.gold, reply)
    if family == "summary":
        return await _summary.aevaluate(item.gold, reply, judge)
    return evaluate(item, reply, judge=judge, limits=limits)


def describe() -> list[dict[str, Any]]:
    """One row per family: evaluator, version, whether it waits for the reply to be stored."""
    return [
        {"family": f, "evaluator": evaluator_of(f)[0], "version": evaluator_of(f)[1], "deferred": f in DEFERRED} for f in FAMILIES
    ]
