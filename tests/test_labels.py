"""Labels: supersede, never overwrite; batch judging with the rule and LLM judges."""

from __future__ import annotations

import json

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from test_dialogue import conversation

from lab.labels import add_label, current_labels
from lab.llm import scripted
from lab.relabel import judge_study
from lab.schema import Label


def test_new_label_supersedes(sqlite_engine: Engine) -> None:
    conv = conversation(sqlite_engine, "full")
    conv.send("Add 2 and 3.")
    turn = conv.reply().consume()
    with Session(sqlite_engine) as s, s.begin():
        a = add_label(s, turn.id, "ada", "G", "ACK")
        b = add_label(s, turn.id, "ada", "G", "CHECK")
        c = add_label(s, turn.id, "bob", "G", "ACK")
        assert b.supersedes_id == a.id and c.supersedes_id is None
        current = {(lab.annotator, lab.layer, lab.code) for lab in current_labels(s, turn.id)}
        assert ("ada", "G", "CHECK") in current and ("ada", "G", "ACK") not in current and ("bob", "G", "ACK") in current
        # Three by people and the rule judge's layer-S label.
        assert len(s.scalars(select(Label).where(Label.turn_id == turn.id)).all()) == 4


def test_judge_study_with_rules_and_llm(engine: Engine) -> None:
    conv = conversation(engine, "loaded", "wall")
    conv.send(conv.opening().text)
    scripted.enqueue("It is visible because it is very long.")
    conv.reply().consume()
    # Rule labels were written with the reply; a batch run skips what is labelled, or redoes it.
    assert judge_study(engine, "engine").labelled == 0
    assert judge_study(engine, "engine", redo=True).labelled == 1
    scripted.enqueue(
        json.dumps({"category": "answer_attempt", "reason": "answers inside the frame"}),
        json.dumps({"code": "ACCOMMODATE", "reason": "accepts the false premise"}),
    )
    run = judge_study(engine, "engine", "lab/scripted")
    assert (run.judge, run.labelled, run.failed) == ("auto:llm:lab/scripted", 1, 0)
    with Session(engine) as s:
        llm_labels = {(lab.layer, lab.code) for lab in s.scalars(select(Label).where(Label.annotator == "auto:llm:lab/scripted"))}
    assert llm_labels == {("S", "answer_attempt"), ("P", "ACCOMMODATE")}
    scripted.enqueue("not json at all")
    failed = judge_study(engine, "engine", "lab/scripted", redo=True)
    assert failed.failed == 1 and failed.labelled == 0


def test_newest_label_id_changes_with_every_label(sqlite_engine: Engine) -> None:
    from lab.labels import newest_label_id

    with Session(sqlite_engine) as s:
        assert newest_label_id(s) == 0
    conv = conversation(sqlite_engine, "full")
    conv.send("Add 2 and 3.")
    turn = conv.reply().consume()
    with Session(sqlite_engine) as s, s.begin():
        before = newest_label_id(s)
        label = add_label(s, turn.id, "alice", "S", "answer_attempt")
        assert newest_label_id(s) == label.id > before
