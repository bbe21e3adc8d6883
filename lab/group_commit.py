"""Group commit: conversations on one event loop share each transaction.

A batch simulation runs dozens of conversations on one event loop, and each of them commits
a turn at every step. Committing each turn on its own pays a transaction, a statement and a
connection checkout per turn, and on SQLite every commit takes the database's write lock.
:class:`GroupCommit` collects the turns written during one pass of the event loop and
commits them together: one transaction, one multi-row ``INSERT … RETURNING`` per shape of
row. Each writer still waits until its own turn is committed before it goes on, so a turn is
never acknowledged before it is durable; only the commit is shared.

When the shared transaction fails (a turn index taken by another writer, a lost
connection), nothing of it is kept and each turn is written again in a transaction of its
own, so one bad write fails alone and the others commit as usual.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from .schema import Turn

AfterWrite = Callable[[Connection, int], None]
"""Further writes made in a turn's transaction, given the turn's id."""

_TURNS = Turn.__table__
_INSERT_MANY = _TURNS.insert().returning(_TURNS.c.id, sort_by_parameter_order=True)
_INSERT_ONE = _TURNS.insert().returning(_TURNS.c.id)


def insert_turn(conn: Connection, values: dict[str, Any], then: AfterWrite | None = None) -> int:
    """Insert one turn in an open transaction, with its further writes; returns its id.

    Args:
        conn: The open transaction.
        values: Column values of the ``turn`` row.
        then: More writes for the same transaction, given the new turn's id.
    """
    turn_id = conn.execute(_INSERT_ONE, values).scalar_one()
    if then is not None:
        then(conn, turn_id)
    return turn_id


@dataclass
class _Pending:
    values: dict[str, Any]
    then: AfterWrite | None
    done: asyncio.Future[int]


@dataclass
class GroupCommitStats:
    """What a :class:`GroupCommit` has done (for benchmarks and tests)."""

    turns: int = 0
    """Turns committed."""
    commits: int = 0
    """Shared transactions committed."""
    fallbacks: int = 0
    """Shared transactions that failed and were redone one turn at a time."""


class GroupCommit:
    """Insert turns for many conversations of one event loop, committing them together.

    Use it from coroutines of a single event loop (it is not thread-safe); a process with
    several loops makes one per loop.
    """

    def __init__(self, engine: Engine) -> None:
        """Write to ``engine``.

        Args:
            engine: The lab database.
        """
        self.engine = engine
        self.stats = GroupCommitStats()
        self._pending: list[_Pending] = []
        self._scheduled = False

    async def insert_turn(self, values: dict[str, Any], then: AfterWrite | None = None) -> int:
        """Insert one turn; returns its id once the transaction holding it has committed.

        Args:
            values: Column values of the ``turn`` row.
            then: More writes for the same transaction, given the new turn's id.

        Raises:
            sqlalchemy.exc.IntegrityError: the turn clashes with one already written (its
                index is taken); nothing of it was written.
            sqlalchemy.exc.SQLAlchemyError: the database refused the write.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        self._pending.append(_Pending(values, then, done))
        if not self._scheduled:
            self._scheduled = True
            # Runs after every callback already queued for this pass of the loop, so the
            # writers woken in the same pass share the transaction.
            loop.call_soon(self._flush)
        return await done

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        try:
            ids = self._write_together(batch)
        except Exception:  # noqa: BLE001 — redone one by one below, where each error reaches its writer
            self.stats.fallbacks += 1
            for p in batch:
                self._write_alone(p)
            return
        self.stats.commits += 1
        self.stats.turns += len(batch)
        for p, turn_id in zip(batch, ids, strict=True):
            if not p.done.cancelled():
                p.done.set_result(turn_id)

    def _write_together(self, batch: list[_Pending]) -> list[int]:
        # Rows differ in which columns they set (a user turn has no usage), and one
        # multi-row insert needs one set of columns, so rows are grouped by their columns.
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, p in enumerate(batch):
            groups.setdefault(tuple(sorted(p.values)), []).append(i)
        ids: list[int] = [0] * len(batch)
        with self.engine.begin() as conn:
            for members in groups.values():
                found = conn.execute(_INSERT_MANY, [batch[i].values for i in members]).scalars()
                for i, turn_id in zip(members, found, strict=True):
                    ids[i] = turn_id
            for p, turn_id in zip(batch, ids, strict=True):
                if p.then is not None:
                    p.then(conn, turn_id)
        return ids

    def _write_alone(self, p: _Pending) -> None:
        try:
            with self.engine.begin() as conn:
                turn_id = insert_turn(conn, p.values, p.then)
        except Exception as e:  # noqa: BLE001 — handed to the writer that asked
            if not p.done.cancelled():
                p.done.set_exception(e)
            return
        self.stats.commits += 1
        self.stats.turns += 1
        if not p.done.cancelled():
            p.done.set_result(turn_id)
