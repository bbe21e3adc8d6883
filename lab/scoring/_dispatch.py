"""Which evaluator scores an item, and running it (blocking or on an event loop)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lab.judge import Score, score_answer

from . import _actions, _bleu, _code, _database, _summary
from ._evaluation import Evaluation, not_scored
from ._sandbox import Limits

if TYPE_CHECKING:
    from lab.items import Item

Run = Callable[["Item", str, "_summary.Judge | None", "Limits | None"], Evaluation]
"""``run(item, reply, judge, limits)``: score one answer attempt (may block)."""
ARun = Callable[["Item", str, "_summary.Judge | None", "Limits | None"], Awaitable[Evaluation]]
"""The same without blocking the event loop."""


@dataclass(frozen=True)
class Family:
    """A task family and the evaluator that scores its items."""

    evaluator: str
    """The evaluator's name, stored with every score."""
    version: str
    """The evaluator's version, stored with every score."""
    run: Run
    """Scores one answer attempt."""
    arun: ARun | None = None
    """Scores one answer attempt off the event loop (None: :attr:`run` is cheap enough to call there)."""
    deferred: bool = False
    """True when :attr:`run` runs code, queries a database or calls a model: it is then never
    called inside the transaction that stores a reply, always off the event loop."""
    every_reply_attempts: bool = False
    """True when every reply is an answer attempt (the authors skip the turn classifier)."""


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
    sc = score_answer(item.answer, reply)  # type: ignore[union-attr]
    if not sc.scorable:
        return not_scored(family, MATH_EVALUATOR, MATH_VERSION, "not_scorable", sc.reason)
    details: dict[str, Any] = {"rule": sc.method}
    gold = (getattr(item, "gold", None) or {}).get("answer") if family == "math" else None
    if isinstance(gold, str) and (strict := authors_math(reply, gold)) is not None:
        details["authors_value"] = strict
    return Evaluation(family, MATH_EVALUATOR, MATH_VERSION, "scored", sc.value, sc.reason, sc.extracted, details)


async def _database_off_loop(item: Item, reply: str, judge: _summary.Judge | None, limits: Limits | None) -> Evaluation:
    return await asyncio.to_thread(_database.evaluate, item.gold, reply)


MATH_EVALUATOR = "lab-answer-rules"
MATH_VERSION = "1"

TASK_FAMILIES: dict[str, Family] = {
    "code": Family(
        _code.EVALUATOR,
        _code.VERSION,
        lambda item, reply, judge, limits: _code.evaluate(item.gold, reply, limits),
        lambda item, reply, judge, limits: _code.aevaluate(item.gold, reply, limits),
        deferred=True,
    ),
    "database": Family(
        _database.EVALUATOR,
        _database.VERSION,
        lambda item, reply, judge, limits: _database.evaluate(item.gold, reply),
        _database_off_loop,
        deferred=True,
    ),
    "actions": Family(
        _actions.EVALUATOR, _actions.VERSION, lambda item, reply, judge, limits: _actions.evaluate(item.gold, reply)
    ),
    "data2text": Family(
        _bleu.EVALUATORS["data2text"],
        _bleu.VERSION,
        lambda item, reply, judge, limits: _bleu.evaluate("data2text", item.gold, reply),
    ),
    "translation": Family(
        _bleu.EVALUATORS["translation"],
        _bleu.VERSION,
        lambda item, reply, judge, limits: _bleu.evaluate("translation", item.gold, reply),
        every_reply_attempts=True,
    ),
    "summary": Family(
        _summary.EVALUATOR,
        _summary.VERSION,
        lambda item, reply, judge, limits: _summary.evaluate(item.gold, reply, judge),
        lambda item, reply, judge, limits: _summary.aevaluate(item.gold, reply, judge),
        deferred=True,
        every_reply_attempts=True,
    ),
    "math": Family(MATH_EVALUATOR, MATH_VERSION, lambda item, reply, judge, limits: _by_rule(item, "math", reply)),
}
"""The task families by name (the Lost in Conversation tasks, each with the authors' evaluator,
and math by the lab's answer rules); an item's ``source.task`` names its family."""

FAMILIES = tuple(TASK_FAMILIES)
"""The task families' names."""

DEFERRED = frozenset(name for name, f in TASK_FAMILIES.items() if f.deferred)
"""Families whose evaluator runs code, queries databases or calls a judge model: never
inside the transaction that stores a reply, always off the event loop."""

EVERY_REPLY_ATTEMPTS = frozenset(name for name, f in TASK_FAMILIES.items() if f.every_reply_attempts)
"""Families where every reply is an answer attempt (the authors skip the turn classifier)."""

DEFERRED_REASON = "scored after the reply is stored"
"""Reason given for code, database and summary replies, whose evaluators run code, query a
database or call a judge model (``python -m lab score SLUG``, or the simulation itself)."""

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
    """(evaluator, version) that scores a family now (the answer rules for ``other``)."""
    found = TASK_FAMILIES.get(family, TASK_FAMILIES["math"])
    return found.evaluator, found.version


def quick(item: Item, reply: str) -> Evaluation | None:
    """Score at once when the family's evaluator is cheap.

    Returns:
        The evaluation; None for :data:`DEFERRED` families and items with nothing to score.
    """
    family = family_of(item)
    if family is None or family in DEFERRED:
        return None
    if family not in TASK_FAMILIES:
        return _by_rule(item, family, reply)
    return TASK_FAMILIES[family].run(item, reply, None, None)


def score(item: Item, reply: str) -> Score:
    """Score an answer attempt against the item's gold answer.

    Lost in Conversation items are scored by their task's evaluator:
    actions, data2text and translation here and now; code, database and summary are
    returned unscored with status ``deferred`` (their evaluators run code, query a database
    or call a judge model, which must not happen while a reply is being stored). Math and
    every other sharded, clarification and open item are scored by their ``answer`` rule
    (see :func:`lab.judge.score_answer`). Presupposition items are labelled on layer P instead; their
    knowledge probe is scored by :func:`lab.judge.score_probe`.
    """
    if item.kind == "presupposition":
        return Score(
            None,
            False,
            None,
            "none",
            "Presupposition items are labelled on layer P; score the knowledge probe with score_probe.",
            status="not_scorable",
        )
    family = family_of(item)
    if family in DEFERRED:
        evaluator, version = evaluator_of(family)
        return Score(None, False, None, family, DEFERRED_REASON, evaluator, version, "deferred")
    if family in ("actions", "data2text", "translation"):
        ev = quick(item, reply)
        assert ev is not None
        return Score(ev.value, ev.scored, ev.extracted, family, ev.reason, ev.evaluator, ev.version, ev.status, ev.details)
    return score_answer(item.answer, reply)


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
    if family in DEFERRED:
        return TASK_FAMILIES[family].run(item, reply, judge, limits)
    found = quick(item, reply)
    assert found is not None
    return found


async def aevaluate(item: Item, reply: str, *, judge: _summary.Judge | None = None, limits: Limits | None = None) -> Evaluation:
    """:func:`evaluate` without blocking the event loop.

    Code and queries run in worker threads (code in its own process); judge calls are awaited.
    """
    family = family_of(item)
    arun = TASK_FAMILIES[family].arun if family in TASK_FAMILIES else None
    if arun is not None:
        return await arun(item, reply, judge, limits)
    return evaluate(item, reply, judge=judge, limits=limits)


def describe() -> list[dict[str, Any]]:
    """One row per family: evaluator, version, whether it waits for the reply to be stored."""
    return [
        {"family": f, "evaluator": evaluator_of(f)[0], "version": evaluator_of(f)[1], "deferred": f in DEFERRED} for f in FAMILIES
    ]
