"""Fixtures for the model gateway's tests: retries that record their waits instead of sleeping."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.llm import using_retry_policy


@pytest.fixture(autouse=True)
def backoff_delays() -> Iterator[list[float]]:
    """The waits the gateway asked for before retries (nothing actually sleeps)."""
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)

    with using_retry_policy(sleep=delays.append, asleep=record, jitter=0.0):
        yield delays
