"""The requests-per-minute limiter, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from lab.llm import RateLimiter


class FakeClock:
    """A clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def limiter(rpm: float, clock: FakeClock, burst: int = 1) -> RateLimiter:
    return RateLimiter(rpm, burst=burst, clock=clock, sleep=clock.sleep, asleep=clock.asleep)


def test_requests_are_spaced_to_the_rate() -> None:
    clock = FakeClock()
    limit = limiter(60, clock)
    waits = [limit.acquire() for _ in range(4)]
    assert waits == [0.0, pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0)]
    assert clock.now == pytest.approx(103.0)


def test_burst_then_steady_rate() -> None:
    clock = FakeClock()
    limit = limiter(30, clock, burst=3)
    assert [limit.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limit.acquire() == pytest.approx(2.0)


def test_quiet_time_refills_but_not_beyond_the_burst() -> None:
    clock = FakeClock()
    limit = limiter(60, clock, burst=2)
    limit.acquire()
    limit.acquire()
    clock.now += 3600
    assert [limit.acquire(), limit.acquire()] == [0.0, 0.0]
    assert limit.acquire() == pytest.approx(1.0)


def test_reservations_queue_up_without_waiting_under_the_lock() -> None:
    clock = FakeClock()
    limit = limiter(120, clock)
    assert [limit.reserve() for _ in range(4)] == [0.0, pytest.approx(0.5), pytest.approx(1.0), pytest.approx(1.5)]
    assert clock.sleeps == []


def test_async_acquire() -> None:
    clock = FakeClock()
    limit = limiter(60, clock)

    async def run() -> list[float]:
        return [await limit.aacquire() for _ in range(3)]

    assert asyncio.run(run()) == [0.0, pytest.approx(1.0), pytest.approx(1.0)]
    assert clock.sleeps == [pytest.approx(1.0), pytest.approx(1.0)]


def test_invalid_limits() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)
    with pytest.raises(ValueError):
        RateLimiter(10, burst=0)
