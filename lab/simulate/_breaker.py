"""A circuit breaker per model: a run stops calling a model whose every call has failed for a while.

The breaker watches every attempt of the run's model calls (see `lab.llm.watching`). While
a model's calls fail it says so, with the latest reason and the next retry, for the
progress line. When every call to a model has failed for `BREAKER_SECONDS` (or at once,
for a failure no retry can mend: refused credentials, an unknown model, a missing key), it
opens: the run's units stop calling that model, each with the breaker's message, instead
of each using up its own retries against a server that is down. Other models go on, and
running the same command again continues the units it stopped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import llm

BREAKER_SECONDS = 60.0
"""Seconds of nothing but failed calls to a model after which a run stops calling it."""

STOP_AT_ONCE: frozenset[str] = frozenset({"auth", "unknown_model", "missing_key", "missing_package"})
"""Error kinds that every later call to the model would meet too: the breaker opens at the first."""


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


@dataclass
class Trouble:
    """What the breaker knows of one model whose latest calls failed."""

    since: float
    """When the first of the failures since the last success came (the breaker's clock)."""
    error: llm.ModelError
    """The latest failure."""
    failures: int = 0
    """Failed attempts since the last success."""
    attempt: int = 1
    """Which attempt of its call the latest failure was."""
    attempts: int = 1
    """The most attempts that call may make."""
    retry_in: float | None = None
    """Seconds until that call tries again (None: it gave up)."""
    stopped: str | None = None
    """Once the breaker has opened: why the run stopped calling the model."""


class Breaker:
    """One circuit breaker per model string, fed by the gateway's reports of each attempt."""

    def __init__(self, seconds: float = BREAKER_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        """Create the breaker.

        Args:
            seconds: How long every call to a model must have failed before it opens.
            clock: Monotonic seconds (replaceable in tests).
        """
        if seconds <= 0:
            raise ValueError(f"the breaker's time must be positive, got {seconds!r}")
        self.seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()  # reports also come from threads (asyncio.to_thread)
        self._trouble: dict[str, Trouble] = {}
        self.changed = False
        """Set when what the breaker would say has changed; whoever shows it clears it."""

    def __call__(self, attempt: llm.Attempt) -> None:
        """Take in one ended attempt (the breaker is an `lab.llm.Watcher`)."""
        now = self._clock()
        with self._lock:
            trouble = self._trouble.get(attempt.model)
            if attempt.error is None:
                if trouble is not None and trouble.stopped is None:
                    del self._trouble[attempt.model]
                    self.changed = True
                return
            if trouble is None:
                trouble = self._trouble[attempt.model] = Trouble(since=now, error=attempt.error)
            if trouble.stopped is not None:
                return
            trouble.error = attempt.error
            trouble.failures += 1
            trouble.attempt, trouble.attempts, trouble.retry_in = attempt.attempt, attempt.attempts, attempt.retry_in
            if attempt.error.kind in STOP_AT_ONCE:
                trouble.stopped = f"stopped calling {attempt.model}: {attempt.error.message}"
            elif now - trouble.since >= self.seconds:
                trouble.stopped = (
                    f"stopped calling {attempt.model} after {_seconds(now - trouble.since)} in which every call failed; "
                    f"the last: {attempt.error.message}"
                )
            self.changed = True

    def stopped(self, *models: str | None) -> str | None:
        """Why the run has stopped calling one of ``models``, or None when it calls them all."""
        with self._lock:
            for model in models:
                trouble = self._trouble.get(model) if model else None
                if trouble is not None and trouble.stopped is not None:
                    return trouble.stopped
        return None

    def lines(self) -> tuple[str, ...]:
        """One line per model in trouble, for the progress line: since when, why, and what next."""
        now = self._clock()
        out = []
        with self._lock:
            for model, trouble in self._trouble.items():
                if trouble.stopped is not None:
                    out.append(trouble.stopped)
                    continue
                nxt = ""
                if trouble.retry_in is not None:
                    nxt = f"retrying in {_seconds(trouble.retry_in)} (attempt {trouble.attempt + 1} of {trouble.attempts}); "
                left = max(0.0, self.seconds - (now - trouble.since))
                out.append(
                    f"{model} failing for {_seconds(now - trouble.since)} ({trouble.failures} failed): "
                    f"{trouble.error.message} — {nxt}stops in {_seconds(left)} unless a call succeeds"
                )
        return tuple(out)
