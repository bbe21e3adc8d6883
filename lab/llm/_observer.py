"""Watching the gateway's calls as they go: each failed attempt, each retry, each success.

A batch run watches its calls to say within seconds that a model is failing (and why, and
when the next try is), and to stop calling a model that has failed for too long, instead
of waiting for each call to use up its retries. Watchers are kept in a context variable,
so they see the calls of the code that installed them (and the tasks and threads it
starts), not those of the rest of the process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from ._errors import ModelError


@dataclass(frozen=True)
class Attempt:
    """One attempt of a model call that ended: it succeeded, or failed with `error`."""

    model: str
    """The model string called."""
    error: ModelError | None
    """Why the attempt failed; None when it succeeded."""
    attempt: int
    """Which attempt of the call this was, from 1."""
    attempts: int
    """The most attempts the call may make (1 plus its retries)."""
    retry_in: float | None = None
    """Seconds until the call tries again; None when it succeeded or gives up."""


Watcher = Callable[[Attempt], None]
"""Told of every attempt that ends; it must return quickly and must not raise."""

_watchers: ContextVar[tuple[Watcher, ...]] = ContextVar("lab_llm_watchers", default=())


@contextmanager
def watching(watcher: Watcher) -> Iterator[None]:
    """Tell ``watcher`` of every attempt of the calls made inside the block.

    Tasks created and threads started (``asyncio.to_thread``) inside the block are watched
    too, since they copy the context they were started in.

    Args:
        watcher: Called with an `Attempt` as each attempt ends.
    """
    token = _watchers.set((*_watchers.get(), watcher))
    try:
        yield
    finally:
        _watchers.reset(token)


def report(attempt: Attempt) -> None:
    """Tell the watchers of the current context about an attempt that ended."""
    for watcher in _watchers.get():
        watcher(attempt)
