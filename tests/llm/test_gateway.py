"""The gateway: retries and backoff, errors, no fallback, partial streams, usage, cost and timing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from datetime import timezone

import pytest

from lab import llm
from lab.llm import SCRIPTED, ModelError, acomplete, astream, complete, scripted, stream
from lab.llm._gateway import _cost
from lab.llm._providers import load_litellm
from lab.llm.scripted import ModelFailure


def user(text: str = "hello") -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_import_does_not_import_litellm() -> None:
    code = "import sys, lab.llm; assert 'litellm' not in sys.modules, 'litellm was imported'; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_completion_has_usage_cost_and_timing() -> None:
    reply = complete(SCRIPTED, user("how are you"), {"temperature": 0.3, "seed": 7})
    assert reply.text == "You said: how are you"
    assert reply.model == SCRIPTED
    assert reply.params == {"temperature": 0.3, "seed": 7}
    assert (reply.tokens_in, reply.tokens_out) == (3, 5)
    assert reply.cost == 0.0
    assert reply.latency_ms > 0 and reply.ttft_ms == reply.latency_ms
    assert reply.finish_reason == "stop" and reply.partial is False and reply.attempts == 1
    for stamp in (reply.started_at, reply.first_token_at, reply.ended_at):
        assert stamp is not None and stamp.tzinfo is not None and stamp.utcoffset() == timezone.utc.utcoffset(None)
    assert reply.started_at <= reply.first_token_at <= reply.ended_at  # type: ignore[operator]
    assert reply.usage()["tokens_out"] == 5


def test_stream_has_usage_and_time_to_first_token() -> None:
    reply = stream(SCRIPTED, user("how are you"), {"token_delay": 0.02})
    pieces = list(reply)
    done = reply.completion
    assert "".join(pieces) == done.text == reply.text == "You said: how are you"
    assert (done.tokens_in, done.tokens_out) == (3, 5)
    assert done.ttft_ms is not None and 0 < done.ttft_ms < done.latency_ms
    assert done.started_at < done.first_token_at < done.ended_at  # type: ignore[operator]
    assert done.finish_reason == "stop" and done.partial is False and done.cost == 0.0


@pytest.mark.parametrize("kind", ["rate_limit", "timeout", "server", "unavailable", "connection"])
def test_transient_errors_are_retried_with_backoff(kind: str, backoff_delays: list[float]) -> None:
    scripted.enqueue(ModelFailure(kind), ModelFailure(kind), "finally")
    reply = complete(SCRIPTED, user())
    assert reply.text == "finally"
    assert reply.attempts == 3
    assert backoff_delays == [0.5, 1.0]


def test_retries_are_bounded(backoff_delays: list[float]) -> None:
    scripted.enqueue(*[ModelFailure("rate_limit")] * 4, "too late")
    with pytest.raises(ModelError) as caught:
        complete(SCRIPTED, user(), max_retries=3)
    assert caught.value.kind == "rate_limit"
    assert caught.value.retryable is True
    assert "429" in caught.value.message and "4 attempts" in caught.value.message
    assert backoff_delays == [0.5, 1.0, 2.0]
    assert scripted.pending() == 1


def test_backoff_is_capped_and_jittered() -> None:
    policy = llm.RetryPolicy(base_delay=1.0, factor=3.0, max_delay=5.0, jitter=0.5)
    assert [llm.RetryPolicy(jitter=0).delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert 5.0 <= policy.delay(4) <= 7.5
    assert 1.0 <= policy.delay(1) <= 1.5


@pytest.mark.parametrize(("kind", "expected"), [("bad_request", "bad_request"), ("auth", "auth"), ("not_found", "unknown_model")])
def test_request_errors_are_not_retried(kind: str, expected: str, backoff_delays: list[float]) -> None:
    scripted.enqueue(ModelFailure(kind), "never reached")
    with pytest.raises(ModelError) as caught:
        complete(SCRIPTED, user())
    assert caught.value.kind == expected
    assert caught.value.retryable is False
    assert backoff_delays == []
    assert scripted.pending() == 1


def test_a_timeout_is_honoured_by_the_scripted_model(backoff_delays: list[float]) -> None:
    with pytest.raises(ModelError) as caught:
        complete(SCRIPTED, user(), {"latency": 0.5}, timeout=0.05, max_retries=1)
    assert caught.value.kind == "timeout" and caught.value.retryable
    assert "0.05 s" in caught.value.message
    assert backoff_delays == [0.5]


def test_no_fallback_to_another_model() -> None:
    litellm = load_litellm()
    litellm.model_fallbacks = ["lab/other"]  # a process-wide setting the gateway must not obey
    try:
        scripted.enqueue(ModelFailure("bad_request"), "another model's text")
        with pytest.raises(ModelError):
            complete(SCRIPTED, user(), max_retries=0)
        assert scripted.pending() == 1
        scripted.reset()
        reply = complete(SCRIPTED, user("mine"))
        assert reply.model == SCRIPTED and reply.text == "You said: mine"
    finally:
        litellm.model_fallbacks = None


def test_fallback_parameters_are_refused() -> None:
    with pytest.raises(ModelError) as caught:
        complete(SCRIPTED, user(), {"fallbacks": ["openai/gpt-4o"]})
    assert caught.value.kind == "bad_request"
    assert "never replaces the model" in caught.value.message
    assert any("'fallbacks'" in p for p in llm.check_model(SCRIPTED, {"fallbacks": ["x"]}))


def test_a_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelError) as caught:
        complete("openai/gpt-4o-mini", user())
    assert caught.value.kind == "missing_key"
    assert caught.value.message.startswith("OPENAI_API_KEY is not set")


def test_an_unknown_provider_is_an_unknown_model() -> None:
    with pytest.raises(ModelError) as caught:
        complete("nosuchprovider/some-model", user())
    assert caught.value.kind == "unknown_model"
    assert caught.value.message.startswith("unknown model string 'nosuchprovider/some-model'")


def test_bad_messages_are_refused() -> None:
    with pytest.raises(ModelError) as caught:
        complete(SCRIPTED, [])
    assert caught.value.kind == "bad_request"


def test_stream_retries_only_before_the_first_piece(backoff_delays: list[float]) -> None:
    scripted.enqueue(ModelFailure("rate_limit"), "fine now")
    reply = stream(SCRIPTED, user())
    assert list(reply) == ["fine ", "now"]
    assert reply.completion.attempts == 2 and backoff_delays == [0.5]

    scripted.enqueue(ModelFailure("server", after_text="Half an"), "not used")
    cut = stream(SCRIPTED, user())
    received = []
    with pytest.raises(ModelError) as caught:
        for piece in cut:
            received.append(piece)
    assert caught.value.kind == "server"
    assert received == ["Half ", "an"]
    done = cut.completion
    assert done.text == "Half an" and done.partial is True and done.finish_reason is None
    assert cut.error is caught.value
    assert scripted.pending() == 1


def test_stream_closed_by_the_consumer_is_partial() -> None:
    reply = stream(SCRIPTED, user(), {"script": "fixed", "reply": "one two three four"})
    pieces = iter(reply)
    assert next(pieces) == "one "
    pieces.close()  # what a rerun does to an abandoned generator
    done = reply.completion
    assert done.text == "one " and done.partial is True


def test_stream_abandoned_without_closing_is_partial() -> None:
    reply = stream(SCRIPTED, user(), {"script": "fixed", "reply": "one two three four"})
    for _piece in reply:
        break
    assert reply.text == "one "
    done = reply.completion  # reading it ends the stream
    assert done.text == "one " and done.partial is True
    assert reply.completion is done


def test_stream_closed_before_reading_is_empty_and_partial() -> None:
    reply = stream(SCRIPTED, user())
    reply.close()
    assert reply.completion.text == "" and reply.completion.partial is True
    assert scripted.pending() == 0


def test_a_failure_before_any_text_leaves_a_completion() -> None:
    scripted.enqueue(ModelFailure("auth"))
    reply = stream(SCRIPTED, user())
    with pytest.raises(ModelError) as caught:
        list(reply)
    assert caught.value.kind == "auth"
    assert reply.completion.text == "" and reply.completion.partial is True


def test_acomplete_retries_without_blocking(backoff_delays: list[float]) -> None:
    scripted.enqueue(ModelFailure("timeout"), "async answer")

    async def run() -> llm.Completion:
        return await acomplete(SCRIPTED, user())

    reply = asyncio.run(run())
    assert reply.text == "async answer" and reply.attempts == 2
    assert backoff_delays == [0.5]


def test_astream_pieces_and_completion() -> None:
    async def run() -> tuple[list[str], llm.Completion]:
        reply = await astream(SCRIPTED, user("async stream"), {"token_delay": 0.01})
        pieces = [piece async for piece in reply]
        return pieces, reply.completion

    pieces, done = asyncio.run(run())
    assert pieces == ["You ", "said: ", "async ", "stream"]
    assert done.text == "You said: async stream" and done.partial is False
    assert done.tokens_out == 4 and done.ttft_ms is not None


def test_astream_closed_early_is_partial() -> None:
    async def run() -> llm.Completion:
        async with await astream(SCRIPTED, user(), {"script": "fixed", "reply": "a b c d"}) as reply:
            async for piece in reply:
                assert piece == "a "
                break
        return reply.completion

    done = asyncio.run(run())
    assert done.text == "a " and done.partial is True


def test_astream_error_mid_stream_keeps_the_text() -> None:
    scripted.enqueue(ModelFailure("rate_limit", after_text="So far"))

    async def run() -> tuple[llm.AsyncStream, ModelError]:
        reply = await astream(SCRIPTED, user())
        try:
            async for _ in reply:
                pass
        except ModelError as error:
            return reply, error
        raise AssertionError("no error raised")

    reply, error = asyncio.run(run())
    assert error.kind == "rate_limit"
    assert reply.completion.text == "So far" and reply.completion.partial is True


def test_the_event_loop_keeps_running_during_a_slow_reply() -> None:
    async def run() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await acomplete(SCRIPTED, user(), {"latency": 0.2})
        task.cancel()
        return ticks

    assert asyncio.run(run()) >= 5


def test_cost_is_zero_for_lab_models_and_unpriced_models() -> None:
    load_litellm()
    assert _cost(SCRIPTED, 1000, 1000) == 0.0
    assert _cost("local/smollm2-135m", 1000, 1000) == 0.0
    assert _cost("hosted_vllm/my-own-finetune", 1000, 1000) == 0.0
    assert _cost("openai/no-such-model-anywhere", 1000, 1000) == 0.0
    assert _cost("openai/gpt-4o-mini", 1000, 1000) > 0.0


def test_unpriced_model_response_costs_nothing() -> None:
    litellm = load_litellm()
    response = litellm.completion(model="openai/no-such-model-anywhere", messages=user(), mock_response="hi", api_key="unused")
    assert _cost("openai/no-such-model-anywhere", 10, 20, response) == 0.0


def test_blocking_calls_work_where_an_event_loop_is_running() -> None:
    async def run() -> tuple[str, list[str], llm.Completion]:
        whole = complete(SCRIPTED, user("inside"))
        reply = stream(SCRIPTED, user("inside"))
        return whole.text, list(reply), reply.completion

    text, pieces, done = asyncio.run(run())
    assert text == done.text == "You said: inside"
    assert pieces == ["You ", "said: ", "inside"] and done.partial is False


def test_a_stream_read_in_another_thread_stops_when_closed() -> None:
    reply = stream(SCRIPTED, user(), {"script": "fixed", "reply": "a b c d e f g h", "token_delay": 0.05})
    first = threading.Event()
    received: list[str] = []

    def read() -> None:
        for piece in reply:
            received.append(piece)
            first.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert first.wait(5)
    reply.close()
    reader.join(5)
    assert not reader.is_alive()
    done = reply.completion
    assert done.partial is True and done.text == "".join(received) and len(received) < 8
