"""Simulator consistency scored by a judge model, per line and per run."""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from lab.dialogue import Conversation
from lab.llm import scripted
from lab.simulate import (
    judge_consistency,
    run_report,
)

from .conftest import load, sessions_of, simulate, user_shards


def test_consistency_from_a_judge_model(sqlite_engine: Engine, spec: str) -> None:
    study, d = load(sqlite_engine, spec)
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


def test_run_with_judge_scores_every_line_and_resumes_judging(sqlite_engine: Engine, spec: str) -> None:
    study, d = load(sqlite_engine, spec)
    plan, _ = simulate(sqlite_engine, study, d, conditions=["sharded", "full"])
    judge = ("lab/scripted", {"script": "fixed", "reply": '{"consistent": true, "reason": "fine"}'})
    _, again = simulate(sqlite_engine, study, d, conditions=["sharded", "full"], judge=judge)
    assert again.started == 0 and again.done == plan.total  # nothing rerun, only judged
    with Session(sqlite_engine) as s:
        report = run_report(s, plan.run_id)
    assert report.judged_conversations == plan.total and report.judged_lines == report.lines_checked > 0
    assert report.prompt_to_line == 1.0 and report.line_to_line == 1.0
