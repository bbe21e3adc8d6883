"""The grid of a run: repeats, conditions and models, or participants under the study's plan."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab.schema import ChatSession, Participant
from lab.simulate import (
    PlanError,
    ScriptedSimulator,
    plan_run,
)

from .conftest import keys_of, load, sessions_of, simulate


def test_grid_of_repeats_conditions_and_models(sqlite_engine: Engine, spec: str) -> None:
    study, d = load(sqlite_engine, spec)
    sim = ScriptedSimulator().record()
    plan = plan_run(study, d, sim, repeats=10)
    assert plan.total == 10 * sum(len([it for it in d.items if c.applies_to(it)]) for c in d.spec.conditions.values())
    assert len({u.key for u in plan.units}) == plan.total
    crossed = plan_run(study, d, sim, repeats=2, conditions=["sharded"], models=["solver", "lab/scripted"])
    assert crossed.cells_by_condition() == Counter({("sharded", "solver"): 6, ("sharded", "lab/scripted"): 6})
    assert crossed.run_id != plan.run_id and plan_run(study, d, sim, repeats=10).run_id == plan.run_id
    with pytest.raises(PlanError, match="unknown condition 'nope'"):
        plan_run(study, d, sim, repeats=1, conditions=["nope"])
    with pytest.raises(PlanError, match="OPENAI_API_KEY"):
        plan_run(study, d, sim, repeats=1, models=["openai/gpt-4o-mini"])
    with pytest.raises(PlanError, match="at least 1"):
        plan_run(study, d, sim, repeats=0)


def test_models_replace_the_conditions_model(sqlite_engine: Engine, spec: str) -> None:
    study, d = load(sqlite_engine, spec)
    plan, _ = simulate(sqlite_engine, study, d, conditions=["sharded"], models=["solver"])
    chats = {keys_of(sqlite_engine, c)[1]: c for c in sessions_of(sqlite_engine, plan.run_id)}
    assert {c.model_params["reply"] for c in chats.values()} == {"The answer is 5."}
    assert chats["add"].outcome == "correct" and chats["bakery"].outcome == "all_revealed"


def test_participants_follow_a_balanced_plan(engine: Engine, spec: str) -> None:
    study, d = load(engine, spec)
    sim = ScriptedSimulator().record()
    plan = plan_run(study, d, sim, participants=10)
    assert plan_run(study, d, sim, participants=10).units == plan.units  # reproducible from the seed
    assert all(len(u.cells) == 2 and len({c.item for c in u.cells}) == 2 for u in plan.units)
    cells = Counter((c.item, c.condition) for u in plan.units for c in u.cells)
    assert max(cells.values()) == 1  # 20 cells over 22 possible: least-filled never repeats one
    _, result = simulate(engine, study, d, participants=10, concurrency=4)
    assert result.complete and result.done == 20
    with Session(engine) as s:
        people = [p for p in s.scalars(select(Participant)) if (p.simulator or {}).get("run") == plan.run_id]
        assert len(people) == 10 and {p.status for p in people} == {"completed"}
        for p in people:
            assert p.plan is None  # human assignment never counts simulated plans
            steps = [(step["item"], step["condition"]) for step in p.simulator["plan"]]
            assert steps == [(c.item, c.condition) for c in plan.units[p.simulator["index"]].cells]
        positions = [
            sorted(c.position for c in s.scalars(select(ChatSession).where(ChatSession.participant_id == p.id))) for p in people
        ]
    assert positions == [[0, 1]] * 10


def test_participants_take_the_listed_models_in_turn(sqlite_engine: Engine, spec: str) -> None:
    study, d = load(sqlite_engine, spec)
    sim = ScriptedSimulator().record()
    plan = plan_run(study, d, sim, participants=4, conditions=["sharded", "full"], models=["solver", "bot"])
    assert [{c.model for c in u.cells} for u in plan.units] == [{"solver"}, {"bot"}, {"solver"}, {"bot"}]
    assert all({c.condition for c in u.cells} <= {"sharded", "full"} for u in plan.units)


def test_between_design_keeps_one_condition_per_participant(sqlite_engine: Engine, sim_spec: Callable[..., str]) -> None:
    spec = sim_spec(plan={"design": "between", "seed": 1})
    study, d = load(sqlite_engine, spec)
    plan = plan_run(study, d, ScriptedSimulator().record(), participants=20, conditions=["sharded", "full"])
    assert all(len({c.condition for c in u.cells}) == 1 and len(u.cells) == 3 for u in plan.units)
    assert Counter(u.cells[0].condition for u in plan.units) == Counter({"sharded": 10, "full": 10})
