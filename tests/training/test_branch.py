"""Branches and rollouts on a constructed study whose replies and outcomes are known in advance.

The model under test asks for the first number, then the second, then answers 5 (correct).
Branches come from two fixed models: one asks for the first number whatever the state, one
guesses 4. Under ON_REQUEST a guess ends the conversation (score 0), a question gets the
shard it asks for, so the values of the replies at each point are known exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab.analysis_data import load_study
from lab.branch import find_points, point_prompt, prompt_sha256
from lab.cli import main
from lab.dialogue import Conversation
from lab.export import export_study
from lab.schema import ChatSession, Participant, Turn
from lab.studies import list_studies
from lab.withdraw import withdraw

ASK = "What is the first number?"
SECOND = "What is the second number?"
GUESS = "The answer is 4."
ANSWER = "The answer is 5."
MODELS = {
    "bot": {"model": "lab/scripted", "params": {"script": "sequence", "replies": [ASK, SECOND, ANSWER]}},
    "asker": {"model": "lab/scripted", "params": {"script": "fixed", "reply": ASK}},
    "guesser": {"model": "lab/scripted", "params": {"script": "fixed", "reply": GUESS}},
}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def branched(
    engine: Engine, capsys: pytest.CaptureFixture[str], write_study: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> Engine:
    """The study simulated once, branched (K = 2: asker, guesser) and rolled out (R = 2), on SQLite and Postgres."""
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    path = write_study("study", models=MODELS, conditions={"ask": {"model": "bot", "reveal": "ON_REQUEST"}})
    assert run(capsys, "study", "load", str(path))[0] == 0
    code, _, err = run(capsys, "simulate", "study", "--repeats", "1")
    assert code == 0, err
    code, out, err = run(capsys, "branch", "study", "--k", "2", "--models", "asker", "guesser", "--rollouts", "2")
    assert code == 0, err
    assert "branches: 6 sampled" in out and "rollouts: 18 finished" in out
    return engine


def _turns(engine: Engine, kind: str) -> list[Turn]:
    with Session(engine) as s:
        return list(
            s.scalars(
                select(Turn)
                .join(ChatSession, ChatSession.id == Turn.session_id)
                .where(ChatSession.kind == kind)
                .order_by(Turn.id)
            )
        )


def test_branches_answer_exactly_the_points_prompt(branched: Engine) -> None:
    engine = branched
    points, _ = find_points(engine, "study")
    assert [p.move for p in points] == ["clarification", "clarification", "answer_attempt"]
    by_point: dict[int, list[Turn]] = {}
    with Session(engine) as s:
        for _sid, point, turn in s.execute(
            select(ChatSession.id, ChatSession.point_turn_id, Turn)
            .join(Turn, Turn.session_id == ChatSession.id)
            .where(ChatSession.kind == "branch")
        ).all():
            by_point.setdefault(point, []).append(turn)
    for p in points:
        conv = Conversation.load(engine, p.session_id)
        digest = prompt_sha256(point_prompt(conv, p.index) or [])
        branches = by_point[p.turn_id]
        assert sorted(t.content for t in branches) == sorted([ASK, GUESS])
        assert all(t.index == p.index and t.params["branch"]["prompt_sha256"] == digest for t in branches)
        assert all(t.params["temperature"] == 0.8 for t in branches)


def test_rollouts_value_each_reply(branched: Engine) -> None:
    from lab.rollout import reply_outcomes

    engine = branched
    points, _ = find_points(engine, "study")
    outcomes = reply_outcomes(engine, [p.turn_id for p in points])
    texts = {t.id: t.content for t in _turns(engine, "branch")} | {p.turn_id: "original" for p in points}
    first, _, last = points
    at_first = {texts[r]: o.mean for r, o in outcomes.items() if r in texts and _point_of(engine, r, first.turn_id)}
    assert at_first == {"original": 1.0, ASK: 1.0, GUESS: 0.0}
    assert all(o.n == 2 and o.low == o.high == o.mean for o in outcomes.values())
    assert outcomes[last.turn_id].mean == 1.0


def _point_of(engine: Engine, reply: int, point: int) -> bool:
    if reply == point:
        return True
    with Session(engine) as s:
        return (
            s.scalar(select(ChatSession.point_turn_id).join(Turn, Turn.session_id == ChatSession.id).where(Turn.id == reply))
            == point
        )


def test_rerun_samples_and_rolls_out_nothing_new(branched: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "branch", "study", "--k", "2", "--models", "asker", "guesser", "--rollouts", "2")
    assert code == 0 and "branches: 0 sampled, 6 already stored" in out and "rollouts: 0 finished, 18 already stored" in out


def test_branches_are_no_participants_data(branched: Engine, tmp_path: Path) -> None:
    engine = branched
    data = load_study(engine, "study")
    assert len(data.conversations) == 1 and set(data.participants["kind"]) == {"simulated"}
    assert data.turns["session_id"].nunique() == 1
    with Session(engine) as s:
        (summary,) = list_studies(s)
    assert (summary.participants, summary.sessions) == (1, 1)
    result = export_study(engine, "study", tmp_path / "bundle")
    assert result.rows["conversations"] == 1 and result.rows["participants"] == 1
    meta = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert meta["rows"]["turns"] == 6
    from lab.accounts import create_account
    from lab.annotation import assign, progress

    with Session(engine) as s, s.begin():
        create_account(s, "ann1", "annotator", "correct horse battery")
        assign(s, "study", ["ann1"], 1)
        assert progress(s, "study").conversations == 1


def test_withdrawal_takes_branches_and_rollouts_with_it(branched: Engine) -> None:
    engine = branched
    with Session(engine) as s:
        pid = s.scalar(select(Participant.id).where(Participant.kind == "simulated"))
    withdraw(engine, str(pid))
    with Session(engine) as s:
        assert s.scalars(select(ChatSession.kind)).all() == []


def test_over_asking_is_rejected_and_asking_when_needed_chosen(branched: Engine, tmp_path: Path) -> None:
    from lab.export import export_training

    engine = branched
    export_training(engine, "study", tmp_path / "dpo", "dpo")
    pairs = [json.loads(x) for x in (tmp_path / "dpo" / "data" / "dpo.jsonl").read_text().splitlines()]
    clarify = [p for p in pairs if p["rule"] == "clarify_when_needed"]
    needed = [p for p in clarify if p["decided_by"]["case"] == "asked_when_needed"]
    known = [p for p in clarify if p["decided_by"]["case"] == "asked_when_known"]
    # While a number is missing, the question for it beats the guess; asking for the first number
    # again once it is known (the fixed asker at turn 2) is no question for a missing shard.
    asked = {(p["point"]["assistant_turn"], p["chosen"][0]["content"], p["decided_by"]["asked_for_shard"]) for p in needed}
    assert asked == {(1, ASK, 2), (2, SECOND, 3)}
    assert all(p["rejected"][0]["content"] == GUESS for p in needed)
    # Once both numbers are known, asking again loses to the answer.
    (over,) = known
    assert (over["chosen"][0]["content"], over["rejected"][0]["content"]) == (ANSWER, ASK)
    assert over["point"]["assistant_turn"] == 3 and over["point"]["revealed"] == [1, 2, 3]
    # The guess is worse than the question by an interval that excludes 0; no pair favours a question once all is known.
    outcome = [p for p in pairs if p["rule"] == "outcome"]
    assert outcome and all(p["decided_by"]["difference"]["low"] > 0 for p in outcome)
    assert not [p for p in pairs if p["point"]["assistant_turn"] == 3 and p["chosen"][0]["content"] == ASK]


@pytest.mark.parametrize("intervention", ["none", "mediator"])
def test_point_prompt_is_what_the_model_saw(
    intervention: str, capsys: pytest.CaptureFixture[str], write_study: Callable[..., Path]
) -> None:
    """The echo model repeats the last user message it was sent, so each reply shows its own prompt's end."""
    from lab.db import get_engine

    condition = {"model": "bot", "reveal": "SHARDED", "intervention": intervention, "system_prompt": "Be brief."}
    path = write_study("echo", conditions={"sharded": condition})
    assert run(capsys, "migrate")[0] == 0
    assert run(capsys, "study", "load", str(path))[0] == 0
    assert run(capsys, "simulate", "echo", "--repeats", "1")[0] == 0
    engine = get_engine()
    points, _ = find_points(engine, "echo")
    assert len(points) == 3
    for p in points:
        conv = Conversation.load(engine, p.session_id)
        prompt = point_prompt(conv, p.index)
        assert prompt is not None and prompt[0] == {"role": "system", "content": "Be brief."}
        reply = next(t.content for t in conv.turns if t.id == p.turn_id)
        assert reply == f"You said: {prompt[-1]['content']}"
        if intervention == "mediator":
            rewrite = next(t for t in reversed(conv.turns) if t.role == "mediator" and t.index < p.index)
            assert prompt[1:] == [{"role": "user", "content": rewrite.content}]
        else:
            assert [m["role"] for m in prompt[1:]] == ["user", "assistant"] * (len(prompt) // 2 - 1) + ["user"]
