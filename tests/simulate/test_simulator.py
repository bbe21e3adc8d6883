"""The simulators: the scripted one follows the reveal rules; the model one's moves are parsed, checked and recorded."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab.dialogue import GO_AHEAD, RECAP_INTRO, Conversation
from lab.llm import scripted
from lab.schema import Event, Participant, Turn
from lab.simulate import (
    DONT_KNOW,
    SIMULATOR_PROMPT_VERSION,
    LLMSimulator,
    UserMove,
    make_simulator,
    parse_move,
    run_report,
)

from .conftest import ROOT, keys_of, load, sessions_of, simulate, user_shards


def test_scripted_simulator_obeys_reveal_rules(engine: Engine, spec: str) -> None:
    study, d = load(engine, spec)
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


def test_scripted_simulator_on_the_demo_items(sqlite_engine: Engine, sim_spec: Callable[..., str]) -> None:
    spec = sim_spec("sim-demo", without=("sharded-add",), items=[{"file": "items/demo.jsonl"}])
    study, d = load(sqlite_engine, spec, ROOT / "studies")
    plan, result = simulate(sqlite_engine, study, d, repeats=2, concurrency=8)
    assert result.complete and plan.total > 60
    with Session(sqlite_engine) as s:
        report = run_report(s, plan.run_id)
    assert report.lines_checked > 100 and not report.drift, report.format()


def test_scripted_on_request_reveals_only_what_is_asked(sqlite_engine: Engine, spec: str) -> None:
    study, d = load(sqlite_engine, spec)
    plan, _ = simulate(sqlite_engine, study, d, conditions=["on-request"])
    (chat,) = sessions_of(sqlite_engine, plan.run_id)
    with Session(sqlite_engine) as s:
        texts = [
            (t.content, list(t.shards or []))
            for t in s.scalars(select(Turn).where(Turn.session_id == chat.id, Turn.role == "user").order_by(Turn.index))
        ]
    assert texts[0] == ("How much does each of us owe?", [1])
    assert texts[1] == ("The bill came to $84.", [2])  # asked for the total
    assert texts[2] == (f"{DONT_KNOW} {GO_AHEAD}", [])  # asked something no shard holds
    assert texts[3] == (GO_AHEAD, [])  # asked nothing
    assert chat.outcome == "turn_limit" and len(texts) == 8


def test_on_request_ends_at_the_first_answer(sqlite_engine: Engine, spec: str) -> None:
    study, d = load(sqlite_engine, spec)
    plan, _ = simulate(sqlite_engine, study, d, conditions=["guessing"])
    (chat,) = sessions_of(sqlite_engine, plan.run_id)
    assert chat.outcome == "answered" and chat.score == 0.0 and user_shards(sqlite_engine, chat.id) == [[1]]


def test_parse_move() -> None:
    move = parse_move('```json\n{"shard": 2, "message": "oh, first is 2", "satisfied": false}\n```')
    assert move == UserMove("oh, first is 2", (2,), False, move.raw, ())
    assert parse_move('{"shard": [2, "3"], "message": "2 and 3"}').shards == (2, 3)
    assert parse_move('{"shard": null, "message": "I don\'t know."}').shards == ()
    assert parse_move('{"shard": null, "message": "", "satisfied": true}').satisfied
    assert parse_move('{"shard": 2, "message": ""}').problems == ("empty",)
    garbled = parse_move("Sure! The first number is 2.")
    assert garbled.problems == ("unparsable",) and garbled.text == "Sure! The first number is 2."


def test_llm_simulator_moves_are_checked_and_recorded(engine: Engine, sim_spec: Callable[..., str]) -> None:
    spec = sim_spec(extra_models={"sim": {"model": "lab/scripted", "params": {"script": "echo"}}})
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


def test_llm_simulator_prompt_follows_mode_and_persona(sqlite_engine: Engine, spec: str) -> None:
    study, d = load(sqlite_engine, spec)
    sim = LLMSimulator("lab/scripted", persona="a retired teacher")
    plan, _ = simulate(sqlite_engine, study, d, conditions=["on-request"])
    (chat,) = sessions_of(sqlite_engine, plan.run_id)
    conv = Conversation.load(sqlite_engine, chat.id)
    system, user = sim.messages(conv)
    assert "only when the assistant's last message asks" in system["content"]
    assert "a retired teacher" in system["content"] and '"shard"' in system["content"]
    assert "[2] The bill came to $84." in user["content"] and "Assistant: What was the total" in user["content"]
