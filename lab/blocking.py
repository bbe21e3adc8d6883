"""Blocking callers of logic written once, asynchronously.

Code that both a page (a script thread that must wait) and a batch run (on the event loop)
need is written as one coroutine whose I/O is plugged in. A blocking caller plugs in
blocking I/O, so the coroutine finishes without ever suspending, and takes its result
here. No event loop is involved, so this works in any thread, also in one whose loop is
running, and the I/O happens in the caller's own thread (locks it takes are released by
the thread that took them).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

_T = TypeVar("_T")


def run_blocking(awaitable: Awaitable[_T]) -> _T:
    """The result of an awaitable that finishes without suspending.

    Args:
        awaitable: A coroutine (or an async generator's step) whose I/O is all blocking.

    Returns:
        What it returns.

    Raises:
        RuntimeError: It suspended, that is, it waited for an event loop; the I/O plugged
            in was not blocking.
    """
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration as done:
        return done.value
    steps.close()
    raise RuntimeError("blocking I/O was expected, but the call waited for an event loop")
