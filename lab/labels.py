"""Labels on turns, from people and automatic judges; a newer label supersedes, never overwrites."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from .items import PresuppositionItem
from .judge import RuleJudge, classify_presupposition, label_annotator
from .schema import ChatSession, Label
from .scoring import family_of, is_attempt, score

_LABELS = Label.__table__
_SESSIONS = ChatSession.__table__

if TYPE_CHECKING:
    from .dialogue import Conversation
    from .judge import Judgement


def add_label(
    s: Session,
    turn_id: int,
    annotator: str,
    layer: str,
    code: str,
    *,
    confidence: float | None = None,
    account_id: int | None = None,
    meta: dict[str, Any] | None = None,
    target_turn_id: int | None = None,
    span: tuple[int, int] | None = None,
) -> Label:
    """Add a label; it supersedes the same annotator's latest label on that turn and layer."""
    previous = s.scalar(
        select(Label)
        .where(Label.turn_id == turn_id, Label.annotator == annotator, Label.layer == layer)
        .order_by(Label.id.desc())
        .limit(1)
    )
    label = Label(
        turn_id=turn_id,
        annotator=annotator,
        account_id=account_id,
        layer=layer,
        code=code,
        confidence=confidence,
        meta=meta,
        target_turn_id=target_turn_id,
        span_start=span[0] if span else None,
        span_end=span[1] if span else None,
        supersedes_id=previous.id if previous is not None else None,
    )
    s.add(label)
    s.flush()
    return label


def newest_label_id(s: Session) -> int:
    """The id of the newest label in the lab (0 without labels): it changes whenever a label is added."""
    return s.scalar(select(func.max(Label.id))) or 0


def current_labels(s: Session, turn_id: int) -> list[Label]:
    """Each annotator's latest label per layer on a turn."""
    rows = s.scalars(select(Label).where(Label.turn_id == turn_id).order_by(Label.id)).all()
    superseded = {r.supersedes_id for r in rows if r.supersedes_id is not None}
    return [r for r in rows if r.id not in superseded]


def store_judgement(s: Session, turn_id: int, j: Judgement) -> Label | None:
    """Store a judge's output as an ``auto:<judge>`` label (nothing for a failed judgement)."""
    if j.error:
        return None
    return add_label(s, turn_id, label_annotator(j), j.layer, j.code, confidence=j.confidence, meta=_meta(j))


def _meta(j: Judgement) -> dict[str, Any]:
    meta: dict[str, Any] = {"judge": j.judge, "version": j.version, "model": j.model, "rules": j.rules, "reason": j.reason}
    if j.extracted is not None:
        meta["extracted"] = j.extracted
    if j.n_questions is not None:
        meta["n_questions"] = j.n_questions
    return meta


@dataclass(frozen=True)
class AutoLabels:
    """The rule judge's verdict on a reply, and the writes that store it."""

    code: str
    """Layer-S category of the reply."""
    score: float | None
    """Score of the reply when it is a scorable answer attempt."""
    write: Callable[[Connection, int], None]
    """Stores the labels (and the conversation's score) in the reply's transaction."""


def auto_labels(conv: Conversation, content: str) -> AutoLabels:
    """Judge a reply with the rule-based judge; the writes go into the reply's transaction.

    Layer S on every reply; layer P on replies to presupposition items. The conversation's
    score becomes the score of its last answer attempt. The reply is new, so no earlier
    label of these annotators exists to supersede.
    """
    judgements = [RuleJudge().classify(content, item=conv.item)]
    if isinstance(conv.item, PresuppositionItem):
        judgements.append(classify_presupposition(conv.item, content, conv.condition.presupposition == "control"))
    value = None
    family = family_of(conv.item)
    if family is not None and is_attempt(conv.item, family, content, judgements[0].code, conv.reveal):
        sc = score(conv.item, content)
        value = sc.value if sc.scorable else None
    rows = [
        {"annotator": label_annotator(j), "layer": j.layer, "code": j.code, "confidence": j.confidence, "meta": _meta(j)}
        for j in judgements
        if not j.error
    ]

    def write(conn: Connection, turn_id: int) -> None:
        if rows:
            conn.execute(_LABELS.insert(), [row | {"turn_id": turn_id} for row in rows])
        if value is not None:
            conn.execute(_SESSIONS.update().where(_SESSIONS.c.id == conv.session_id), {"score": value})

    return AutoLabels(judgements[0].code, value, write)
