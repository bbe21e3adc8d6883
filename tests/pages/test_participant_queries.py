"""How much database work each typical participant page run does, counted with SQLAlchemy events.

The page runs go through the real page (``AppTest`` on ``app.py``) with the scripted model.
Statements are counted with ``before_cursor_execute`` and connections with the pool's
``checkout``, split between the page's own runs and the reply's thread (``reply-…``).
``BEFORE`` holds what the page did before a page run read everything in one session:
the figures the counts are held to.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event

from tests.pages.test_participant_page import click, db, invite, send, visit

__all__ = ["db"]  # the page tests' fixture: the configured database with their study open

BEFORE = {
    "first visit (consent page)": {"statements": 6, "connections": 4},
    "consent accepted": {"statements": 14, "connections": 8},
    "start → first task": {"statements": 37, "connections": 11},
    "chat turn: page runs": {"statements": 36, "connections": 12},
    "chat turn: the reply's writes": {"statements": 8, "connections": 3},
    "refresh mid-task": {"statements": 16, "connections": 6},
    "I have my answer": {"statements": 27, "connections": 10},
    "post-item questions": {"statements": 23, "connections": 8},
    "post-study questions": {"statements": 18, "connections": 9},
}
"""Statements and connection checkouts per page run, measured on the page as it was before."""


@dataclass
class Tally:
    """Statements and connection checkouts, by who made them."""

    statements: Counter[str] = field(default_factory=Counter)
    connections: Counter[str] = field(default_factory=Counter)
    sql: list[str] = field(default_factory=list)


def _who() -> str:
    return "reply" if threading.current_thread().name.startswith("reply-") else "page"


@contextmanager
def counting(engine: Engine) -> Iterator[Tally]:
    """Count what ``engine`` is asked to do inside the block."""
    tally = Tally()

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        tally.statements[_who()] += 1
        tally.sql.append(f"{_who()}: {sql.split()[0]} {sql[:90]!r}")

    def checkout(*_args: Any) -> None:
        tally.connections[_who()] += 1

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine.pool, "checkout", checkout)
    try:
        yield tally
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine.pool, "checkout", checkout)


def measure(db: Engine) -> dict[str, dict[str, int]]:
    """Walk one participant through the typical page runs and count each."""
    _pid, token = invite(db)
    visit(t=token)  # the server's first page run migrates and warms up; not what is measured
    _pid, token = invite(db)
    out: dict[str, dict[str, int]] = {}

    def note(name: str, tally: Tally, who: str = "page") -> None:
        out[name] = {"statements": tally.statements[who], "connections": tally.connections[who]}
        print(f"{name}: {out[name]}")
        for line in tally.sql:
            if line.startswith(who):
                print("   ", line)

    with counting(db) as t:
        at = visit(t=token)
    assert at.title[0].value == "Before you start"
    note("first visit (consent page)", t)
    with counting(db) as t:
        at = click(at, "I agree to take part")
    assert at.title[0].value == "How this works"
    note("consent accepted", t)
    with counting(db) as t:
        at = click(at, "Start")
    assert "Task 1 of 1" in [c.value for c in at.caption]
    note("start → first task", t)
    with counting(db) as t:
        at = send(at, "Could you add two numbers?")
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    note("chat turn: page runs", t)
    note("chat turn: the reply's writes", t, "reply")
    with counting(db) as t:
        again = visit(t=token)
    assert [m.name for m in again.chat_message] == ["user", "assistant"]
    note("refresh mid-task", t)
    with counting(db) as t:
        at = click(at, "I have my answer")
    assert at.title[0].value == "About this conversation"
    note("I have my answer", t)
    at.radio[0].set_value(4)
    at.radio[1].set_value("No")
    with counting(db) as t:
        at = at.button[0].click().run()
    assert at.title[0].value == "Last questions"
    note("post-item questions", t)
    with counting(db) as t:
        at = at.button[0].click().run()
    assert at.title[0].value == "Thank you!"
    note("post-study questions", t)
    return out


def test_page_runs_read_in_one_session_and_a_chat_turn_does_half_the_work(db: Engine) -> None:
    counts = measure(db)
    assert set(counts) == set(BEFORE)
    for name, now in counts.items():
        assert now["statements"] <= BEFORE[name]["statements"], name
        assert now["connections"] <= BEFORE[name]["connections"], name
    for name in ("chat turn: page runs", "refresh mid-task"):
        assert counts[name]["statements"] * 2 <= BEFORE[name]["statements"], name
        assert counts[name]["connections"] * 2 <= BEFORE[name]["connections"], name
