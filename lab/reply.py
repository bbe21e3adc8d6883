"""An assistant reply in progress: streamed, checkpointed and committed as one turn.

The reply asks its conversation (:class:`lab.dialogue.Conversation`) for what the model
sees and for the model's answer, and writes the assistant turn through it: inserted as
``partial`` once it has streamed for :data:`CHECKPOINT_SECONDS`, checkpointed as often
while it goes on, and completed with usage and timing. A reply that ends sooner (most of
them) is written once, with its label, in one transaction: every write of a reply takes
SQLite's one write lock, which the replies of every app process share.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SATimeoutError

from . import llm
from .db import nothing_written
from .schema import utcnow

if TYPE_CHECKING:
    from .dialogue import Conversation, TurnView
    from .labels import AutoLabels

log = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 2.0
"""How often a streamed reply's text is written to its turn: at most what a crash of the
server process can cut from a reply (the reply runs apart from the page, so a refresh or
a closed tab cuts nothing)."""
STORE_ATTEMPTS = 3
"""Tries to write a reply that has ended while the database is too busy to take it."""


def completion_metrics(result: llm.Completion) -> dict[str, Any]:
    """The turn columns a model call fills in: usage, timing, how it ended."""
    return {
        "tokens_in": result.tokens_in,
        "tokens_out": result.tokens_out,
        "cost": result.cost,
        "latency_ms": result.latency_ms,
        "ttft_ms": result.ttft_ms,
        "finish_reason": result.finish_reason,
        "partial": result.partial,
        "first_token_at": result.first_token_at,
        "last_token_at": result.ended_at,
    }


class Reply:
    """An assistant reply in progress; iterate it for text pieces.

    The assistant turn is inserted (``partial``) once the reply has streamed for
    :data:`CHECKPOINT_SECONDS` and checkpointed as often, then completed with usage and
    timing. Stopping the iteration keeps what
    arrived as a partial turn; a provider error, or a reply that ends with no text, is
    committed as an error turn and raised as :class:`lab.llm.ModelError`.
    """

    def __init__(self, conv: Conversation, *, stream: bool) -> None:
        self.conv = conv
        self.stream = stream
        self.turn: TurnView | None = None
        self.error: llm.ModelError | None = None
        self._text = ""
        self._last_checkpoint: float | None = None
        self._first_piece_at: datetime | None = None

    @property
    def text(self) -> str:
        """Text received so far."""
        return self._text

    def __iter__(self) -> Generator[str, None, None]:
        conv = self.conv
        self._started = utcnow()
        try:
            if not self.stream:
                result = conv.complete()
            else:
                st = llm.stream(conv.model, conv.model_view(), dict(conv.params), timeout=conv.timeout)
        except llm.ModelError as e:
            self.error = e
            self._fail(e)
            raise
        if not self.stream:
            self._text = result.text
            self._finish(result)
            if self.error is not None:
                raise self.error
            yield result.text
            return
        try:
            for piece in st:
                self._text += piece
                self._checkpoint()
                yield piece
        except llm.ModelError as e:
            self.error = e
            self._fail(e)
            raise
        finally:
            # Also runs when the reader stops early (GeneratorExit): what arrived is kept as partial.
            if self.error is None:
                st.close()
                self._finish(st.completion)
        if self.error is not None:
            raise self.error  # the model returned no text (see _completed)

    def consume(self) -> TurnView:
        """Read the whole reply; returns the committed turn (an error turn on failure)."""
        try:
            for _ in self:
                pass
        except llm.ModelError:
            pass
        assert self.turn is not None
        return self.turn

    def _checkpoint(self) -> None:
        now = time.monotonic()
        if self._last_checkpoint is None:
            self._last_checkpoint, self._first_piece_at = now, utcnow()
            return
        if now - self._last_checkpoint < CHECKPOINT_SECONDS:
            return
        self._last_checkpoint = now
        try:
            if self.turn is None:
                self.turn = self.conv.record(
                    role="assistant",
                    source="model",
                    content=self._text,
                    model=self.conv.model,
                    params=self.conv.params,
                    partial=True,
                    sent_at=self._started,
                    first_token_at=self._first_piece_at,
                )
            else:
                self.turn = self.conv.amend(self.turn, content=self._text)
        except (DBAPIError, SATimeoutError) as e:
            # A checkpoint only guards against a crash: the reply goes on, and its end is written whole.
            if not nothing_written(e):
                raise
            log.warning("a reply's checkpoint waited too long for the database; the reply goes on")

    def _judge(self, fields: dict[str, Any]) -> AutoLabels | None:
        """Judge a reply before it is written, so that the reply and its labels commit together."""
        if not self.conv.autolabel or fields.get("error") is not None:
            return None
        from .labels import auto_labels

        return auto_labels(self.conv, fields.get("content", ""))

    def _judged(self, auto: AutoLabels | None) -> None:
        if auto is not None and self.turn is not None:
            self.conv.verdicts[self.turn.id] = (auto.code, auto.score)

    def _store(self, **fields: Any) -> None:
        """Write the reply as it ended (with its label); tried again while the database is too busy to take it."""
        conv = self.conv
        auto = self._judge(fields)
        then = auto.write if auto is not None else None
        for attempt in range(STORE_ATTEMPTS):
            try:
                if self.turn is None:
                    self.turn = conv.record(
                        role="assistant",
                        source="model",
                        model=conv.model,
                        params=conv.params,
                        sent_at=self._started,
                        then=then,
                        **fields,
                    )
                else:
                    self.turn = conv.amend(self.turn, then=then, **fields)
                break
            except (DBAPIError, SATimeoutError) as e:
                # Only a write that certainly left nothing behind is tried again: one whose
                # commit may have gone through would be stored twice.
                if attempt == STORE_ATTEMPTS - 1 or not nothing_written(e):
                    raise
                log.warning("a reply waited too long for the database; writing it again")
                time.sleep(0.5 * (attempt + 1))
        self._judged(auto)

    async def arun(self) -> TurnView:
        """Get the whole reply at once on the event loop and commit it (an error turn on failure)."""
        conv = self.conv
        self._started = utcnow()
        try:
            result = await conv.acomplete()
        except llm.ModelError as e:
            self.error = e
            await self._astore(**self._failure(e))
        else:
            self._text = result.text
            await self._astore(**self._completed(result))
        assert self.turn is not None
        return self.turn

    async def _astore(self, **fields: Any) -> None:
        """Write the whole reply at once (nothing was checkpointed), sharing the commit."""
        conv = self.conv
        assert self.turn is None
        auto = self._judge(fields)
        self.turn = await conv.arecord(
            role="assistant",
            source="model",
            model=conv.model,
            params=conv.params,
            sent_at=self._started,
            then=auto.write if auto is not None else None,
            **fields,
        )
        self._judged(auto)

    def _finish(self, result: llm.Completion) -> None:
        self._store(**self._completed(result))

    def _completed(self, result: llm.Completion) -> dict[str, Any]:
        """The columns of a reply that ended; one that ended with no text is a failure.

        An empty (or whitespace-only) reply answers nothing: stored as an ordinary turn it
        would read as an answer and show as an empty bubble. It is stored like a provider
        error (content ``''``, ``error`` set, :attr:`error` set so the reader raises it),
        keeping the call's usage and finish reason, which the call did produce. A reply the
        reader stopped before any text arrived is a cut reply, not an empty one.
        """
        fields: dict[str, Any] = {"content": result.text, **completion_metrics(result)}
        if result.partial or result.text.strip():
            return fields
        self.error = llm.ModelError("empty_reply", f"{result.model} returned no text.")
        return fields | {"content": "", "error": self.error.message}

    def _failure(self, e: llm.ModelError) -> dict[str, Any]:
        return {"content": self._text, "error": e.message, "partial": bool(self._text), "finish_reason": "error"}

    def _fail(self, e: llm.ModelError) -> None:
        self._store(**self._failure(e))
