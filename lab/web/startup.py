"""What an app server process does once, in the background, after it starts.

A full collection of Python's garbage collector walks every object alive and holds the
interpreter lock while it does: in an app process (Streamlit, SQLAlchemy and litellm
loaded) that is about 360,000 objects and 0.2 s on a quiet core, longer under load, and
every page run, reply and request of the process waits behind it. The load benchmark
(``bench/load.py``) showed those pauses as bursts of turns delayed by a second at once.
Almost all of those objects live as long as the process, so after the first model call
has built what litellm builds lazily, they are moved out of the collector's sight
(:func:`gc.freeze`); later collections walk only what page runs and replies create.
"""

from __future__ import annotations

import gc
import logging
import threading

log = logging.getLogger(__name__)

_started = threading.Event()


def warm_up() -> None:
    """Make one scripted model call (litellm finishes loading), then freeze the heap.

    A failed call costs only speed: the heap is frozen all the same.
    """
    from ..llm import ModelError, complete

    try:
        complete("lab/scripted", [{"role": "user", "content": "warm up"}], {"script": "fixed", "reply": "ok"})
    except ModelError:
        log.warning("the warm-up model call failed; the first reply will load the model gateway")
    gc.collect()
    gc.freeze()


def warm_up_in_background() -> None:
    """Start :func:`warm_up` on a daemon thread, once per process."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
