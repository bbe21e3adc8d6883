"""Replies generated on the server, apart from the page: one per conversation, stored as they stream."""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab.dialogue import Conversation, start_session
from lab.generation import Generations
from lab.llm import scripted
from lab.participants import create_participant
from lab.schema import Turn
from lab.spec import parse_spec
from lab.studies import load_study

SPEC = """\
slug: gen
title: Detached replies
consent: ok
instructions: ok
models:
  slow: {model: lab/scripted, params: {script: echo, latency: 0.2, token_delay: 0.02}}
conditions:
  sharded: {model: slow, reveal: SHARDED}
plan: {turn_limit: 6, max_message_chars: 2000}
items:
  - id: add
    kind: sharded
    shards:
      - {id: 1, text: "Add two numbers."}
      - {id: 2, text: "The first is 2."}
"""

WORDS = " ".join(f"w{i}" for i in range(40))


def started(engine: Engine) -> Conversation:
    with Session(engine, expire_on_commit=False) as s, s.begin():
        study = load_study(s, parse_spec(SPEC, "gen.yaml")).study
        p = create_participant(s, study, status="active")
        chat = start_session(s, p, "add", "sharded")
    conv = Conversation.load(engine, chat.id, autolabel=False)
    conv.send(f"Add two numbers {WORDS}")
    return conv


def assistant_turns(engine: Engine, session_id: int) -> list[Turn]:
    with Session(engine) as s:
        return list(s.scalars(select(Turn).where(Turn.session_id == session_id, Turn.role == "assistant").order_by(Turn.index)))


def test_one_generation_per_conversation_stored_whole_once(sqlite_engine: Engine) -> None:
    conv = started(sqlite_engine)
    gens = Generations()
    first = gens.start(sqlite_engine, conv.session_id)
    # A second page (another tab, a refresh) asking at the same time attaches to the same reply.
    again = [gens.start(sqlite_engine, conv.session_id) for _ in range(3)]
    assert all(g is first for g in again) and gens.running(conv.session_id) is first
    assert first.wait(0, 60) and first.pieces >= 1
    assert first.join(20)
    assert gens.running(conv.session_id) is None
    stored = assistant_turns(sqlite_engine, conv.session_id)
    assert len(stored) == 1 and not stored[0].partial and stored[0].error is None
    assert stored[0].content == first.text == f"You said: Add two numbers {WORDS}"
    # Nothing is left to reply to: a late start writes nothing more.
    late = gens.start(sqlite_engine, conv.session_id)
    assert late.join(10) and late.pieces == 0
    assert len(assistant_turns(sqlite_engine, conv.session_id)) == 1


def test_the_reply_does_not_depend_on_who_watches(sqlite_engine: Engine) -> None:
    conv = started(sqlite_engine)
    gens = Generations()
    gen = gens.start(sqlite_engine, conv.session_id)
    # The page that asked is gone at once (its thread ends); nobody reads the reply.
    watcher = threading.Thread(target=lambda: gen.wait(0, 0.05))
    watcher.start()
    watcher.join()
    assert gen.join(20)
    stored = assistant_turns(sqlite_engine, conv.session_id)
    assert len(stored) == 1 and stored[0].content.endswith("w39") and not stored[0].partial


def test_stop_cuts_the_reply_on_purpose_and_keeps_what_arrived(sqlite_engine: Engine) -> None:
    conv = started(sqlite_engine)
    gens = Generations()
    gen = gens.start(sqlite_engine, conv.session_id)
    assert gen.wait(2, 60)
    gen.stop()
    assert gen.join(10) and gen.stopped
    stored = assistant_turns(sqlite_engine, conv.session_id)
    assert len(stored) == 1 and stored[0].partial and 0 < len(stored[0].content) < len(f"You said: Add two numbers {WORDS}")


def test_a_failed_reply_is_stored_as_an_error_and_retried_only_when_asked(sqlite_engine: Engine) -> None:
    conv = started(sqlite_engine)
    gens = Generations()
    scripted.enqueue(scripted.ModelFailure("bad_request", "rejected"))
    gen = gens.start(sqlite_engine, conv.session_id)
    assert gen.join(20) and gen.error is not None
    assert [t.error is not None for t in assistant_turns(sqlite_engine, conv.session_id)] == [True]
    assert gens.start(sqlite_engine, conv.session_id).join(10)  # a page load does not retry by itself
    assert len(assistant_turns(sqlite_engine, conv.session_id)) == 1
    retry = gens.start(sqlite_engine, conv.session_id, retry=True)
    assert retry.join(20) and retry.error is None
    assert [t.error is None for t in assistant_turns(sqlite_engine, conv.session_id)] == [False, True]


def test_waiting_returns_as_pieces_arrive(sqlite_engine: Engine) -> None:
    conv = started(sqlite_engine)
    gens = Generations()
    gen = gens.start(sqlite_engine, conv.session_id)
    seen, stamps = 0, []
    while not gen.done:
        if gen.wait(seen, 5):
            seen = gen.pieces
            stamps.append((time.monotonic(), seen))
    assert len(stamps) > 5 and stamps[-1][1] == gen.pieces


def test_a_failure_outside_the_model_is_reported_and_frees_the_conversation(sqlite_engine: Engine) -> None:
    gens = Generations()
    gen = gens.start(sqlite_engine, 9999)  # no such conversation
    assert gen.join(10) and gen.crashed and gen.error and "9999" in gen.error
    assert gens.running(9999) is None
