"""Runs spread over several processes: the same conversations as one process, the run lock, stopping and resuming."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab.schema import Event
from lab.simulate import (
    RunBusy,
    RunStatus,
    ScriptedSimulator,
    plan_run,
    run_lock,
    run_progress,
    run_simulation,
)

from .conftest import Interrupt, fingerprint, load, sessions_of, simulate, user_shards

MP_CONDITIONS = ["full", "sharded", "recap", "loaded", "solved"]


def test_processes_run_the_same_conversations_as_one_process(engine: Engine, tmp_path: Path, spec: str) -> None:
    from lab.db import make_engine, migrate

    one = make_engine(f"sqlite:///{tmp_path / 'one.db'}")
    migrate(one)
    study1, d1 = load(one, spec)
    plan1, single = simulate(one, study1, d1, repeats=2, conditions=MP_CONDITIONS, concurrency=4)
    study, d = load(engine, spec)
    seen: list[RunStatus] = []
    plan, multi = simulate(
        engine, study, d, repeats=2, conditions=MP_CONDITIONS, concurrency=4, processes=2, on_progress=seen.append
    )
    assert plan.run_id == plan1.run_id and multi.complete and single.complete
    assert (multi.done, multi.started, multi.resumed, multi.user_turns, multi.failures) == (
        single.done,
        single.started,
        single.resumed,
        single.user_turns,
        single.failures,
    )
    assert multi.started == plan.total and not multi.resumed
    expected = fingerprint(one, plan.run_id)
    assert fingerprint(engine, plan.run_id) == expected and max(expected.values()) == 1
    assert len(expected) == plan.total and all(status == "ended" for _, _, _, _, status, _ in expected)
    assert seen[0].done == 0 and seen[-1].done == plan.total == seen[-1].total
    assert [s.done for s in seen] == sorted(s.done for s in seen)
    with Session(engine) as s:
        (progress,) = run_progress(s, "sim")
        runs = [e.data for e in s.scalars(select(Event).where(Event.kind == "simulate_run"))]
    assert progress.ended == plan.total and progress.finished
    assert len(runs) == 1 and runs[0]["processes"] == 2  # the parent logs the run once, not each worker
    _, again = simulate(engine, study, d, repeats=2, conditions=MP_CONDITIONS, processes=2)
    assert again.complete and again.done_at_start == plan.total and again.started == again.user_turns == 0
    assert fingerprint(engine, plan.run_id) == expected
    one.dispose()


def test_processes_hold_the_run_lock_and_refuse_memory_databases(sqlite_engine: Engine, spec: str) -> None:
    from lab.db import make_engine, migrate

    study, d = load(sqlite_engine, spec)
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=1, conditions=["full"])
    with run_lock(sqlite_engine, plan.run_id), pytest.raises(RunBusy):
        asyncio.run(run_simulation(sqlite_engine, plan, ScriptedSimulator(), processes=2))
    memory = make_engine("sqlite://")
    migrate(memory)
    study, d = load(memory, spec)
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=1, conditions=["full"])
    with pytest.raises(ValueError, match="in-memory SQLite database cannot be shared"):
        asyncio.run(run_simulation(memory, plan, ScriptedSimulator(), processes=2))
    with pytest.raises(ValueError, match="processes must be at least 1"):
        asyncio.run(run_simulation(memory, plan, ScriptedSimulator(), processes=0))


def test_interrupted_processes_stop_and_resume_without_duplicates(sqlite_engine: Engine, sim_spec: Callable[..., str]) -> None:
    spec = sim_spec(bot_latency=0.05)
    study, d = load(sqlite_engine, spec)
    conds = ["sharded", "recap", "full"]

    def stop_after_three(status: RunStatus) -> None:
        if status.done >= 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        simulate(sqlite_engine, study, d, repeats=3, conditions=conds, concurrency=4, processes=2, on_progress=stop_after_three)
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=3, conditions=conds)
    before = {c.id: (c.status, user_shards(sqlite_engine, c.id)) for c in sessions_of(sqlite_engine, plan.run_id)}
    time.sleep(0.3)  # the workers are gone: nothing moves after the stop
    assert {c.id: (c.status, user_shards(sqlite_engine, c.id)) for c in sessions_of(sqlite_engine, plan.run_id)} == before
    unfinished = [sid for sid, (status, _) in before.items() if status == "active"]
    assert unfinished and 3 <= sum(1 for status, _ in before.values() if status == "ended") < plan.total
    _, result = simulate(sqlite_engine, study, d, repeats=3, conditions=conds, concurrency=4, processes=2)
    assert result.resumed == len(unfinished) and result.complete
    after = sessions_of(sqlite_engine, plan.run_id)
    assert len(after) == plan.total and all(c.status == "ended" for c in after)
    assert max(fingerprint(sqlite_engine, plan.run_id).values()) == 1
    for sid in unfinished:
        assert user_shards(sqlite_engine, sid)[: len(before[sid][1])] == before[sid][1]


def test_processes_do_not_rerun_the_parents_main_script(
    sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str
) -> None:
    """Under a test runner or Streamlit, ``__main__`` can be a page script: workers must not execute it."""
    import sys
    import types

    script = tmp_path / "page.py"
    script.write_text("raise SystemExit('the parent script ran in a worker')\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", page)
    study, d = load(sqlite_engine, spec)
    plan, result = simulate(sqlite_engine, study, d, repeats=1, conditions=["full"], concurrency=2, processes=2)
    assert result.complete and len(sessions_of(sqlite_engine, plan.run_id)) == len(plan.units)
    assert sys.modules["__main__"] is page
