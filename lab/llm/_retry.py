"""Bounded retries with exponential backoff for transient model errors."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait before each retry of a transient error.

    The n-th retry (n = 1, 2, …) waits ``base_delay * factor ** (n - 1)`` seconds, capped at
    ``max_delay``, plus up to ``jitter`` of that again at random so that many conversations
    hitting the same limit do not retry in lockstep. When the provider says how long to
    wait (``Retry-After``), that wait is used instead, up to ``max_retry_after``.
    """

    base_delay: float = 0.5
    """Seconds before the first retry."""

    factor: float = 2.0
    """Growth of the delay from one retry to the next."""

    max_delay: float = 8.0
    """The longest wait before one retry, in seconds, before jitter."""

    jitter: float = 0.25
    """The random extra, as a fraction of the delay (0 for none)."""

    max_retry_after: float = 60.0
    """The longest wait a provider's ``Retry-After`` may ask for; a call asked to wait
    longer gives up at once, saying how long it was asked to wait."""

    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    """How synchronous calls wait (replaceable so tests need not wait)."""

    asleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)
    """How asynchronous calls wait."""

    def delay(self, retry: int) -> float:
        """The wait before a retry.

        Args:
            retry: Which retry this is, starting at 1.

        Returns:
            Seconds to wait.
        """
        base = min(self.max_delay, self.base_delay * self.factor ** max(0, retry - 1))
        return base + (random.uniform(0, self.jitter * base) if self.jitter > 0 else 0.0)


_policy = RetryPolicy()


def retry_policy() -> RetryPolicy:
    """The policy the gateway uses now."""
    return _policy


def set_retry_policy(policy: RetryPolicy) -> RetryPolicy:
    """Replace the gateway's retry policy for the whole process.

    Args:
        policy: The new policy.

    Returns:
        The policy it replaced, so a caller can restore it.
    """
    global _policy
    previous, _policy = _policy, policy
    return previous


@contextmanager
def using_retry_policy(policy: RetryPolicy | None = None, **changes: object) -> Iterator[RetryPolicy]:
    """Use another retry policy inside a ``with`` block.

    Args:
        policy: The policy to use; by default the current one.
        **changes: Fields to change on it, e.g. ``sleep=recorded.append``.

    Yields:
        The policy in force inside the block.
    """
    chosen = replace(policy or _policy, **changes)  # type: ignore[arg-type]
    previous = set_retry_policy(chosen)
    try:
        yield chosen
    finally:
        set_retry_policy(previous)
