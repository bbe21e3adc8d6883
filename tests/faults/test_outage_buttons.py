"""The database out of reach when a participant presses "Try again" or submits the questions: the calm notice, no traceback."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from lab.llm import scripted
from lab.ui import PAGE_UNAVAILABLE
from tests.pages.test_participant_page import chat, click, db, invite, send, through_instructions, turns

from .outage import short_busy_timeout, sqlite_locked

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
