"""``--worker``: processes sharing only the database finish a run together, take over a stopped worker's unit, stop at the end."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from lab.dialogue import Conversation
from lab.llm import scripted
from lab.schema import Participant, SimulationClaim, utcnow
from lab.simulate import (
    RunPlan,
    RunResult,
    ScriptedSimulator,
    Simulator,
    UserMove,
    plan_run,
    run_progress,
    run_simulation,
)
from lab.simulate._claims import DONE, FAILED, seed
from lab.simulate._worker import WorkerRunner

from .conftest import ROOT, load, sessions_of, simulate, user_shards

CONDITIONS = ["sharded", "full"]


def _claims(engine: Engine, run_id: str) -> dict[str, SimulationClaim]:
    with Session(engine, expire_on_commit=False) as s:
        return {c.unit: c for c in s.scalars(select(SimulationClaim).where(SimulationClaim.run_id == run_id))}


def _units_of(engine: Engine, run_id: str) -> list[str]:
    with Session(engine) as s:
        return [p.simulator["unit"] for p in s.scalars(select(Participant)) if (p.simulator or {}).get("run") == run_id]


def _every_unit_once(engine: Engine, plan: RunPlan) -> None:
    chats = sessions_of(engine, plan.run_id)
    assert len(chats) == plan.total and all(c.status == "ended" for c in chats)
    assert sorted(_units_of(engine, plan.run_id)) == sorted(u.key for u in plan.units)


def _work(engine: Engine, plan: RunPlan, simulator: Simulator | None = None, **kwargs: Any) -> RunResult:
    sim = simulator or ScriptedSimulator()
    return asyncio.run(run_simulation(engine, plan, sim, worker=True, retry_pause=0.0, **kwargs))


@contextmanager
def _writes_held(engine: Engine) -> Iterator[None]:
    """Hold off every writer of the database (readers go on) until the block ends."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("LOCK TABLE simulation_claim IN EXCLUSIVE MODE"))
            yield
            conn.rollback()
        return
    assert engine.url.database
    raw = sqlite3.connect(engine.url.database, isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        raw.execute("ROLLBACK")
        raw.close()


@pytest.mark.timeout(180)
def test_two_worker_processes_finish_a_run_together(engine: Engine, spec: str, tmp_path: Path) -> None:
    study, d = load(engine, spec)
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=4, conditions=CONDITIONS)
    url = engine.url.render_as_string(hide_password=False)
    env = os.environ | {"DATABASE_URL": url, "LAB_ENV_FILE": os.devnull, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    cmd = [sys.executable, "-m", "lab", "simulate", "sim", "--repeats", "4", "--conditions", *CONDITIONS]
    cmd += ["--concurrency", "1", "--worker"]
    logs = [tmp_path / f"worker{i}.err" for i in range(2)]
    # Both workers are held at their first write until both have planned the run, so neither
    # can finish it before the other starts (Python and litellm take seconds to import).
    with _writes_held(engine):
        procs = [
            subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log.open("w"), text=True) for log in logs
        ]
        deadline = time.monotonic() + 90
        while not all(f"run {plan.run_id}" in log.read_text() for log in logs):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [log.read_text() for log in logs]
            time.sleep(0.05)
    outs = [p.communicate(timeout=120)[0] for p in procs]
    errs = [log.read_text() for log in logs]
    assert [p.returncode for p in procs] == [0, 0], errs
    _every_unit_once(engine, plan)
    assert _claims(engine, plan.run_id) == {}, "the claims of an ended run are pruned"
    ended = []
    for out, err in zip(outs, errs, strict=True):
        assert f"{plan.total} planned, {plan.total} ended" in out
        assert "this worker (" in err and f"the run: {plan.total} of {plan.total} ended" in err
        found = re.search(r"this worker \(.*?\) ended (\d+) conversation", err)
        assert found is not None
        ended.append(int(found.group(1)))
    assert sum(ended) == plan.total and min(ended) > 0  # both did some


@pytest.fixture
def kept_claims(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the claims of a run that ends, so that a test can read how its units went."""
    monkeypatch.setattr("lab.simulate._worker.prune", lambda *_args, **_kwargs: 0)


def test_an_ended_run_leaves_no_claims_and_a_later_worker_finds_it_done(engine: Engine, spec: str) -> None:
    study, d = load(engine, spec)
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=1, conditions=CONDITIONS)
    first = _work(engine, plan, concurrency=2)
    assert first.complete and _claims(engine, plan.run_id) == {}
    later = _work(engine, plan, concurrency=2)
    assert later.complete and later.claimed == 0 and later.started == 0
    assert _claims(engine, plan.run_id) == {}


def test_a_run_without_workers_prunes_claims_left_by_workers(sqlite_engine: Engine, spec: str) -> None:
    study, d = load(sqlite_engine, spec)
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=1, conditions=CONDITIONS)
    seed(sqlite_engine, plan.run_id, study.id, {unit.key: (False, None) for unit in plan.units})
    _, result = simulate(sqlite_engine, study, d, repeats=1, conditions=CONDITIONS)
    assert result.complete and _claims(sqlite_engine, plan.run_id) == {}


def test_an_expired_claim_of_a_stopped_worker_is_taken_over(engine: Engine, spec: str, kept_claims: None) -> None:
    study, d = load(engine, spec)
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=2, conditions=CONDITIONS)
    # A worker claims the first unit, starts its conversation, sends the opening and stops
    # without giving the unit back; its lease runs out.
    dead = WorkerRunner(engine, plan, ScriptedSimulator(), lease=60)
    dead._seed()
    claimed = dead._claim()
    assert claimed is not None
    unit, _ = claimed
    conv = dead._start(dead._units[unit], 0, None)
    opening = conv.opening()
    asyncio.run(conv.asend(opening.text, opening.shards, source="simulator"))
    with engine.begin() as conn:
        conn.execute(
            update(SimulationClaim)
            .where(SimulationClaim.run_id == plan.run_id, SimulationClaim.unit == unit)
            .values(expires_at=utcnow() - timedelta(minutes=10))
        )
    result = _work(engine, plan, concurrency=2)
    _every_unit_once(engine, plan)
    taken = _claims(engine, plan.run_id)[unit]
    assert taken.state == DONE and taken.attempts == 2 and taken.worker == result.worker != dead.worker
    assert taken.participant_id == conv.participant_id and result.resumed == 1 and result.lost == 0
    assert [c.id for c in sessions_of(engine, plan.run_id) if c.participant_id == conv.participant_id] == [conv.session_id]
    assert user_shards(engine, conv.session_id)[0] == list(opening.shards)


class Thief(ScriptedSimulator):
    """Plays the participant; in its first move, another worker takes the unit's claim over for a moment."""

    def __init__(self, engine: Engine, hold: float) -> None:
        self.engine, self.hold = engine, hold
        self.stolen: str | None = None

    async def next_move(self, conv: Conversation) -> UserMove:
        if self.stolen is None:
            with self.engine.begin() as conn:
                row = conn.execute(
                    update(SimulationClaim)
                    .where(SimulationClaim.participant_id == conv.participant_id)
                    .values(worker="thief", expires_at=utcnow() + timedelta(seconds=self.hold))
                    .returning(SimulationClaim.unit)
                ).one()
            self.stolen = row[0]
            await asyncio.sleep(4 * self.hold)  # the worker's next renewal finds the unit gone and stops it here
        return await super().next_move(conv)


def test_a_unit_taken_over_is_dropped_then_claimed_again_when_free(engine: Engine, spec: str, kept_claims: None) -> None:
    study, d = load(engine, spec)
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=1, conditions=["sharded"])
    thief = Thief(engine, hold=0.5)
    result = _work(engine, plan, thief, concurrency=1, lease=0.6)
    assert thief.stolen is not None and result.lost == 1 and result.resumed == 1
    taken = _claims(engine, plan.run_id)[thief.stolen]
    assert taken.state == DONE and taken.attempts == 2 and taken.worker == result.worker
    _every_unit_once(engine, plan)


def test_units_stopped_by_model_errors_wait_for_the_next_worker(sqlite_engine: Engine, spec: str) -> None:
    study, d = load(sqlite_engine, spec)
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=1, conditions=["full"])
    scripted.enqueue(*[scripted.ModelFailure("bad_request")] * 2)
    result = _work(sqlite_engine, plan, concurrency=1, max_errors=2)
    assert len(result.failures) == 1 and not result.complete and result.done == plan.total - 1
    assert sorted(c.state for c in _claims(sqlite_engine, plan.run_id).values()) == [DONE, DONE, FAILED]
    again = _work(sqlite_engine, plan, concurrency=1)
    assert again.claimed == again.resumed == 1 and again.complete
    _every_unit_once(sqlite_engine, plan)


def test_a_worker_after_the_end_does_nothing(engine: Engine, spec: str) -> None:
    study, d = load(engine, spec)
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=1, conditions=CONDITIONS)
    first = _work(engine, plan, concurrency=2)
    assert first.complete and first.ended_here == plan.total == first.claimed
    before = {c.id: (c.status, c.ended_at) for c in sessions_of(engine, plan.run_id)}
    again = _work(engine, plan, concurrency=2)
    assert (again.claimed, again.started, again.resumed, again.ended_here) == (0, 0, 0, 0)
    assert again.complete and again.done == plan.total
    assert {c.id: (c.status, c.ended_at) for c in sessions_of(engine, plan.run_id)} == before
    _every_unit_once(engine, plan)


def test_a_worker_runs_in_one_process(sqlite_engine: Engine, spec: str) -> None:
    study, d = load(sqlite_engine, spec)
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=1, conditions=["full"])
    with pytest.raises(ValueError, match="one worker per core"):
        _work(sqlite_engine, plan, processes=2)


def test_cli_worker_reports_what_it_did(tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str) -> None:
    from lab.cli import main

    spec_file = tmp_path / "sim.yaml"
    spec_file.write_text(spec)
    assert main(["migrate"]) == 0 and main(["study", "load", str(spec_file)]) == 0
    capsys.readouterr()
    assert main(["simulate", "sim", "--repeats", "1", "--conditions", "full", "--worker", "--lease", "60"]) == 0
    out = capsys.readouterr()
    assert "3 planned, 3 ended" in out.out
    assert "ended 3 conversation(s) in 3 unit(s) claimed (3 started, 0 continued); the run: 3 of 3 ended" in out.err
    assert main(["simulate", "sim", "--repeats", "1", "--conditions", "full", "--worker", "--processes", "2"]) == 1
    assert "one worker per core" in capsys.readouterr().err
    from lab.db import get_engine

    with Session(get_engine()) as s:
        (progress,) = run_progress(s, "sim")
    assert progress.command is not None and progress.command.endswith("--concurrency 4 --worker --lease 60")
