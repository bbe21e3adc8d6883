"""A model that times out, rate-limits, errors, returns nothing or fails mid-stream leaves a clear recorded turn."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab import llm
from lab.dialogue import Conversation
from lab.flow import Flow
from lab.llm import scripted
from lab.llm.scripted import ModelFailure
from lab.schema import Turn

MESSAGE = "Please add the two numbers for me."


def stored(engine: Engine, session_id: int) -> list[Turn]:
    """The conversation's turns as committed, read on a fresh connection."""
    with Session(engine) as s:
        return list(s.scalars(select(Turn).where(Turn.session_id == session_id).order_by(Turn.index)))


def read_reply(conv: Conversation) -> tuple[str, llm.ModelError | None]:
    """Read a reply as the chat page does; returns the text shown and the error raised."""
    text = ""
    try:
        for piece in conv.reply():
            text += piece
    except llm.ModelError as e:
        return text, e
    return text, None


FAILURES: dict[str, tuple[dict[str, Any], str]] = {
    "timeout": ({"script": "error_after", "n": 0, "error": "timeout"}, "did not answer"),
    "rate_limit": ({"script": "error_after", "n": 0, "error": "rate_limit"}, "rate-limiting"),
    "server_error": ({"script": "error_after", "n": 0, "error": "server"}, "server error"),
    "unavailable": ({"script": "error_after", "n": 0, "error": "unavailable"}, "503"),
    "connection": ({"script": "error_after", "n": 0, "error": "connection"}, "lab/scripted"),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_a_failing_model_is_recorded_as_an_error_turn_and_the_message_kept(
    engine: Engine, chat_with: Callable[..., tuple[Flow, Conversation]], case: str
) -> None:
    params, words = FAILURES[case]
    _flow, conv = chat_with(engine, **params)
    conv.send(MESSAGE)
    text, error = read_reply(conv)
    assert error is not None and text == ""
    turns = stored(engine, conv.session_id)
    assert [(t.role, t.content) for t in turns][0] == ("user", MESSAGE)
    reply = turns[-1]
    assert reply.role == "assistant" and reply.index == turns[0].index + 1
    assert reply.error and words in reply.error, reply.error
    assert reply.finish_reason == "error" and reply.partial is False and reply.content == ""
    assert "Traceback" not in reply.error and len(reply.error) < 300


def test_a_reply_cut_by_a_failure_is_kept_partial_with_its_error(
    engine: Engine, chat_with: Callable[..., tuple[Flow, Conversation]]
) -> None:
    _flow, conv = chat_with(engine, script="echo")
    conv.send(MESSAGE)
    scripted.enqueue(ModelFailure("server", after_text="The sum is "))
    text, error = read_reply(conv)
    assert error is not None and text == "The sum is "
    user, reply = stored(engine, conv.session_id)
    assert (user.role, user.content) == ("user", MESSAGE)
    assert (reply.content, reply.partial, reply.finish_reason) == ("The sum is ", True, "error")
    assert reply.error and "server error" in reply.error


def test_the_participant_can_send_again_after_a_failed_reply(
    engine: Engine, chat_with: Callable[..., tuple[Flow, Conversation]]
) -> None:
    _flow, conv = chat_with(engine, script="echo")
    conv.send(MESSAGE)
    scripted.enqueue(ModelFailure("bad_request"))
    assert read_reply(conv)[1] is not None
    conv.send("Trying again.")
    assert read_reply(conv) == ("You said: Trying again.", None)
    assert [(t.role, bool(t.error)) for t in stored(engine, conv.session_id)] == [
        ("user", False),
        ("assistant", True),
        ("user", False),
        ("assistant", False),
    ]


def test_a_reader_that_stops_mid_reply_leaves_a_partial_turn(
    engine: Engine, chat_with: Callable[..., tuple[Flow, Conversation]]
) -> None:
    _flow, conv = chat_with(engine, script="fixed", reply="one two three four five six")
    conv.send(MESSAGE)
    reply = iter(conv.reply())
    first = next(reply)
    reply.close()  # the page run ends (participant pressed Stop, or the session went away)
    user, turn = stored(engine, conv.session_id)
    assert user.content == MESSAGE
    assert turn.partial is True and turn.content == first and turn.error is None


def test_a_model_that_returns_nothing_is_recorded_as_such(
    engine: Engine, chat_with: Callable[..., tuple[Flow, Conversation]]
) -> None:
    _flow, conv = chat_with(engine, script="fixed", reply="")
    conv.send(MESSAGE)
    text, error = read_reply(conv)
    assert text == "" and error is not None and error.kind == "empty_reply"
    user, reply = stored(engine, conv.session_id)
    assert user.content == MESSAGE
    assert (reply.role, reply.content, reply.partial) == ("assistant", "", False)
    assert reply.error and "returned no text" in reply.error, reply.error


@pytest.mark.parametrize("stream", [True, False])
def test_a_reply_of_only_whitespace_is_recorded_as_returning_nothing(
    engine: Engine, chat_with: Callable[..., tuple[Flow, Conversation]], stream: bool
) -> None:
    _flow, conv = chat_with(engine, script="fixed", reply="  \n ")
    conv.send(MESSAGE)
    turn = conv.reply(stream=stream).consume()
    assert (turn.content, turn.error) == ("", "lab/scripted returned no text.")
    assert conv.awaiting_reply, "the failed reply can be asked for again"
    [reply] = [t for t in stored(engine, conv.session_id) if t.role == "assistant"]
    assert (reply.content, reply.error, reply.partial) == ("", turn.error, False)


def test_a_reply_stopped_before_any_text_is_cut_not_empty(
    engine: Engine, chat_with: Callable[..., tuple[Flow, Conversation]]
) -> None:
    _flow, conv = chat_with(engine, script="fixed", reply="one two three")
    conv.send(MESSAGE)
    iter(conv.reply()).close()
    assert [(t.role, t.error) for t in stored(engine, conv.session_id)] == [("user", None)]
