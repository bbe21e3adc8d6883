"""Scoring conversations: the last answer attempt, during a simulation and in batch.

Which reply is scored: the last assistant reply (not an error, not empty) that is an answer
attempt. In translation and summary every reply is one, as in the authors' simulator; in the
other families the rule judge's layer-S category decides (``answer_attempt``). A summary is
scored only once every shard is out (the authors evaluate only its final turn).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab.items import parse_item
from lab.judge import RuleJudge
from lab.schema import ChatSession, ItemRow, Study, Turn
from lab.spec import study_from_normalized

from ._dispatch import EVERY_REPLY_ATTEMPTS, aevaluate, evaluator_of, family_of
from ._evaluation import NOT_SCORED_REASONS, Evaluation, not_scored
from ._store import latest_scores, store

if TYPE_CHECKING:
    from lab.dialogue import Conversation
    from lab.items import Item

NO_ATTEMPT = "no answer attempt"
"""Reason shown for a conversation whose assistant never attempted an answer."""


class TurnLike(Protocol):
    """What attempt-finding reads of a turn (an ORM ``Turn`` or a ``TurnView``)."""

    id: int
    index: int
    role: str
    content: str
    error: str | None


def is_attempt(item: Item, family: str, content: str, code: str | None = None) -> bool:
    """Whether a reply is an answer attempt (``code``: its layer-S category when already known)."""
    if family in EVERY_REPLY_ATTEMPTS:
        return True
    if code is None:
        code = RuleJudge().classify(content, item=item).code
    return code == "answer_attempt"


def last_attempt(
    item: Item, turns: Sequence[TurnLike], verdicts: dict[int, tuple[str, float | None]] | None = None
) -> TurnLike | None:
    """The last assistant reply of ``turns`` that is an answer attempt, or None."""
    family = family_of(item)
    if family is None:
        return None
    for t in reversed(turns):
        if t.role != "assistant" or t.error is not None or not t.content.strip():
            continue
        known = (verdicts or {}).get(t.id)
        if is_attempt(item, family, t.content, known[0] if known else None):
            return t
    return None


_SETTLED: WeakKeyDictionary[Engine, dict[int, int]] = WeakKeyDictionary()
"""Per database, the newest reply of each conversation already looked at by :func:`settle`."""


async def settle(conv: Conversation, judge: tuple[str, dict[str, Any]] | None = None) -> Evaluation | None:
    """Score a simulated conversation's newest reply when it is an answer attempt; store it.

    Called by the simulation before it decides whether the conversation ends, so that a
    correct code or SQL attempt ends it as a correct math answer does. Code runs in a child
    process watched from a worker thread, queries in a worker thread, judge calls are
    awaited: the event loop goes on meanwhile.

    Args:
        conv: The conversation (its ``verdicts`` receive the score).
        judge: The study's judge model, for summaries.

    Returns:
        The evaluation stored, or None when the newest reply needed none.
    """
    item = conv.item
    family = family_of(item)
    if family is None:
        return None
    last = next((t for t in reversed(conv.turns) if t.role == "assistant"), None)
    if last is None or last.error is not None or not last.content.strip():
        return None
    seen = _SETTLED.setdefault(conv.engine, {})
    if seen.get(conv.session_id) == last.id:
        return None
    seen[conv.session_id] = last.id
    known = conv.verdicts.get(last.id)
    if not is_attempt(item, family, last.content, known[0] if known else None):
        return None
    if family == "summary" and conv.remaining:
        return None
    ev = await aevaluate(item, last.content, judge=judge)
    with conv.engine.begin() as conn:
        store(conn, conv.session_id, conv.participant_id, (last.id, last.index), ev)
    conv.verdicts[last.id] = ("answer_attempt", ev.value if ev.scored else None)
    return ev


@dataclass
class ScoreRun:
    """What :func:`score_study` did."""

    conversations: int = 0
    """Conversations of the study looked at."""
    scored: int = 0
    """Conversations whose last answer attempt got a score."""
    skipped: int = 0
    """Conversations left alone (``only_missing``: already scored by the current evaluator)."""
    not_scored: Counter[str] = field(default_factory=Counter)
    """Conversations without a score, by reason."""
    by_family: dict[str, list[float]] = field(default_factory=dict)
    """Scores given, by task family."""


def study_judge(s: Session, study: Study, override: str | None = None) -> tuple[str, dict[str, Any]] | None:
    """The judge model for summaries.

    Returns:
        ``override`` (a model id of the spec or a litellm string), else the spec's
        ``judge.model``, as ``(model, params)``; None without one.
    """
    d = study_from_normalized(study.spec)
    name = override or d.spec.judge.model
    if not name:
        return None
    spec = d.spec.models.get(name)
    return (spec.model, dict(spec.params)) if spec is not None else (name, {})


def score_study(
    engine: Engine, slug: str, *, only_missing: bool = False, judge: str | None = None, concurrency: int = 4
) -> ScoreRun:
    """Score the last answer attempt of every conversation of a study (all versions), again.

    Args:
        engine: The lab database.
        slug: The study.
        only_missing: Leave conversations already scored by the current version of their
            family's evaluator (those not scored, or scored by an older evaluator, are done).
        judge: Judge model for summaries instead of the spec's.
        concurrency: Conversations evaluated at once.

    Raises:
        LookupError: no study with that slug.
    """
    return asyncio.run(_score_study(engine, slug, only_missing=only_missing, judge=judge, concurrency=concurrency))


async def _score_study(engine: Engine, slug: str, *, only_missing: bool, judge: str | None, concurrency: int) -> ScoreRun:
    run = ScoreRun()
    work: list[tuple[ChatSession, Item, TurnLike | None, tuple[str, dict[str, Any]] | None]] = []
    with Session(engine) as s:
        studies = list(s.scalars(select(Study).where(Study.slug == slug)))
        if not studies:
            raise LookupError(f"no study '{slug}'")
        for study in studies:
            judge_model = study_judge(s, study, judge)
            items = {
                row.id: parse_item(row.payload, row.key) for row in s.scalars(select(ItemRow).where(ItemRow.study_id == study.id))
            }
            chats = list(s.scalars(select(ChatSession).where(ChatSession.study_id == study.id).order_by(ChatSession.id)))
            previous = latest_scores(s.connection(), [c.id for c in chats])
            for chat in chats:
                item = items[chat.item_id]
                family = family_of(item)
                if family is None:
                    continue
                run.conversations += 1
                turns = list(s.scalars(select(Turn).where(Turn.session_id == chat.id).order_by(Turn.index)))
                attempt = last_attempt(item, turns)
                old = previous.get(chat.id)
                if only_missing and old and _current(old, family) and old.get("turn_id") == (attempt.id if attempt else None):
                    run.skipped += 1
                    continue
                s.expunge(chat)
                work.append((chat, item, attempt, judge_model))
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(
        chat: ChatSession, item: Item, attempt: TurnLike | None, judge_model: tuple[str, dict[str, Any]] | None
    ) -> None:
        family = family_of(item) or "other"
        if attempt is None:
            evaluator, version = evaluator_of(family)
            ev = not_scored(family, evaluator, version, "not_scorable", "The assistant made no answer attempt.", no_attempt=True)
        else:
            async with gate:
                ev = await aevaluate(item, attempt.content, judge=judge_model)
        with engine.begin() as conn:
            store(conn, chat.id, chat.participant_id, (attempt.id, attempt.index) if attempt else None, ev)
        if ev.scored:
            run.scored += 1
            run.by_family.setdefault(family, []).append(float(ev.value or 0.0))
        else:
            run.not_scored[reason_of(ev.record())] += 1

    await asyncio.gather(*(one(*w) for w in work))
    return run


def _current(record: dict[str, Any], family: str) -> bool:
    evaluator, version = evaluator_of(family)
    return record.get("evaluator") == evaluator and record.get("version") == version and record.get("status") == "scored"


def reason_of(record: dict[str, Any]) -> str:
    """The short reason a stored evaluation holds no score."""
    if (record.get("details") or {}).get("no_attempt"):
        return NO_ATTEMPT
    return NOT_SCORED_REASONS.get(str(record.get("status")), str(record.get("status")))
