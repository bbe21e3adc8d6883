"""Simulated participants: reveal rules, drift checks, grid, resumption, limits, records."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from lab.cli import main
from lab.dialogue import GO_AHEAD, RECAP_INTRO, Conversation
from lab.items import Shard
from lab.llm import scripted
from lab.schema import ChatSession, Condition, Event, ItemRow, Participant, Study, Turn
from lab.simulate import (
    DONT_KNOW,
    SIMULATOR_PROMPT_VERSION,
    Limits,
    LLMSimulator,
    PlanError,
    ProgressLine,
    RunBusy,
    RunStatus,
    ScriptedSimulator,
    Simulator,
    UserMove,
    check_message,
    judge_consistency,
    judge_for,
    make_simulator,
    mentions,
    parse_move,
    plan_run,
    run_lock,
    run_progress,
    run_report,
    run_simulation,
)
from lab.spec import StudyDefinition, parse_spec
from lab.studies import load_study

ROOT = Path(__file__).resolve().parent.parent

SPEC = """\
slug: sim
title: Simulation test
consent: ok
instructions: ok
models:
  bot: {model: lab/scripted, params: {script: fixed, reply: "Noted. Anything else I should know?"}}
  solver: {model: lab/scripted, params: {script: fixed, reply: "The answer is 5."}}
  wrong: {model: lab/scripted, params: {script: fixed, reply: "The answer is 7."}}
  asker:
    model: lab/scripted
    params: {script: sequence, replies: ["What was the total of the bill?", "How many people are there?", "Thanks."]}
conditions:
  full: {model: bot, reveal: FULL}
  concat: {model: bot, reveal: CONCAT}
  sharded: {model: bot, reveal: SHARDED}
  snowball: {model: bot, reveal: SNOWBALL}
  recap: {model: bot, reveal: RECAP}
  on-request: {model: asker, reveal: ON_REQUEST, kinds: [clarification]}
  solved: {model: solver, reveal: SHARDED, kinds: [sharded]}
  sharded-add: {model: bot, reveal: SHARDED, items: [add]}
  guessing: {model: wrong, reveal: ON_REQUEST, kinds: [clarification]}
  loaded: {model: bot, presupposition: loaded}
  control: {model: bot, presupposition: control}
plan: {turn_limit: 8, items_per_participant: 2, seed: 3}
items:
  - id: add
    kind: sharded
    shards:
      - {id: 1, text: "Add two numbers."}
      - {id: 2, text: "The first number is 2."}
      - {id: 3, text: "The second number is 3."}
    answer: {type: number, value: "5"}
  - id: bakery
    kind: sharded
    shards:
      - {id: 1, text: "I need to work out how much money a bakery took in on Saturday."}
      - {id: 2, text: "They sell muffins at $3 each."}
      - {id: 3, text: "Loaves of bread cost $5 each."}
      - {id: 4, text: "On Saturday they sold 40 muffins."}
      - {id: 5, text: "They also sold 25 loaves of bread."}
      - {id: 6, text: "A quarter of the muffins went at half price in the last hour."}
    answer: {type: number, value: "230"}
  - id: bill
    kind: clarification
    question: "How much does each of us owe?"
    needs_clarification: true
    missing:
      - {id: 2, text: "The bill came to $84."}
      - {id: 3, text: "There are four of us and we're adding a 15% tip."}
    answer: {type: number, value: "24.15"}
  - id: wall
    kind: presupposition
    loaded: "Why is the Great Wall visible from the Moon?"
    control: "Why is the Great Wall hard to see from orbit?"
    probe: {question: "Is the Great Wall visible from the Moon? yes or no", answer: {type: choice, accept: ["no"]}}
"""


def load(engine: Engine, spec: str = SPEC, base_dir: Path | None = None) -> tuple[Study, StudyDefinition]:
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
    sim = simulator or ScriptedSimulator()
    if repeats is None and participants is None:
        repeats = 1
    plan = plan_run(study, d, sim.record(), repeats=repeats, participants=participants, conditions=conditions, models=models)
    kwargs.setdefault("retry_pause", 0.0)
    result = asyncio.run(run_simulation(engine, plan, sim, **kwargs))
    return plan, result


def user_shards(engine: Engine, session_id: int) -> list[list[int]]:
    with Session(engine) as s:
        q = select(Turn).where(Turn.session_id == session_id, Turn.role == "user").order_by(Turn.index)
        return [list(t.shards or []) for t in s.scalars(q)]


def sessions_of(engine: Engine, run_id: str) -> list[ChatSession]:
    with Session(engine, expire_on_commit=False) as s:
        pids = [p.id for p in s.scalars(select(Participant)) if (p.simulator or {}).get("run") == run_id]
        return list(s.scalars(select(ChatSession).where(ChatSession.participant_id.in_(pids)).order_by(ChatSession.id)))


def keys_of(engine: Engine, chat: ChatSession) -> tuple[str, str]:
    """The conversation's (condition, item) keys."""
    with Session(engine) as s:
        cond, item = s.get(Condition, chat.condition_id), s.get(ItemRow, chat.item_id)
        assert cond is not None and item is not None
        return cond.key, item.key


# --- the scripted simulator follows the rules ------------------------------------------


def test_scripted_simulator_obeys_reveal_rules(engine: Engine) -> None:
    study, d = load(engine)
    plan, result = simulate(engine, study, d, repeats=3, concurrency=4)
    assert result.complete and not result.failures and result.done == plan.total
    with Session(engine) as s:
        report = run_report(s, plan.run_id)
    assert report.lines_checked > 50
    assert not report.drift and report.drifted_lines == 0, report.format()
    for chat in sessions_of(engine, plan.run_id):
        cond, item = keys_of(engine, chat)
        reveals = user_shards(engine, chat.id)
        if cond in ("sharded", "snowball", "recap"):
            n = len(reveals) - (1 if cond == "recap" else 0)
            assert reveals[:n] == [[i] for i in range(1, n + 1)]  # one shard per turn, in order
        if cond == "recap":
            with Session(engine) as s:
                q = select(Turn).where(Turn.session_id == chat.id, Turn.role == "user").order_by(Turn.index.desc())
                last = s.scalars(q).first()
            assert last is not None and last.source == "lab" and last.content.startswith(RECAP_INTRO)
            assert reveals[-1] == [] and chat.outcome == "all_revealed"
        if cond in ("full", "concat"):
            assert len(reveals) == 1 and chat.outcome == "all_revealed"
        if cond == "solved" and item == "add":
            assert chat.outcome == "correct" and reveals == [[1]] and chat.score == 1.0
        if cond in ("loaded", "control"):
            assert chat.outcome == "answered" and chat.probe is not None
    assert report.outcomes["correct"] == 3


def test_scripted_simulator_on_the_demo_items(sqlite_engine: Engine) -> None:
    head = SPEC.split("items:\n")[0].replace("slug: sim", "slug: sim-demo")
    head = head.replace("  sharded-add: {model: bot, reveal: SHARDED, items: [add]}\n", "")
    spec = head + "items:\n  - file: items/demo.jsonl\n"
    study, d = load(sqlite_engine, spec, ROOT / "studies")
    plan, result = simulate(sqlite_engine, study, d, repeats=2, concurrency=8)
    assert result.complete and plan.total > 60
    with Session(sqlite_engine) as s:
        report = run_report(s, plan.run_id)
    assert report.lines_checked > 100 and not report.drift, report.format()


def test_scripted_on_request_reveals_only_what_is_asked(sqlite_engine: Engine) -> None:
    study, d = load(sqlite_engine)
    plan, _ = simulate(sqlite_engine, study, d, conditions=["on-request"])
    (chat,) = sessions_of(sqlite_engine, plan.run_id)
    with Session(sqlite_engine) as s:
        texts = [(t.content, list(t.shards or [])) for t in s.scalars(
            select(Turn).where(Turn.session_id == chat.id, Turn.role == "user").order_by(Turn.index))]
    assert texts[0] == ("How much does each of us owe?", [1])
    assert texts[1] == ("The bill came to $84.", [2])  # asked for the total
    assert texts[2] == (f"{DONT_KNOW} {GO_AHEAD}", [])  # asked something no shard holds
    assert texts[3] == (GO_AHEAD, [])  # asked nothing
    assert chat.outcome == "turn_limit" and len(texts) == 8


def test_on_request_ends_at_the_first_answer(sqlite_engine: Engine) -> None:
    study, d = load(sqlite_engine)
    plan, _ = simulate(sqlite_engine, study, d, conditions=["guessing"])
    (chat,) = sessions_of(sqlite_engine, plan.run_id)
    assert chat.outcome == "answered" and chat.score == 0.0 and user_shards(sqlite_engine, chat.id) == [[1]]


# --- a rule-breaking double is caught ------------------------------------------------


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


def test_rule_breaking_double_is_caught(engine: Engine) -> None:
    study, d = load(engine)
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
    assert report.drift == Counter(
        {"two_shards": 4 * n, "asked_question": 3 * n, "nothing_new": n, "unclaimed_shard": n}
    ), report.format()
    assert report.drifted_lines == 8 * n and report.drifted_conversations == 3 * n
    assert "two_shards" in report.format()
    with Session(engine) as s:
        events = [e.data for e in s.scalars(select(Event).where(Event.kind == "simulator_turn"))]
    two = [e for e in events if e and e["claimed"] == [2, 3]]
    assert two and all(e["sent"] == [2] and "two_shards" in e["drift"] for e in two)


def test_on_request_double_reveals_what_was_not_asked(sqlite_engine: Engine) -> None:
    study, d = load(sqlite_engine)
    plan, _ = simulate(sqlite_engine, study, d, RuleBreaker(["unasked"]), conditions=["on-request"])
    with Session(sqlite_engine) as s:
        report = run_report(s, plan.run_id)
    # Asked for the total (shard 2), it gives shard 3; then asked about people, it gives shard 2.
    assert report.drift["unrequested_shard"] == 2 and report.drift["ignored_request"] == 1


def test_check_message_rules() -> None:
    shards = [Shard(id=1, text="Add two numbers."), Shard(id=2, text="The first is 2."), Shard(id=3, text="The second is 3.")]
    ok = check_message(reveal="SHARDED", shards=shards, revealed={1}, assistant_text="Sure?", text="first one is 2", sent=[2])
    assert ok == []
    both = check_message(
        reveal="SHARDED", shards=shards, revealed={1}, assistant_text="", text="first is 2, second is 3", sent=[2]
    )
    assert [k for k, _ in both] == ["two_shards", "unclaimed_shard"]
    claimed = check_message(
        reveal="SHARDED", shards=shards, revealed={1}, assistant_text="", text="x", sent=[2], claimed=[2, 3, 9]
    )
    assert {k for k, _ in claimed} == {"two_shards", "unknown_shard"}
    none = check_message(reveal="SNOWBALL", shards=shards, revealed={1}, assistant_text="", text="ok, and you?", sent=[])
    assert {k for k, _ in none} == {"nothing_new", "asked_question"}
    assert check_message(reveal="SHARDED", shards=shards, revealed={1, 2, 3}, assistant_text="", text="thanks", sent=[]) == []
    question_shard = [Shard(id=1, text="Hi."), Shard(id=2, text="Can it be done by Friday?")]
    assert check_message(reveal="SHARDED", shards=question_shard, revealed={1}, assistant_text="",
                         text="Can it be done by Friday?", sent=[2]) == []
    asked = check_message(reveal="ON_REQUEST", shards=shards, revealed={1}, assistant_text="What is the second number?",
                          text="The first is 2.", sent=[2])
    assert {k for k, _ in asked} == {"unrequested_shard", "ignored_request"}
    assert check_message(reveal="ON_REQUEST", shards=shards, revealed={1}, assistant_text="The answer is 9.",
                         text=GO_AHEAD, sent=[]) == []
    assert mentions(Shard(id=5, text="They also sold 25 loaves of bread."), "oh and 25 loaves went too")
    assert not mentions(Shard(id=5, text="They also sold 25 loaves of bread."), "we sold 40 muffins")
    assert not mentions(Shard(id=6, text="A quarter went at half price."), "half of it")


# --- the model simulator ------------------------------------------------------------------


def test_parse_move() -> None:
    move = parse_move('```json\n{"shard": 2, "message": "oh, first is 2", "satisfied": false}\n```')
    assert move == UserMove("oh, first is 2", (2,), False, move.raw, ())
    assert parse_move('{"shard": [2, "3"], "message": "2 and 3"}').shards == (2, 3)
    assert parse_move('{"shard": null, "message": "I don\'t know."}').shards == ()
    assert parse_move('{"shard": null, "message": "", "satisfied": true}').satisfied
    assert parse_move('{"shard": 2, "message": ""}').problems == ("empty",)
    garbled = parse_move("Sure! The first number is 2.")
    assert garbled.problems == ("unparsable",) and garbled.text == "Sure! The first number is 2."


def test_llm_simulator_moves_are_checked_and_recorded(engine: Engine) -> None:
    spec = SPEC.replace("models:\n", "models:\n  sim: {model: lab/scripted, params: {script: echo}}\n")
    study, d = load(engine, spec)
    simulator = make_simulator(d, "sim", "a busy nurse")
    assert isinstance(simulator, LLMSimulator) and simulator.persona == "a busy nurse"
    # One conversation at concurrency 1: the assistant and the simulator take turns on the queue.
    scripted.enqueue(
        "What next?",  # assistant
        '{"shard": [2, 3], "message": "first is 2 and second is 3", "satisfied": false}',  # two shards claimed
        "Got it. Anything else?",
        "ok whatever, can you hurry?",  # not JSON, and a question
        "Noted.",
        '{"shard": null, "message": "", "satisfied": true}',
    )
    plan, result = simulate(engine, study, d, simulator, conditions=["sharded-add"], concurrency=1)
    assert scripted.pending() == 0 and result.done == 1
    (chat,) = sessions_of(engine, plan.run_id)
    assert chat.outcome == "answered"
    assert user_shards(engine, chat.id) == [[1], [2], []]
    with Session(engine) as s:
        report = run_report(s, plan.run_id)
        p = s.get(Participant, chat.participant_id)
        assert p is not None and p.kind == "simulated"
        assert p.simulator is not None and p.simulator["model"] == "lab/scripted" and p.simulator["model_id"] == "sim"
        assert p.simulator["prompt_version"] == SIMULATOR_PROMPT_VERSION and p.simulator["persona"] == "a busy nurse"
        events = [e.data for e in s.scalars(select(Event).where(Event.session_id == chat.id, Event.kind == "simulator_turn"))]
        run = [e.data for e in s.scalars(select(Event).where(Event.kind == "simulate_run"))][-1]
    assert run["prompts"]["version"] == SIMULATOR_PROMPT_VERSION and "one new shard" in run["prompts"]["sharded_rules"]
    assert [e["claimed"] for e in events] == [[2, 3], [], []]
    assert events[0]["raw"].startswith('{"shard": [2, 3]') and events[2]["satisfied"]
    kinds = {(d.turn_index, d.kind) for d in report.examples if d.session_id == chat.id}
    assert kinds == {(3, "two_shards"), (5, "unparsable"), (5, "asked_question"), (5, "nothing_new")}


def test_llm_simulator_prompt_follows_mode_and_persona(sqlite_engine: Engine) -> None:
    study, d = load(sqlite_engine)
    sim = LLMSimulator("lab/scripted", persona="a retired teacher")
    plan, _ = simulate(sqlite_engine, study, d, conditions=["on-request"])
    (chat,) = sessions_of(sqlite_engine, plan.run_id)
    conv = Conversation.load(sqlite_engine, chat.id)
    system, user = sim.messages(conv)
    assert "only when the assistant's last message asks" in system["content"]
    assert "a retired teacher" in system["content"] and '"shard"' in system["content"]
    assert "[2] The bill came to $84." in user["content"] and "Assistant: What was the total" in user["content"]


def test_scripted_simulator_takes_no_persona(sqlite_engine: Engine) -> None:
    _, d = load(sqlite_engine)
    with pytest.raises(PlanError, match="cannot follow a persona"):
        make_simulator(d, None, "a pirate")
    with pytest.raises(PlanError, match="OPENAI_API_KEY"):
        make_simulator(d, "openai/gpt-4o-mini", None)


# --- consistency --------------------------------------------------------------------------


def test_judge_comes_from_the_command_or_a_usable_spec_judge(sqlite_engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    optional = "models:\n  gpt: {model: openai/gpt-4o-mini, optional: true}\n"
    spec = SPEC.replace("models:\n", optional) + "judge: {model: gpt}\n"
    _, d = load(sqlite_engine, spec)
    assert judge_for(d, None) is None and "OPENAI_API_KEY" in capsys.readouterr().err
    assert judge_for(d, "solver") == ("lab/scripted", {"script": "fixed", "reply": "The answer is 5."})
    with pytest.raises(PlanError, match="OPENAI_API_KEY"):
        judge_for(d, "gpt")


def test_consistency_from_a_judge_model(sqlite_engine: Engine) -> None:
    study, d = load(sqlite_engine)
    plan, _ = simulate(sqlite_engine, study, d, conditions=["sharded"])
    chat = next(c for c in sessions_of(sqlite_engine, plan.run_id) if len(user_shards(sqlite_engine, c.id)) == 3)
    conv = Conversation.load(sqlite_engine, chat.id)
    scripted.enqueue(
        '{"consistent": true, "reason": "follows the rules"}',
        '{"consistent": true, "reason": "no contradiction"}',
        '{"consistent": false, "reason": "asks a question"}',
        "no idea",
    )
    result = asyncio.run(judge_consistency(conv, "lab/scripted"))
    assert [(v.prompt_to_line, v.line_to_line) for v in result.lines] == [(True, True), (False, None)]
    assert result.prompt_to_line == 0.5 and result.line_to_line == 1.0
    assert "JSON" in result.lines[1].errors["line_to_line"]
    with Session(sqlite_engine) as s:
        report = run_report(s, plan.run_id)
    assert report.judged_lines == 2 and report.prompt_to_line == 0.5 and "prompt-to-line 0.50" in report.format()


def test_run_with_judge_scores_every_line_and_resumes_judging(sqlite_engine: Engine) -> None:
    study, d = load(sqlite_engine)
    plan, _ = simulate(sqlite_engine, study, d, conditions=["sharded", "full"])
    judge = ("lab/scripted", {"script": "fixed", "reply": '{"consistent": true, "reason": "fine"}'})
    _, again = simulate(sqlite_engine, study, d, conditions=["sharded", "full"], judge=judge)
    assert again.started == 0 and again.done == plan.total  # nothing rerun, only judged
    with Session(sqlite_engine) as s:
        report = run_report(s, plan.run_id)
    assert report.judged_conversations == plan.total and report.judged_lines == report.lines_checked > 0
    assert report.prompt_to_line == 1.0 and report.line_to_line == 1.0


# --- grid ------------------------------------------------------------------------------------


def test_grid_of_repeats_conditions_and_models(sqlite_engine: Engine) -> None:
    study, d = load(sqlite_engine)
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


def test_models_replace_the_conditions_model(sqlite_engine: Engine) -> None:
    study, d = load(sqlite_engine)
    plan, _ = simulate(sqlite_engine, study, d, conditions=["sharded"], models=["solver"])
    chats = {keys_of(sqlite_engine, c)[1]: c for c in sessions_of(sqlite_engine, plan.run_id)}
    assert {c.model_params["reply"] for c in chats.values()} == {"The answer is 5."}
    assert chats["add"].outcome == "correct" and chats["bakery"].outcome == "all_revealed"


def test_participants_follow_a_balanced_plan(engine: Engine) -> None:
    study, d = load(engine)
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


def test_participants_take_the_listed_models_in_turn(sqlite_engine: Engine) -> None:
    study, d = load(sqlite_engine)
    sim = ScriptedSimulator().record()
    plan = plan_run(study, d, sim, participants=4, conditions=["sharded", "full"], models=["solver", "bot"])
    assert [{c.model for c in u.cells} for u in plan.units] == [{"solver"}, {"bot"}, {"solver"}, {"bot"}]
    assert all({c.condition for c in u.cells} <= {"sharded", "full"} for u in plan.units)


def test_between_design_keeps_one_condition_per_participant(sqlite_engine: Engine) -> None:
    spec = SPEC.replace("plan: {turn_limit: 8, items_per_participant: 2, seed: 3}", "plan: {design: between, seed: 1}")
    study, d = load(sqlite_engine, spec)
    plan = plan_run(study, d, ScriptedSimulator().record(), participants=20, conditions=["sharded", "full"])
    assert all(len({c.condition for c in u.cells}) == 1 and len(u.cells) == 3 for u in plan.units)
    assert Counter(u.cells[0].condition for u in plan.units) == Counter({"sharded": 10, "full": 10})


# --- records ---------------------------------------------------------------------------------


def test_simulated_rows_are_flagged(engine: Engine) -> None:
    study, d = load(engine)
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


def test_conversations_of_a_run_share_commits(sqlite_engine: Engine) -> None:
    from sqlalchemy import event

    study, d = load(sqlite_engine)
    seen: list[int] = []
    event.listen(sqlite_engine, "commit", lambda conn: seen.append(1))
    plan, result = simulate(sqlite_engine, study, d, repeats=4, conditions=["sharded"], concurrency=8)
    with Session(sqlite_engine) as s:
        written = s.scalar(select(func.count()).select_from(Turn))
        conversations = s.scalar(select(func.count()).select_from(ChatSession))
    assert result.complete and written and conversations and written >= 3 * conversations
    # One commit starts a conversation and one ends it; the turns between share theirs.
    assert len(seen) - 2 * conversations < written / 2


def test_worker_server_warms_litellm_without_leaving_threads() -> None:
    code = (
        "import asyncio\n"
        "import lab.simulate._warm as w\n"
        "assert w.threads_left() == [], w.threads_left()\n"
        "from lab import llm\n"
        "params = {'script': 'fixed', 'reply': 'ok'}\n"
        "print(asyncio.run(llm.acomplete('lab/scripted', [{'role': 'user', 'content': 'x'}], params)).text)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_rate_limit_is_respected(sqlite_engine: Engine) -> None:
    study, d = load(sqlite_engine)
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


def test_concurrency_is_bounded(sqlite_engine: Engine) -> None:
    spec = SPEC.replace('reply: "Noted. Anything else I should know?"}', 'reply: "Noted.", latency: 0.1}')
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


# --- resumption --------------------------------------------------------------------------------


class Interrupt(Exception):
    pass


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_interrupted_run_continues_without_duplicates(engine: Engine) -> None:
    spec = SPEC.replace('reply: "Noted. Anything else I should know?"}', 'reply: "Noted.", latency: 0.02}')
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


def test_a_run_is_never_run_twice_at_once(engine: Engine) -> None:
    study, d = load(engine)
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=1, conditions=["full"])
    with run_lock(engine, plan.run_id):
        with pytest.raises(RunBusy, match=f"run {plan.run_id} is already running"):
            asyncio.run(run_simulation(engine, plan, ScriptedSimulator()))
        other = plan_run(study, d, ScriptedSimulator().record(), repeats=1, conditions=["loaded"])
        assert asyncio.run(run_simulation(engine, other, ScriptedSimulator())).complete  # other runs go on
    assert asyncio.run(run_simulation(engine, plan, ScriptedSimulator())).complete


def test_model_errors_leave_the_conversation_for_the_next_run(sqlite_engine: Engine) -> None:
    study, d = load(sqlite_engine)
    scripted.enqueue(*[scripted.ModelFailure("bad_request")] * 2)
    plan, result = simulate(sqlite_engine, study, d, conditions=["full"], concurrency=1, max_errors=2)
    assert len(result.failures) == 1 and not result.complete and result.done == plan.total - 1
    with Session(sqlite_engine) as s:
        assert run_report(s, plan.run_id).unfinished == 1
        assert run_progress(s, "sim")[0].unfinished == 1
    _, again = simulate(sqlite_engine, study, d, conditions=["full"])
    assert again.complete and again.resumed == 1 and again.started == 0


@pytest.mark.timeout(180)
@pytest.mark.parametrize("processes", [1, 2])
def test_kill_and_resume_leaves_exactly_n_conversations(tmp_path: Path, processes: int) -> None:
    """SIGKILL mid-run (with workers, the parent), then the same command: exactly N conversations."""
    from lab.db import make_engine, migrate

    db = tmp_path / "kill.db"
    url = f"sqlite:///{db}"
    engine = make_engine(url)
    migrate(engine)
    spec = SPEC.replace('reply: "Noted. Anything else I should know?"}', 'reply: "Noted.", latency: 0.15}')
    study, d = load(engine, spec)
    env = os.environ | {"DATABASE_URL": url, "LAB_ENV_FILE": os.devnull, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    options = ["--concurrency", "2"] if processes == 1 else ["--concurrency", "4", "--processes", str(processes)]
    cmd = [sys.executable, "-m", "lab", "simulate", "sim", "--repeats", "3", "--conditions", "sharded", "full", *options]
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=3, conditions=["sharded", "full"])

    def state() -> dict[int, tuple[str, list[list[int]]]]:
        return {c.id: (c.status, user_shards(engine, c.id)) for c in sessions_of(engine, plan.run_id)}

    def ended() -> int:
        return sum(1 for status, _ in state().values() if status == "ended")

    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while ended() < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.5)  # workers die with their parent: nothing moves after the kill
    at_kill = state()
    time.sleep(0.5)
    assert state() == at_kill
    active = {sid: shards for sid, (status, shards) in at_kill.items() if status == "active"}
    assert active and 3 <= ended() < plan.total
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    chats = sessions_of(engine, plan.run_id)
    assert len(chats) == plan.total == 18 and all(c.status == "ended" for c in chats)
    with Session(engine) as s:
        units = [p.simulator["unit"] for p in s.scalars(select(Participant)) if (p.simulator or {}).get("run") == plan.run_id]
        n_sessions = s.scalar(select(func.count()).select_from(ChatSession))
        (progress,) = run_progress(s, "sim")
    assert len(units) == len(set(units)) == plan.total and n_sessions == plan.total
    for sid, shards in active.items():
        assert user_shards(engine, sid)[: len(shards)] == shards
    assert "18 ended, 0 unfinished" in done.stdout and "drift: none" in done.stdout
    assert "18/18 conversations (100%)" in done.stderr
    assert progress.command is not None and progress.command.endswith(" ".join(options))
    engine.dispose()


# --- command line and progress -------------------------------------------------------------------


def test_cli_runs_reports_and_refuses_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "sim.yaml"
    spec.write_text(SPEC)
    assert main(["migrate"]) == 0 and main(["study", "load", str(spec)]) == 0
    capsys.readouterr()
    assert main(["simulate", "sim", "--repeats", "1", "--conditions", "full", "loaded", "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "4 conversations" in out.err and "  full: 3" in out.err and out.out == ""
    assert main(["simulate", "sim", "--repeats", "1", "--conditions", "full,loaded"]) == 0
    out = capsys.readouterr()
    assert "4 planned, 4 ended" in out.out and "4/4 conversations (100%)" in out.err
    assert main(["simulate", "sim", "--repeats", "1", "--conditions", "full", "loaded"]) == 0
    assert "4 of 4 conversations already ended" in capsys.readouterr().err
    assert main(["simulate", "sim", "--repeats", "1", "--conditions", "nope"]) == 1
    assert "unknown condition 'nope'" in capsys.readouterr().err
    assert main(["simulate", "ghost", "--repeats", "1"]) == 1
    assert "no study with slug 'ghost'" in capsys.readouterr().err
    with Session(_engine()) as s:
        (progress,) = run_progress(s, "sim")
    assert progress.command == "python -m lab simulate sim --repeats 1 --conditions full loaded --concurrency 4"


def _engine() -> Engine:
    from lab.db import get_engine

    return get_engine()


def test_progress_line() -> None:
    out = io.StringIO()
    line = ProgressLine("simulate demo", out)
    for done in range(0, 41):
        line(RunStatus(total=40, done=done, done_at_start=0, failed=0, elapsed=done * 0.5))
    lines = out.getvalue().splitlines()
    assert len(lines) == 21  # one per 5 %
    assert lines[0] == "simulate demo: 0/40 conversations (0%)"
    assert lines[10] == "simulate demo: 20/40 conversations (50%) · 2.0/s · ETA 10s"
    assert lines[-1] == "simulate demo: 40/40 conversations (100%) · 2.0/s · took 20s"

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    line = ProgressLine("simulate demo", tty, min_interval=0)
    line(RunStatus(total=10, done=2, done_at_start=1, failed=1, elapsed=120))
    line.close()
    drawn = "\rsimulate demo: [####................] 2/10 conversations (20%) · 0.5/min · ETA 16m00s · 1 stopped by errors"
    assert tty.getvalue() == drawn * 2 + "\n"


# --- several processes ------------------------------------------------------------------------

MP_CONDITIONS = ["full", "sharded", "recap", "loaded", "solved"]


def fingerprint(engine: Engine, run_id: str) -> Counter[tuple[Any, ...]]:
    """Every conversation of a run: (unit, position, condition, item, status, user shards)."""
    with Session(engine) as s:
        units = {p.id: p.simulator["unit"] for p in s.scalars(select(Participant)) if (p.simulator or {}).get("run") == run_id}
    return Counter(
        (units[c.participant_id], c.position, *keys_of(engine, c), c.status, repr(user_shards(engine, c.id)))
        for c in sessions_of(engine, run_id)
    )


def test_processes_run_the_same_conversations_as_one_process(engine: Engine, tmp_path: Path) -> None:
    from lab.db import make_engine, migrate

    one = make_engine(f"sqlite:///{tmp_path / 'one.db'}")
    migrate(one)
    study1, d1 = load(one)
    plan1, single = simulate(one, study1, d1, repeats=2, conditions=MP_CONDITIONS, concurrency=4)
    study, d = load(engine)
    seen: list[RunStatus] = []
    plan, multi = simulate(engine, study, d, repeats=2, conditions=MP_CONDITIONS, concurrency=4, processes=2,
                           on_progress=seen.append)
    assert plan.run_id == plan1.run_id and multi.complete and single.complete
    assert (multi.done, multi.started, multi.resumed, multi.user_turns, multi.failures) == (
        single.done, single.started, single.resumed, single.user_turns, single.failures)
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


def test_processes_hold_the_run_lock_and_refuse_memory_databases(sqlite_engine: Engine) -> None:
    from lab.db import make_engine, migrate

    study, d = load(sqlite_engine)
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=1, conditions=["full"])
    with run_lock(sqlite_engine, plan.run_id), pytest.raises(RunBusy):
        asyncio.run(run_simulation(sqlite_engine, plan, ScriptedSimulator(), processes=2))
    memory = make_engine("sqlite://")
    migrate(memory)
    study, d = load(memory)
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=1, conditions=["full"])
    with pytest.raises(ValueError, match="in-memory SQLite database cannot be shared"):
        asyncio.run(run_simulation(memory, plan, ScriptedSimulator(), processes=2))
    with pytest.raises(ValueError, match="processes must be at least 1"):
        asyncio.run(run_simulation(memory, plan, ScriptedSimulator(), processes=0))


def test_interrupted_processes_stop_and_resume_without_duplicates(sqlite_engine: Engine) -> None:
    spec = SPEC.replace('reply: "Noted. Anything else I should know?"}', 'reply: "Noted.", latency: 0.05}')
    study, d = load(sqlite_engine, spec)
    conds = ["sharded", "recap", "full"]

    def stop_after_three(status: RunStatus) -> None:
        if status.done >= 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        simulate(sqlite_engine, study, d, repeats=3, conditions=conds, concurrency=4, processes=2,
                 on_progress=stop_after_three)
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


def test_processes_do_not_rerun_the_parents_main_script(sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a test runner or Streamlit, ``__main__`` can be a page script: workers must not execute it."""
    import sys
    import types

    script = tmp_path / "page.py"
    script.write_text("raise SystemExit('the parent script ran in a worker')\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", page)
    study, d = load(sqlite_engine)
    plan, result = simulate(sqlite_engine, study, d, repeats=1, conditions=["full"], concurrency=2, processes=2)
    assert result.complete and len(sessions_of(sqlite_engine, plan.run_id)) == len(plan.units)
    assert sys.modules["__main__"] is page
