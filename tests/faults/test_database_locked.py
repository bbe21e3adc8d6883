"""The database held by someone else for a few seconds: a participant's message waits, then is stored once."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from lab.dialogue import Conversation
from lab.flow import Flow
from lab.schema import Turn

HOLD_SECONDS = 2.5


@contextmanager
def held(engine: Engine) -> Iterator[threading.Event]:
    """Another connection takes the strongest lock on the turns for :data:`HOLD_SECONDS`.

    SQLite: ``BEGIN EXCLUSIVE`` on the database file. Postgres: ``LOCK TABLE turn IN ACCESS
    EXCLUSIVE MODE``. Yields an event set once the lock is held; releases it on its own.
    """
    taken = threading.Event()
    failure: list[BaseException] = []

    def hold() -> None:
        try:
            if engine.dialect.name == "sqlite":
                conn = sqlite3.connect(str(engine.url.database), isolation_level=None)
                conn.execute("BEGIN EXCLUSIVE")
                taken.set()
                time.sleep(HOLD_SECONDS)
                conn.execute("COMMIT")
                conn.close()
            else:
                with engine.connect() as conn:
                    conn.execute(text("LOCK TABLE turn IN ACCESS EXCLUSIVE MODE"))
                    taken.set()
                    time.sleep(HOLD_SECONDS)
                    conn.commit()
        except BaseException as e:  # noqa: BLE001 - reported to the test below
            failure.append(e)
            taken.set()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        yield taken
    finally:
        thread.join()
    assert not failure, failure


def test_a_message_sent_while_the_database_is_locked_waits_and_is_stored_once(
    engine: Engine, chat_with: Callable[..., tuple[Flow, Conversation]]
) -> None:
    _flow, conv = chat_with(engine, script="echo")
    with held(engine) as taken:
        assert taken.wait(10)
        started = time.monotonic()
        conv.send("Sent while the database is locked.")
        waited = time.monotonic() - started
    # It did wait for the lock (so the lock was real), and was not refused.
    assert waited >= HOLD_SECONDS / 2, waited
    assert conv.reply().consume().content == "You said: Sent while the database is locked."
    with Session(engine) as s:
        turns = [
            (t.role, t.content) for t in s.scalars(select(Turn).where(Turn.session_id == conv.session_id).order_by(Turn.index))
        ]
    assert turns == [
        ("user", "Sent while the database is locked."),
        ("assistant", "You said: Sent while the database is locked."),
    ]
