"""Where scores are kept: the conversation's ``score`` and an append-only ``task_score`` event.

``session.score`` holds the score of the conversation's last answer attempt (0 for a Lost in
Conversation conversation without one, as published; None when it is not scored).
Each evaluation also appends an event of kind :data:`SCORE_EVENT` whose data is
:meth:`Evaluation.record` plus the turn it scored, so every score says which evaluator (and
version) made it and why; a re-score appends, and the newest event is the current one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select

from lab.schema import ChatSession, Event

from ._evaluation import Evaluation

SCORE_EVENT = "task_score"
"""Event kind of a stored evaluation."""

_EVENTS = Event.__table__
_SESSIONS = ChatSession.__table__


def store(conn: Connection, session_id: int, participant_id: int | None, turn: tuple[int, int] | None, ev: Evaluation) -> None:
    """Record an evaluation of a conversation's last answer attempt (in the caller's transaction).

    Args:
        conn: An open transaction.
        session_id: The conversation.
        participant_id: Its participant.
        turn: (turn id, turn index) of the reply scored, or None when no reply was an attempt.
        ev: The evaluation.
    """
    data: dict[str, Any] = ev.record() | {"turn_id": turn[0] if turn else None, "turn_index": turn[1] if turn else None}
    conn.execute(
        _EVENTS.insert(), {"participant_id": participant_id, "session_id": session_id, "kind": SCORE_EVENT, "data": data}
    )
    conn.execute(_SESSIONS.update().where(_SESSIONS.c.id == session_id), {"score": ev.value if ev.scored else None})


def latest_scores(conn: Connection, session_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The newest stored evaluation of each conversation that has one."""
    ids = list(session_ids)
    found: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = conn.execute(
            select(_EVENTS.c.session_id, _EVENTS.c.data)
            .where(_EVENTS.c.kind == SCORE_EVENT, _EVENTS.c.session_id.in_(chunk))
            .order_by(_EVENTS.c.id)
        )
        for sid, data in rows:
            found[sid] = data or {}
    return found
