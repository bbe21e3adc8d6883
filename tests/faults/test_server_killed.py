"""The app server SIGKILLed while a reply streams: after a restart nothing committed is lost and the participant goes on."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from lab.db import make_engine, migrate
from lab.flow import Visit as LinkVisit
from lab.flow import resolve_link
from lab.participants import create_participant, new_token
from lab.schema import ChatSession, Participant, Study, Turn
from lab.spec import parse_spec
from lab.studies import load_study, set_status

from .agent import AppServer, Visit

LONG_REPLY = " ".join(f"word{i}" for i in range(80))
"""80 pieces at 0.3 s: the reply is still streaming for about 24 s."""
SHORT_REPLY = "Thanks, noted."


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    """A migrated database the servers and the test share: a SQLite file, or the emptied test Postgres."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'lab.db'}"
    else:
        url = os.environ.get("TEST_DATABASE_URL") or ""
        if not url:
            pytest.skip("TEST_DATABASE_URL is not set")
    engine = make_engine(url)
    if request.param == "postgres":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    migrate(engine)
    yield url, engine
    engine.dispose()


def invite(engine: Engine, spec: str) -> tuple[int, str]:
    """Open ``spec`` and invite one participant: their id and link token."""
    token = new_token()
    with Session(engine) as s, s.begin():
        study = load_study(s, parse_spec(spec, "study.yaml")).study
        set_status(s, study.slug, "open")
        return create_participant(s, study, token=token).id, token


def wait_for(check: Callable[[], Any], seconds: float, what: str) -> Any:
    """Poll ``check`` until it returns something true."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def snapshot(engine: Engine, pid: int) -> dict[str, Any]:
    """The participant's assignment: their plan, their conversations' cells, participants in the study."""
    with Session(engine) as s:
        p = s.get(Participant, pid)
        assert p is not None
        return {
            "plan": p.plan,
            "position": p.position,
            "sessions": [
                (c.id, c.item_id, c.condition_id)
                for c in s.scalars(select(ChatSession).where(ChatSession.participant_id == pid).order_by(ChatSession.id))
            ],
            "participants": s.scalar(select(func.count()).select_from(Participant).where(Participant.study_id == p.study_id)),
        }


def turns(engine: Engine, pid: int) -> list[Turn]:
    """The participant's turns as committed."""
    with Session(engine) as s:
        q = (
            select(Turn)
            .join(ChatSession, ChatSession.id == Turn.session_id)
            .where(ChatSession.participant_id == pid)
            .order_by(Turn.session_id, Turn.index)
        )
        return list(s.scalars(q))


def test_a_server_killed_mid_stream_loses_nothing_committed_and_the_link_resumes(
    tmp_path: Path, database: tuple[str, Engine], study_spec: Callable[..., str]
) -> None:
    url, engine = database
    params = {"script": "sequence", "replies": [LONG_REPLY, SHORT_REPLY], "latency": 0.2, "token_delay": 0.3}
    pid, token = invite(engine, study_spec("killed", models={"bot": {"model": "lab/scripted", "params": params}}))
    link = {"t": [token]}

    first = AppServer(tmp_path, url, "kill-test-secret").start()
    try:
        tab = Visit(first, link)
        tab.press("I agree to take part")
        tab.press("Start")
        before = snapshot(engine, pid)
        assert before["plan"] and len(before["sessions"]) == 1
        sending = tab.write_in_background("What is 2 plus 3?")
        cut = wait_for(
            lambda: [t for t in turns(engine, pid) if t.role == "assistant" and t.content.strip()], 60, "the first stored tokens"
        )[0]
        assert cut.partial is True
        first.kill()
        sending.join(30)
        tab.close()
    finally:
        first.stop()

    stored = turns(engine, pid)
    assert [(t.role, t.content) for t in stored if t.role == "user"] == [("user", "What is 2 plus 3?")]
    reply = next(t for t in stored if t.role == "assistant")
    assert reply.partial is True, "the reply cut by the kill must stay marked partial"
    assert reply.content and LONG_REPLY.startswith(reply.content.strip()) and reply.content.strip() != LONG_REPLY
    assert resolve_link(engine, {"t": token}) == LinkVisit(pid)

    second = AppServer(tmp_path, url, "kill-test-secret").start()
    try:
        again = Visit(second, link)  # the participant reloads their link
        assert not again.errors(), again.errors()
        assert "What is 2 plus 3?" in again.text()
        assert "This reply was cut off." in again.text()
        again.write("Are you still there?")
        wait_for(lambda: again.refresh() and SHORT_REPLY in again.text(), 60, "the reply on the restarted server")
        assert not again.errors(), again.errors()
        again.close()
    finally:
        second.stop()

    after = turns(engine, pid)
    assert [t.content for t in after if t.role == "user"] == ["What is 2 plus 3?", "Are you still there?"]
    assert [t.content for t in after if t.role == "assistant"][-1] == SHORT_REPLY
    assert [t.index for t in after] == sorted({t.index for t in after}), "turn indexes must be unique and ordered"
    assert snapshot(engine, pid) == before, "the restart must not assign the participant again"
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Study)) == 1
