"""What the simulation tests share: the study they simulate, and running and reading a run."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab.dialogue import Conversation
from lab.schema import ChatSession, Condition, ItemRow, Participant, Study, Turn
from lab.simulate import ScriptedSimulator, Simulator, UserMove, plan_run, run_simulation
from lab.spec import StudyDefinition, parse_spec
from lab.studies import load_study

ROOT = Path(__file__).resolve().parents[2]

BOT_REPLY = "Noted. Anything else I should know?"
"""What the assistant of most conditions says, whatever it is told."""

SIM_MODELS: dict[str, Any] = {
    "bot": {"model": "lab/scripted", "params": {"script": "fixed", "reply": BOT_REPLY}},
    "solver": {"model": "lab/scripted", "params": {"script": "fixed", "reply": "The answer is 5."}},
    "wrong": {"model": "lab/scripted", "params": {"script": "fixed", "reply": "The answer is 7."}},
    "asker": {
        "model": "lab/scripted",
        "params": {"script": "sequence", "replies": ["What was the total of the bill?", "How many people are there?", "Thanks."]},
    },
}

SIM_CONDITIONS: dict[str, Any] = {
    "full": {"model": "bot", "reveal": "FULL"},
    "concat": {"model": "bot", "reveal": "CONCAT"},
    "sharded": {"model": "bot", "reveal": "SHARDED"},
    "snowball": {"model": "bot", "reveal": "SNOWBALL"},
    "recap": {"model": "bot", "reveal": "RECAP"},
    "on-request": {"model": "asker", "reveal": "ON_REQUEST", "kinds": ["clarification"]},
    "solved": {"model": "solver", "reveal": "SHARDED", "kinds": ["sharded"]},
    "sharded-add": {"model": "bot", "reveal": "SHARDED", "items": ["add"]},
    "guessing": {"model": "wrong", "reveal": "ON_REQUEST", "kinds": ["clarification"]},
    "loaded": {"model": "bot", "presupposition": "loaded"},
    "control": {"model": "bot", "presupposition": "control"},
}

SIM_ITEMS: list[dict[str, Any]] = [
    {
        "id": "add",
        "kind": "sharded",
        "shards": [
            {"id": 1, "text": "Add two numbers."},
            {"id": 2, "text": "The first number is 2."},
            {"id": 3, "text": "The second number is 3."},
        ],
        "answer": {"type": "number", "value": "5"},
    },
    {
        "id": "bakery",
        "kind": "sharded",
        "shards": [
            {"id": 1, "text": "I need to work out how much money a bakery took in on Saturday."},
            {"id": 2, "text": "They sell muffins at $3 each."},
            {"id": 3, "text": "Loaves of bread cost $5 each."},
            {"id": 4, "text": "On Saturday they sold 40 muffins."},
            {"id": 5, "text": "They also sold 25 loaves of bread."},
            {"id": 6, "text": "A quarter of the muffins went at half price in the last hour."},
        ],
        "answer": {"type": "number", "value": "230"},
    },
    {
        "id": "bill",
        "kind": "clarification",
        "question": "How much does each of us owe?",
        "needs_clarification": True,
        "missing": [
            {"id": 2, "text": "The bill came to $84."},
            {"id": 3, "text": "There are four of us and we're adding a 15% tip."},
        ],
        "answer": {"type": "number", "value": "24.15"},
    },
    {
        "id": "wall",
        "kind": "presupposition",
        "loaded": "Why is the Great Wall visible from the Moon?",
        "control": "Why is the Great Wall hard to see from orbit?",
        "probe": {
            "question": "Is the Great Wall visible from the Moon? yes or no",
            "answer": {"type": "choice", "accept": ["no"]},
        },
    },
]

SIM_PLAN: dict[str, Any] = {"turn_limit": 8, "items_per_participant": 2, "seed": 3}


@pytest.fixture
def sim_spec(study_spec: Callable[..., str]) -> Callable[..., str]:
    """The simulation study (slug ``sim``) with options.

    The returned function takes ``bot_latency`` (seconds before the bot answers, with the
    short reply "Noted."), ``extra_models`` (declared before the others), ``without``
    (condition keys to leave out) and any option of the root ``study_spec``.
    """

    def build(
        slug: str = "sim",
        *,
        bot_latency: float | None = None,
        extra_models: dict[str, Any] | None = None,
        without: tuple[str, ...] = (),
        **options: Any,
    ) -> str:
        models = {**(extra_models or {}), **SIM_MODELS}
        if bot_latency is not None:
            models["bot"] = {"model": "lab/scripted", "params": {"script": "fixed", "reply": "Noted.", "latency": bot_latency}}
        conditions = {key: cond for key, cond in SIM_CONDITIONS.items() if key not in without}
        options.setdefault("title", "Simulation test")
        options.setdefault("plan", SIM_PLAN)
        options.setdefault("items", SIM_ITEMS)
        return study_spec(slug, models=models, conditions=conditions, **options)

    return build


@pytest.fixture
def spec(sim_spec: Callable[..., str]) -> str:
    """The simulation study as it is."""
    return sim_spec()


def load(engine: Engine, spec: str, base_dir: Path | None = None) -> tuple[Study, StudyDefinition]:
    """Load a spec into the database: the study row and its definition."""
    d = parse_spec(spec, "sim.yaml", base_dir)
    with Session(engine, expire_on_commit=False) as s, s.begin():
        study = load_study(s, d).study
    return study, d


def simulate(
    engine: Engine,
    study: Study,
    d: StudyDefinition,
    simulator: Simulator | None = None,
    *,
    repeats: int | None = None,
    participants: int | None = None,
    conditions: list[str] | None = None,
    models: list[str] | None = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """Plan and run a simulation (one repeat unless told), with no pause between retries."""
    sim = simulator or ScriptedSimulator()
    if repeats is None and participants is None:
        repeats = 1
    plan = plan_run(study, d, sim.record(), repeats=repeats, participants=participants, conditions=conditions, models=models)
    kwargs.setdefault("retry_pause", 0.0)
    result = asyncio.run(run_simulation(engine, plan, sim, **kwargs))
    return plan, result


def user_shards(engine: Engine, session_id: int) -> list[list[int]]:
    """The shards of each user turn of a conversation, in order."""
    with Session(engine) as s:
        q = select(Turn).where(Turn.session_id == session_id, Turn.role == "user").order_by(Turn.index)
        return [list(t.shards or []) for t in s.scalars(q)]


def sessions_of(engine: Engine, run_id: str) -> list[ChatSession]:
    """The conversations of a run."""
    with Session(engine, expire_on_commit=False) as s:
        pids = [p.id for p in s.scalars(select(Participant)) if (p.simulator or {}).get("run") == run_id]
        return list(s.scalars(select(ChatSession).where(ChatSession.participant_id.in_(pids)).order_by(ChatSession.id)))


def keys_of(engine: Engine, chat: ChatSession) -> tuple[str, str]:
    """The conversation's (condition, item) keys."""
    with Session(engine) as s:
        cond, item = s.get(Condition, chat.condition_id), s.get(ItemRow, chat.item_id)
        assert cond is not None and item is not None
        return cond.key, item.key


def fingerprint(engine: Engine, run_id: str) -> Counter[tuple[Any, ...]]:
    """Every conversation of a run: (unit, position, condition, item, status, user shards)."""
    with Session(engine) as s:
        units = {p.id: p.simulator["unit"] for p in s.scalars(select(Participant)) if (p.simulator or {}).get("run") == run_id}
    return Counter(
        (units[c.participant_id], c.position, *keys_of(engine, c), c.status, repr(user_shards(engine, c.id)))
        for c in sessions_of(engine, run_id)
    )


class Interrupt(Exception):
    """Raised from a progress callback to stop a run part-way."""


class RuleBreaker(Simulator):
    """Breaks one rule per turn, in a fixed order."""

    kind = "double"
    prompt_version = "breaker-1"

    def __init__(self, behaviours: list[str]) -> None:
        self.behaviours = behaviours

    async def next_move(self, conv: Conversation) -> UserMove:
        rem = conv.remaining
        behaviour = self.behaviours[(conv.user_turns - 1) % len(self.behaviours)]
        if behaviour in ("two", "hide") and len(rem) < 2 or behaviour == "ok":
            return UserMove(rem[0].text, (rem[0].id,))
        if behaviour == "two":
            return UserMove(f"{rem[0].text} {rem[1].text}", (rem[0].id, rem[1].id))
        if behaviour == "hide":
            return UserMove(f"{rem[0].text} {rem[1].text}", (rem[0].id,))
        if behaviour == "ask":
            return UserMove(f"{rem[0].text} What do you think so far?", (rem[0].id,))
        if behaviour == "unasked":
            return UserMove(rem[-1].text, (rem[-1].id,))
        assert behaviour == "nothing"
        return UserMove("Okay, thanks.", ())
