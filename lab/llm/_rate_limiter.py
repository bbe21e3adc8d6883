"""Requests-per-minute limiting for batch runs against one model."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    """A token bucket that spaces out requests to stay under a requests-per-minute limit.

    Each `acquire` (or `aacquire`) takes one token and waits until the bucket would have
    held it. Tokens are reserved under a lock before waiting, so callers from threads and
    from coroutines are served in arrival order and none of them holds the lock while it
    waits. The bucket starts full, so the first ``burst`` requests go at once.

    Example:
        ```python
        limiter = RateLimiter(rpm=60)
        for item in items:
            limiter.acquire()
            complete(model, messages_for(item))
        ```
    """

    def __init__(
        self,
        rpm: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Create a limiter.

        Args:
            rpm: Requests allowed per minute; must be positive.
            burst: Requests that may go at once after a quiet spell.
            clock: Monotonic time in seconds (replaceable in tests).
            sleep: How `acquire` waits.
            asleep: How `aacquire` waits.
        """
        if rpm <= 0:
            raise ValueError(f"rpm must be positive, got {rpm!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rpm = float(rpm)
        self.burst = burst
        self._rate = self.rpm / 60.0
        self._clock = clock
        self._sleep = sleep
        self._asleep = asleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._updated = clock()

    def reserve(self) -> float:
        """Take one token now and say how long to wait before using it.

        Returns:
            Seconds the caller must wait before sending its request (0.0 when it may go now).
        """
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self._rate)
            self._updated = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def acquire(self) -> float:
        """Wait, blocking the thread, until one more request may be sent.

        Returns:
            The seconds waited.
        """
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait

    async def aacquire(self) -> float:
        """Wait, without blocking the event loop, until one more request may be sent.

        Returns:
            The seconds waited.
        """
        wait = self.reserve()
        if wait > 0:
            await self._asleep(wait)
        return wait
