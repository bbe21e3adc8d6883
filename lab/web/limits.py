"""Failed sign-ins allowed per account and per client address, in a sliding window.

The counts live in this process's memory (each app process counts on its own).
"""

from __future__ import annotations

import math
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

    def retry_after(self, key: str, now: float | None = None) -> float:
        """Seconds until ``key`` is no longer blocked (0 when it is not)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            events = self._prune(key, now)
            if events is None or len(events) < self.limit:
                return 0.0
            # Blocked until enough of the oldest events leave the window to go under the limit.
            return events[len(events) - self.limit] + self.window - now

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


@dataclass(frozen=True)
class Pause:
    """Sign-in refused for a while after too many failures."""

    by: str
    """What reached its limit: ``address`` (the client's) or ``username``."""
    seconds: float
    """How long until sign-in may be tried again."""

    @property
    def minutes(self) -> int:
        """The wait in whole minutes, rounded up."""
        return max(1, math.ceil(self.seconds / 60))

    def message(self) -> str:
        """What the sign-in form says."""
        who = "from your address" if self.by == "address" else "for this username"
        unit = "minute" if self.minutes == 1 else "minutes"
        return f"Too many failed sign-ins {who}: sign-in is paused for {self.minutes} {unit}. Try again after that."


@dataclass
class LoginLimits:
    """Failed sign-ins allowed per client address and per username.

    The address limit is the stricter, so one address guessing a username is stopped
    before the account's own limit is reached: it cannot lock the account's owner out.
    """

    per_address: SlidingWindow
    """Failures counted against the client address."""
    per_user: SlidingWindow
    """Failures counted against the username tried (from every address)."""

    @classmethod
    def default(cls) -> LoginLimits:
        """5 failures per address and 20 per username in 15 minutes."""
        return cls(per_address=SlidingWindow(5, 15 * 60), per_user=SlidingWindow(20, 15 * 60))

    def pause(self, username: str, address: str, now: float | None = None) -> Pause | None:
        """Why and for how long sign-in is refused now, or None when it may be tried."""
        waits = [
            Pause("address", self.per_address.retry_after(address, now)),
            Pause("username", self.per_user.retry_after(username.lower(), now)),
        ]
        longest = max(waits, key=lambda p: p.seconds)
        return longest if longest.seconds > 0 else None

    def allowed(self, username: str, address: str) -> bool:
        """Whether a sign-in may be tried now."""
        return self.pause(username, address) is None

    def failed(self, username: str, address: str) -> None:
        """Count a refused sign-in."""
        self.per_user.hit(username.lower())
        self.per_address.hit(address)

    def succeeded(self, username: str) -> None:
        """A good password clears the username's count."""
        self.per_user.reset(username.lower())


LOGIN_LIMITS = LoginLimits.default()
"""The process's sign-in limits."""
