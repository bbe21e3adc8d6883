"""Group commit: turns written in one pass of the event loop share a transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, Engine, event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lab.dialogue import Conversation, resolve_setup
from lab.group_commit import GroupCommit
from lab.participants import insert_participant, mark_completed
from lab.schema import ChatSession, Event, Label, Participant, Turn
from lab.spec import parse_spec
from lab.studies import load_study

Begin = Callable[[Engine, int], list[Conversation]]
"""Starts ``n`` conversations on an engine."""


@pytest.fixture
def begin(study_spec: Callable[..., str]) -> Begin:
    """Start ``n`` conversations the way the simulation runner does, on the three-shard task "add"."""
    spec = study_spec(
        "batch",
        title="Group commit",
        instructions="ok",
        models={"bot": {"model": "lab/scripted", "params": {"script": "fixed", "reply": "The answer is 5."}}},
        conditions={"sharded": {"model": "bot", "reveal": "SHARDED"}},
        plan={"turn_limit": 4},
    )

    def start(engine: Engine, n: int) -> list[Conversation]:
        with Session(engine, expire_on_commit=False) as s, s.begin():
            study = load_study(s, parse_spec(spec, "batch.yaml")).study
            setup = resolve_setup(s, study, "add", "sharded")
        out = []
        with engine.begin() as conn:
            for _ in range(n):
                pid = insert_participant(conn, study.id, kind="simulated", status="active")
                out.append(Conversation.begin(engine, conn, setup, pid))
        return out

    return start


def commits(engine: Engine) -> list[int]:
    """A list that grows by one at every commit on ``engine``."""
    seen: list[int] = []
    event.listen(engine, "commit", lambda conn: seen.append(1))
    return seen


def stored(engine: Engine, session_id: int) -> list[tuple[int, str, str]]:
    with Session(engine) as s:
        rows = s.execute(select(Turn.index, Turn.role, Turn.content).where(Turn.session_id == session_id).order_by(Turn.index))
        return [tuple(r) for r in rows]


def test_begin_writes_what_load_reads(engine: Engine, begin: Begin) -> None:
    (conv,) = begin(engine, 1)
    again = Conversation.load(engine, conv.session_id)
    assert (again.participant_id, again.model, again.params, again.condition_key, again.item) == (
        conv.participant_id,
        conv.model,
        conv.params,
        conv.condition_key,
        conv.item,
    )
    assert again.status == "active" and again.turns == []
    with Session(engine) as s:
        kinds = s.scalars(select(Event.kind).where(Event.participant_id == conv.participant_id).order_by(Event.id)).all()
    assert kinds == ["created", "start"]


def test_turns_of_one_pass_share_one_commit(engine: Engine, begin: Begin) -> None:
    convs = begin(engine, 6)
    group = GroupCommit(engine)
    for conv in convs:
        conv.group = group
    seen = commits(engine)

    async def go() -> None:
        await asyncio.gather(*(c.asend(c.opening().text, source="simulator") for c in convs))

    asyncio.run(go())
    assert len(seen) == 1 and group.stats.commits == 1 and group.stats.turns == 6
    for conv in convs:
        assert stored(engine, conv.session_id) == [(1, "user", "Add two numbers.")]
        assert [t.id for t in conv.turns] == [turn_id_at(engine, conv.session_id, 1)]


def turn_id_at(engine: Engine, session_id: int, index: int) -> int:
    with Session(engine) as s:
        found = s.scalar(select(Turn.id).where(Turn.session_id == session_id, Turn.index == index))
    assert found is not None
    return found


def test_reply_and_its_labels_commit_through_the_group(engine: Engine, begin: Begin) -> None:
    (a,) = begin(engine, 1)
    a.group = group = GroupCommit(engine)
    asyncio.run(a.asend(a.opening().text, source="simulator"))
    reply = asyncio.run(a.areply())
    assert group.stats.commits == 2 and group.stats.turns == 2
    assert stored(engine, a.session_id) == [(1, "user", "Add two numbers."), (2, "assistant", "The answer is 5.")]
    with Session(engine) as s:
        labels = s.execute(select(Label.turn_id, Label.code).where(Label.turn_id == reply.id)).all()
        chat = s.get(ChatSession, a.session_id)
        row = s.get(Turn, reply.id)
    assert [tuple(r) for r in labels] == [(reply.id, "answer_attempt")]
    assert chat is not None and chat.score == 1.0
    assert row is not None and row.tokens_out is not None and row.model == "lab/scripted" and not row.partial
    assert a.verdicts[reply.id] == ("answer_attempt", 1.0)


def test_rows_of_different_columns_share_the_commit(engine: Engine, begin: Begin) -> None:
    a, b, c = begin(engine, 3)
    group = GroupCommit(engine)
    seen = commits(engine)
    user = {"role": "user", "source": "simulator", "content": "Add two numbers.", "shards": [1]}
    assistant = {"role": "assistant", "source": "model", "content": "5", "model": "m", "tokens_in": 3, "tokens_out": 1}

    async def go() -> list[int]:
        return list(
            await asyncio.gather(
                group.insert_turn({"session_id": a.session_id, "index": 1, **user}),
                group.insert_turn({"session_id": b.session_id, "index": 1, **assistant}),
                group.insert_turn({"session_id": c.session_id, "index": 1, **user}),
            )
        )

    ids = asyncio.run(go())
    assert len(seen) == 1 and len(set(ids)) == 3
    assert stored(engine, a.session_id) == [(1, "user", "Add two numbers.")]
    assert stored(engine, b.session_id) == [(1, "assistant", "5")]
    with Session(engine) as s:
        row = s.get(Turn, ids[1])
    assert row is not None and row.session_id == b.session_id and row.tokens_in == 3


def test_a_clash_fails_alone_and_the_rest_commit(sqlite_engine: Engine, begin: Begin) -> None:
    a, b, c = begin(sqlite_engine, 3)
    group = GroupCommit(sqlite_engine)
    # Another writer takes index 1 of b's conversation first.
    other = Conversation.load(sqlite_engine, b.session_id)
    other.send("written elsewhere", source="simulator")

    async def go() -> list[object]:
        values = [
            {"session_id": conv.session_id, "index": 1, "role": "user", "source": "simulator", "content": "hi"}
            for conv in (a, b, c)
        ]
        return await asyncio.gather(*(group.insert_turn(v) for v in values), return_exceptions=True)

    results = asyncio.run(go())
    assert isinstance(results[1], IntegrityError)
    assert isinstance(results[0], int) and isinstance(results[2], int)
    assert group.stats.fallbacks == 1 and group.stats.turns == 2
    assert stored(sqlite_engine, a.session_id) == [(1, "user", "hi")]
    assert stored(sqlite_engine, b.session_id) == [(1, "user", "written elsewhere")]
    assert stored(sqlite_engine, c.session_id) == [(1, "user", "hi")]


def test_then_runs_in_the_turn_transaction_and_its_failure_undoes_the_turn(sqlite_engine: Engine, begin: Begin) -> None:
    a, b = begin(sqlite_engine, 2)
    group = GroupCommit(sqlite_engine)

    def broken(conn: Connection, turn_id: int) -> None:
        raise RuntimeError("label store unavailable")

    async def go() -> list[object]:
        return await asyncio.gather(
            group.insert_turn({"session_id": a.session_id, "index": 1, "role": "user", "source": "simulator", "content": "kept"}),
            group.insert_turn(
                {"session_id": b.session_id, "index": 1, "role": "user", "source": "simulator", "content": "lost"}, broken
            ),
            return_exceptions=True,
        )

    results = asyncio.run(go())
    assert isinstance(results[0], int) and isinstance(results[1], RuntimeError)
    assert stored(sqlite_engine, a.session_id) == [(1, "user", "kept")]
    assert stored(sqlite_engine, b.session_id) == []


def test_conversation_recovers_from_a_clash_through_the_group(sqlite_engine: Engine, begin: Begin) -> None:
    (conv,) = begin(sqlite_engine, 1)
    conv.group = GroupCommit(sqlite_engine)
    Conversation.load(sqlite_engine, conv.session_id).send("another tab first", source="simulator")
    turn = asyncio.run(conv.asend("Add two numbers.", source="simulator"))
    assert turn.index == 2
    assert stored(sqlite_engine, conv.session_id) == [(1, "user", "another tab first"), (2, "user", "Add two numbers.")]


def test_finish_runs_then_in_its_transaction_once(engine: Engine, begin: Begin) -> None:
    (conv,) = begin(engine, 1)
    pid = conv.participant_id
    assert pid is not None
    conv.finish("answered", then=lambda conn: mark_completed(conn, pid))
    conv.finish("gave_up")  # already ended: the first outcome stays, no second end event
    with Session(engine) as s:
        p = s.get(Participant, pid)
        chat = s.get(ChatSession, conv.session_id)
        ends = s.scalar(select(func.count()).select_from(Event).where(Event.session_id == conv.session_id, Event.kind == "end"))
    assert p is not None and p.status == "completed" and p.completed_at is not None
    assert chat is not None and (chat.status, chat.outcome) == ("ended", "answered")
    assert (conv.status, conv.outcome) == ("ended", "answered") and ends == 1


@pytest.mark.parametrize("n", [1, 40])
def test_every_writer_gets_its_own_id(sqlite_engine: Engine, n: int, begin: Begin) -> None:
    convs = begin(sqlite_engine, n)
    group = GroupCommit(sqlite_engine)

    async def go() -> list[int]:
        return list(
            await asyncio.gather(
                *(
                    group.insert_turn(
                        {
                            "session_id": c.session_id,
                            "index": 1,
                            "role": "user",
                            "source": "simulator",
                            "content": str(c.session_id),
                        }
                    )
                    for c in convs
                )
            )
        )

    ids = asyncio.run(go())
    with Session(sqlite_engine) as s:
        rows = {turn_id: content for turn_id, content in s.execute(select(Turn.id, Turn.content))}
    assert len(set(ids)) == n
    assert all(rows[i] == str(c.session_id) for i, c in zip(ids, convs, strict=True))
