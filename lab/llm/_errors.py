"""The one error type of the model gateway, and how provider errors map onto it."""

from __future__ import annotations

import re
import socket
import ssl
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

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
        retry_after: Seconds the provider asked the lab to wait before trying again (its
            ``Retry-After`` header), or None.
    """

    def __init__(self, kind: str, message: str, retryable: bool | None = None, *, retry_after: float | None = None) -> None:
        """Create the error.

        Args:
            kind: One of `KINDS`.
            message: One sentence saying what happened and, where useful, what to do.
            retryable: Whether a retry may succeed; by default, true for transient kinds.
            retry_after: Seconds the provider asked to wait before a retry.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown ModelError kind {kind!r}; expected one of {', '.join(KINDS)}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retryable = kind in RETRYABLE_KINDS if retryable is None else retryable
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ModelError(kind={self.kind!r}, message={self.message!r}, retryable={self.retryable!r})"

    def again(self, message: str) -> ModelError:
        """The same error with another message (its kind, retryability and requested wait kept)."""
        return ModelError(self.kind, message, self.retryable, retry_after=self.retry_after)


_PREFIX = re.compile(r"^(?:litellm\.[A-Za-z]+:\s*)+(?:[A-Za-z]+Error:\s*)?(?:[A-Za-z]+Exception\s+-\s+)?")
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


def causes(exc: BaseException) -> list[BaseException]:
    """The exception and what caused it, outermost first.

    litellm wraps a refused connection in an "InternalServerError" with status 500; what
    happened is told only by the exceptions it was raised from.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 20 and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


_HTTP_MODULES = ("httpx", "httpcore", "openai", "aiohttp")
"""Modules whose exceptions carry the real request (litellm's own carry a placeholder)."""
_ENDPOINTS = re.compile(r"/(?:chat/completions|completions|responses|messages|embeddings)/?$")


def request_url(exc: BaseException) -> str | None:
    """The address the failed request went to, read from the HTTP client's exceptions, without its endpoint path."""
    for error in reversed(causes(exc)):
        if not type(error).__module__.startswith(_HTTP_MODULES):
            continue
        try:
            request = getattr(error, "request", None)
        except RuntimeError:  # httpx raises when an exception has no request
            continue
        url = getattr(request, "url", None)
        if url is not None:
            return _ENDPOINTS.sub("", str(url))
    return None


def retry_after(exc: BaseException) -> float | None:
    """Seconds a provider asked the caller to wait (``Retry-After`` or ``retry-after-ms``), if it said."""
    for error in causes(exc):
        headers = getattr(error, "litellm_response_headers", None)
        if headers is None:
            headers = getattr(getattr(error, "response", None), "headers", None)
        if not headers:
            continue
        try:
            ms = headers.get("retry-after-ms")
            if ms is not None:
                return max(0.0, float(ms) / 1000)
            value = headers.get("retry-after")
        except (AttributeError, TypeError, ValueError):
            continue
        if value is None:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    return None


_SSL_REASON = re.compile(r"\[SSL(?:: [A-Z_]+)?\]\s*([^()]+?)\s*(?:\(_ssl\.c:\d+\))?$")


def _network(chain: list[BaseException], host: str | None) -> tuple[str, str] | None:
    """What went wrong on the way to the server, as (kind, phrase), read from the deepest cause that says."""
    for error in reversed(chain):
        names = {cls.__name__ for cls in type(error).__mro__}
        text = str(error)
        if isinstance(error, ConnectionRefusedError) or "Connection refused" in text:
            return "connection", "connection refused"
        if isinstance(error, socket.gaierror) or any(
            words in text
            for words in ("Name or service not known", "nodename nor servname", "name resolution", "getaddrinfo failed")
        ):
            return "connection", f"the host name {host} was not found (DNS lookup failed)" if host else "DNS lookup failed"
        if isinstance(error, ssl.SSLError) or "SSLError" in names or "[SSL" in text or "CERTIFICATE_VERIFY_FAILED" in text:
            match = _SSL_REASON.search(text.strip())
            reason = (match.group(1) if match else text.strip()) or "no reason given"
            return "connection", f"the TLS handshake failed ({reason})"
        if "RemoteProtocolError" in names or "peer closed connection" in text or "incomplete chunked read" in text:
            return "connection", "the connection closed in the middle of the reply"
        if isinstance(error, ConnectionResetError) or "Connection reset" in text:
            return "connection", "the connection was reset"
        if names & {"ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout"} or isinstance(error, TimeoutError):
            return "timeout", ""
    return None


def _request_not_built(exc: BaseException) -> bool:
    """Whether the call failed in the lab's own process on a value of the wrong type.

    litellm wraps a ``TypeError`` met while building a request (``max_tokens: lots``) as an
    ``APIConnectionError``; no request was sent, and sending it again fails the same way.
    """
    for link in causes(exc):
        if isinstance(link, OSError):
            return False
        if isinstance(link, TypeError):
            return True
    return False


def from_exception(exc: BaseException, model: str, timeout: float | None = None, where: str | None = None) -> ModelError:
    """Translate an exception from litellm or a provider into a `ModelError`.

    The classes are matched by name along the exception's class hierarchy, so this works
    without importing litellm and for the OpenAI SDK classes litellm's own derive from.
    What litellm reports as a server error may be a connection that never happened: the
    exceptions it was raised from are read first (refused, DNS, TLS, a stream cut, a
    timeout), and each message says what happened and where.

    Args:
        exc: The exception raised while calling the model.
        model: The model string that was called, named in the message.
        timeout: The timeout of the call, named in a timeout message.
        where: The address called (the model's ``api_base``); by default the address the
            HTTP client reports, if any.

    Returns:
        The matching `ModelError`; an existing `ModelError` is returned unchanged.
    """
    if isinstance(exc, ModelError):
        return exc
    names = {cls.__name__ for cls in type(exc).__mro__}
    where = where or request_url(exc)
    refused = _not_sent(exc, model, names)
    if refused is not None:
        return refused
    host = urlsplit(where).hostname if where and "://" in where else None
    network = _network(causes(exc), host)
    if network is not None and network[0] == "connection":
        return _connection_error(network[1], where, model)
    return _answered(exc, model, names, where, timeout, timed_out=network is not None)


def _not_sent(exc: BaseException, model: str, names: set[str]) -> ModelError | None:
    """The error of a call litellm would not make: an unknown provider, a missing key, a reply stuck in a loop."""
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
    return None


def _connection_error(phrase: str, where: str | None, model: str) -> ModelError:
    """A connection that failed or broke off, saying how (``phrase``) and where."""
    if phrase.startswith("the connection closed"):
        return ModelError(
            "connection", f"The connection closed in the middle of the reply from {where or 'the provider'} ({model}).", True
        )
    if where:
        return ModelError("connection", f"Could not connect to {where}: {phrase} ({model}).", True)
    return ModelError("connection", f"Could not reach the provider of {model}: {phrase}.", True)


def _answered(
    exc: BaseException, model: str, names: set[str], where: str | None, timeout: float | None, *, timed_out: bool
) -> ModelError:
    """The error of a call the provider answered with a failure (or did not answer in time: ``timed_out``)."""
    detail = provider_detail(exc)
    status = _status(exc)
    at = f" at {where}" if where else ""
    server = f"the server at {where}" if where else f"the provider of {model}"
    if names & {"AuthenticationError", "PermissionDeniedError"} or status in (401, 403):
        return ModelError(
            "auth",
            f"{server[0].upper()}{server[1:]} refused the credentials for {model} (HTTP {status or 401}); "
            f"check the API key: {detail}",
            False,
        )
    if "NotFoundError" in names or status == 404:
        return ModelError("unknown_model", f"The provider does not know the model {model} (HTTP 404{at}): {detail}", False)
    if timed_out or names & {"Timeout", "APITimeoutError", "TimeoutError"} or status == 408:
        within = f" within {timeout:g} s" if timeout else " in time"
        return ModelError("timeout", f"{model} did not answer{within}{at}.", True)
    if "RateLimitError" in names or status == 429:
        wait = retry_after(exc)
        asked = f"; it asked to wait {wait:g} s" if wait is not None else "; try again shortly"
        return ModelError(
            "rate_limit", f"The provider is rate-limiting requests to {model} (HTTP 429{at}){asked}.", True, retry_after=wait
        )
    if "ContextWindowExceededError" in names:
        return ModelError("bad_request", f"The conversation is too long for the context window of {model}.", False)
    if "ContentPolicyViolationError" in names:
        return ModelError("bad_request", f"The provider's content policy blocked the request to {model}: {detail}", False)
    if names & {"BadRequestError", "UnprocessableEntityError", "UnsupportedParamsError"} or (
        status is not None and 400 <= status < 500
    ):
        return ModelError("bad_request", f"The provider rejected the request to {model}{at}: {detail}", False)
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
        code = status or 500
        return ModelError(
            "server",
            f"The provider of {model} had a server error (HTTP {code}{at}): {detail}",
            True,
            retry_after=retry_after(exc),
        )
    if names & {"APIConnectionError", "ConnectionError", "ConnectError", "OSError"}:
        return ModelError("connection", f"Could not reach {server}: {detail}", True)
    return ModelError("server", f"The call to {model} failed{at}: {detail}", True)
