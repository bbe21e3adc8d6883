"""Running a simulation in several processes, so that its CPU work spreads over the cores.

The parent process holds the run lock, finds the units with work left, deals them into
disjoint shares and starts one worker process per share. Each worker makes its own engine
from the database URL and runs the ordinary asyncio runner on its share, without taking the
lock (the parent holds it for them) and without logging the run again. Workers report ended
conversations over a queue, so the parent drives the progress line as one process does.

Workers are forked from a clean server process (``forkserver``) that has imported the lab
and litellm once, so starting them costs milliseconds after the first run of a process.
They die with the parent: on Linux the kernel kills them when their server goes, which
happens as soon as the parent goes; a watchdog thread covers other systems.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._grid import PlanError

if TYPE_CHECKING:
    from multiprocessing.context import ForkServerContext, SpawnContext
    from multiprocessing.process import BaseProcess
    from multiprocessing.queues import SimpleQueue

    from ._runner import Runner, RunStatus

PRELOAD = ["lab.simulate", "lab.db", "litellm", "lab.simulate._warm"]
"""Modules the worker server imports once, before it forks workers (the last warms litellm up)."""

POLL_SECONDS = 0.05
"""How often the parent reads the workers' reports."""


@dataclass(frozen=True)
class Share:
    """What one worker process runs."""

    index: int
    """Its number, from 0."""
    url: str
    """The database URL (with its password: the worker connects on its own)."""
    units: frozenset[str]
    """Keys of the plan's units it runs."""
    concurrency: int
    """Its participants conversing at once."""
    rpm: float | None
    """Its share of each model's requests per minute."""
    parent: int
    """Process id of the parent, watched so that the worker never outlives it."""


@dataclass
class WorkerReport:
    """What the parent knows of one worker."""

    done: int = 0
    """Conversations it ended so far."""
    failed: int = 0
    """Conversations it left after errors."""
    trouble: tuple[str, ...] = ()
    """What it says about failing models now."""
    final: dict[str, Any] | None = None
    """Its counts once it finished."""
    error: str | None = None
    """Why it stopped, if it failed."""


def _context() -> ForkServerContext | SpawnContext:
    # Forking the parent after litellm and SQLAlchemy are loaded is unsafe (threads, pools,
    # open connections); a fresh server preloads them instead.
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


@contextmanager
def _plain_main() -> Iterator[None]:
    """Keep new workers from re-running the parent's ``__main__``.

    ``python -m lab`` is skipped by multiprocessing itself, but under a test runner or
    Streamlit ``__main__`` can be a page script, which a spawned worker would execute.
    """
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None) or ""
    if name == "__main__" or name.endswith(".__main__"):
        yield
        return
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _die_with(parent: int) -> None:
    """Make sure this worker stops when the parent stops, however it stops."""
    if sys.platform == "linux":
        try:
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
        except OSError:
            pass

    def watch() -> None:
        while True:
            time.sleep(0.2)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def work(
    share: Share, plan: Any, simulator: Any, options: dict[str, Any], reports: SimpleQueue[Any], runner_type: type[Runner]
) -> None:
    """A worker process: run one share of a plan and report back.

    Args:
        share: What to run.
        plan: The run's plan.
        simulator: The simulator.
        options: The runner's other keyword arguments (judge, max_errors, retry_pause, breaker_seconds).
        reports: Where progress and the final counts go.
        runner_type: The parent's runner class, handed over so that this module never
            imports the runner that imports it.
    """
    _die_with(share.parent)
    from ..db import make_engine

    engine = make_engine(share.url)

    def progress(status: RunStatus) -> None:
        reports.put(("progress", share.index, status.done - status.done_at_start, status.failed, status.trouble))

    runner = runner_type(
        engine,
        plan,
        simulator,
        concurrency=share.concurrency,
        rpm=share.rpm,
        on_progress=progress,
        share=share.units,
        **options,
    )
    try:
        result = asyncio.run(runner.run())
    except KeyboardInterrupt:
        # Ctrl-C reaches the whole process group; the parent reports the stop.
        os._exit(1)
    except BaseException as e:  # noqa: BLE001 - any failure is reported to the parent, which raises it
        reports.put(("error", share.index, f"{type(e).__name__}: {e}"))
        engine.dispose()
        raise SystemExit(1) from None
    reports.put(
        (
            "result",
            share.index,
            {
                "done": result.done - result.done_at_start,
                "started": result.started,
                "resumed": result.resumed,
                "user_turns": result.user_turns,
                "failures": result.failures,
            },
        )
    )
    engine.dispose()


def database_url(runner: Runner) -> str:
    """The URL workers connect with.

    Raises:
        PlanError: the database lives in this process's memory.
    """
    url = runner.engine.url
    if url.get_backend_name() == "sqlite" and (not url.database or url.database == ":memory:"):
        raise PlanError(
            "several processes need a database file or server; an in-memory SQLite database cannot be shared: "
            "set DATABASE_URL to a file or a server, or leave out --processes"
        )
    return url.render_as_string(hide_password=False)


async def run_shares(runner: Runner, pending: list[str], tick: Callable[[int, int, tuple[str, ...]], None]) -> dict[str, Any]:
    """Run the pending units in worker processes; the parent holds the run lock.

    Args:
        runner: The parent's runner (its plan, simulator and options).
        pending: Keys of the units with work left.
        tick: Called with (conversations ended, conversations failed, what they say about
            failing models) by the workers so far.

    Returns:
        The workers' summed counts (``done``, ``started``, ``resumed``, ``user_turns``, ``failures``).

    Raises:
        RuntimeError: a worker failed or stopped without reporting.
    """
    n = min(runner.processes, len(pending))
    totals: dict[str, Any] = {"done": 0, "started": 0, "resumed": 0, "user_turns": 0, "failures": []}
    if n == 0:
        return totals
    url = database_url(runner)
    ctx = _context()
    reports: SimpleQueue[Any] = ctx.SimpleQueue()
    rpm = runner.limits.rpm / n if runner.limits.rpm is not None else None
    options = {
        "judge": runner.judge,
        "max_errors": runner.max_errors,
        "retry_pause": runner.retry_pause,
        "breaker_seconds": runner.breaker.seconds,
    }
    shares = [Share(i, url, frozenset(pending[i::n]), math.ceil(runner.concurrency / n), rpm, os.getpid()) for i in range(n)]
    state = [WorkerReport() for _ in shares]
    procs: list[BaseProcess] = []

    def drain() -> bool:
        return _drain(reports, state, tick)

    try:
        with _plain_main():
            for share in shares:
                proc = ctx.Process(
                    target=work,
                    args=(share, runner.plan, runner.simulator, options, reports, type(runner)),
                    name=f"simulate-{share.index}",
                    daemon=True,
                )
                proc.start()
                procs.append(proc)
        while True:
            drain()
            _check_workers(procs, state, drain)
            if all(w.final is not None for w in state):
                break
            await asyncio.sleep(POLL_SECONDS)
    finally:
        _stop(procs)
        reports.close()
    for w in state:
        assert w.final is not None
        for key in ("done", "started", "resumed", "user_turns"):
            totals[key] += w.final[key]
        totals["failures"] += [tuple(f) for f in w.final["failures"]]
    return totals


def _drain(reports: SimpleQueue[Any], state: list[WorkerReport], tick: Callable[[int, int, tuple[str, ...]], None]) -> bool:
    """Read every waiting report into ``state``; tick with the sums when any came. Returns whether any did."""
    got = False
    while not reports.empty():
        kind, i, *rest = reports.get()
        got = True
        if kind == "progress":
            state[i].done, state[i].failed, state[i].trouble = rest[0], rest[1], tuple(rest[2])
        elif kind == "result":
            state[i].final = rest[0]
            state[i].done, state[i].failed = rest[0]["done"], len(rest[0]["failures"])
        else:
            state[i].error = rest[0]
    if got:
        # Each process has its own breaker; the same model's trouble is said once.
        trouble = tuple(dict.fromkeys(line for w in state for line in w.trouble))
        tick(sum(w.done for w in state), sum(w.failed for w in state), trouble)
    return got


def _check_workers(procs: list[BaseProcess], state: list[WorkerReport], drain: Callable[[], bool]) -> None:
    """Raise when a worker reported a failure or ended without its result.

    Raises:
        RuntimeError: naming the worker and what went wrong.
    """
    for i, p in enumerate(procs):
        if state[i].error is not None:
            raise RuntimeError(f"simulation process {i} failed: {state[i].error}")
        if state[i].final is None and p.exitcode is not None:
            drain()  # its last reports may have arrived after the look above
            if state[i].error is not None:
                raise RuntimeError(f"simulation process {i} failed: {state[i].error}")
            if state[i].final is None:
                raise RuntimeError(f"simulation process {i} stopped unexpectedly (exit code {p.exitcode})")


def _stop(procs: list[BaseProcess]) -> None:
    """End the workers still running: terminate, then kill what has not ended within five seconds."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join()
