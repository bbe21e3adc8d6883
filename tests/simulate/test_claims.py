"""Claims on a run's units: idempotent seeding, claim order, expiry, renewal, and refusing a run without --worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from lab.schema import SimulationClaim, utcnow
from lab.simulate import RunBusy, ScriptedSimulator, plan_run
from lab.simulate._claims import CLAIMED, DONE, PENDING, claim, finish, held_elsewhere, release, renew, seed

from .conftest import load, simulate

RUN = "0123456789abcdef"


def _rows(engine: Engine) -> dict[str, SimulationClaim]:
    with Session(engine, expire_on_commit=False) as s:
        return {c.unit: c for c in s.scalars(select(SimulationClaim).where(SimulationClaim.run_id == RUN))}


def _set(engine: Engine, unit: str, **values: object) -> None:
    with engine.begin() as conn:
        conn.execute(update(SimulationClaim).where(SimulationClaim.run_id == RUN, SimulationClaim.unit == unit).values(**values))


def test_seeding_twice_keeps_one_row_per_unit_and_follows_the_database(engine: Engine, spec: str) -> None:
    study, _ = load(engine, spec)
    seed(engine, RUN, study.id, {"a": (False, None), "b": (True, None), "c": (False, None)})
    claim(engine, RUN, "w1", 60)  # a claimed row is its worker's: seeding leaves it alone
    seed(engine, RUN, study.id, {"a": (True, None), "b": (False, None), "c": (True, None)})
    rows = _rows(engine)
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(SimulationClaim)) == 3
    assert {k: r.state for k, r in rows.items()} == {"a": CLAIMED, "b": PENDING, "c": DONE}
    assert [rows[k].position for k in "abc"] == [0, 1, 2]


def test_claims_go_in_plan_order_and_take_over_only_expired_ones(engine: Engine, spec: str) -> None:
    study, _ = load(engine, spec)
    seed(engine, RUN, study.id, {k: (False, None) for k in "abcd"})
    _set(engine, "a", state=CLAIMED, worker="alive", expires_at=utcnow() + timedelta(hours=1))
    _set(engine, "b", state=CLAIMED, worker="dead", attempts=1, expires_at=utcnow() - timedelta(hours=1))
    got = [claim(engine, RUN, "w", 60) for _ in range(4)]
    assert got == [("b", None), ("c", None), ("d", None), None]
    rows = _rows(engine)
    assert rows["b"].worker == "w" and rows["b"].attempts == 2 and rows["a"].worker == "alive"
    assert held_elsewhere(engine, RUN, "w") == 1 and held_elsewhere(engine, RUN) == 4
    assert renew(engine, RUN, "w", 60) == {"b", "c", "d"}
    assert finish(engine, RUN, "c", "w", ok=True) and not finish(engine, RUN, "a", "w", ok=True)
    release(engine, RUN, "w")
    assert {k: r.state for k, r in _rows(engine).items()} == {"a": CLAIMED, "b": PENDING, "c": DONE, "d": PENDING}
    assert renew(engine, RUN, "w", 60) == set()


def test_a_run_held_by_live_workers_refuses_a_plain_invocation(engine: Engine, spec: str) -> None:
    study, d = load(engine, spec)
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=1, conditions=["full"])
    seed(engine, plan.run_id, study.id, {u.key: (False, None) for u in plan.units})
    assert claim(engine, plan.run_id, "elsewhere", 60) is not None
    with pytest.raises(RunBusy, match="--worker"):
        simulate(engine, study, d, conditions=["full"])
    release(engine, plan.run_id, "elsewhere")
    _, result = simulate(engine, study, d, conditions=["full"])
    assert result.complete
