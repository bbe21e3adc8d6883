"""Failed sign-ins allowed per account and per client address, in a sliding window.

Each failure is a row of the ``sign_in_failure`` table, so every app process and every
replica on the same database counts the same failures, and a restart forgets none. The
rows carry the app's wall clock in UTC: replicas share no other clock.

The table holds only failures that still count: each new failure first deletes those that
have left their window. An address is paused after a few failures and a paused attempt is
not counted, so one window's rows number about twice the per-address limit for each
distinct address seen in it (a failure is one row per address and one per username);
:data:`MAX_ROWS` caps them whatever the number of addresses, the oldest going first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection, Engine, delete, func, insert, select

from ..db import ready_engine
from ..schema import SignInFailure, as_utc, utcnow

KEY_LENGTH = 128
"""Longest key stored; a longer username tried is counted under its first characters."""
MAX_ROWS = 100_000
"""Most failures kept at once (a few megabytes): a flood of distinct addresses and names
that outruns the window's pruning loses its oldest rows instead of filling the disk."""


@dataclass(frozen=True)
class SlidingWindow:
    """Failures of one kind allowed within the last ``window`` seconds, counted in the database.

    The methods take the connection of the caller's transaction, so a failure is counted
    and the pause it brings about is read in one transaction.
    """

    kind: str
    """What the failures are counted against: ``address`` or ``account``."""
    limit: int
    """Failures within the window that pause sign-in."""
    window: float
    """Length of the window in seconds."""

    def _start(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.window)

    def retry_after(self, conn: Connection, key: str, now: datetime) -> float:
        """Seconds until ``key`` is no longer paused (0 when it is not)."""
        # Paused until the limit-th newest failure leaves the window, leaving fewer than the limit.
        oldest_counted = conn.scalar(
            select(SignInFailure.failed_at)
            .where(SignInFailure.kind == self.kind, SignInFailure.key == key[:KEY_LENGTH])
            .where(SignInFailure.failed_at > self._start(now))
            .order_by(SignInFailure.failed_at.desc())
            .limit(1)
            .offset(self.limit - 1)
        )
        if oldest_counted is None:
            return 0.0
        return (as_utc(oldest_counted) + timedelta(seconds=self.window) - now).total_seconds()

    def hit(self, conn: Connection, key: str, now: datetime) -> None:
        """Record one failure for ``key``."""
        conn.execute(insert(SignInFailure).values(kind=self.kind, key=key[:KEY_LENGTH], failed_at=now))

    def prune(self, conn: Connection, now: datetime) -> None:
        """Delete this kind's failures that have left the window."""
        _delete_unlocked(conn, SignInFailure.kind == self.kind, SignInFailure.failed_at <= self._start(now))

    def reset(self, conn: Connection, key: str) -> None:
        """Forget ``key``'s failures."""
        conn.execute(delete(SignInFailure).where(SignInFailure.kind == self.kind, SignInFailure.key == key[:KEY_LENGTH]))


def _delete_unlocked(conn: Connection, *where: ColumnElement[bool]) -> None:
    """Delete the failures matching ``where`` that no other transaction is deleting."""
    # Two replicas pruning the same old rows would otherwise wait on each other's row locks,
    # and Postgres may end such a wait as a deadlock, failing a sign-in; the rows skipped are
    # being deleted anyway. SQLite has one writer at a time and ignores the clause.
    doomed = select(SignInFailure.id).where(*where).with_for_update(skip_locked=True)
    conn.execute(delete(SignInFailure).where(SignInFailure.id.in_(doomed)))


def _cap(conn: Connection) -> None:
    """Delete the oldest failures beyond :data:`MAX_ROWS`."""
    # Ids only grow, so every row kept lies among the newest MAX_ROWS ids; max(id) reads one
    # index entry, where counting the rows would read them all on every failure.
    newest = conn.scalar(select(func.max(SignInFailure.id)))
    if newest is not None and newest > MAX_ROWS:
        _delete_unlocked(conn, SignInFailure.id <= newest - MAX_ROWS)


@dataclass(frozen=True)
class Pause:
    """Sign-in refused for a while after too many failures."""

    by: str
    """What reached its limit: ``address`` (the client's) or ``username``."""
    seconds: float
    """How long until sign-in may be tried again."""

    @property
    def minutes(self) -> int:
        """The wait in whole minutes, rounded up."""
        return max(1, math.ceil(self.seconds / 60))

    def message(self) -> str:
        """What the sign-in form says."""
        who = "from your address" if self.by == "address" else "for this username"
        unit = "minute" if self.minutes == 1 else "minutes"
        return f"Too many failed sign-ins {who}: sign-in is paused for {self.minutes} {unit}. Try again after that."


@dataclass
class LoginLimits:
    """Failed sign-ins allowed per client address and per username.

    The address limit is the stricter, so one address guessing a username is stopped
    before the account's own limit is reached: it cannot lock the account's owner out.
    Every method takes ``now`` (timezone-aware) for tests; it defaults to the wall clock.
    """

    per_address: SlidingWindow
    """Failures counted against the client address."""
    per_user: SlidingWindow
    """Failures counted against the username tried (from every address), in lower case."""
    engine: Engine | None = None
    """The database holding the failures (default: the configured one, migrated on first use)."""

    @classmethod
    def default(cls, engine: Engine | None = None) -> LoginLimits:
        """5 failures per address and 20 per username in 15 minutes."""
        return cls(SlidingWindow("address", 5, 15 * 60), SlidingWindow("account", 20, 15 * 60), engine)

    def _engine(self) -> Engine:
        return self.engine if self.engine is not None else ready_engine()

    def _pause(self, conn: Connection, username: str, address: str, now: datetime) -> Pause | None:
        waits = [
            Pause("address", self.per_address.retry_after(conn, address, now)),
            Pause("username", self.per_user.retry_after(conn, username.lower(), now)),
        ]
        longest = max(waits, key=lambda p: p.seconds)
        return longest if longest.seconds > 0 else None

    def pause(self, username: str, address: str, now: datetime | None = None) -> Pause | None:
        """Why and for how long sign-in is refused now, or None when it may be tried."""
        now = utcnow() if now is None else as_utc(now)
        with self._engine().connect() as conn:
            return self._pause(conn, username, address, now)

    def allowed(self, username: str, address: str, now: datetime | None = None) -> bool:
        """Whether a sign-in may be tried now."""
        return self.pause(username, address, now) is None

    def failed(self, username: str, address: str, now: datetime | None = None) -> Pause | None:
        """Count a refused sign-in; the pause it brings about, or None when sign-in may still be tried."""
        now = utcnow() if now is None else as_utc(now)
        with self._engine().begin() as conn:
            for window in (self.per_address, self.per_user):
                window.prune(conn, now)
            self.per_address.hit(conn, address, now)
            self.per_user.hit(conn, username.lower(), now)
            _cap(conn)
            return self._pause(conn, username, address, now)

    def succeeded(self, username: str) -> None:
        """A good password clears the username's count."""
        with self._engine().begin() as conn:
            self.per_user.reset(conn, username.lower())


LOGIN_LIMITS = LoginLimits.default()
"""The app's sign-in limits, on the configured database."""
