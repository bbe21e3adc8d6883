"""The scripted model: its behaviours, the reply queue and its parameter checks."""

from __future__ import annotations

import time

import pytest

from lab.llm import SCRIPTED, ModelError, check_model, complete, scripted, stream
from lab.llm._scripted import pieces


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_echo_is_the_default() -> None:
    reply = complete(SCRIPTED, user("where is the station"))
    assert reply.text == "You said: where is the station"
    assert reply.finish_reason == "stop"


def test_fixed_reply() -> None:
    reply = complete(SCRIPTED, user("anything"), {"script": "fixed", "reply": "Always this."})
    assert reply.text == "Always this."


def test_ask_asks_one_clarifying_question() -> None:
    reply = complete(SCRIPTED, user("Book me a table"), {"script": "ask"})
    assert reply.text == scripted.DEFAULT_QUESTION
    assert reply.text.count("?") == 1
    custom = complete(SCRIPTED, user("Book me a table"), {"script": "ask", "reply": "For how many people?"})
    assert custom.text == "For how many people?"


def test_answer_default_and_reply() -> None:
    assert complete(SCRIPTED, user("2+2?"), {"script": "answer"}).text == scripted.DEFAULT_ANSWER
    assert "?" not in scripted.DEFAULT_ANSWER
    assert complete(SCRIPTED, user("2+2?"), {"script": "answer", "reply": "4"}).text == "4"


def test_sequence_follows_assistant_turns_and_holds_the_last() -> None:
    params = {"script": "sequence", "replies": ["first", "second"]}
    conversation = user("hi")
    texts = []
    for _ in range(3):
        text = complete(SCRIPTED, conversation, params).text
        texts.append(text)
        conversation = conversation + [{"role": "assistant", "content": text}, {"role": "user", "content": "more"}]
    assert texts == ["first", "second", "second"]


def test_sequence_can_cycle() -> None:
    params = {"script": "sequence", "replies": ["a", "b"], "cycle": True}
    history = user("x") + [{"role": "assistant", "content": "a"}] * 2
    assert complete(SCRIPTED, history, params).text == "a"


def test_error_after_n_successful_calls_per_conversation() -> None:
    params = {"script": "error_after", "n": 2, "error": "bad_request"}
    assert complete(SCRIPTED, user("one"), params).text == "You said: one"
    assert complete(SCRIPTED, user("one"), params).text == "You said: one"
    with pytest.raises(ModelError) as caught:
        complete(SCRIPTED, user("one"), params)
    assert caught.value.kind == "bad_request"
    # Another conversation has its own count.
    assert complete(SCRIPTED, user("two"), params).text == "You said: two"
    scripted.reset()
    assert complete(SCRIPTED, user("one"), params).text == "You said: one"


def test_queue_is_used_first_in_first_out_before_the_script() -> None:
    scripted.enqueue("first", "second")
    assert scripted.pending() == 2
    assert complete(SCRIPTED, user("x"), {"script": "fixed", "reply": "script"}).text == "first"
    assert complete(SCRIPTED, user("x"), {"script": "fixed", "reply": "script"}).text == "second"
    assert complete(SCRIPTED, user("x"), {"script": "fixed", "reply": "script"}).text == "script"
    assert scripted.pending() == 0


def test_reset_empties_the_queue() -> None:
    scripted.enqueue("left over")
    scripted.reset()
    assert complete(SCRIPTED, user("fresh")).text == "You said: fresh"


def test_queue_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        scripted.enqueue(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        scripted.ModelFailure("meteor_strike")


def test_tokens_are_word_counts() -> None:
    reply = complete(SCRIPTED, user("three little words"), {"script": "fixed", "reply": "a b c d"})
    assert (reply.tokens_in, reply.tokens_out) == (3, 4)


def test_max_tokens_cuts_the_reply() -> None:
    reply = complete(SCRIPTED, user("x"), {"script": "fixed", "reply": "one two three four", "max_tokens": 2})
    assert reply.text == "one two"
    assert reply.finish_reason == "length"
    assert reply.tokens_out == 2


def test_stream_pieces_are_words_that_join_to_the_text() -> None:
    text = "Hello  there,\nfriend. "
    assert "".join(pieces(text)) == text
    reply = stream(SCRIPTED, user("x"), {"script": "fixed", "reply": text})
    got = list(reply)
    assert got == ["Hello  ", "there,\n", "friend. "]
    assert all(got)
    assert reply.completion.text == text


def test_latency_delays_the_first_piece() -> None:
    reply = complete(SCRIPTED, user("x"), {"latency": 0.2})
    assert reply.ttft_ms is not None and reply.ttft_ms >= 200
    streamed = stream(SCRIPTED, user("x"), {"latency": 0.2})
    list(streamed)
    assert streamed.completion.ttft_ms is not None and streamed.completion.ttft_ms >= 200


def test_token_delay_slows_the_stream() -> None:
    reply = stream(SCRIPTED, user("x"), {"script": "fixed", "reply": "a b c d", "token_delay": 0.05})
    arrivals = []
    start = time.perf_counter()
    for _ in reply:
        arrivals.append(time.perf_counter() - start)
    # Pieces keep a timetable (one every token_delay from the stream's start), as a real
    # model's wait in the connection: a busy reader may get them late and in a burst, never
    # before they are due.
    assert len(arrivals) == 4
    assert all(arrivals[k] >= k * 0.05 - 0.005 for k in range(1, 4)), arrivals


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"script": "poem"}, "unknown script 'poem'"),
        ({"script": "fixed"}, "needs a text parameter 'reply'"),
        ({"script": "sequence", "replies": []}, "needs a parameter 'replies'"),
        ({"script": "error_after"}, "needs a parameter 'n'"),
        ({"script": "error_after", "n": 1, "error": "meteor"}, "parameter 'error'"),
        ({"latency": -1}, "'latency' must be a number"),
    ],
)
def test_bad_scripts_are_reported_and_refused(params: dict, fragment: str) -> None:
    problems = check_model(SCRIPTED, params)
    assert any(fragment in p for p in problems), problems
    with pytest.raises(ModelError) as caught:
        complete(SCRIPTED, user("x"), params)
    assert caught.value.kind == "bad_request"
    assert fragment in caught.value.message
