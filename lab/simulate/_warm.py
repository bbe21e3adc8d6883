"""Warm litellm up in the worker server, so that forked workers start with it warm.

The worker server (see :mod:`lab.simulate._pool`) imports this module before it forks
workers. litellm builds much of itself on its first call (pydantic schemas deferred at
import, provider tables, its logging worker): about 0.4 s that each worker would otherwise
pay on its first model calls, stalling its first conversations together. One scripted
call here pays it once, in the server; the call's event loop and its thread pool are shut
down before any fork, so no thread is left for a worker to inherit half-copied.
"""

from __future__ import annotations

import asyncio
import logging
import threading


class _LoopChangeNotice(logging.Filter):
    """Drops litellm's notice that its logging queue moved to a new event loop.

    A worker runs its event loops one after another, by design; litellm then carries its
    pending log tasks onto the new loop itself (nothing is lost) and says so as a
    warning, which would print once per worker process on every run.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "event loop changed" not in record.getMessage()


def quiet_loop_change_notice() -> None:
    """Install :class:`_LoopChangeNotice` on litellm's logger (once per process)."""
    logger = logging.getLogger("LiteLLM")
    if not any(isinstance(f, _LoopChangeNotice) for f in logger.filters):
        logger.addFilter(_LoopChangeNotice())


def warm() -> bool:
    """Make one scripted call through the gateway on a throwaway event loop.

    Returns:
        Whether the call succeeded (a failure costs only speed: workers start cold).
    """
    from ..llm import ModelError, acomplete

    async def call() -> None:
        await acomplete("lab/scripted", [{"role": "user", "content": "warm up"}], {"script": "fixed", "reply": "ok"})
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

        # The call's success log runs on this loop, not carried over to the workers' loops.
        await GLOBAL_LOGGING_WORKER.flush()

    try:
        asyncio.run(call())
    except (ModelError, RuntimeError):
        return False
    return True


def threads_left() -> list[str]:
    """Threads other than the main one (none should be left after :func:`warm`)."""
    return [t.name for t in threading.enumerate() if t is not threading.main_thread()]


quiet_loop_change_notice()
warm()
