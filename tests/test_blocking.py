"""Running a coroutine whose I/O is blocking, without an event loop."""

from __future__ import annotations

import asyncio

import pytest

from lab.blocking import run_blocking


async def _double(x: int) -> int:
    return 2 * x


async def _chain(x: int) -> int:
    return await _double(x) + 1


def test_returns_what_the_coroutine_returns() -> None:
    assert run_blocking(_chain(20)) == 41


def test_raises_what_the_coroutine_raises() -> None:
    async def fail() -> None:
        raise KeyError("gone")

    with pytest.raises(KeyError, match="gone"):
        run_blocking(fail())


def test_a_coroutine_that_waits_for_the_loop_is_refused() -> None:
    finished = []

    async def sleepy() -> None:
        try:
            await asyncio.sleep(0)  # hands control to the loop without needing one first
        finally:
            finished.append(True)

    with pytest.raises(RuntimeError, match="waited for an event loop"):
        run_blocking(sleepy())
    assert finished == [True]  # closed, not left pending


def test_works_in_a_thread_whose_loop_is_running() -> None:
    async def inside() -> int:
        return run_blocking(_chain(1))

    assert asyncio.run(inside()) == 3
