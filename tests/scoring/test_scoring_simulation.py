"""End to end: a simulated study of the Lost in Conversation sample is scored as the authors score,
unscorable conversations are marked with the reason, and the run report gives means per task family."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from conftest import FIXTURE
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab.cli import main
from lab.items import import_lost_in_conversation, write_items
from lab.schema import ChatSession, Event, ItemRow
from lab.scoring import SCORE_EVENT, family_scores, format_family_scores, score_study
from lab.simulate import ScriptedSimulator, plan_run, run_report, run_simulation
from lab.spec import parse_spec
from lab.studies import load_study

CODE = "```python\\ndef twice(xs):\\n    return [2 * x for x in xs]\\n```"
CALLS = "[get_weather(city='Lyon'), get_weather(city='Graz')]"
MATH = "40 rolls an hour for 30 hours is 1,200 rolls.\\n#### 1200"
SQL = "```sql\\nSELECT author FROM book GROUP BY author HAVING COUNT(*) > 2\\n```"
VERDICT = json.dumps({"coverage": "FULL_COVERAGE", "bullet_id": 1}).replace('"', '\\"')
DISCUSSION = json.dumps({"response_type": "discussion"}).replace('"', '\\"')

SPEC = f"""\
slug: lic
title: Lost in Conversation sample
consent: ok
instructions: ok
models:
  talker: {{model: lab/scripted, params: {{script: answer}}}}
  coder: {{model: lab/scripted, params: {{script: fixed, reply: "{CODE}"}}}}
  caller: {{model: lab/scripted, params: {{script: fixed, reply: "{CALLS}"}}}}
  counter: {{model: lab/scripted, params: {{script: fixed, reply: "{MATH}"}}}}
  querier: {{model: lab/scripted, params: {{script: fixed, reply: "{SQL}"}}}}
  grader: {{model: lab/scripted, params: {{script: fixed, reply: "{VERDICT}"}}}}
  gatekeeper: {{model: lab/scripted, params: {{script: fixed, reply: "{DISCUSSION}"}}}}
conditions:
  full: {{model: talker, reveal: FULL}}
  sharded: {{model: talker, reveal: SHARDED}}
  code-solved: {{model: coder, reveal: SHARDED, items: [lic-code-HumanEval/900]}}
  calls-solved: {{model: caller, reveal: SHARDED, items: [lic-actions-BFCL/parallel_900]}}
  math-solved: {{model: counter, reveal: SHARDED, items: [lic-math-GSM8K/9001]}}
  sql-solved: {{model: querier, reveal: FULL, items: [lic-database-spider-val-1-easy]}}
items:
  - file: items.jsonl
plan: {{turn_limit: 8, seed: 1, max_message_chars: 20000}}
"""


def make_items(folder: Path, *, databases: bool) -> None:
    spider = folder / "spider"
    if databases:
        (spider / "library").mkdir(parents=True)
        conn = sqlite3.connect(spider / "library" / "library.sqlite")
        conn.executescript(
            "CREATE TABLE book (id INTEGER PRIMARY KEY, title TEXT, author TEXT);"
            "INSERT INTO book VALUES (1, 'a', 'Ann'), (2, 'b', 'Ann'), (3, 'c', 'Ann'), (4, 'd', 'Bob');"
        )
        conn.commit()
        conn.close()
    report = import_lost_in_conversation(FIXTURE, spider_databases=spider if databases else None)
    write_items(report.items, folder / "items.jsonl")


def spec_text(*, judge: bool) -> str:
    return SPEC + ("judge: {model: grader}\n" if judge else "")


def families(report_text: str) -> dict[str, str]:
    lines = report_text.split("scores by task family:\n", 1)[1].split("\n")
    rows = {}
    for line in lines:
        if not line.startswith("  "):
            break
        family, rest = line.strip().split(None, 1)
        rows[family] = rest
    return rows


def test_simulate_scores_every_item_it_can_and_says_why_not(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_items(tmp_path, databases=False)
    (tmp_path / "study.yaml").write_text(spec_text(judge=False))
    assert main(["migrate"]) == 0
    assert main(["study", "load", str(tmp_path / "study.yaml")]) == 0
    capsys.readouterr()
    assert main(["simulate", "lic", "--repeats", "1", "--concurrency", "3"]) == 0
    out = capsys.readouterr().out
    rows = families(out)
    # As published: the FULL reply is an attempt (scored 0 here), the SHARDED conversation
    # that never attempts an answer scores 0.
    assert rows["code"].startswith("mean  0.333  scored 3/3 (1 no answer attempt: 0)")
    assert rows["actions"].startswith("mean  0.333  scored 3/3")
    assert rows["math"].startswith("mean  0.333  scored 3/")
    assert rows["database"] == "mean  0.000  scored 1/3 (1 no answer attempt: 0)  not scored: 2 needs database"
    assert rows["summary"] == "mean      —  scored 0/2  not scored: 2 needs judge"
    assert rows["data2text"].startswith("mean  0.") and "scored 2/2" in rows["data2text"]
    assert "scored 2/2" in rows["translation"]

    assert main(["score", "lic", "--only-missing"]) == 0
    again = capsys.readouterr().out
    assert "already scored by the current evaluators" in again
    assert "not scored: 2 needs database" in again
    assert "not scored: 2 needs judge" in again

    # Naming a judge model scores the summaries too (this fixture's insights cite no documents: 0).
    assert main(["score", "lic", "--only-missing", "--judge", "grader"]) == 0
    judged = capsys.readouterr().out
    assert "summary          2 scored, mean 0.000" in judged
    assert "needs judge" not in judged

    # A judge model gates SHARDED turns as the authors' classifier does: this one calls every
    # turn a discussion, so the solved SHARDED code conversation has no attempt (0); FULL is not gated.
    assert main(["score", "lic", "--judge", "gatekeeper"]) == 0
    gated = capsys.readouterr().out
    assert "code             3 scored, mean 0.000" in gated


def test_scores_and_their_evaluators_are_stored(engine: Engine, tmp_path: Path) -> None:
    make_items(tmp_path, databases=True)
    d = parse_spec(spec_text(judge=True), "lic.yaml", tmp_path)
    with Session(engine, expire_on_commit=False) as s, s.begin():
        study = load_study(s, d).study
    sim = ScriptedSimulator()
    plan = plan_run(study, d, sim.record(), repeats=1)
    judge = ("lab/scripted", {"script": "fixed", "reply": json.dumps({"coverage": "FULL_COVERAGE", "bullet_id": 1})})
    asyncio.run(run_simulation(engine, plan, sim, judge=judge, retry_pause=0.0, concurrency=3))

    with Session(engine) as s:
        keys = {row.id: row.key for row in s.scalars(select(ItemRow))}
        chats = {(keys[c.item_id], c.condition_id): c for c in s.scalars(select(ChatSession))}
        solved = [
            c
            for (key, _), c in chats.items()
            if key in ("lic-code-HumanEval/900", "lic-database-spider-val-1-easy") and c.score == 1.0
        ]
        assert len(solved) == 2
        assert all(c.outcome == "correct" for c in solved)
        events = [e.data for e in s.scalars(select(Event).where(Event.kind == SCORE_EVENT))]
        evaluators = {(e["family"], e["evaluator"], e["version"]) for e in events}
        assert ("code", "lic-code", "1") in evaluators
        assert ("database", "lic-database", "2") in evaluators
        assert ("actions", "lic-actions-bfcl-ast", "1") in evaluators
        assert any(
            e["family"] == "summary" and e["status"] == "scored" and e["details"]["judge"] == "lab/scripted" for e in events
        )
        code_event = next(e for e in events if e["family"] == "code" and e["value"] == 1.0)
        assert code_event["turn_id"] is not None and code_event["extracted"].startswith("def twice")

        report = run_report(s, plan.run_id)
    rows = {r.family: r for r in report.families}
    assert rows["database"].scored == 3 and rows["database"].mean == pytest.approx(1 / 3)
    assert rows["database"].no_attempt == 1
    assert rows["summary"].scored == 2 and rows["summary"].not_scored == {}
    assert any(line.startswith("  code ") for line in format_family_scores(report.families))

    # Batch re-scoring: everything again, then only what the current evaluators have not scored.
    run = score_study(engine, "lic")
    # Every conversation but those of the riddle, an item with nothing to score.
    assert run.conversations == sum(1 for u in plan.units if not u.cells[0].item.startswith("lic-riddle"))
    # Every conversation has a score: the SHARDED talker's four that never attempt an answer score 0.
    assert run.scored == sum(len(v) for v in run.by_family.values()) == run.conversations
    assert run.not_scored == {} and run.no_attempt == 4
    assert score_study(engine, "lic", only_missing=True).skipped == run.scored
    with Session(engine) as s:
        chats_now = list(s.scalars(select(ChatSession)))
        items = {row.id: row for row in s.scalars(select(ItemRow))}
        from lab.items import parse_item

        again = family_scores(
            s.connection(), [(c.id, c.score, parse_item(items[c.item_id].payload, items[c.item_id].key)) for c in chats_now]
        )
    assert {r.family: r.scored for r in again} == {r.family: r.scored for r in report.families}
