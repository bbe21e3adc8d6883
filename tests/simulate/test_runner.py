"""The runner: simulated rows flagged, shared commits, rate limits, bounded concurrency, resumption."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from lab.llm import DEFAULT_TIMEOUT, scripted
from lab.schema import ChatSession, Event, Participant, Turn
from lab.simulate import (
    Limits,
    RunBusy,
    RunStatus,
    ScriptedSimulator,
    plan_run,
    run_lock,
    run_progress,
    run_report,
    run_simulation,
)

from .conftest import Interrupt, load, sessions_of, simulate, user_shards


def test_simulated_rows_are_flagged(engine: Engine, spec: str) -> None:
    study, d = load(engine, spec)
    plan, _ = simulate(engine, study, d, conditions=["sharded", "loaded"])
    with Session(engine) as s:
        people = [p for p in s.scalars(select(Participant).where(Participant.study_id == study.id))]
        turns = list(s.scalars(select(Turn).where(Turn.role == "user")))
    assert people and {p.kind for p in people} == {"simulated"}
    for p in people:
        assert p.simulator is not None
        assert p.simulator["run"] == plan.run_id and p.simulator["kind"] == "scripted"
        assert p.simulator["model"] == "scripted" and p.simulator["prompt_version"] == "scripted-1"
        assert p.simulator["unit"].startswith("r0/") and p.status == "completed" and p.completed_at is not None
    assert {t.source for t in turns} == {"simulator"}
    with Session(engine) as s:
        for p in people:
            kinds = s.scalars(select(Event.kind).where(Event.participant_id == p.id).order_by(Event.id)).all()
            assert kinds[:2] == ["created", "start"] and kinds[-1] == "end" and kinds.count("start") == kinds.count("end")


def test_conversations_of_a_run_share_commits(sqlite_engine: Engine, spec: str) -> None:
    from sqlalchemy import event

    study, d = load(sqlite_engine, spec)
    seen: list[int] = []
    event.listen(sqlite_engine, "commit", lambda conn: seen.append(1))
    plan, result = simulate(sqlite_engine, study, d, repeats=4, conditions=["sharded"], concurrency=8)
    with Session(sqlite_engine) as s:
        written = s.scalar(select(func.count()).select_from(Turn))
        conversations = s.scalar(select(func.count()).select_from(ChatSession))
    assert result.complete and written and conversations and written >= 3 * conversations
    # One commit starts a conversation and one ends it; the turns between share theirs.
    assert len(seen) - 2 * conversations < written / 2


def test_rate_limit_is_respected(sqlite_engine: Engine, spec: str) -> None:
    study, d = load(sqlite_engine, spec)
    rpm = 600  # one call every 0.1 s
    plan, _ = simulate(sqlite_engine, study, d, conditions=["sharded"], rpm=rpm, concurrency=2)
    with Session(sqlite_engine) as s:
        sids = [c.id for c in sessions_of(sqlite_engine, plan.run_id)]
        starts = sorted(s.scalars(select(Turn.sent_at).where(Turn.session_id.in_(sids), Turn.role == "assistant")))
    assert len(starts) == 3 + 6 + 3
    # Every call waits for its token: the k-th goes no earlier than k intervals after the first.
    late = [(t - starts[0]).total_seconds() - k * 60 / rpm for k, t in enumerate(starts)]
    assert min(late) >= -0.02, late


def test_limits_keep_one_bucket_per_model() -> None:
    limits = Limits(rpm=60)

    async def go() -> float:
        start = time.monotonic()
        await limits.acquire("a")
        await limits.acquire("b")  # another model: its own bucket
        return time.monotonic() - start

    assert asyncio.run(go()) < 0.5
    assert asyncio.run(Limits(None).acquire("a")) is None
    with pytest.raises(ValueError):
        Limits(0)


def test_concurrency_is_bounded(sqlite_engine: Engine, sim_spec: Callable[..., str]) -> None:
    spec = sim_spec(bot_latency=0.1)
    study, d = load(sqlite_engine, spec)
    plan, _ = simulate(sqlite_engine, study, d, repeats=2, conditions=["sharded", "full"], concurrency=3)
    with Session(sqlite_engine) as s:
        sids = [c.id for c in sessions_of(sqlite_engine, plan.run_id)]
        calls = s.execute(
            select(Turn.sent_at, Turn.last_token_at).where(Turn.session_id.in_(sids), Turn.role == "assistant")
        ).all()
    edges = sorted([(a, 1) for a, _ in calls] + [(b, -1) for _, b in calls], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert 2 <= peak <= 3


def _peak_calls(engine: Engine, run_id: str) -> int:
    """The most assistant calls of a run that were in flight at once."""
    with Session(engine) as s:
        sids = [c.id for c in sessions_of(engine, run_id)]
        calls = s.execute(
            select(Turn.sent_at, Turn.last_token_at).where(Turn.session_id.in_(sids), Turn.role == "assistant")
        ).all()
    edges = sorted([(a, 1) for a, _ in calls] + [(b, -1) for _, b in calls], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_an_in_process_model_gets_one_call_at_a_time(
    sqlite_engine: Engine, sim_spec: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scripted model (``lab/…``) stands in for an in-process one (``local/…``): calls to it
    # queue in the run, so none spends its timeout waiting for the model's lock.
    import lab.simulate._runner as runner
    from lab.dialogue import Conversation

    monkeypatch.setattr(runner, "LOCAL_PROVIDER", "lab")
    timeouts: set[float] = set()
    areply = Conversation.areply

    async def recording(self: Conversation, *args: Any, **kwargs: Any) -> Any:
        timeouts.add(self.timeout)
        return await areply(self, *args, **kwargs)

    monkeypatch.setattr(Conversation, "areply", recording)
    spec = sim_spec(bot_latency=0.05)
    study, d = load(sqlite_engine, spec)
    plan, result = simulate(sqlite_engine, study, d, repeats=2, conditions=["sharded", "full"], concurrency=3)
    assert result.failures == []
    assert _peak_calls(sqlite_engine, plan.run_id) == 1
    # Its pace is the machine's: a batch call waits for it longer than for a server.
    assert timeouts == {runner.IN_PROCESS_TIMEOUT}
    assert Limits.timeout("openai/gpt-4o-mini", None) == DEFAULT_TIMEOUT < runner.IN_PROCESS_TIMEOUT


def test_limits_hold_a_slot_per_in_process_model_only() -> None:
    limits = Limits(None)
    inside: dict[str, int] = {}
    peak: dict[str, int] = {}

    async def call(*models: str) -> None:
        async with limits.slot(*models, None):
            for m in models:
                inside[m] = inside.get(m, 0) + 1
                peak[m] = max(peak.get(m, 0), inside[m])
            await asyncio.sleep(0.01)
            for m in models:
                inside[m] -= 1

    async def go() -> None:
        await asyncio.gather(*(call("local/a") for _ in range(3)), call("local/a", "local/b"), call("local/b", "local/a"))
        await asyncio.gather(*(call("openai/x") for _ in range(3)))

    asyncio.run(go())
    assert peak == {"local/a": 1, "local/b": 1, "openai/x": 3}
    asyncio.run(go())  # a second event loop gets slots of its own


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_interrupted_run_continues_without_duplicates(engine: Engine, sim_spec: Callable[..., str]) -> None:
    spec = sim_spec(bot_latency=0.02)
    study, d = load(engine, spec)
    conds = ["sharded", "recap", "full"]

    def stop_after_three(status: RunStatus) -> None:
        if status.done >= 3:
            raise Interrupt

    with pytest.raises(ExceptionGroup) as caught:
        simulate(engine, study, d, repeats=3, conditions=conds, concurrency=3, on_progress=stop_after_three)
    assert caught.group_contains(Interrupt)
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=3, conditions=conds)
    before = {c.id: (c.status, user_shards(engine, c.id)) for c in sessions_of(engine, plan.run_id)}
    unfinished = [sid for sid, (status, _) in before.items() if status == "active"]
    assert unfinished and sum(1 for status, _ in before.values() if status == "ended") >= 3
    _, result = simulate(engine, study, d, repeats=3, conditions=conds, concurrency=3)
    assert result.resumed == len(unfinished) and result.complete
    after = sessions_of(engine, plan.run_id)
    assert len(after) == plan.total and all(c.status == "ended" for c in after)
    with Session(engine) as s:
        units = [p.simulator["unit"] for p in s.scalars(select(Participant)) if (p.simulator or {}).get("run") == plan.run_id]
    assert sorted(units) == sorted(u.key for u in plan.units)  # one participant per cell, none twice
    for sid in unfinished:  # continued where it stopped: earlier turns kept, no shard repeated
        shards = user_shards(engine, sid)
        assert shards[: len(before[sid][1])] == before[sid][1]
        flat = [i for turn in shards for i in turn]
        assert len(flat) == len(set(flat))
    with Session(engine) as s:
        assert not run_report(s, plan.run_id).drift
        (progress,) = run_progress(s, "sim")
    assert progress.total == plan.total == progress.ended and progress.finished and progress.unfinished == 0
    assert progress.command is None and progress.simulator == "scripted"


def test_a_run_is_never_run_twice_at_once(engine: Engine, spec: str) -> None:
    study, d = load(engine, spec)
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=1, conditions=["full"])
    with run_lock(engine, plan.run_id):
        with pytest.raises(RunBusy, match=f"run {plan.run_id} is already running"):
            asyncio.run(run_simulation(engine, plan, ScriptedSimulator()))
        other = plan_run(study, d, ScriptedSimulator().record(), repeats=1, conditions=["loaded"])
        assert asyncio.run(run_simulation(engine, other, ScriptedSimulator())).complete  # other runs go on
    assert asyncio.run(run_simulation(engine, plan, ScriptedSimulator())).complete


def test_a_model_that_returns_nothing_fails_after_the_retry_limit(sqlite_engine: Engine, sim_spec: Callable[..., str]) -> None:
    mute = {"mute": {"model": "lab/scripted", "params": {"script": "fixed", "reply": " "}}}
    study, d = load(sqlite_engine, sim_spec(extra_models=mute))
    plan, result = simulate(sqlite_engine, study, d, conditions=["full"], models=["mute"], concurrency=1, max_errors=3)
    assert not result.complete and len(result.failures) == plan.total > 0
    assert all(message == "lab/scripted returned no text." for _sid, message in result.failures)
    with Session(sqlite_engine) as s:
        for sid, _message in result.failures:
            rows = list(s.scalars(select(Turn).where(Turn.session_id == sid).order_by(Turn.index)))
            assert [(t.role, t.error is not None) for t in rows] == [("user", False), *[("assistant", True)] * 3]
            assert {t.content for t in rows[1:]} == {""}


def test_model_errors_leave_the_conversation_for_the_next_run(sqlite_engine: Engine, spec: str) -> None:
    study, d = load(sqlite_engine, spec)
    scripted.enqueue(*[scripted.ModelFailure("bad_request")] * 2)
    plan, result = simulate(sqlite_engine, study, d, conditions=["full"], concurrency=1, max_errors=2)
    assert len(result.failures) == 1 and not result.complete and result.done == plan.total - 1
    with Session(sqlite_engine) as s:
        assert run_report(s, plan.run_id).unfinished == 1
        assert run_progress(s, "sim")[0].unfinished == 1
    _, again = simulate(sqlite_engine, study, d, conditions=["full"])
    assert again.complete and again.resumed == 1 and again.started == 0
