"""A participant withdraws: every row about them is deleted and only the fact remains.

Deletion is explicit table by table (not left to foreign-key cascades), so it does the
same on SQLite and Postgres. SQLite overwrites the freed pages (``secure_delete``) and
folds the write-ahead log back into the file, and Postgres vacuums the touched tables, so
the deleted text does not linger in the database files either. What is kept is a
:class:`~lab.schema.Withdrawal` row: study version, participant kind and status, when and
by whom — no id, no content.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, delete, or_, select, text
from sqlalchemy.orm import Session

from .errors import LabError
from .schema import ChatSession, Event, Label, Participant, RepairSequence, Response, Study, Turn, Withdrawal, utcnow

TOUCHED_TABLES = ("label", "repair_sequence", "turn", "event", "response", "session", "participant")
"""Tables a withdrawal deletes from, in order."""


class WithdrawError(LabError, LookupError):
    """Nobody to withdraw; the message says who was looked for."""


@dataclass(frozen=True)
class WithdrawResult:
    """What a withdrawal deleted."""

    participants: int
    """Participants removed."""
    rows: dict[str, int]
    """Rows deleted per table."""


def find_participants(s: Session, who: str, slug: str | None = None) -> list[Participant]:
    """Participants named by a database id or a Prolific id, optionally within one study.

    Args:
        s: Open session.
        who: A participant's database id (digits) or Prolific PID.
        slug: Restrict to this study's versions.

    Raises:
        WithdrawError: Nobody matches.
    """
    query = select(Participant)
    if who.isdigit():
        query = query.where(or_(Participant.id == int(who), Participant.prolific_pid == who))
    else:
        query = query.where(Participant.prolific_pid == who)
    if slug is not None:
        query = query.join(Study, Participant.study_id == Study.id).where(Study.slug == slug)
    found = list(s.scalars(query.order_by(Participant.id)))
    if not found:
        where = f" in study '{slug}'" if slug else ""
        raise WithdrawError(f"no participant with id or Prolific id '{who}'{where}")
    return found


def _delete(s: Session, participant_ids: list[int]) -> dict[str, int]:
    sessions = select(ChatSession.id).where(ChatSession.participant_id.in_(participant_ids))
    turns = select(Turn.id).where(Turn.session_id.in_(sessions))
    counts: dict[str, int] = {}

    def run(name: str, stmt: object) -> None:
        counts[name] = counts.get(name, 0) + (s.execute(stmt).rowcount or 0)  # type: ignore[call-overload]

    # Other people's labels may point at these turns (a target); they lose the pointer, not the label.
    s.execute(
        Label.__table__.update().where(Label.target_turn_id.in_(turns), Label.turn_id.not_in(turns)).values(target_turn_id=None)
    )
    run("label", delete(Label).where(Label.turn_id.in_(turns)).execution_options(synchronize_session=False))
    run(
        "repair_sequence",
        delete(RepairSequence).where(RepairSequence.session_id.in_(sessions)).execution_options(synchronize_session=False),
    )
    run(
        "event",
        delete(Event)
        .where(or_(Event.participant_id.in_(participant_ids), Event.session_id.in_(sessions)))
        .execution_options(synchronize_session=False),
    )
    run(
        "response",
        delete(Response).where(Response.participant_id.in_(participant_ids)).execution_options(synchronize_session=False),
    )
    run("turn", delete(Turn).where(Turn.session_id.in_(sessions)).execution_options(synchronize_session=False))
    run(
        "session",
        delete(ChatSession).where(ChatSession.participant_id.in_(participant_ids)).execution_options(synchronize_session=False),
    )
    run(
        "participant", delete(Participant).where(Participant.id.in_(participant_ids)).execution_options(synchronize_session=False)
    )
    return counts


def withdraw(engine: Engine, who: str, *, slug: str | None = None, by: str = "cli") -> WithdrawResult:
    """Delete every row about the participant(s) ``who`` names and record that they withdrew.

    Args:
        engine: The lab's database.
        who: Database id or Prolific PID (every participant with that PID, unless ``slug``).
        slug: Only within this study.
        by: Staff username (or ``cli``) for the withdrawal record.

    Returns:
        Rows deleted per table.

    Raises:
        WithdrawError: Nobody matches.
    """
    with Session(engine) as s, s.begin():
        if engine.dialect.name == "sqlite":
            s.execute(text("PRAGMA secure_delete = ON"))
        people = find_participants(s, who, slug)
        now = utcnow()
        for p in people:
            s.add(Withdrawal(study_id=p.study_id, kind=p.kind, status=p.status, withdrawn_at=now, by=by[:64]))
        ids = [p.id for p in people]
        s.flush()
        s.expunge_all()
        counts = _delete(s, ids)
    _scrub_files(engine)
    return WithdrawResult(len(ids), counts)


def _scrub_files(engine: Engine) -> None:
    """Make the deleted text leave the database files, not just the tables."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    elif engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in TOUCHED_TABLES:
                conn.exec_driver_sql(f'VACUUM "{table}"')


def withdrawals(s: Session, study_ids: list[int]) -> int:
    """How many participants withdrew from these study versions."""
    from sqlalchemy import func

    return int(s.scalar(select(func.count()).select_from(Withdrawal).where(Withdrawal.study_id.in_(study_ids))) or 0)
