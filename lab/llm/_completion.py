"""What one model call produced: the reply and how it was obtained."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(timezone.utc)


@dataclass(kw_only=True)
class Completion:
    """One model reply with its usage, cost and timing."""

    text: str
    """The reply text; for a partial reply, the text received before it stopped."""

    model: str
    """The model string that was called (never another model: the gateway does not fall back)."""

    params: dict[str, Any] = field(default_factory=dict)
    """The parameters sent with the call, as given by the caller (temperature, max_tokens, …)."""

    tokens_in: int | None
    """Prompt tokens as litellm reports them: the provider's count, or litellm's estimate for a
    streaming provider that sends none (the embedded model counts with its own tokenizer, the
    scripted model counts whitespace-separated words); None when unreported."""

    tokens_out: int | None
    """Reply tokens, counted like `tokens_in`; None when unreported."""

    cost: float
    """Price of the call in US dollars; 0.0 for local and scripted models and for models
    litellm cannot price."""

    latency_ms: float
    """Milliseconds from the start of the call (including retries) to the end of the reply."""

    ttft_ms: float | None
    """Milliseconds from the start of the call to the first piece of text. For a call that is
    not streamed the whole reply arrives at once, so this equals `latency_ms`; None when no
    text arrived."""

    finish_reason: str | None
    """Why generation ended as the provider reports it (``stop``, ``length``, …); None when
    the reply was cut before the provider said."""

    partial: bool = False
    """True when the reply was cut short: the consumer stopped reading the stream or the
    provider failed after some text had arrived."""

    started_at: datetime
    """When the call started (UTC)."""

    first_token_at: datetime | None
    """When the first piece of text arrived (UTC); None when no text arrived."""

    ended_at: datetime
    """When the reply ended (UTC)."""

    attempts: int = 1
    """How many requests were sent: 1 plus the retries after transient errors."""

    def usage(self) -> dict[str, Any]:
        """The usage, cost and timing figures as a plain dict, ready to store as JSON.

        Returns:
            A dict with tokens, cost, timings (ms and ISO 8601 UTC), finish reason, partial
            flag and attempts.
        """
        return {
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost": self.cost,
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms,
            "finish_reason": self.finish_reason,
            "partial": self.partial,
            "attempts": self.attempts,
            "started_at": self.started_at.isoformat(),
            "first_token_at": self.first_token_at.isoformat() if self.first_token_at else None,
            "ended_at": self.ended_at.isoformat(),
        }
