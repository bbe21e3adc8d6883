"""Fail fast, keep going: a run says within a second that a model fails, stops calling it after a while, and goes on."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from lab import llm
from lab.simulate import Breaker, ProgressLine, RunStatus
from tests.llm.servers import FaultyServer

from .conftest import load, simulate


class Clock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def failed(model: str, kind: str = "connection", retry_in: float | None = 0.5) -> llm.Attempt:
    error = llm.ModelError(kind, f"Could not connect to http://127.0.0.1:9/v1: connection refused ({model}).")
    return llm.Attempt(model, error, 1, 3, retry_in)


def test_the_breaker_opens_after_its_time_of_nothing_but_failures() -> None:
    clock = Clock()
    breaker = Breaker(60, clock)
    breaker(failed("openai/a"))
    clock.now += 30
    breaker(failed("openai/a"))
    assert breaker.stopped("openai/a") is None
    [line] = breaker.lines()
    assert line.startswith("openai/a failing for 30 s (2 failed): Could not connect to http://127.0.0.1:9/v1: connection refused")
    assert "retrying in 0.5 s (attempt 2 of 3)" in line and "stops in 30 s unless a call succeeds" in line
    breaker(llm.Attempt("openai/a", None, 1, 3))  # a success: the count starts again
    assert breaker.lines() == ()
    breaker(failed("openai/a"))
    clock.now += 59
    breaker(failed("openai/a"))
    assert breaker.stopped("openai/a") is None
    clock.now += 1
    breaker(failed("openai/a"))
    stopped = breaker.stopped(None, "openai/b", "openai/a")
    assert stopped is not None and stopped.startswith("stopped calling openai/a after 60 s in which every call failed; the last:")
    assert breaker.stopped("openai/b") is None
    breaker(llm.Attempt("openai/a", None, 1, 3))
    assert breaker.stopped("openai/a") == stopped, "once stopped, the run does not call the model again"


def test_refused_credentials_stop_the_model_at_once() -> None:
    breaker = Breaker(60, Clock())
    breaker(failed("openai/a", kind="auth", retry_in=None))
    assert (breaker.stopped("openai/a") or "").startswith("stopped calling openai/a: ")


@pytest.fixture
def server() -> Iterator[FaultyServer]:
    faulty = FaultyServer()
    yield faulty
    faulty.close()


def two_model_study(study_spec: Callable[..., str], api_base: str) -> str:
    models: dict[str, Any] = {
        "served": {"model": "openai/faulty", "params": {"api_base": api_base}},
        "bot": {"model": "lab/scripted", "params": {"script": "fixed", "reply": "The answer is 5."}},
    }
    conditions = {"remote": {"model": "served", "reveal": "SHARDED"}, "local": {"model": "bot", "reveal": "SHARDED"}}
    return study_spec("breaker", models=models, conditions=conditions, plan={"turn_limit": 4})


def test_a_failing_model_is_reported_at_once_and_stopped_while_the_others_go_on(
    sqlite_engine: Engine, study_spec: Callable[..., str], server: FaultyServer
) -> None:
    server.fail(status=503, message="the model is loading")
    study, d = load(sqlite_engine, two_model_study(study_spec, server.api_base))
    seen: list[RunStatus] = []
    out = io.StringIO()
    line = ProgressLine("simulate breaker", out)

    def progress(status: RunStatus) -> None:
        seen.append(status)
        line(status)

    # Only the breaker can stop a conversation here: each may fail a hundred times.
    plan, result = simulate(
        sqlite_engine,
        study,
        d,
        repeats=3,
        concurrency=6,
        max_errors=100,
        retry_pause=0.05,
        breaker_seconds=1.0,
        on_progress=progress,
    )
    assert plan.total == 6 and result.done == 3, "the scripted model's conversations all ended"
    assert len(result.failures) == 3
    for _sid, message in result.failures:
        assert message.startswith("stopped calling openai/faulty after ")
        assert f"had a server error (HTTP 503 at {server.api_base}): the model is loading" in message
    trouble = [t for status in seen for t in status.trouble]
    failing = next(t for t in trouble if t.startswith("openai/faulty failing for"))
    assert "HTTP 503" in failing and ("retrying in" in failing or "gave up" in failing)
    written = out.getvalue()
    assert "simulate breaker: openai/faulty failing for" in written
    assert "simulate breaker: stopped calling openai/faulty after" in written

    server.fail()  # the server is back: running again continues the stopped conversations
    _, again = simulate(sqlite_engine, study, d, repeats=3, concurrency=6, breaker_seconds=1.0)
    assert again.complete and not again.failures and again.resumed == 3


def test_the_progress_line_says_what_fails_without_repeating_itself() -> None:
    out = io.StringIO()
    line = ProgressLine("simulate x", out)
    first = ("openai/a failing for 1.0 s (1 failed): refused — retrying in 0.5 s (attempt 2 of 3)",)
    later = ("openai/a failing for 1.5 s (2 failed): refused — retrying in 1.0 s (attempt 3 of 3)",)
    line(RunStatus(total=10, done=0, done_at_start=0, failed=0, elapsed=1, trouble=first))
    line(RunStatus(total=10, done=0, done_at_start=0, failed=0, elapsed=1.5, trouble=later))
    line(RunStatus(total=10, done=0, done_at_start=0, failed=0, elapsed=2))
    assert out.getvalue().splitlines() == [
        "simulate x: 0/10 conversations (0%)",
        f"simulate x: {first[0]}",
        "simulate x: model calls succeed again",
    ]

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    line = ProgressLine("simulate x", tty, min_interval=0)
    line(RunStatus(total=10, done=0, done_at_start=0, failed=0, elapsed=1, trouble=first))
    assert tty.getvalue() == f"\rsimulate x: [....................] 0/10 conversations (0%) · {first[0]}"
