"""The run report: drift counted by kind, line and conversation."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab.schema import Event
from lab.simulate import (
    run_report,
)

from .conftest import RuleBreaker, load, sessions_of, simulate, user_shards


def test_rule_breaking_double_is_caught(engine: Engine, spec: str) -> None:
    study, d = load(engine, spec)
    breaker = RuleBreaker(["two", "ask", "nothing", "hide", "ok"])
    plan, result = simulate(engine, study, d, breaker, repeats=4, conditions=["sharded", "snowball"], concurrency=3)
    assert result.complete
    for chat in sessions_of(engine, plan.run_id):
        for reveal in user_shards(engine, chat.id):
            assert len(reveal) <= 1  # the engine never records two new shards in one turn
    with Session(engine) as s:
        report = run_report(s, plan.run_id)
    n = 4 * 2  # repeats × conditions
    # add and bill (3 shards each): "two" claims shards 2 and 3 → two_shards; "ask" → asked_question.
    # bakery (6 shards): two, ask, nothing, hide (two_shards + unclaimed_shard), ok, then ok (one left).
    assert report.drift == Counter({"two_shards": 4 * n, "asked_question": 3 * n, "nothing_new": n, "unclaimed_shard": n}), (
        report.format()
    )
    assert report.drifted_lines == 8 * n and report.drifted_conversations == 3 * n
    assert "two_shards" in report.format()
    with Session(engine) as s:
        events = [e.data for e in s.scalars(select(Event).where(Event.kind == "simulator_turn"))]
    two = [e for e in events if e and e["claimed"] == [2, 3]]
    assert two and all(e["sent"] == [2] and "two_shards" in e["drift"] for e in two)
