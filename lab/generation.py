"""Replies generated apart from the page that asked for them.

A participant's page asks for a reply, but the reply must not depend on that page staying
connected: a refresh, a second tab or a dropped connection ends the page's script run,
and a reply streamed inside that run would be cut. So each reply runs on a thread owned by
the server process, one per conversation, and writes to the database as it streams (the
engine's checkpoints, :class:`lab.dialogue.Reply`). Any page of the conversation that loads
while it runs attaches to it and shows it finishing; only the participant's own Stop cuts
it on purpose.

The registry lives in one process: several app replicas behind a sticky load balancer each
own the replies of the participants they serve. A process that dies mid-reply leaves the
turn as far as its last checkpoint, marked ``partial``, as any cut stream is; the next page
that loads finds no reply running and shows it cut off. One that dies before the reply's
first checkpoint leaves no turn: the next page finds the message unanswered and asks again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace

from sqlalchemy import Engine

from . import llm
from .dialogue import Conversation

log = logging.getLogger(__name__)


@dataclass
class Generation:
    """One reply being generated for one conversation."""

    session_id: int
    """The conversation."""
    text: str = ""
    """Text received so far."""
    pieces: int = 0
    """Pieces received so far."""
    error: str | None = None
    """The provider's message when the reply failed (it is stored as an error turn)."""
    stopped: bool = False
    """Whether the participant stopped it."""
    crashed: bool = False
    """Whether it failed outside the model (the database, a bug): nothing may be stored, so
    the page offers a retry instead of waiting for a reply that is not coming."""
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    @property
    def done(self) -> bool:
        """Whether the reply has ended and is stored."""
        return self._done.is_set()

    def wait(self, seen: int, timeout: float) -> bool:
        """Wait until more than ``seen`` pieces have arrived or the reply has ended.

        Returns:
            True when there is something new to show.
        """
        with self._changed:
            return self._changed.wait_for(lambda: self.pieces > seen or self._done.is_set(), timeout)

    def join(self, timeout: float) -> bool:
        """Wait for the reply to end and be stored; True when it has."""
        return self._done.wait(timeout)

    def stop(self) -> None:
        """Cut the reply after the piece in progress; what arrived is stored as partial."""
        self.stopped = True
        self._stop.set()

    def _piece(self, text: str) -> None:
        with self._changed:
            self.text = text
            self.pieces += 1
            self._changed.notify_all()

    def _end(self) -> None:
        with self._changed:
            self._done.set()
            self._changed.notify_all()


class Generations:
    """The replies this process is generating, at most one per conversation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, Generation] = {}

    def running(self, session_id: int) -> Generation | None:
        """The reply being generated for a conversation, if any."""
        with self._lock:
            return self._running.get(session_id)

    def start(self, engine: Engine, session_id: int, *, retry: bool = False, conv: Conversation | None = None) -> Generation:
        """Generate the conversation's next reply, or return the one already running.

        The thread replies only when the last turn asks for one: a participant's message,
        or (with ``retry``) a failed reply.

        Args:
            engine: The lab database.
            session_id: The conversation.
            retry: Reply again after a failed reply (the participant asked to try again).
            conv: The conversation as the caller has just read it; the thread works on a
                copy of it. Without it, the thread reads the conversation itself.
        """
        with self._lock:
            gen = self._running.get(session_id)
            if gen is not None:
                return gen
            gen = self._running[session_id] = Generation(session_id)
        own = None if conv is None else replace(conv, turns=list(conv.turns), verdicts={})
        threading.Thread(target=self._run, args=(engine, gen, retry, own), name=f"reply-{session_id}", daemon=True).start()
        return gen

    def _run(self, engine: Engine, gen: Generation, retry: bool, conv: Conversation | None) -> None:
        try:
            if conv is None:
                conv = Conversation.load(engine, gen.session_id)
            last = next((t for t in reversed(conv.turns) if t.role in ("user", "assistant")), None)
            if conv.status != "active" or last is None or not (last.role == "user" or (retry and last.error is not None)):
                return
            reply = conv.reply(stream=True)
            pieces = iter(reply)
            try:
                for _ in pieces:
                    gen._piece(reply.text)
                    if gen._stop.is_set():
                        break
            except llm.ModelError as e:
                gen.error = e.message  # committed as an error turn; the page offers a retry
            finally:
                pieces.close()  # a reply cut short is committed as partial
        except Exception as e:  # noqa: BLE001 — a reply thread must never take the process down
            log.exception("reply for conversation %s failed", gen.session_id)
            gen.error, gen.crashed = str(e) or type(e).__name__, True
        finally:
            with self._lock:
                if self._running.get(gen.session_id) is gen:
                    del self._running[gen.session_id]
            gen._end()


GENERATIONS = Generations()
"""The process-wide registry of replies being generated."""
