"""Workers: any number of processes, on any hosts, sharing one simulation run through the database.

``python -m lab simulate … --worker`` started anywhere with the same arguments and the same
``DATABASE_URL`` joins the run: it records the run's units as claims (see
:mod:`lab.simulate._claims`; whoever arrives first inserts them, later arrivals change
nothing), then claims one unit at a time and runs it as an invocation without ``--worker``
would, ``concurrency`` units at once. While it runs a unit it renews its claim every third
of the lease; the transaction that starts each conversation checks that the claim is still
its own, and a unit whose claim another worker took over (because this one could not renew
it in time) is dropped at once. A worker with nothing left to claim waits while other
workers hold units, so that it can take over one whose worker stopped; it exits when every
unit is done or stopped by model errors. Stopped by Ctrl-C, it gives its units back.

Units stopped by repeated model errors are marked failed and left alone by the workers of
that round; the next worker started puts them back in the queue, as rerunning a command
without ``--worker`` continues them.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from .. import llm
from ..errors import LabError
from ._claims import LEASE_SECONDS, claim, done_units, finish, held, held_elsewhere, prune, release, renew, seed, worker_id
from ._grid import Unit
from ._runner import RunBusy, Runner, RunResult, RunStatus, UnitState, existing_units, run_lock, unit_state

LOCK_WAIT_SECONDS = 30.0
"""How long a starting worker tries for the run lock, which workers hold only while they make their first claim."""

POLL_SECONDS = 1.0
"""How often a worker with nothing to claim looks again while other workers hold units (at most a third of the lease)."""

REFRESH_SECONDS = 1.0
"""How often the progress line reads the run's done units (other workers' too)."""


class ClaimLost(LabError, RuntimeError):
    """Another worker took over a unit after this worker failed to renew its claim in time."""


class WorkerRunner(Runner):
    """Runs a plan's units as one of any number of workers; see :func:`lab.simulate.run_simulation`."""

    def __init__(self, *args: Any, lease: float = LEASE_SECONDS, **kwargs: Any) -> None:
        """Create the worker.

        Args:
            *args: As for :class:`Runner`.
            lease: Seconds a claim holds without renewal.
            **kwargs: As for :class:`Runner`.
        """
        super().__init__(*args, **kwargs)
        if lease <= 0:
            raise ValueError(f"lease must be positive, got {lease!r}")
        self.lease = lease
        self.worker = worker_id()
        self.result.worker = self.worker
        self._units = {u.key: u for u in self.plan.units}
        self._running: dict[str, asyncio.Task[bool]] = {}
        self._run_done = 0
        self._refreshed = float("-inf")

    # --- bookkeeping --------------------------------------------------------------

    def _run_data(self) -> dict[str, Any]:
        return super()._run_data() | {"worker": self.worker, "lease": self.lease}

    def _status(self) -> RunStatus:
        # Other workers' progress shows in the run's figures; the rate covers the whole run.
        now = time.monotonic()
        if now - self._refreshed >= REFRESH_SECONDS:
            self._refresh()
        r = self.result
        done = max(r.done, self._run_done)
        return RunStatus(self.plan.total, done, r.done_at_start, len(r.failures), now - self._clock, self.breaker.lines())

    def _refresh(self) -> None:
        self._refreshed = time.monotonic()
        done = done_units(self.engine, self.plan.run_id)
        self._run_done = sum(len(self._units[k].cells) for k in done if k in self._units)

    def _seed(self) -> None:
        """Record the run's units as claims, with what the database already holds of them."""
        with Session(self.engine) as s:
            found = existing_units(s, self.plan, with_judged=self.judge is not None)
        units: dict[str, tuple[bool, int | None]] = {}
        for unit in self.plan.units:
            f = found.get(unit.key) or UnitState()
            ended, left = self._left(unit, f)
            self.result.done_at_start += ended
            units[unit.key] = (not left, f.participant_id)
        self.result.done = self.result.done_at_start
        seed(self.engine, self.plan.run_id, self.plan.study_id, units)

    def _fatal(self, error: Exception) -> bool:
        return isinstance(error, ClaimLost)

    def _starting(self, conn: Connection, unit: Unit, participant_id: int) -> None:
        if not held(conn, self.plan.run_id, unit.key, self.worker, self.lease, participant_id):
            raise ClaimLost(f"unit {unit.key} was taken over by another worker")

    # --- running ------------------------------------------------------------------

    async def run(self) -> RunResult:
        """Claim and run units until none are left.

        Raises:
            RunBusy: an invocation without ``--worker`` is running the run.
        """
        self._seed()
        first = await self._first_claim()
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            self._log_run()
            self._tick()
            with llm.watching(self.breaker):
                async with asyncio.TaskGroup() as tg:
                    slots = [tg.create_task(self._slot(first if i == 0 else None)) for i in range(self.concurrency)]
                    tg.create_task(self._watch(slots))
        finally:
            heartbeat.cancel()
            release(self.engine, self.plan.run_id, self.worker)
        r = self.result
        r.ended_here = r.done - r.done_at_start
        # Read from the conversations, not the claims: the worker that ended the run last
        # may already have pruned them.
        with Session(self.engine) as s:
            found = existing_units(s, self.plan)
        r.done = max(r.done, sum(1 for f in found.values() for _, status in f.sessions.values() if status == "ended"))
        if r.complete:
            prune(self.engine, self.plan.run_id)
        r.elapsed = time.monotonic() - self._clock
        self._tick()
        return r

    async def _first_claim(self) -> tuple[str, int | None] | None:
        """The first claim, made under the run lock so that a run without ``--worker`` sees it or excludes it."""
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                with run_lock(self.engine, self.plan.run_id):
                    return self._claim()
            except RunBusy:
                # Other workers hold the lock for a moment each; an invocation without
                # --worker holds it for its whole run.
                if time.monotonic() > deadline:
                    raise RunBusy(
                        f"run {self.plan.run_id} is being run by an invocation without --worker; "
                        "wait for it to finish, or stop it and start workers"
                    ) from None
                await asyncio.sleep(0.1)

    def _claim(self) -> tuple[str, int | None] | None:
        got = claim(self.engine, self.plan.run_id, self.worker, self.lease)
        if got is not None:
            self.result.claimed += 1
        return got

    @property
    def _pause(self) -> float:
        return min(POLL_SECONDS, self.lease / 3)

    async def _slot(self, claimed: tuple[str, int | None] | None) -> None:
        """One of ``concurrency`` places: claim a unit, run it, claim the next, until none are left."""
        while True:
            if claimed is None:
                claimed = self._claim()
            if claimed is None:
                if not held_elsewhere(self.engine, self.plan.run_id, self.worker):
                    return
                await asyncio.sleep(self._pause)
                continue
            key, participant_id = claimed
            claimed = None
            await self._claimed(key, participant_id)

    async def _claimed(self, key: str, participant_id: int | None) -> None:
        """Run a claimed unit, then mark it done (or failed); drop it if another worker took it over."""
        unit = self._units[key]
        with Session(self.engine) as s:
            f = unit_state(s, participant_id, with_judged=self.judge is not None)
        task = asyncio.create_task(self._unit(unit, f))
        self._running[key] = task
        try:
            await asyncio.wait([task])
        finally:
            self._running.pop(key, None)
            if not task.done():
                # This worker is stopping: the unit's writes end before its claim is given back.
                task.cancel()
                await asyncio.wait([task])
        if task.cancelled() or isinstance(task.exception(), ClaimLost):
            self.result.lost += 1
            self._tick()
            return
        finish(self.engine, self.plan.run_id, key, self.worker, ok=task.result())

    async def _heartbeat(self) -> None:
        """Renew this worker's claims every third of the lease; stop units another worker took over."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                still = renew(self.engine, self.plan.run_id, self.worker, self.lease)
            except DBAPIError as e:
                # The database may come back before the lease runs out; the next beat tries again.
                print(f"note: could not renew this worker's claims: {e.orig}", file=sys.stderr)
                continue
            for key, task in list(self._running.items()):
                if key not in still:
                    task.cancel()
