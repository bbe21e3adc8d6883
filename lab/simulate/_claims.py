"""Claims on the units of a simulation run, so that workers on any number of hosts share it.

Workers started with the same arguments and database share nothing else. Each inserts the
run's units as ``simulation_claim`` rows (a unique key on run and unit, and inserts that
ignore conflicts, make concurrent arrivals harmless), then claims one pending unit at a
time with a single ``UPDATE … WHERE id = (SELECT … LIMIT 1) AND <claimable> RETURNING``: on
Postgres the inner select takes the row ``FOR UPDATE SKIP LOCKED``, so concurrent workers
pass over each other's rows instead of queueing; SQLite has one writer at a time and the
statement takes the write lock before it reads, so the claim is atomic there too.

When every unit of a run is done, the run's claims are deleted (:func:`prune`): a worker
started later finds the run's conversations ended in the database and seeds nothing to do.

A claim expires ``lease`` seconds after its worker last renewed it; a worker renews its
claims while it runs them, so only a stopped (killed, crashed, cut off) worker's units
become claimable again, by any worker. Postgres compares with the database's clock, so
hosts whose clocks disagree still agree on expiry; SQLite lives on one host.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, Engine, and_, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from ..schema import SimulationClaim, utcnow

LEASE_SECONDS = 300.0
"""Default time a claim holds without renewal: a stopped worker's unit waits this long for another worker."""

PENDING, CLAIMED, DONE, FAILED = "pending", "claimed", "done", "failed"

_T = SimulationClaim.__table__
_C = _T.c
_CHUNK = 500


def worker_id() -> str:
    """A name for this worker that no other worker shares: ``host:pid:nonce``."""
    return f"{socket.gethostname()[:120]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _now(conn: Connection) -> Any:
    # Postgres: the database's clock, the one every host shares. SQLite: one host, one clock.
    return func.now() if conn.dialect.name == "postgresql" else utcnow()


def _later(conn: Connection, seconds: float) -> Any:
    return _now(conn) + timedelta(seconds=seconds)


def _claimable(conn: Connection, run_id: str) -> ColumnElement[bool]:
    return and_(_C.run_id == run_id, or_(_C.state == PENDING, and_(_C.state == CLAIMED, _C.expires_at < _now(conn))))


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount


def seed(engine: Engine, run_id: str, study_id: int, units: Mapping[str, tuple[bool, int | None]]) -> None:
    """Insert the run's units, or bring existing rows in line with what the database holds.

    Every worker calls this as it starts; rows another worker inserted first stay as they
    are (inserts ignore conflicts), except that units found complete become done, units
    found incomplete that were done or failed become pending again (a judge added since,
    or the retry of conversations stopped by model errors), and a participant made by an
    invocation without ``--worker`` is recorded. Claimed rows are left to their worker.

    Args:
        engine: The database.
        run_id: The run.
        study_id: Its study version.
        units: Unit key (in plan order) → (complete, participant id or None), as found in
            the database.
    """
    rows = [
        {
            "run_id": run_id,
            "study_id": study_id,
            "unit": key,
            "position": i,
            "state": DONE if complete else PENDING,
            "participant_id": pid,
            "attempts": 0,
        }
        for i, (key, (complete, pid)) in enumerate(units.items())
    ]
    with engine.begin() as conn:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        for i in range(0, len(rows), _CHUNK):
            conn.execute(dialect.insert(_T).on_conflict_do_nothing(index_elements=["run_id", "unit"]), rows[i : i + _CHUNK])
    # Read first, then write in a transaction that starts with its writes: on SQLite a
    # transaction that read before another writer committed could not write at all. Every
    # update checks the state it changes, so what changed in between is never overwritten.
    with engine.connect() as conn:
        rows_now = conn.execute(select(_C.unit, _C.state, _C.participant_id).where(_C.run_id == run_id))
        found = {key: (state, pid) for key, state, pid in rows_now}
    done = [k for k, (complete, _) in units.items() if complete and found.get(k, (DONE,))[0] in (PENDING, FAILED)]
    undone = [k for k, (complete, _) in units.items() if not complete and found.get(k, (PENDING,))[0] in (DONE, FAILED)]
    made = [(k, pid) for k, (_, pid) in units.items() if pid is not None and k in found and found[k][1] is None]
    if not (done or undone or made):
        return
    with engine.begin() as conn:
        for keys, before, after in ((done, (PENDING, FAILED), DONE), (undone, (DONE, FAILED), PENDING)):
            for chunk in _chunks(keys):
                conn.execute(update(_T).where(_C.run_id == run_id, _C.unit.in_(chunk), _C.state.in_(before)).values(state=after))
        for key, pid in made:
            conn.execute(
                update(_T).where(_C.run_id == run_id, _C.unit == key, _C.participant_id.is_(None)).values(participant_id=pid)
            )


def _chunks(keys: list[str]) -> Iterable[list[str]]:
    return (keys[i : i + _CHUNK] for i in range(0, len(keys), _CHUNK))


def claim(engine: Engine, run_id: str, worker: str, lease: float) -> tuple[str, int | None] | None:
    """Claim the run's next claimable unit for ``worker``: (unit key, participant id), or None.

    None means that no unit is pending and none has an expired claim; other workers may
    still hold some (see :func:`held_elsewhere`).
    """
    with engine.begin() as conn:
        pick = (
            select(_C.id)
            .where(_claimable(conn, run_id))
            .order_by(_C.position)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        now = _now(conn)
        row = conn.execute(
            update(_T)
            .where(_C.id == pick, _claimable(conn, run_id))
            .values(state=CLAIMED, worker=worker, attempts=_C.attempts + 1, claimed_at=now, expires_at=_later(conn, lease))
            .returning(_C.unit, _C.participant_id)
        ).first()
    return (row[0], row[1]) if row is not None else None


def held(conn: Connection, run_id: str, unit: str, worker: str, lease: float, participant_id: int) -> bool:
    """Within a transaction: check that ``worker`` still holds ``unit``, renew it and record its participant.

    Called in the transaction that starts each conversation of the unit, so a worker whose
    claim was taken over never starts one (its transaction rolls back).
    """
    result = conn.execute(
        update(_T)
        .where(_C.run_id == run_id, _C.unit == unit, _C.worker == worker, _C.state == CLAIMED)
        .values(participant_id=participant_id, expires_at=_later(conn, lease))
    )
    return _rowcount(result) == 1


def renew(engine: Engine, run_id: str, worker: str, lease: float) -> set[str]:
    """Extend every claim ``worker`` holds on the run by ``lease`` seconds; returns the units it still holds.

    A unit missing from the answer was taken over by another worker after this one failed
    to renew it in time.
    """
    with engine.begin() as conn:
        mine = and_(_C.run_id == run_id, _C.worker == worker, _C.state == CLAIMED)
        conn.execute(update(_T).where(mine).values(expires_at=_later(conn, lease)))
        return set(conn.scalars(select(_C.unit).where(mine)))


def finish(engine: Engine, run_id: str, unit: str, worker: str, *, ok: bool) -> bool:
    """Mark a unit done (or failed: stopped by model errors) if ``worker`` still holds it."""
    with engine.begin() as conn:
        result = conn.execute(
            update(_T)
            .where(_C.run_id == run_id, _C.unit == unit, _C.worker == worker, _C.state == CLAIMED)
            .values(state=DONE if ok else FAILED, done_at=_now(conn), expires_at=None)
        )
        return _rowcount(result) == 1


def release(engine: Engine, run_id: str, worker: str) -> None:
    """Give back every unit ``worker`` holds, so that other workers take them at once (a worker stopping)."""
    with engine.begin() as conn:
        conn.execute(
            update(_T).where(_C.run_id == run_id, _C.worker == worker, _C.state == CLAIMED).values(state=PENDING, expires_at=None)
        )


def held_elsewhere(engine: Engine, run_id: str, worker: str | None = None) -> int:
    """Units of the run that another worker holds under a claim that has not expired."""
    with engine.connect() as conn:
        q = select(func.count()).where(_C.run_id == run_id, _C.state == CLAIMED, _C.expires_at >= _now(conn))
        if worker is not None:
            q = q.where(or_(_C.worker.is_(None), _C.worker != worker))
        return int(conn.scalar(q) or 0)


def done_units(engine: Engine, run_id: str) -> set[str]:
    """The run's units marked done."""
    with engine.connect() as conn:
        return set(conn.scalars(select(_C.unit).where(_C.run_id == run_id, _C.state == DONE)))


def prune(engine: Engine, run_id: str, *, finished: bool = False) -> int:
    """Delete the claims of a run that has ended: no worker will claim its units again.

    Args:
        engine: The database.
        run_id: The run.
        finished: The caller has found every conversation of the run ended while holding
            the run lock, so the claims go whatever their state; otherwise they go only when
            every unit is marked done (one statement, so a worker that puts a unit back in
            the queue meanwhile keeps them all).

    Returns:
        The claims deleted.
    """
    with engine.begin() as conn:
        query = delete(_T).where(_C.run_id == run_id)
        if not finished:
            other = _T.alias("other")
            query = query.where(~exists().where(other.c.run_id == run_id, other.c.state != DONE))
        return _rowcount(conn.execute(query))
