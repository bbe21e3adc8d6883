"""Labels on turns, from people and automatic judges; a newer label supersedes, never overwrites."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import Session

from .items import PresuppositionItem
from .schema import ChatSession, Label

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


def current_labels(s: Session, turn_id: int) -> list[Label]:
    """Each annotator's latest label per layer on a turn."""
    rows = s.scalars(select(Label).where(Label.turn_id == turn_id).order_by(Label.id)).all()
    superseded = {r.supersedes_id for r in rows if r.supersedes_id is not None}
    return [r for r in rows if r.id not in superseded]


def store_judgement(s: Session, turn_id: int, j: Judgement) -> Label | None:
    """Store a judge's output as an ``auto:<judge>`` label (nothing for a failed judgement)."""
    from .judge import label_annotator

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
    from .judge import RuleJudge, classify_presupposition, label_annotator, score

    judgements = [RuleJudge().classify(content, item=conv.item)]
    if isinstance(conv.item, PresuppositionItem):
        judgements.append(classify_presupposition(conv.item, content, conv.condition.presupposition == "control"))
    value = None
    if judgements[0].code == "answer_attempt":
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


@dataclass(frozen=True)
class JudgeRun:
    """What :func:`judge_study` did."""

    judge: str
    turns: int
    labelled: int
    failed: int


def judge_study(engine: Engine, slug: str, model: str | None = None, *, redo: bool = False) -> JudgeRun:
    """Label every assistant reply of a study (all versions) with a judge, in batch.

    Args:
        engine: The lab database.
        slug: The study.
        model: A model id of the study's spec or a litellm string for the LLM judge; None
            uses the spec's ``judge.model``, and without one the rule-based judge.
        redo: Label turns again even when this judge already labelled them.

    Returns:
        Counts; replies the judge could not label are counted as failed and left unlabelled.
    """
    from .judge import LLMJudge, RuleJudge, get_judge
    from .schema import Study, Turn
    from .studies import definition

    with Session(engine) as s:
        studies = s.scalars(select(Study).where(Study.slug == slug).order_by(Study.version)).all()
        if not studies:
            raise LookupError(f"no study with slug '{slug}'")
        d = definition(studies[-1])
        key = model or d.spec.judge.model
        if key is not None and key in d.spec.models:
            judge = LLMJudge(d.spec.models[key].model, d.spec.models[key].params)
        else:
            judge = get_judge(key) if key else RuleJudge()
        rows = s.execute(
            select(Turn.id, Turn.content, ChatSession.id)
            .join(ChatSession, Turn.session_id == ChatSession.id)
            .where(ChatSession.study_id.in_([st.id for st in studies]), Turn.role == "assistant", Turn.error.is_(None))
            .order_by(Turn.id)
        ).all()
    annotator = "auto:rules" if isinstance(judge, RuleJudge) else f"auto:llm:{judge.model}"
    labelled = failed = 0
    items: dict[int, tuple[Any, str | None]] = {}
    for turn_id, content, session_id in rows:
        with Session(engine) as s, s.begin():
            if not redo and s.scalar(select(Label.id).where(Label.turn_id == turn_id, Label.annotator == annotator, Label.layer == "S").limit(1)):
                continue
            if session_id not in items:
                items[session_id] = _session_item(s, session_id)
            item, presupposition = items[session_id]
            j = judge.classify(content, item=item)
            if j.error:
                failed += 1
                continue
            store_judgement(s, turn_id, j)
            if isinstance(item, PresuppositionItem):
                pj = judge.classify_presupposition(item, content, presupposition == "control")
                if not pj.error:
                    store_judgement(s, turn_id, pj)
            labelled += 1
    return JudgeRun(annotator, len(rows), labelled, failed)


def _session_item(s: Session, session_id: int) -> tuple[Any, str | None]:
    from .items import parse_item
    from .schema import Condition, ItemRow

    chat = s.get(ChatSession, session_id)
    assert chat is not None
    row = s.get(ItemRow, chat.item_id)
    cond = s.get(Condition, chat.condition_id)
    assert row is not None and cond is not None
    return parse_item(row.payload, row.key), cond.presupposition
