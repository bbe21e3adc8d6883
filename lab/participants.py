"""Participants: people from a link, simulated users and experimenters' pilots."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from .schema import Event, Participant, Study, utcnow

_PARTICIPANTS = Participant.__table__
_EVENTS = Event.__table__

KINDS = ("human", "simulated", "pilot")
"""human: from a link; simulated: a user simulator; pilot: an experimenter trying the study."""


def hash_token(token: str) -> str:
    """The stored form of a link token (sha256 hex); tokens are never stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """An unguessable link token (256 bits)."""
    return secrets.token_urlsafe(32)


def create_participant(
    s: Session,
    study: Study,
    *,
    kind: str = "human",
    token: str | None = None,
    status: str = "invited",
    simulator: dict[str, Any] | None = None,
    prolific: dict[str, str] | None = None,
) -> Participant:
    """Add a participant to a study version (the caller commits).

    Args:
        s: Open session.
        study: The study version.
        kind: human, simulated or pilot.
        token: Personal link token; only its hash is stored.
        status: Initial status.
        simulator: Simulator model, prompt version and persona for simulated users.
        prolific: ``PROLIFIC_PID``, ``STUDY_ID``, ``SESSION_ID`` from the URL.
    """
    if kind not in KINDS:
        raise ValueError(f"participant kind must be one of {', '.join(KINDS)}")
    prolific = prolific or {}
    p = Participant(
        study_id=study.id,
        kind=kind,
        token_hash=hash_token(token) if token else None,
        status=status,
        simulator=simulator,
        prolific_pid=prolific.get("PROLIFIC_PID"),
        prolific_study_id=prolific.get("STUDY_ID"),
        prolific_session_id=prolific.get("SESSION_ID"),
    )
    s.add(p)
    s.flush()
    s.add(Event(participant_id=p.id, kind="created", data={"kind": kind}))
    return p


def insert_participant(
    conn: Connection,
    study_id: int,
    *,
    kind: str,
    status: str,
    simulator: dict[str, Any] | None = None,
    position: int = 0,
) -> int:
    """Add a participant without the ORM (the caller commits); returns its id.

    For callers that create many at once (simulation grids); the row and its ``created``
    event are those :func:`create_participant` writes.
    """
    if kind not in KINDS:
        raise ValueError(f"participant kind must be one of {', '.join(KINDS)}")
    pid = conn.execute(
        _PARTICIPANTS.insert().returning(_PARTICIPANTS.c.id),
        {"study_id": study_id, "kind": kind, "status": status, "simulator": simulator, "position": position},
    ).scalar_one()
    conn.execute(_EVENTS.insert(), {"participant_id": pid, "kind": "created", "data": {"kind": kind}})
    return pid


def mark_completed(conn: Connection, participant_id: int) -> None:
    """Mark a participant completed, once (the caller commits)."""
    now = utcnow()
    conn.execute(
        _PARTICIPANTS.update()
        .where(_PARTICIPANTS.c.id == participant_id, _PARTICIPANTS.c.status != "completed")
        .values(status="completed", completed_at=now, updated_at=now)
    )


def by_token(s: Session, token: str) -> Participant | None:
    """The participant a link token belongs to."""
    if not token or len(token) > 200:
        return None
    return s.scalar(select(Participant).where(Participant.token_hash == hash_token(token)))
