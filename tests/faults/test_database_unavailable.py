"""The database out of reach when a participant sends: a calm refusal, nothing stored, the message stored once when sent again."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lab import flow
from lab.db import DatabaseUnavailable, make_engine, migrate, reachable
from lab.dialogue import Conversation
from lab.flow import Flow
from lab.schema import Turn

from .outage import postgres_proxy, short_busy_timeout, sqlite_locked

MESSAGE = "Please add the two numbers for me."

Outage = tuple[Engine, Callable[[], AbstractContextManager[None]]]


@pytest.fixture(params=["sqlite_locked", pytest.param("postgres_cut_off", marks=pytest.mark.postgres)])
def outage(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Outage]:
    """An engine of the lab and a way to put its database out of reach for a while."""
    if request.param == "sqlite_locked":
        short_busy_timeout(monkeypatch)
        engine = make_engine(f"sqlite:///{tmp_path / 'lab.db'}")
        migrate(engine)
        yield engine, lambda: sqlite_locked(engine)
        engine.dispose()
        return
    pg_url = os.environ.get("TEST_DATABASE_URL")
    if not pg_url:
        pytest.skip("TEST_DATABASE_URL is not set")
    with postgres_proxy(pg_url) as proxy:
        engine = make_engine(proxy.url(pg_url))
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        migrate(engine)
        yield engine, proxy.down
        engine.dispose()


def stored(engine: Engine, session_id: int) -> list[tuple[str, str]]:
    with Session(engine) as s:
        q = select(Turn).where(Turn.session_id == session_id).order_by(Turn.index)
        return [(t.role, t.content) for t in s.scalars(q)]


def test_a_message_the_database_cannot_take_is_refused_calmly_and_stored_once_when_sent_again(
    outage: Outage, chat_with: Callable[..., tuple[Flow, Conversation]]
) -> None:
    engine, down = outage
    _flow, conv = chat_with(engine, script="echo")
    with down(), pytest.raises(DatabaseUnavailable) as refused:
        flow.send_message(conv, MESSAGE)
    assert str(refused.value) == flow.MESSAGE_NOT_SAVED
    assert conv.turns == [] and stored(engine, conv.session_id) == []
    flow.send_message(conv, MESSAGE)
    conv.reply().consume()
    assert stored(engine, conv.session_id) == [("user", MESSAGE), ("assistant", f"You said: {MESSAGE}")]


def test_a_message_stored_although_its_sender_saw_an_error_is_not_given_back(
    sqlite_engine: Engine, chat_with: Callable[..., tuple[Flow, Conversation]]
) -> None:
    _flow, conv = chat_with(sqlite_engine, script="echo")
    assert not flow.stored_after_all(conv, MESSAGE, 0)
    flow.send_message(conv, MESSAGE)  # the commit went through; only its answer was lost
    assert flow.stored_after_all(Conversation.load(sqlite_engine, conv.session_id), MESSAGE, 0)
    assert not flow.stored_after_all(conv, "Something else.", 0)
    assert not flow.stored_after_all(conv, MESSAGE, 1)  # the same words sent once before are not this message


def test_errors_other_than_the_database_being_out_of_reach_pass_through() -> None:
    error = IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
    with pytest.raises(IntegrityError), reachable("not shown"):
        raise error
