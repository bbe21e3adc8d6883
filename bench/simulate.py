"""How fast simulated conversations run, against the ideal and against bare litellm.

Prints figures, not a test. With the scripted simulator and the scripted model on a
temporary SQLite database, 200 conversations of 8 user turns each (every turn reveals one
shard; the assistant never answers, so each conversation runs to the turn limit):

- with the model answering after a fixed 100 ms, at concurrency 32 in total: the wall time
  against the ideal (the sequential model latency divided by the concurrency; target
  ≤ 1.25×), and the two floors under it: whole waves of conversations (a conversation's
  turns are sequential, so 200 conversations at concurrency 32 run as 7 waves of 8 turns,
  1.12× the ideal) and the same calls through litellm alone (one process's share of the
  conversations, each a sequence of bare ``litellm.acompletion`` calls to the lab's scripted
  provider, with no lab around them);
- with zero latency: recorded turns per second against bare
  ``litellm.acompletion(mock_response=...)`` calls per second at the same concurrency in
  one process, divided by the calls one turn needs (one: the scripted simulator calls no
  model; target ≥ 0.75×). litellm's own cost grows with the history it is sent, so the
  bare calls send the same messages the grid's turns send; the ratio against one-message
  prompts is printed too.

The main figures run the grid in ``--processes`` worker processes (default 2, as
``python -m lab simulate --processes 2``); the same figures for one process follow for
comparison. The first multi-process run of a process starts the worker server, which
imports the lab and litellm once; that start is timed on its own (a one-conversation run)
and printed, and the figures after it are for a started server.

Usage: ``python bench/simulate.py [--conversations N] [--turns T] [--concurrency K] [--processes P] [--profile]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import math
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

REPLY = "Thanks, noted. Tell me more when you are ready."


def spec(turns: int, latency: float) -> str:
    """A one-condition study whose item has more shards than the turn limit."""
    shards = ", ".join(f'{{id: {i}, text: "Piece {i} of the task holds detail number {i}."}}' for i in range(1, turns + 2))
    return f"""\
slug: bench
title: Simulation benchmark
consent: ok
instructions: ok
models:
  bot: {{model: lab/scripted, params: {{script: fixed, reply: "{REPLY}", latency: {latency}}}}}
conditions:
  sharded: {{model: bot, reveal: SHARDED}}
plan: {{turn_limit: {turns}}}
items:
  - id: task
    kind: sharded
    shards: [{shards}]
    answer: {{type: number, value: "12345"}}
"""


def run_grid(
    conversations: int, turns: int, concurrency: int, latency: float, profile: bool = False, processes: int = 1
) -> tuple[float, int]:
    """Run the grid on a fresh database; returns (wall seconds, user turns recorded).

    Args:
        conversations: Conversations in the grid.
        turns: User turns in each.
        concurrency: Conversations in flight at once, in all processes together.
        latency: Seconds the scripted model takes to answer.
        profile: Profile the run (the parent process only when ``processes`` > 1).
        processes: Worker processes (1: the run stays in this process).
    """
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from lab.db import make_engine, migrate
    from lab.schema import Turn
    from lab.simulate import ScriptedSimulator, plan_run, run_simulation
    from lab.spec import parse_spec
    from lab.studies import load_study

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/bench.db")
        migrate(engine)
        d = parse_spec(spec(turns, latency), "bench.yaml")
        with Session(engine, expire_on_commit=False) as s, s.begin():
            study = load_study(s, d).study
        sim = ScriptedSimulator()
        plan = plan_run(study, d, sim.record(), repeats=conversations)
        profiler = cProfile.Profile() if profile else None
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        result = asyncio.run(run_simulation(engine, plan, sim, concurrency=concurrency, processes=processes))
        if profiler is not None:
            profiler.disable()
        wall = time.perf_counter() - start
        if profiler is not None:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(60)
        with Session(engine) as s:
            recorded = s.scalar(select(func.count()).select_from(Turn).where(Turn.role == "user", Turn.source == "simulator"))
        engine.dispose()
        assert result.complete and recorded == conversations * turns, (result, recorded)
        return wall, int(recorded or 0)


def history(turns: int) -> list[dict[str, str]]:
    """The messages the model sees at a conversation's ``turns``-th user turn in the grid."""
    out: list[dict[str, str]] = []
    for i in range(1, turns + 1):
        out.append({"role": "user", "content": f"Piece {i} of the task holds detail number {i}."})
        out.append({"role": "assistant", "content": REPLY})
    return out[:-1]


def bare_rate(calls: int, concurrency: int, turns: int | None) -> float:
    """Bare ``litellm.acompletion(mock_response=...)`` calls per second at a concurrency.

    Args:
        calls: Calls to time.
        concurrency: Calls in flight at once.
        turns: Give call ``i`` the history of user turn ``i mod turns + 1`` (the messages the
            grid sends); None for a one-message prompt.
    """
    from lab.llm._providers import load_litellm

    litellm = load_litellm()
    prompts = [history(t) for t in range(1, (turns or 1) + 1)]

    async def go() -> float:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                messages = prompts[i % len(prompts)] if turns else [{"role": "user", "content": f"turn {i}"}]
                await litellm.acompletion(model="openai/gpt-4o-mini", messages=messages, mock_response=REPLY)

        await asyncio.gather(*(one(i) for i in range(min(64, calls))))
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(calls)))
        return calls / (time.perf_counter() - start)

    return asyncio.run(go())


def bare_shape(conversations: int, turns: int, concurrency: int, latency: float) -> float:
    """Wall seconds of the grid's call pattern through litellm alone, with no lab around it.

    ``conversations`` sequences of ``turns`` calls each, at most ``concurrency`` sequences at
    once, every call a bare ``litellm.acompletion`` to the lab's scripted provider answering
    after ``latency`` seconds: what the grid's model calls cost without the lab.
    """
    from lab.llm._providers import load_litellm

    litellm = load_litellm()
    params = {"script": "fixed", "reply": REPLY, "latency": latency}

    async def go() -> float:
        left = list(range(conversations))

        async def slot() -> None:
            while left:
                left.pop()
                for t in range(1, turns + 1):
                    await litellm.acompletion(model="lab/scripted", messages=history(t), **params)

        await litellm.acompletion(model="lab/scripted", messages=history(1), **(params | {"latency": 0.0}))
        start = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(min(concurrency, conversations)):
                tg.create_task(slot())
        return time.perf_counter() - start

    return asyncio.run(go())


def main() -> None:
    """Measure and print."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conversations", type=int, default=200)
    p.add_argument("--turns", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--processes", type=int, default=2, help="worker processes for the main figures (default 2)")
    p.add_argument("--profile", action="store_true", help="profile the zero-latency run (cProfile)")
    a = p.parse_args()
    from lab.llm._providers import load_litellm

    load_litellm()
    n_turns = a.conversations * a.turns

    ideal = n_turns * 0.1 / a.concurrency
    same = bare_rate(n_turns, a.concurrency, a.turns)
    short = bare_rate(n_turns, a.concurrency, None)
    calls_per_turn = 1
    if a.processes > 1:
        start, _ = run_grid(1, a.turns, a.concurrency, 0.0, processes=a.processes)
        print(
            f"starting the worker server and {a.processes} workers (first multi-process run of a process, "
            f"one conversation): {start:.2f} s"
        )
    runs = [a.processes, 1] if a.processes > 1 else [1]
    for processes in runs:
        where = f"{processes} processes" if processes > 1 else "1 process"
        wall, _ = run_grid(a.conversations, a.turns, a.concurrency, 0.1, processes=processes)
        print(f"{where}, 100 ms model, {a.conversations} conversations × {a.turns} turns at concurrency {a.concurrency}:")
        print(f"  wall {wall:.2f} s, ideal {ideal:.2f} s, ratio {wall / ideal:.2f}× (target ≤ 1.25×)")
        # A conversation's turns are sequential, so the grid runs in whole waves of
        # conversations: no runner beats ceil(conversations / concurrency) conversations in a row.
        share, slots = math.ceil(a.conversations / processes), math.ceil(a.concurrency / processes)
        waves = math.ceil(share / slots) * a.turns * 0.1
        alone = bare_shape(share, a.turns, slots, 0.1)
        print(
            f"  floors: whole waves of conversations {waves:.2f} s ({waves / ideal:.2f}×); litellm alone, same calls "
            f"(one process's share: {share} conversations × {a.turns} calls at concurrency {slots}, no lab) "
            f"{alone:.2f} s ({alone / ideal:.2f}×); the lab adds {wall / alone:.2f}× to litellm alone"
        )
        wall0, recorded = run_grid(a.conversations, a.turns, a.concurrency, 0.0, profile=a.profile, processes=processes)
        lab_rate = recorded / wall0
        print(f"{where}, zero latency, same grid: {lab_rate:.0f} turns/s ({wall0:.2f} s), {calls_per_turn} model call per turn")
        print(
            f"  bare litellm.acompletion(mock_response=...) in one process at concurrency {a.concurrency}, same messages "
            f"as the grid: {same:.0f} calls/s; ratio {lab_rate / (same / calls_per_turn):.2f}× (target ≥ 0.75×)"
        )
        print(f"  bare, one-message prompts: {short:.0f} calls/s; ratio {lab_rate / (short / calls_per_turn):.2f}×")


if __name__ == "__main__":
    main()
