"""Failed sign-ins allowed per account and per client address, in a sliding window.

The counts live in this process's memory (each app process counts on its own).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass


class SlidingWindow:
    """Counts events per key over the last ``window`` seconds (this process only).

    Args:
        limit: Events within the window that make a key blocked.
        window: Length of the window in seconds.
        max_keys: Most keys kept; the stalest are dropped first, so a flood of new keys
            cannot grow memory without bound.
    """

    def __init__(self, limit: int, window: float, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _prune(self, key: str, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - self.window:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events

    def blocked(self, key: str, now: float | None = None) -> bool:
        """Whether ``key`` has reached the limit within the window."""
        now = time.monotonic() if now is None else now
        with self._lock:
            events = self._prune(key, now)
            return events is not None and len(events) >= self.limit

    def hit(self, key: str, now: float | None = None) -> None:
        """Record one event for ``key``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            events = self._prune(key, now)
            if events is None:
                if len(self._events) >= self.max_keys:
                    stalest = min(self._events, key=lambda k: self._events[k][-1])
                    del self._events[stalest]
                events = self._events[key] = deque()
            events.append(now)

    def reset(self, key: str) -> None:
        """Forget ``key``."""
        with self._lock:
            self._events.pop(key, None)


@dataclass
class LoginLimits:
    """Failed sign-ins allowed per username and per client address."""

    per_user: SlidingWindow
    """Failures counted against the username tried."""
    per_address: SlidingWindow
    """Failures counted against the client address."""

    @classmethod
    def default(cls) -> LoginLimits:
        """5 failures per username and 20 per address in 15 minutes."""
        return cls(SlidingWindow(5, 15 * 60), SlidingWindow(20, 15 * 60))

    def allowed(self, username: str, address: str) -> bool:
        """Whether a sign-in may be tried now."""
        return not (self.per_user.blocked(username.lower()) or self.per_address.blocked(address))

    def failed(self, username: str, address: str) -> None:
        """Count a refused sign-in."""
        self.per_user.hit(username.lower())
        self.per_address.hit(address)

    def succeeded(self, username: str) -> None:
        """A good password clears the username's count."""
        self.per_user.reset(username.lower())


LOGIN_LIMITS = LoginLimits.default()
"""The process's sign-in limits."""
