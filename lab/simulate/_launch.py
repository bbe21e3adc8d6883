"""Starting a run: in this process, shared among worker processes, or as one of many workers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict, Unpack

from sqlalchemy import Engine

from ._claims import LEASE_SECONDS
from ._grid import RunPlan
from ._runner import Runner, RunResult, RunStatus
from ._simulator import Simulator
from ._worker import WorkerRunner


class RunOptions(TypedDict, total=False):
    """How a run goes: the keyword arguments of :func:`run_simulation` (defaults: :class:`Runner`)."""

    concurrency: int
    """Simulated participants conversing at once."""

    rpm: float | None
    """Requests per minute allowed for each model (None: no limit)."""

    judge: tuple[str, dict[str, Any]] | None
    """``(model, params)`` of a judge model for simulator consistency, or None."""

    on_progress: Callable[[RunStatus], None] | None
    """Called with a :class:`RunStatus` whenever a conversation ends."""

    max_errors: int
    """Consecutive model errors after which a conversation is left for the next invocation."""

    retry_pause: float
    """Seconds (times the error count) to wait before retrying after an error."""

    command: str | None
    """The command line, stored with the run."""

    breaker_seconds: float
    """Seconds of nothing but failed calls to a model after which the run stops calling it
    (see :mod:`lab.simulate._breaker`)."""

    processes: int
    """Worker processes sharing the run's units, so that its CPU work spreads over the cores
    (1: everything in this process). With more, this process holds the run lock and shows
    progress while each worker runs its share with ``ceil(concurrency / processes)``
    participants at once and ``rpm / processes`` requests per minute per model, so the
    limits hold for the run as a whole. Needs a database file or server."""


async def run_simulation(
    engine: Engine,
    plan: RunPlan,
    simulator: Simulator,
    *,
    worker: bool = False,
    lease: float = LEASE_SECONDS,
    **options: Unpack[RunOptions],
) -> RunResult:
    """Run (or continue) a planned simulation.

    Args:
        engine: The database.
        plan: From :func:`plan_run`.
        simulator: Writes the participants' messages after the opening.
        worker: Run as one of any number of workers sharing the run through the database
            (see :mod:`lab.simulate._worker`): claim units until none are left.
        lease: Seconds a worker's claim on a unit holds without renewal; a stopped
            worker's units go to another worker after this long.
        **options: How the run goes; see :class:`RunOptions`.

    Returns:
        What this invocation did.

    Raises:
        RunBusy: another process is running the same run (without ``worker``, or a run
            without ``worker`` that is running while a worker starts).
        RuntimeError: a worker process failed.
        ValueError: ``worker`` with ``processes`` > 1.
    """
    if worker:
        if options.pop("processes", 1) > 1:
            raise ValueError("a worker runs in one process: start one worker per core instead of using processes")
        return await WorkerRunner(engine, plan, simulator, lease=lease, **options).run()
    return await Runner(engine, plan, simulator, **options).run()
