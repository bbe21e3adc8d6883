"""Batch relabelling of a study: every layer, superseding, human labels untouched, resumable, and the README command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from test_dialogue import conversation

from lab.cli import main
from lab.judge import ABSTAIN, GROUNDING_VERSION, REPAIR_VERSION, RULES_VERSION
from lab.labels import add_label, current_labels
from lab.llm import scripted
from lab.relabel import relabel_study
from lab.schema import Label, RepairSequence, Turn

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _talk(engine: Engine) -> tuple[int, int]:
    """Two conversations: a clarifying question answered (a repair), and a reply to a loaded question."""
    conv = conversation(engine, "sharded")
    conv.send("Add two numbers.")
    scripted.enqueue("Which numbers do you mean?")
    conv.reply().consume()
    conv.send("The first is 2.")
    scripted.enqueue("Got it, 2. What is the second?")
    conv.reply().consume()
    loaded = conversation(engine, "loaded", "wall")
    loaded.send(loaded.opening().text)
    scripted.enqueue("It is visible because it is very long.")
    loaded.reply().consume()
    return conv.session_id, loaded.session_id


def _labels(engine: Engine, annotator: str) -> list[Label]:
    with Session(engine) as s:
        return list(s.scalars(select(Label).where(Label.annotator == annotator).order_by(Label.id)))


def test_every_layer_supersedes_and_leaves_people_alone(engine: Engine) -> None:
    sharded, loaded = _talk(engine)
    with Session(engine) as s, s.begin():
        first_reply = s.scalar(select(Turn.id).where(Turn.session_id == sharded, Turn.role == "assistant").order_by(Turn.index))
        assert first_reply is not None
        human = add_label(s, first_reply, "ada", "S", "clarification").id
    written_with_replies = len(_labels(engine, "auto:rules"))  # S on 3 replies, P on the loaded one

    run = relabel_study(engine, "engine", layers=("S", "P", "G", "R"))
    assert run.annotator == "auto:rules" and run.layers == ("S", "P", "G", "R")
    assert (run.conversations, run.replies, run.failed) == (2, 3, 0)
    # 3 S + 1 P + 6 G (every user and assistant turn) labels; one repair candidate
    assert run.labelled == 10 and run.sequences == 1

    labels = _labels(engine, "auto:rules")
    assert len(labels) == written_with_replies + 10 + 1  # the R label on the initiation turn
    by_layer = {layer: [lab for lab in labels if lab.layer == layer] for layer in "SPGR"}
    assert {lab.meta["version"] for lab in by_layer["S"] + by_layer["P"]} == {RULES_VERSION}
    assert {lab.meta["version"] for lab in by_layer["G"]} == {GROUNDING_VERSION}
    (r_label,) = by_layer["R"]
    assert r_label.code == "OI-restricted-request" and r_label.meta["version"] == REPAIR_VERSION
    assert r_label.meta["rules"] == ["R-oi-request"] and r_label.turn_id == first_reply
    # the reply-time S and P labels are superseded, not overwritten
    newest_s = [lab for lab in by_layer["S"] if lab.supersedes_id is not None]
    assert len(newest_s) == 3
    g_codes = sorted(lab.code for lab in by_layer["G"])
    assert g_codes == ["ACK+FOLLOWUP+DISPLAY", "CLARIFY", "NONE", "NONE", "NONE", "NONE"]
    with Session(engine) as s:
        (sequence,) = s.scalars(select(RepairSequence)).all()
        assert (sequence.annotator, sequence.initiation, sequence.initiator, sequence.outcome) == (
            "auto:rules",
            "OI-restricted-request",
            "assistant",
            "resolved",
        )
        assert sequence.initiation_turn_id == first_reply and sequence.trouble_turn_id is not None
        current = current_labels(s, first_reply)
        assert any(lab.id == human and lab.annotator == "ada" for lab in current)
        assert s.get(Label, human).supersedes_id is None  # type: ignore[union-attr]

    # A second full run supersedes again; candidates are replaced, not duplicated.
    again = relabel_study(engine, "engine", layers=("S", "P", "G", "R"))
    assert again.labelled == 10 and again.skipped == 0
    with Session(engine) as s:
        assert len(s.scalars(select(RepairSequence)).all()) == 1
    # Only-missing skips what this judge version labelled.
    rest = relabel_study(engine, "engine", layers=("S", "P", "G"), only_missing=True)
    assert (rest.labelled, rest.skipped) == (0, 10)
    assert [lab.annotator for lab in _labels(engine, "ada")] == ["ada"]


def test_stopped_run_continues_with_only_missing(engine: Engine) -> None:
    _talk(engine)

    def stop_after_first(done: int, total: int) -> None:
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        relabel_study(engine, "engine", layers=("G",), progress=stop_after_first)
    kept = _labels(engine, "auto:rules")
    assert sum(lab.layer == "G" for lab in kept) == 4  # the first conversation was committed
    seen: list[tuple[int, int]] = []
    rest = relabel_study(engine, "engine", layers=("G",), only_missing=True, progress=lambda d, t: seen.append((d, t)))
    assert (rest.labelled, rest.skipped) == (2, 4)
    assert seen == [(1, 2), (2, 2)]


def test_llm_judge_failures_write_nothing_and_abstentions_are_stored(engine: Engine) -> None:
    _talk(engine)
    scripted.enqueue(
        json.dumps({"category": "clarification", "reason": "one question"}),
        "not json",
        json.dumps({"category": "answer_attempt", "reason": "answers"}),
        json.dumps({"code": "ACCOMMODATE", "reason": "inside the frame"}),
    )
    run = relabel_study(engine, "engine", "lab/scripted", layers=("S", "P"))
    assert (run.annotator, run.labelled, run.failed, run.replies_failed) == ("auto:llm:lab/scripted", 3, 1, 1)
    assert run.errors and "no JSON" in run.errors[0]
    assert len(_labels(engine, "auto:llm:lab/scripted")) == 3
    # The rule judge abstains on the loaded reply only when it sees no evidence; this one explains "why".
    p_label = [lab for lab in _labels(engine, "auto:rules") if lab.layer == "P"][-1]
    assert p_label.code == "ACCOMMODATE" and p_label.code != ABSTAIN


def test_unknown_study_and_layer(engine: Engine) -> None:
    with pytest.raises(LookupError, match="no study with slug 'nosuch'"):
        relabel_study(engine, "nosuch")
    _talk(engine)
    with pytest.raises(ValueError, match="unknown layer 'X'"):
        relabel_study(engine, "engine", layers=("X",))


def _readme_judge_commands() -> list[list[str]]:
    """`python -m lab judge demo …` lines of the README that need no network (no --model)."""
    found = re.findall(r"python -m lab (judge demo[^\n`#]*)", README)
    return [c.split() for c in found if "--model" not in c]


def test_readme_relabel_commands_run(
    sqlite_engine: Engine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_engine.url.render_as_string(hide_password=False))
    commands = _readme_judge_commands()
    assert len(commands) >= 2, "the README shows how to relabel the demo study"
    _talk(sqlite_engine)
    for argv in commands:
        argv[1] = "engine"  # the demo's conversations come from the local model; this study's from the scripted one
        assert main(argv) == 0, argv
        out, err = capsys.readouterr()
        assert out.startswith("auto:rules on engine") and "conversations" in out
        assert "judging engine: 2/2 conversations (100%)" in err
    assert main(["judge", "nosuch"]) == 1
    assert capsys.readouterr().err == "error: no study with slug 'nosuch': `python -m lab study list` lists the studies\n"
