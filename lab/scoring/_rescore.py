"""Scoring conversations: the last answer attempt, during a simulation and in batch.

Which reply is scored: the last assistant reply (not an error, not empty) that is an answer
attempt. Under FULL and CONCAT every reply is one (the authors' full simulator scores its
single reply unconditionally), and so is every reply in translation and summary (the authors
skip their turn classifier there); in the other families under SHARDED and the other
incremental modes the answer-attempt gate decides (:mod:`lab.scoring._gate`): the study's
judge model with the whole specification in view, as the authors' classifier, when the study
names one, else (and where the model abstains) the rule judge's layer-S category. A summary
is scored only once every shard is out (the authors evaluate only its final turn).

A Lost in Conversation conversation with no answer attempt scores 0, as published (the
authors' ``is_correct`` starts False); its evaluation says ``no_attempt`` so that the
"attempted only" view (``python -m lab metrics --attempted-only``) can leave it out.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab.items import parse_item
from lab.judge import RuleJudge
from lab.schema import ChatSession, Condition, ItemRow, Study, Turn, participant_conversation
from lab.spec import study_from_normalized
from lab.studies import no_study

from ._dispatch import EVERY_REPLY_ATTEMPTS, FAMILIES, aevaluate, evaluator_of, family_of
from ._evaluation import NOT_SCORED_REASONS, Evaluation, not_scored
from ._gate import LLMGate
from ._store import latest_scores, store

if TYPE_CHECKING:
    from lab.dialogue import Conversation
    from lab.items import Item

NO_ATTEMPT = "no answer attempt"
"""Reason shown for a conversation whose assistant never attempted an answer."""

SINGLE_TURN_REVEALS = frozenset({"FULL", "CONCAT"})
"""Reveal modes whose every reply is an answer attempt (the authors' ``simulator_full.py``
evaluates its one reply without classifying it)."""


class TurnLike(Protocol):
    """What attempt-finding reads of a turn (an ORM ``Turn`` or a ``TurnView``)."""

    @property
    def id(self) -> int:
        """The turn's id."""

    @property
    def index(self) -> int:
        """Its position in the conversation."""

    @property
    def role(self) -> str:
        """Who wrote it (``user``, ``assistant``…)."""

    @property
    def content(self) -> str:
        """Its text."""

    @property
    def error(self) -> str | None:
        """The model error, if the reply failed."""


def is_attempt(item: Item, family: str, content: str, code: str | None = None, reveal: str | None = None) -> bool:
    """Whether a reply is an answer attempt.

    Args:
        item: The conversation's item.
        family: Its task family.
        content: The reply.
        code: Its layer-S category when already known.
        reveal: The condition's reveal mode: under FULL and CONCAT every reply is an attempt.
    """
    if family in EVERY_REPLY_ATTEMPTS or (reveal in SINGLE_TURN_REVEALS and family in FAMILIES):
        return True
    if code is None:
        code = RuleJudge().classify(content, item=item).code
    return code == "answer_attempt"


def gated(family: str, reveal: str | None) -> bool:
    """Whether the answer-attempt gate decides for replies of this family under this reveal mode."""
    return family in FAMILIES and family not in EVERY_REPLY_ATTEMPTS and reveal not in SINGLE_TURN_REVEALS


def last_attempt(
    item: Item,
    turns: Sequence[TurnLike],
    verdicts: dict[int, tuple[str, float | None]] | None = None,
    reveal: str | None = None,
    gate: Callable[[Item, str], bool | None] | None = None,
) -> TurnLike | None:
    """The last assistant reply of ``turns`` that is an answer attempt (under ``reveal``), or None.

    Args:
        item: The conversation's item.
        turns: Its turns.
        verdicts: Layer-S categories already known, by turn id.
        reveal: The condition's reveal mode.
        gate: Decides gated replies first (:class:`LLMGate.decide`); the rules decide where it abstains.
    """
    family = family_of(item)
    if family is None:
        return None
    for t in reversed(turns):
        if t.role != "assistant" or t.error is not None or not t.content.strip():
            continue
        decided = gate(item, t.content) if gate is not None and gated(family, reveal) else None
        if decided is not None:
            if decided:
                return t
            continue
        known = (verdicts or {}).get(t.id)
        if is_attempt(item, family, t.content, known[0] if known else None, reveal):
            return t
    return None


def no_attempt_evaluation(family: str) -> Evaluation:
    """The evaluation of a conversation without an answer attempt.

    Lost in Conversation families score 0, as the authors' simulators do; other items
    (the lab's own answer rules) hold no score.
    """
    evaluator, version = evaluator_of(family)
    if family in FAMILIES:
        return Evaluation(
            family,
            evaluator,
            version,
            "scored",
            0.0,
            "The assistant made no answer attempt: 0, as published.",
            None,
            {"no_attempt": True},
        )
    return not_scored(family, evaluator, version, "not_scorable", "The assistant made no answer attempt.", no_attempt=True)


def conclude(conv: Conversation) -> Evaluation | None:
    """Store the published 0 of a finished conversation that never attempted an answer.

    Called as a simulated conversation ends (after :func:`settle` has scored its last reply).

    Returns:
        The evaluation stored, or None when the conversation has an attempt or nothing to score.
    """
    item = conv.item
    family = family_of(item)
    if family not in FAMILIES:
        return None
    if last_attempt(item, conv.turns, conv.verdicts, conv.reveal) is not None:
        return None
    ev = no_attempt_evaluation(family)
    with conv.engine.begin() as conn:
        store(conn, conv.session_id, conv.participant_id, None, ev)
    return ev


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
    decided = None
    if judge is not None and gated(family, conv.reveal):
        # The study names a judge model: it classifies the turn with the whole specification in view.
        decided = await LLMGate(judge[0], judge[1]).adecide(item, last.content)
    if decided is None:
        decided = is_attempt(item, family, last.content, known[0] if known else None, conv.reveal)
    if not decided:
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
    """Conversations with a score (a no-attempt 0 included)."""
    skipped: int = 0
    """Conversations left alone (``only_missing``: already scored by the current evaluator)."""
    not_scored: Counter[str] = field(default_factory=Counter)
    """Conversations without a score, by reason."""
    no_attempt: int = 0
    """Conversations without an answer attempt (scored 0 in Lost in Conversation families)."""
    by_family: dict[str, list[float]] = field(default_factory=dict)
    """Scores given, by task family."""
    without_gold: int = 0
    """Conversations on items with nothing to score against (no answer rule or task gold), not counted above."""


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
        UnknownStudy: no study with that slug.
    """
    return asyncio.run(_score_study(engine, slug, only_missing=only_missing, judge=judge, concurrency=concurrency))


async def _score_study(engine: Engine, slug: str, *, only_missing: bool, judge: str | None, concurrency: int) -> ScoreRun:
    run = ScoreRun()
    work: list[tuple[ChatSession, Item, TurnLike | None, tuple[str, dict[str, Any]] | None]] = []
    with Session(engine) as s:
        studies = list(s.scalars(select(Study).where(Study.slug == slug)))
        if not studies:
            raise no_study(s, slug)
        for study in studies:
            judge_model = study_judge(s, study, judge)
            items = {
                row.id: parse_item(row.payload, row.key) for row in s.scalars(select(ItemRow).where(ItemRow.study_id == study.id))
            }
            reveals = dict(s.execute(select(Condition.id, Condition.reveal).where(Condition.study_id == study.id)).all())
            chats = list(
                s.scalars(
                    select(ChatSession)
                    .where(ChatSession.study_id == study.id, participant_conversation())
                    .order_by(ChatSession.id)
                )
            )
            previous = latest_scores(s.connection(), [c.id for c in chats])
            for chat in chats:
                item = items[chat.item_id]
                family = family_of(item)
                if family is None:
                    run.without_gold += 1
                    continue
                run.conversations += 1
                turns = list(s.scalars(select(Turn).where(Turn.session_id == chat.id).order_by(Turn.index)))
                decide = LLMGate(judge_model[0], judge_model[1]).decide if judge_model is not None else None
                attempt = last_attempt(item, turns, reveal=reveals.get(chat.condition_id), gate=decide)
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
            ev = no_attempt_evaluation(family)
            run.no_attempt += 1
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
