"""The database out of reach when a participant presses Stop, "Try again", Start or submits the questions: no traceback.

Stop, "Try again" and the questions show the calm notice; Start waits and tries again by itself.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import Engine

from lab import ui
from lab.db import DatabaseUnavailable
from lab.flow import Flow, stop_reply
from lab.generation import GENERATIONS
from lab.llm import scripted
from lab.ui import PAGE_UNAVAILABLE
from tests.pages.test_participant_page import (
    chat,
    click,
    db,
    invite,
    kinds,
    participant,
    send,
    through_instructions,
    turns,
    visit,
)

from .outage import short_busy_timeout, sqlite_locked, sqlite_locked_for

__all__ = ["db"]  # the page tests' fixture: the configured database with their study open


def test_try_again_while_the_database_is_locked_shows_the_calm_notice(monkeypatch: pytest.MonkeyPatch, db: Engine) -> None:
    short_busy_timeout(monkeypatch)
    pid, token = invite(db)
    at = through_instructions(token)
    scripted.enqueue(scripted.ModelFailure("bad_request"))
    at = send(at, "Add two numbers")
    with sqlite_locked(db):
        at = click(at, "Try again")
        assert not at.exception
        assert PAGE_UNAVAILABLE in [e.value for e in [*at.warning, *at.error]]
    at = click(at, "Try again")
    assert not at.exception and not at.warning
    assert chat(at)[-1] == ("assistant", "You said: Add two numbers")
    assert [t.content for t in turns(db, pid) if t.role == "user"] == ["Add two numbers"]


def test_submitting_the_questions_while_the_database_is_locked_shows_the_calm_notice(
    monkeypatch: pytest.MonkeyPatch, db: Engine
) -> None:
    short_busy_timeout(monkeypatch)
    _pid, token = invite(db)
    at = through_instructions(token)
    at = send(at, "Add two numbers")
    at = click(at, "I have my answer")
    assert at.title[0].value == "About this conversation"
    at.radio[0].set_value("4")
    at.radio[1].set_value("Yes")
    with sqlite_locked(db):
        at = at.button[0].click().run()
        assert not at.exception
        assert [w.value for w in at.warning] == [PAGE_UNAVAILABLE]
    at = click(at, "Try again")
    assert not at.exception
    assert at.title[0].value == "About this conversation"


def test_the_last_questions_submitted_while_the_database_is_locked_show_the_calm_notice(
    monkeypatch: pytest.MonkeyPatch, db: Engine
) -> None:
    short_busy_timeout(monkeypatch)
    pid, token = invite(db)
    at = through_instructions(token)
    at = send(at, "Add two numbers")
    at = click(at, "I have my answer")
    at.radio[0].set_value("4")
    at.radio[1].set_value("Yes")
    at = at.button[0].click().run()
    assert at.title[0].value == "Last questions"
    at.text_area[0].input("Fine.")
    with sqlite_locked(db):
        at = at.button[0].click().run()
        assert not at.exception
        assert [w.value for w in at.warning] == [PAGE_UNAVAILABLE]
        assert "Try again" in [b.label for b in at.button]
    at = click(at, "Try again")
    assert at.title[0].value == "Last questions"  # the form again, to send once more
    at.text_area[0].input("Fine.")
    at = at.button[0].click().run()
    assert at.title[0].value == "Thank you!"
    assert participant(db, pid).status == "completed"


def test_stop_while_the_database_is_locked_stops_the_reply_and_says_so_calmly(
    monkeypatch: pytest.MonkeyPatch, db: Engine
) -> None:
    short_busy_timeout(monkeypatch)
    db.dispose()  # connections made from now on give up after the short timeout
    pid, token = invite(db)
    through_instructions(token)
    conv = Flow.load(db, pid).conversation()
    conv.send("Add two numbers")
    conv.setup = replace(conv.setup, params={"script": "echo", "token_delay": 0.2})  # slow enough to stop
    gen = GENERATIONS.start(db, conv.session_id, conv=conv)
    assert gen.wait(0, 60)  # the first piece (the first model call of a process loads the gateway)
    with sqlite_locked(db), pytest.raises(DatabaseUnavailable, match=PAGE_UNAVAILABLE):
        stop_reply(conv, PAGE_UNAVAILABLE)
    assert gen.done and gen.stopped
    # The page's Stop shows that refusal as the calm notice (as "Try again" does, above); once
    # the database is back, the page goes on from the stored message.
    at = visit(t=token)
    assert not at.exception
    assert [t.content for t in turns(db, pid) if t.role == "user"] == ["Add two numbers"]
    assert chat(at)[0] == ("user", "Add two numbers") and chat(at)[-1][0] == "assistant"


def test_start_while_the_database_is_busy_waits_and_goes_on_by_itself(monkeypatch: pytest.MonkeyPatch, db: Engine) -> None:
    short_busy_timeout(monkeypatch)
    db.dispose()  # connections made from now on give up after the short timeout
    monkeypatch.setattr(ui, "BUSY_RETRY_SECONDS", 0.1)
    tries: list[bool] = []
    begin = Flow.begin

    def counted(self: Flow) -> object:
        tries.append(True)
        return begin(self)

    monkeypatch.setattr(Flow, "begin", counted)
    pid, token = invite(db)
    at = click(visit(t=token), "I agree to take part")
    with sqlite_locked_for(db, 1.5):
        at = click(at, "Start")
    assert not at.exception and not at.error and not at.warning
    assert len(tries) >= 2  # refused while busy, then again by itself
    assert "Task 1 of 1" in [c.value for c in at.caption]
    assert kinds(db, pid).count("instructions") == 1


def test_a_first_visit_while_the_database_is_busy_waits_and_opens_by_itself(monkeypatch: pytest.MonkeyPatch, db: Engine) -> None:
    short_busy_timeout(monkeypatch)
    db.dispose()  # connections made from now on give up after the short timeout
    monkeypatch.setattr(ui, "BUSY_RETRY_SECONDS", 0.1)
    ui.engine()  # a warm server: its first visit has migrated the database (a cold one needs the write lock for that)
    with sqlite_locked_for(db, 1.5):
        at = visit(study="web", PROLIFIC_PID="p-busy", STUDY_ID="s", SESSION_ID="x")  # minting a participant writes
    assert not at.exception and not at.error and not at.warning
    assert at.title[0].value == "Before you start"
