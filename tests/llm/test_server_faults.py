"""Faults of an OpenAI-compatible server over HTTP, each named as it is, with the address called.

Every call goes through ``openai/…`` with an ``api_base`` and no key, to a server on
loopback that fails on purpose, to a port nobody listens on, or to a host name that cannot
resolve.
"""

from __future__ import annotations

import pytest

from lab import llm

from .servers import FaultyServer, free_port

MODEL = "openai/faulty"
MESSAGES = [{"role": "user", "content": "What is two plus three?"}]


def failure(api_base: str, *, stream: bool = False, **options: float) -> llm.ModelError:
    """Call the model at ``api_base`` and return the error the call ends with."""
    with pytest.raises(llm.ModelError) as caught:
        if stream:
            for _ in llm.stream(MODEL, MESSAGES, {"api_base": api_base}, **options):  # type: ignore[arg-type]
                pass
        else:
            llm.complete(MODEL, MESSAGES, {"api_base": api_base}, **options)  # type: ignore[arg-type]
    return caught.value


def test_the_faulty_server_answers_when_told_nothing(faulty_server: FaultyServer) -> None:
    reply = llm.complete(MODEL, MESSAGES, {"api_base": faulty_server.api_base}, streamed=True)
    assert reply.text == "The answer is five." and reply.attempts == 1


def test_connection_refused_is_named_with_the_address(backoff_delays: list[float]) -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"
    error = failure(base)
    assert error.kind == "connection" and error.retryable
    assert f"could not connect to {base}: connection refused" in error.message.lower()
    assert "server error" not in error.message and "500" not in error.message
    assert "gave up after 3 attempts" in error.message and len(backoff_delays) == 2


def test_a_host_name_that_does_not_resolve_is_named() -> None:
    base = "http://lab-model.invalid:8899/v1"
    error = failure(base, max_retries=0)
    assert error.kind == "connection"
    assert f"Could not connect to {base}: the host name lab-model.invalid was not found (DNS lookup failed)" in error.message


def test_a_failed_tls_handshake_is_named(faulty_server: FaultyServer) -> None:
    base = f"https://127.0.0.1:{faulty_server.port}/v1"
    error = failure(base, max_retries=0)
    assert error.kind == "connection"
    assert f"Could not connect to {base}: the TLS handshake failed (" in error.message
    assert "wrong version number" in error.message and "_ssl.c" not in error.message


def test_a_server_that_never_answers_times_out_with_its_address(faulty_server: FaultyServer) -> None:
    faulty_server.fail(hang=True)
    error = failure(faulty_server.api_base, timeout=1, max_retries=0)
    assert error.kind == "timeout" and error.retryable
    assert error.message == f"{MODEL} did not answer within 1 s at {faulty_server.api_base}."


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [(401, "auth", "refused the credentials"), (404, "unknown_model", "does not know the model")],
)
def test_refusals_are_named_and_not_retried(
    faulty_server: FaultyServer, backoff_delays: list[float], status: int, kind: str, words: str
) -> None:
    faulty_server.fail(status=status, message="no such thing here")
    error = failure(faulty_server.api_base)
    assert (error.kind, error.retryable) == (kind, False)
    assert words in error.message and f"HTTP {status}" in error.message
    assert faulty_server.api_base in error.message and "no such thing here" in error.message
    assert len(faulty_server.requests) == 1 and backoff_delays == []


def test_a_rate_limit_waits_as_long_as_the_server_asks(faulty_server: FaultyServer, backoff_delays: list[float]) -> None:
    faulty_server.fail(status=429, headers={"Retry-After": "3"}, times=1)
    reply = llm.complete(MODEL, MESSAGES, {"api_base": faulty_server.api_base})
    assert reply.text == "The answer is five." and reply.attempts == 2
    assert backoff_delays == [3.0]


def test_a_rate_limit_asking_for_too_long_a_wait_gives_up_at_once(
    faulty_server: FaultyServer, backoff_delays: list[float]
) -> None:
    faulty_server.fail(status=429, headers={"Retry-After": "600"})
    error = failure(faulty_server.api_base)
    assert error.kind == "rate_limit" and error.retry_after == 600
    assert f"(HTTP 429 at {faulty_server.api_base}); it asked to wait 600 s" in error.message
    assert "longer than the lab waits" in error.message
    assert len(faulty_server.requests) == 1 and backoff_delays == []


def test_a_server_error_is_retried_then_named(faulty_server: FaultyServer, backoff_delays: list[float]) -> None:
    faulty_server.fail(status=500, message="the model crashed")
    error = failure(faulty_server.api_base)
    assert error.kind == "server" and error.retryable
    assert f"had a server error (HTTP 500 at {faulty_server.api_base}): the model crashed" in error.message
    assert "gave up after 3 attempts" in error.message
    assert len(faulty_server.requests) == 3 and len(backoff_delays) == 2


def test_a_stream_cut_mid_reply_keeps_what_arrived(faulty_server: FaultyServer) -> None:
    faulty_server.fail(cut=True)
    reply = llm.stream(MODEL, MESSAGES, {"api_base": faulty_server.api_base})
    pieces = []
    with pytest.raises(llm.ModelError) as caught:
        for piece in reply:
            pieces.append(piece)
    error = caught.value
    assert pieces == ["The answer "] and error.kind == "connection"
    assert error.message == f"The connection closed in the middle of the reply from {faulty_server.api_base} ({MODEL})."
    assert reply.completion.partial and reply.completion.text == "The answer "
    assert len(faulty_server.requests) == 1, "text had arrived, so the stream is not sent again"


def test_every_attempt_is_told_to_a_watcher(faulty_server: FaultyServer) -> None:
    faulty_server.fail(status=500, times=1)
    seen: list[llm.Attempt] = []
    with llm.watching(seen.append):
        llm.complete(MODEL, MESSAGES, {"api_base": faulty_server.api_base})
    llm.complete(MODEL, MESSAGES, {"api_base": faulty_server.api_base})  # outside the block: not seen
    assert [(a.attempt, a.attempts, a.error is None) for a in seen] == [(1, 3, False), (2, 3, True)]
    assert seen[0].error is not None and seen[0].error.kind == "server" and seen[0].retry_in is not None
