"""The one error type of the model gateway, and how provider errors map onto it."""

from __future__ import annotations

import re
from typing import Any

from ..errors import LabError

KINDS: tuple[str, ...] = (
    "auth",
    "missing_key",
    "bad_request",
    "rate_limit",
    "timeout",
    "server",
    "connection",
    "unknown_model",
    "missing_package",
    "empty_reply",
)
"""Every kind a `ModelError` can have."""

RETRYABLE_KINDS: frozenset[str] = frozenset({"rate_limit", "timeout", "server", "connection"})
"""Kinds that are transient: the same request may succeed if sent again later."""


class ModelError(LabError):
    """A model call that did not produce a reply.

    Attributes:
        kind: What went wrong, one of `KINDS`: ``auth``, ``missing_key``, ``bad_request``,
            ``rate_limit``, ``timeout``, ``server``, ``connection``, ``unknown_model``,
            ``missing_package``, ``empty_reply`` (the call succeeded but the reply has no text).
        message: One calm sentence for the person running the study or taking part.
        retryable: True when sending the same request again later may succeed.
    """

    def __init__(self, kind: str, message: str, retryable: bool | None = None) -> None:
        """Create the error.

        Args:
            kind: One of `KINDS`.
            message: One sentence saying what happened and, where useful, what to do.
            retryable: Whether a retry may succeed; by default, true for transient kinds.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown ModelError kind {kind!r}; expected one of {', '.join(KINDS)}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retryable = kind in RETRYABLE_KINDS if retryable is None else retryable

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ModelError(kind={self.kind!r}, message={self.message!r}, retryable={self.retryable!r})"


_PREFIX = re.compile(r"^(?:litellm\.[A-Za-z]+:\s*)+")
_ENV_VAR = re.compile(r"\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_(?:API_KEY|API_TOKEN|TOKEN|KEY))\b")
_KEY_MISSING = re.compile(r"(not set|must be set|missing|no api key|api_key client option)", re.IGNORECASE)


def provider_detail(exc: BaseException, limit: int = 240) -> str:
    """The provider's own words about an error, shortened to one line.

    Args:
        exc: The exception raised by litellm or a provider.
        limit: The longest detail kept, in characters.

    Returns:
        The first line of the message without litellm's class-name prefixes.
    """
    text = str(getattr(exc, "message", None) or exc or type(exc).__name__)
    text = _PREFIX.sub("", text.strip())
    first = text.splitlines()[0].strip() if text else type(exc).__name__
    if len(first) > limit:
        first = first[: limit - 1].rstrip() + "…"
    return first


def unknown_model_message(model: str) -> str:
    """The sentence for a model string whose provider litellm does not recognise."""
    if "/" not in model:
        return (
            f"unknown model string '{model}': litellm cannot tell its provider; "
            "write it as provider/model, e.g. openai/gpt-4o-mini."
        )
    return (
        f"unknown model string '{model}': litellm does not know the provider '{model.split('/', 1)[0]}'; "
        "write it as provider/model, e.g. openai/gpt-4o-mini, ollama_chat/llama3 or local/smollm2-135m."
    )


def _status(exc: BaseException) -> int | None:
    status: Any = getattr(exc, "status_code", None)
    if status is None:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
    try:
        return int(status) if status is not None else None
    except (TypeError, ValueError):
        return None


def _request_not_built(exc: BaseException) -> bool:
    """Whether the call failed in the lab's own process on a value of the wrong type.

    litellm wraps a ``TypeError`` met while building a request (``max_tokens: lots``) as an
    ``APIConnectionError``; no request was sent, and sending it again fails the same way.
    """
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, OSError):
            return False
        if isinstance(link, TypeError):
            return True
        link = link.__cause__ or link.__context__
    return False


def from_exception(exc: BaseException, model: str, timeout: float | None = None) -> ModelError:
    """Translate an exception from litellm or a provider into a `ModelError`.

    The classes are matched by name along the exception's class hierarchy, so this works
    without importing litellm and for the OpenAI SDK classes litellm's own derive from.

    Args:
        exc: The exception raised while calling the model.
        model: The model string that was called, named in the message.
        timeout: The timeout of the call, named in a timeout message.

    Returns:
        The matching `ModelError`; an existing `ModelError` is returned unchanged.
    """
    if isinstance(exc, ModelError):
        return exc
    names = {cls.__name__ for cls in type(exc).__mro__}
    detail = provider_detail(exc)
    status = _status(exc)

    if "LiteLLMUnknownProvider" in names or "LLM Provider NOT provided" in str(exc):
        return ModelError("unknown_model", unknown_model_message(model), False)
    if "repeating the same chunk" in str(exc):
        # litellm's guard against a model stuck in a loop (REPEATED_STREAMING_CHUNK_LIMIT).
        return ModelError("server", f"{model} kept repeating the same text, so the reply was cut off.", False)
    missing = _ENV_VAR.search(str(exc))
    if missing and _KEY_MISSING.search(str(exc)):
        return ModelError(
            "missing_key", f"{missing.group(1)} is not set; add it to .env or the environment to use {model}.", False
        )
    if names & {"AuthenticationError", "PermissionDeniedError"} or status in (401, 403):
        return ModelError(
            "auth",
            f"The provider refused the credentials for {model} (HTTP {status or 401}); check the API key: {detail}",
            False,
        )
    if "NotFoundError" in names or status == 404:
        return ModelError("unknown_model", f"The provider does not know the model {model}: {detail}", False)
    if names & {"Timeout", "APITimeoutError", "TimeoutError"} or status == 408:
        within = f" within {timeout:g} s" if timeout else " in time"
        return ModelError("timeout", f"{model} did not answer{within}.", True)
    if "RateLimitError" in names or status == 429:
        return ModelError("rate_limit", f"The provider is rate-limiting requests to {model} (HTTP 429); try again shortly.", True)
    if "ContextWindowExceededError" in names:
        return ModelError("bad_request", f"The conversation is too long for the context window of {model}.", False)
    if "ContentPolicyViolationError" in names:
        return ModelError("bad_request", f"The provider's content policy blocked the request to {model}: {detail}", False)
    if names & {"BadRequestError", "UnprocessableEntityError", "UnsupportedParamsError"} or (
        status is not None and 400 <= status < 500
    ):
        return ModelError("bad_request", f"The provider rejected the request to {model}: {detail}", False)
    if _request_not_built(exc):
        return ModelError(
            "bad_request",
            f"The request to {model} could not be made from its parameters ({detail}); "
            "check the model's params in the study spec.",
            False,
        )
    if names & {"ServiceUnavailableError", "BadGatewayError", "InternalServerError"} or (
        status is not None and status >= 500 and "APIConnectionError" not in names
    ):
        return ModelError(
            "server", f"The provider of {model} had a server error (HTTP {status or 500}); try again shortly.", True
        )
    if names & {"APIConnectionError", "ConnectionError", "ConnectError", "OSError"}:
        return ModelError("connection", f"Could not reach the provider of {model}: {detail}", True)
    return ModelError("server", f"The call to {model} failed: {detail}", True)
