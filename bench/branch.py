"""How fast branches and rollouts run, against ``simulate`` on the same machine in the same run.

Prints figures, not a test. With the scripted simulator and the scripted model (zero
latency) on a temporary SQLite database: a one-condition study whose item has more shards
than the turn limit, and a model that never answers, so each conversation runs to the turn
limit. First ``simulate`` runs the grid (one process, as ``python -m lab simulate``) and its
conversations per second are measured; then ``branch`` samples K alternative replies at
every reply of those conversations, and every reply (the original and its branches) is
rolled out R times. The figures: branch replies per second, rollouts per second against
simulated conversations per second (target ≥ 0.8×), and, since a rollout starts mid-way and
so is shorter than a whole conversation, simulator turns per second in both.

litellm is warmed up by one call before anything is timed (its first call builds much of
litellm and would otherwise be charged to whichever part runs first).

Usage: ``python bench/branch.py [--conversations N] [--turns T] [--concurrency K] [--k K] [--rollouts R]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

REPLY = "Thanks, noted. Tell me more when you are ready."


def spec(turns: int) -> str:
    """A one-condition study whose item has more shards than the turn limit."""
    shards = ", ".join(f'{{id: {i}, text: "Piece {i} of the task holds detail number {i}."}}' for i in range(1, turns + 2))
    return f"""\
slug: bench
title: Branch benchmark
consent: ok
instructions: ok
models:
  bot: {{model: lab/scripted, params: {{script: fixed, reply: "{REPLY}"}}}}
conditions:
  sharded: {{model: bot, reveal: SHARDED}}
plan: {{turn_limit: {turns}}}
items:
  - id: task
    kind: sharded
    shards: [{shards}]
    answer: {{type: number, value: "12345"}}
"""


def warm() -> None:
    """One scripted call, so that litellm's first-call cost is charged to neither side."""
    from lab.llm import acomplete

    asyncio.run(acomplete("lab/scripted", [{"role": "user", "content": "warm up"}], {"script": "fixed", "reply": "ok"}))


def main() -> None:
    """Run the comparison and print it."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conversations", type=int, default=20)
    p.add_argument("--turns", type=int, default=6)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--k", type=int, default=2, help="branch replies per point")
    p.add_argument("--rollouts", type=int, default=2, help="rollouts per reply")
    args = p.parse_args()

    from sqlalchemy.orm import Session

    from lab.branch import Brancher, find_points
    from lab.db import make_engine, migrate
    from lab.rollout import Roller
    from lab.simulate import ScriptedSimulator, plan_run, run_simulation
    from lab.spec import parse_spec
    from lab.studies import load_study

    warm()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/bench.db")
        migrate(engine)
        d = parse_spec(spec(args.turns), "bench.yaml")
        with Session(engine, expire_on_commit=False) as s, s.begin():
            study = load_study(s, d).study
        sim = ScriptedSimulator()
        plan = plan_run(study, d, sim.record(), repeats=args.conversations)

        start = time.perf_counter()
        result = asyncio.run(run_simulation(engine, plan, sim, concurrency=args.concurrency))
        sim_wall = time.perf_counter() - start
        assert result.complete, result
        sim_turns = result.user_turns

        points, _ = find_points(engine, "bench")
        start = time.perf_counter()
        branched = asyncio.run(Brancher(engine, points, k=args.k, concurrency=args.concurrency).run())
        branch_wall = time.perf_counter() - start

        roller = Roller(engine, "bench", points, ScriptedSimulator(), r=args.rollouts, concurrency=args.concurrency)
        start = time.perf_counter()
        rolled = asyncio.run(roller.run())
        roll_wall = time.perf_counter() - start
        roll_turns = rolled.user_turns
        engine.dispose()

    assert not branched.failures and not rolled.failures, (branched.failures, rolled.failures)
    conv_rate = args.conversations / sim_wall
    roll_rate = rolled.finished / roll_wall
    print(
        f"simulate: {args.conversations} conversations of {args.turns} user turns in {sim_wall:.2f} s: "
        f"{conv_rate:.1f} conversations/s, {sim_turns / sim_wall:.0f} simulator turns/s (concurrency {args.concurrency})"
    )
    print(
        f"branch:   {branched.sampled} replies at {len(points)} points (K = {args.k}) in {branch_wall:.2f} s: "
        f"{branched.sampled / branch_wall:.1f} replies/s"
    )
    print(
        f"rollouts: {rolled.finished} ({args.rollouts} per reply) in {roll_wall:.2f} s: {roll_rate:.1f} rollouts/s, "
        f"{roll_turns / roll_wall:.0f} simulator turns/s"
    )
    print(
        f"rollouts/s ÷ simulated conversations/s = {roll_rate / conv_rate:.2f}× (target ≥ 0.8×); "
        f"simulator turns/s, rollouts ÷ simulate = {(roll_turns / roll_wall) / (sim_turns / sim_wall):.2f}×"
    )


if __name__ == "__main__":
    main()
