"""The scripted model ``lab/scripted``: deterministic, offline replies for tests and demos.

A study chooses a behaviour with the parameter ``script``:

- ``echo`` (the default): "You said: <last user message>".
- ``fixed``: always the parameter ``reply``.
- ``ask``: always one clarifying question (the parameter ``reply`` replaces the default one).
- ``answer``: the parameter ``reply``, or a default sentence that reads like an answer.
- ``sequence``: the n-th assistant turn of a conversation gets ``replies[n]``; past the end
  it holds the last reply, or starts again from the first with ``cycle: true``.
- ``error_after``: echoes for ``n`` successful calls, then fails every call with the error
  kind ``error`` (default ``server``). Calls are counted per conversation, keyed by the
  parameter ``key`` or else by the first message of the conversation.

Two parameters apply to every script: ``latency`` (seconds before the first piece of text)
and ``token_delay`` (seconds between streamed pieces). ``max_tokens`` cuts the reply to that
many words with finish reason ``length``. Tokens are counted as whitespace-separated words.

Tests queue replies that are used before any script, first in first out:

```python
from lab.llm import scripted
scripted.enqueue("hello", scripted.ModelFailure("rate_limit"), "after the retry")
```

A queued `ModelFailure` makes that call fail with the matching provider error (HTTP 429 for
``rate_limit``, …), raised inside litellm like a real provider's, so the gateway's error
mapping and retries run for real.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

SCRIPTS: tuple[str, ...] = ("echo", "fixed", "ask", "answer", "sequence", "error_after")
"""The behaviours the parameter ``script`` may name."""

FAILURE_KINDS: dict[str, int] = {
    "rate_limit": 429,
    "timeout": 408,
    "server": 500,
    "unavailable": 503,
    "bad_request": 400,
    "auth": 401,
    "not_found": 404,
    "connection": 0,
}
"""Failure kinds a `ModelFailure` can simulate, with the HTTP status a provider would send."""

PARAMS: frozenset[str] = frozenset({"script", "reply", "replies", "cycle", "n", "error", "key", "latency", "token_delay"})
"""Parameters only the scripted model reads."""

DEFAULT_QUESTION = "Before I answer, could you tell me a little more about what you need?"
DEFAULT_ANSWER = "Here is my answer: based on what you have told me, this is the best solution I can give."


class ModelFailure:
    """A queued provider failure for the scripted model.

    Attributes:
        kind: One of `FAILURE_KINDS` (``rate_limit``, ``timeout``, ``server``, ``unavailable``,
            ``bad_request``, ``auth``, ``not_found``, ``connection``).
        message: The provider's words; a short default when not given.
        after_text: Text streamed before the failure, to simulate a provider that fails
            mid-reply (a call that is not streamed fails without any text).
    """

    def __init__(self, kind: str, message: str | None = None, *, after_text: str = "") -> None:
        """Describe the failure.

        Args:
            kind: One of `FAILURE_KINDS`.
            message: The provider's words.
            after_text: Text streamed before failing.
        """
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; expected one of {', '.join(FAILURE_KINDS)}")
        self.kind = kind
        self.message = message or f"scripted {kind.replace('_', ' ')} failure"
        self.after_text = after_text

    def __repr__(self) -> str:
        extra = f", after_text={self.after_text!r}" if self.after_text else ""
        return f"ModelFailure({self.kind!r}, {self.message!r}{extra})"


_lock = threading.Lock()
_queue: deque[str | ModelFailure] = deque()
_successes: dict[str, int] = {}


def enqueue(*replies: str | ModelFailure) -> None:
    """Queue replies or failures for the next scripted calls, in order.

    Args:
        *replies: Reply texts and `ModelFailure` items, used first in first out before any
            script.
    """
    for reply in replies:
        if not isinstance(reply, (str, ModelFailure)):
            raise TypeError(f"queued items must be str or ModelFailure, got {type(reply).__name__}")
    with _lock:
        _queue.extend(replies)


def pending() -> int:
    """How many queued items have not been used yet."""
    with _lock:
        return len(_queue)


def reset() -> None:
    """Forget queued items and the per-conversation call counts."""
    with _lock:
        _queue.clear()
        _successes.clear()


@dataclass(frozen=True)
class Plan:
    """What one scripted call will do."""

    text: str
    """The reply text (for a failure, the text streamed before it)."""

    failure: ModelFailure | None
    """The failure to raise after `text`, if any."""

    finish_reason: str
    """``stop``, or ``length`` when ``max_tokens`` cut the reply."""

    tokens_in: int
    """Words in the prompt."""

    tokens_out: int
    """Words in the reply."""

    latency: float
    """Seconds before the first piece."""

    token_delay: float
    """Seconds between pieces."""


def count_words(text: str) -> int:
    """Whitespace-separated words in a text, the scripted model's token count."""
    return len(text.split())


def pieces(text: str) -> list[str]:
    """Split a reply into word-sized stream pieces that join back to the exact text."""
    return re.findall(r"\S+\s*|\s+", text)


def check_params(params: dict[str, Any] | None) -> list[str]:
    """Problems with the scripted model's parameters.

    Args:
        params: The parameters a study gives the model.

    Returns:
        One sentence per problem; empty when the parameters are usable.
    """
    params = params or {}
    problems: list[str] = []
    script = params.get("script", "echo")
    if script not in SCRIPTS:
        problems.append(f"unknown script {script!r} for lab/scripted; choose one of {', '.join(SCRIPTS)}.")
    if script == "fixed" and not isinstance(params.get("reply"), str):
        problems.append("the script 'fixed' needs a text parameter 'reply'.")
    if "reply" in params and not isinstance(params["reply"], str):
        problems.append("the parameter 'reply' must be a text.")
    if script == "sequence":
        replies = params.get("replies")
        if not isinstance(replies, list) or not replies or not all(isinstance(r, str) for r in replies):
            problems.append("the script 'sequence' needs a parameter 'replies': a non-empty list of texts.")
    if script == "error_after":
        n = params.get("n")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            problems.append("the script 'error_after' needs a parameter 'n': a whole number, 0 or more.")
        if params.get("error", "server") not in FAILURE_KINDS:
            problems.append(f"the parameter 'error' must be one of {', '.join(FAILURE_KINDS)}.")
    for name in ("latency", "token_delay"):
        value = params.get(name, 0)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            problems.append(f"the parameter '{name}' must be a number of seconds, 0 or more.")
    return problems


def _last_user(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


def _conversation_key(messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    if params.get("key") is not None:
        return str(params["key"])
    return str(messages[0].get("content") or "") if messages else ""


def _scripted_reply(messages: list[dict[str, Any]], params: dict[str, Any]) -> str | ModelFailure:
    script = params.get("script", "echo")
    if script == "echo":
        return f"You said: {_last_user(messages)}"
    if script == "fixed":
        return str(params["reply"])
    if script == "ask":
        return str(params.get("reply") or DEFAULT_QUESTION)
    if script == "answer":
        return str(params.get("reply") or DEFAULT_ANSWER)
    if script == "sequence":
        replies: list[str] = params["replies"]
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        return replies[turn % len(replies)] if params.get("cycle") else replies[min(turn, len(replies) - 1)]
    if script == "error_after":
        key = _conversation_key(messages, params)
        with _lock:
            done = _successes.get(key, 0)
            if done >= int(params["n"]):
                return ModelFailure(str(params.get("error", "server")), f"scripted failure after {done} successful calls")
            _successes[key] = done + 1
        return f"You said: {_last_user(messages)}"
    raise ValueError(f"unknown script {script!r}")


def plan(messages: list[dict[str, Any]], params: dict[str, Any]) -> Plan:
    """Decide what the next scripted call returns.

    Args:
        messages: The conversation sent to the model.
        params: The call's parameters (script, reply, max_tokens, latency, …).

    Returns:
        The plan: text, optional failure, finish reason, token counts and delays.

    Raises:
        ValueError: When the parameters are not usable (see `check_params`).
    """
    with _lock:
        queued = _queue.popleft() if _queue else None
    if queued is None:
        problems = check_params(params)
        if problems:
            raise ValueError(problems[0])
        queued = _scripted_reply(messages, params)
    failure = queued if isinstance(queued, ModelFailure) else None
    text = failure.after_text if failure else str(queued)
    finish_reason = "stop"
    max_tokens = params.get("max_tokens") or params.get("max_completion_tokens")
    if failure is None and isinstance(max_tokens, int) and max_tokens > 0 and count_words(text) > max_tokens:
        words = [p for p in pieces(text) if p.strip()]
        text = "".join(words[:max_tokens]).rstrip()
        finish_reason = "length"
    prompt = " ".join(str(m.get("content") or "") for m in messages)
    return Plan(
        text=text,
        failure=failure,
        finish_reason=finish_reason,
        tokens_in=count_words(prompt),
        tokens_out=count_words(text),
        latency=float(params.get("latency", 0) or 0),
        token_delay=float(params.get("token_delay", 0) or 0),
    )
