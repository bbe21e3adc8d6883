"""The live monitor's numbers: cheap aggregate reads that never hold a lock participants wait on.

Everything here reads with grouped counts over indexed columns (study, participant,
session ids) and returns plain dataclasses; the monitor page polls :func:`snapshot` every
few seconds. Participants appear as ``P<id>``: Prolific ids are never read here, so the
monitor is blind to them. The only write is :func:`time_out`, an experimenter's click.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from .assign import EXPIRABLE, current_fill, plan_length, release
from .schema import (
    PARTICIPANT_STATUSES,
    ChatSession,
    Condition,
    Event,
    ItemRow,
    Participant,
    Study,
    Turn,
    participant_conversation,
    real_participant,
    utcnow,
)
from .studies import definition

MEDIAN_WINDOW = 500
"""Most recent finished conversations the median time per item is taken over."""


@dataclass(frozen=True)
class CellRow:
    """One condition × item cell."""

    condition: str
    item: str
    planned: int
    """Live plans holding the cell."""
    started: int
    """Conversations begun in the cell."""
    ended: int
    """Conversations finished in the cell."""
    target: int
    """Conversations the cell needs for the target number of participants."""


@dataclass(frozen=True)
class TurnLine:
    """One turn as the monitor shows it."""

    role: str
    content: str
    partial: bool
    error: str | None


@dataclass(frozen=True)
class ConversationView:
    """A recent conversation, readable and blind to external ids."""

    session_id: int
    participant: str
    """``P<id>``, never a Prolific id."""
    kind: str
    """human, simulated or pilot."""
    condition: str
    item: str
    status: str
    outcome: str | None
    last_activity: datetime | None
    turns: list[TurnLine]


@dataclass(frozen=True)
class LiveParticipant:
    """A participant in the middle of the study."""

    id: int
    label: str
    status: str
    kind: str
    step: int
    """Conversations begun."""
    steps: int
    """Steps in the plan."""
    idle_minutes: float
    """Minutes since their last activity."""
    stale: bool
    """Inactive longer than the study's time limit."""


@dataclass(frozen=True)
class Snapshot:
    """Everything the live monitor shows for one study version."""

    slug: str
    version: int
    status: str
    by_status: dict[str, int]
    cells: list[CellRow]
    target_participants: int
    median_item_seconds: float | None
    """Median time from start to end of a finished conversation."""
    finished_conversations: int
    turns_last_hour: int
    error_turns_last_hour: int
    partial_turns_last_hour: int
    live: list[LiveParticipant]
    timeout_minutes: int
    taken_at: datetime = field(default_factory=utcnow)


def _utc(t: datetime) -> datetime:
    # SQLite returns naive datetimes; the lab only ever stores UTC.
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _aware(t: datetime | None) -> datetime | None:
    return None if t is None else _utc(t)


def participants_by_status(s: Session, study_id: int) -> dict[str, int]:
    """Participant counts for every status (zeros included), humans and simulated alike."""
    rows = s.execute(
        select(Participant.status, func.count())
        .where(Participant.study_id == study_id, real_participant())
        .group_by(Participant.status)
    ).all()
    counts = {status: 0 for status in PARTICIPANT_STATUSES}
    counts.update({status: n for status, n in rows})
    return counts


def default_target(s: Session, study: Study) -> int:
    """Participants a study aims for when the experimenter has not said: links issued, or those taking part."""
    links = (
        s.scalar(
            select(func.count())
            .select_from(Participant)
            .where(Participant.study_id == study.id, Participant.token_hash.is_not(None))
        )
        or 0
    )
    taking_part = (
        s.scalar(
            select(func.count())
            .select_from(Participant)
            .where(Participant.study_id == study.id, Participant.status.in_(("consented", "active", "completed")))
        )
        or 0
    )
    return max(links, taking_part)


def cell_targets(study: Study, target_participants: int) -> dict[tuple[str, str], int]:
    """Conversations each cell needs so that ``target_participants`` fill all cells evenly."""
    from .assign import cells

    d = definition(study)
    all_cells = cells(d)
    if not all_cells or target_participants <= 0:
        return {cell: 0 for cell in all_cells}
    if d.spec.plan.design == "between":
        conditions = list(dict.fromkeys(c for c, _ in all_cells))
        per_condition = target_participants / len(conditions)
        out = {}
        for c in conditions:
            own = [cell for cell in all_cells if cell[0] == c]
            k = min(d.spec.plan.items_per_participant or len(own), len(own))
            for cell in own:
                out[cell] = math.ceil(per_condition * k / len(own))
        return out
    slots = target_participants * plan_length(d)
    return {cell: math.ceil(slots / len(all_cells)) for cell in all_cells}


def cell_table(s: Session, study: Study, target_participants: int) -> list[CellRow]:
    """Planned, begun and finished conversations per cell against the target."""
    targets = cell_targets(study, target_participants)
    fill = current_fill(s, study)
    cond_keys = dict(s.execute(select(Condition.id, Condition.key).where(Condition.study_id == study.id)).all())
    item_keys = dict(s.execute(select(ItemRow.id, ItemRow.key).where(ItemRow.study_id == study.id)).all())
    rows = s.execute(
        select(
            ChatSession.condition_id,
            ChatSession.item_id,
            func.count(),
            func.sum(case((ChatSession.status == "ended", 1), else_=0)),
        )
        .where(ChatSession.study_id == study.id, participant_conversation())
        .group_by(ChatSession.condition_id, ChatSession.item_id)
    ).all()
    started: dict[tuple[str, str], tuple[int, int]] = {}
    for cond_id, item_id, n, ended in rows:
        started[(cond_keys.get(cond_id, "?"), item_keys.get(item_id, "?"))] = (int(n), int(ended or 0))
    keys = list(targets) + [cell for cell in started if cell not in targets]
    return [
        CellRow(
            c,
            i,
            fill.cells.get((c, i), 0),
            started.get((c, i), (0, 0))[0],
            started.get((c, i), (0, 0))[1],
            targets.get((c, i), 0),
        )
        for c, i in keys
    ]


def median_item_seconds(s: Session, study_id: int, window: int = MEDIAN_WINDOW) -> tuple[float | None, int]:
    """Median seconds per finished conversation over the most recent ``window``, and how many finished."""
    rows = s.execute(
        select(ChatSession.started_at, ChatSession.ended_at)
        .where(
            ChatSession.study_id == study_id,
            participant_conversation(),
            ChatSession.status == "ended",
            ChatSession.ended_at.is_not(None),
        )
        .order_by(ChatSession.ended_at.desc())
        .limit(window)
    ).all()
    finished = (
        s.scalar(
            select(func.count())
            .select_from(ChatSession)
            .where(ChatSession.study_id == study_id, participant_conversation(), ChatSession.status == "ended")
        )
        or 0
    )
    durations = [(_utc(end) - _utc(start)).total_seconds() for start, end in rows if start and end]
    return (statistics.median(durations) if durations else None), finished


def turn_problems(s: Session, study_id: int, since: datetime) -> tuple[int, int, int]:
    """Turns, error turns and partial turns of a study since a time."""
    row = s.execute(
        select(
            func.count(Turn.id),
            func.sum(case((Turn.error.is_not(None), 1), else_=0)),
            func.sum(case((Turn.partial.is_(True), 1), else_=0)),
        )
        .join(ChatSession, Turn.session_id == ChatSession.id)
        .where(ChatSession.study_id == study_id, participant_conversation(), Turn.sent_at >= since)
    ).one()
    return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)


def latest_conversations(s: Session, study_id: int, limit: int = 3, max_turns: int = 60) -> list[ConversationView]:
    """The conversations with the most recent turns, newest first."""
    last = (
        select(Turn.session_id, func.max(Turn.id).label("last"))
        .join(ChatSession, Turn.session_id == ChatSession.id)
        .where(ChatSession.study_id == study_id, participant_conversation())
        .group_by(Turn.session_id)
        .order_by(func.max(Turn.id).desc())
        .limit(limit)
    )
    ids = [sid for sid, _ in s.execute(last).all()]
    out = []
    for sid in ids:
        chat, participant_kind, cond_key, item_key = s.execute(
            select(ChatSession, Participant.kind, Condition.key, ItemRow.key)
            .join(Participant, ChatSession.participant_id == Participant.id)
            .join(Condition, ChatSession.condition_id == Condition.id)
            .join(ItemRow, ChatSession.item_id == ItemRow.id)
            .where(ChatSession.id == sid)
        ).one()
        turns = s.execute(
            select(Turn.role, Turn.content, Turn.partial, Turn.error, Turn.sent_at)
            .where(Turn.session_id == sid)
            .order_by(Turn.index.desc())
            .limit(max_turns)
        ).all()
        turns = list(reversed(turns))
        out.append(
            ConversationView(
                session_id=sid,
                participant=f"P{chat.participant_id}",
                kind=participant_kind,
                condition=cond_key,
                item=item_key,
                status=chat.status,
                outcome=chat.outcome,
                last_activity=_aware(turns[-1][4]) if turns else None,
                turns=[TurnLine(role, content, bool(partial), error) for role, content, partial, error, _ in turns],
            )
        )
    return out


def live_participants(s: Session, study: Study, now: datetime | None = None, limit: int = 50) -> list[LiveParticipant]:
    """Participants who consented and have not finished, longest idle first."""
    now = now or utcnow()
    minutes = int((study.spec.get("plan") or {}).get("timeout_minutes") or 90)
    live_ids = select(Participant.id).where(Participant.study_id == study.id, Participant.status.in_(("consented", "active")))
    last_event = (
        select(Event.participant_id.label("pid"), func.max(Event.created_at).label("t"))
        .where(Event.participant_id.in_(live_ids))
        .group_by(Event.participant_id)
        .subquery()
    )
    last_turn = (
        select(
            ChatSession.participant_id.label("pid"),
            func.max(Turn.sent_at).label("t"),
            func.count(func.distinct(ChatSession.id)).label("n"),
        )
        .join(Turn, Turn.session_id == ChatSession.id, isouter=True)
        .where(ChatSession.participant_id.in_(live_ids))
        .group_by(ChatSession.participant_id)
        .subquery()
    )
    rows = s.execute(
        select(
            Participant.id,
            Participant.status,
            Participant.kind,
            Participant.plan,
            Participant.updated_at,
            last_event.c.t,
            last_turn.c.t,
            last_turn.c.n,
        )
        .join(last_event, last_event.c.pid == Participant.id, isouter=True)
        .join(last_turn, last_turn.c.pid == Participant.id, isouter=True)
        .where(Participant.study_id == study.id, Participant.status.in_(("consented", "active")))
    ).all()
    out = []
    for pid, status, kind, plan, updated, t_event, t_turn, n in rows:
        times = [t for t in (_aware(updated), _aware(t_event), _aware(t_turn)) if t is not None]
        idle = (now - max(times)).total_seconds() / 60 if times else 0.0
        out.append(LiveParticipant(pid, f"P{pid}", status, kind, int(n or 0), len(plan or []), round(idle, 1), idle > minutes))
    out.sort(key=lambda p: -p.idle_minutes)
    return out[:limit]


def snapshot(s: Session, study: Study, target_participants: int | None = None, now: datetime | None = None) -> Snapshot:
    """Everything the monitor shows, read in one short session."""
    now = now or utcnow()
    target = default_target(s, study) if target_participants is None else target_participants
    median, finished = median_item_seconds(s, study.id)
    turns, errors, partial = turn_problems(s, study.id, now - timedelta(hours=1))
    return Snapshot(
        slug=study.slug,
        version=study.version,
        status=study.status,
        by_status=participants_by_status(s, study.id),
        cells=cell_table(s, study, target),
        target_participants=target,
        median_item_seconds=median,
        finished_conversations=finished,
        turns_last_hour=turns,
        error_turns_last_hour=errors,
        partial_turns_last_hour=partial,
        live=live_participants(s, study, now),
        timeout_minutes=int((study.spec.get("plan") or {}).get("timeout_minutes") or 90),
        taken_at=now,
    )


def time_out(s: Session, study: Study, participant_id: int, by: str) -> bool:
    """Time out a stuck participant of a study (the caller commits); their cells are free again.

    Args:
        s: Open session.
        study: The study version the participant belongs to.
        participant_id: The participant (``P<id>`` on the monitor).
        by: The experimenter's username, for the event log.

    Returns:
        False when the participant is not in this study or already finished or left.
    """
    p = s.get(Participant, participant_id)
    if p is None or p.study_id != study.id or p.status not in EXPIRABLE:
        return False
    return release(s, p, "timed_out", by=by)


STATUS_ORDER = ("invited", "consented", "active", "completed", "declined", "withdrawn", "timed_out")
"""Participant statuses in the order the monitor lists them."""

HEADLINE_STATUSES = ("consented", "active", "completed", "timed_out")
"""The statuses counted in the monitor's first row."""


@dataclass(frozen=True)
class Figure:
    """One headline number of the monitor."""

    label: str
    value: str | int
    help: str | None = None


def headline(snap: Snapshot) -> list[Figure]:
    """The monitor's two rows of four numbers: participants by status, then time and turns."""
    median = snap.median_item_seconds
    return [
        *(Figure(status.replace("_", " "), snap.by_status.get(status, 0)) for status in HEADLINE_STATUSES),
        Figure(
            "median time per item",
            f"{median / 60:.1f} min" if median is not None else "–",
            f"over {snap.finished_conversations} finished conversations",
        ),
        Figure("turns, last hour", snap.turns_last_hour),
        Figure("error turns, last hour", snap.error_turns_last_hour),
        Figure("partial turns, last hour", snap.partial_turns_last_hour),
    ]


def status_rows(snap: Snapshot) -> list[dict[str, object]]:
    """Participants by status, every status listed (zero too)."""
    return [{"status": k, "participants": snap.by_status.get(k, 0)} for k in STATUS_ORDER]


def cell_rows(snap: Snapshot) -> list[dict[str, object]]:
    """The cells as table rows: conversations planned, started and finished against the target."""
    return [
        {
            "condition": c.condition,
            "item": c.item,
            "planned": c.planned,
            "started": c.started,
            "finished": c.ended,
            "target": c.target,
        }
        for c in snap.cells
    ]


def cell_scale(snap: Snapshot) -> int:
    """The top of the cells' progress bars: the largest target or start count (at least 1)."""
    return max([c.target for c in snap.cells] + [c.started for c in snap.cells] + [1])


def run_lines(runs: list[Any], version: int, limit: int = 3) -> list[tuple[float, str]]:
    """``(fraction done, line)`` of the simulation runs worth showing: this version's, and any still running.

    Args:
        runs: :func:`lab.simulate.run_progress` rows, newest first.
        version: The study version the monitor shows.
        limit: Runs shown at most.
    """
    lines = []
    for r in [r for r in runs if r.version == version or not r.finished][:limit]:
        eta = f" · about {r.eta_seconds / 60:.0f} min left" if r.eta_seconds else ""
        rate = f" · {r.rate_per_minute:.1f}/min" if r.rate_per_minute else ""
        lines.append((r.fraction, f"{r.run_id} ({r.simulator}, v{r.version}): {r.ended} of {r.total} conversations{rate}{eta}"))
    return lines


def live_rows(snap: Snapshot) -> list[dict[str, object]]:
    """The participants in the middle of the study as table rows."""
    return [
        {
            "participant": p.label,
            "kind": p.kind,
            "status": p.status,
            "conversations": f"{p.step} of {p.steps}",
            "idle (min)": p.idle_minutes,
            "past time limit": p.stale,
        }
        for p in snap.live
    ]


def conversation_title(conv: ConversationView) -> str:
    """One line naming a recent conversation: who, under what condition, on which item, how far."""
    return f"{conv.participant} ({conv.kind}) · {conv.condition} · {conv.item} · {conv.status}"
