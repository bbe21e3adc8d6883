"""How litellm's exceptions map onto ModelError kinds."""

from __future__ import annotations

import httpx
import pytest

from lab.llm import ModelError
from lab.llm._errors import KINDS, from_exception, provider_detail
from lab.llm._providers import load_litellm

MODEL = "openai/gpt-4o-mini"


def build(name: str, message: str = "upstream says no") -> Exception:
    litellm = load_litellm()
    cls = getattr(litellm, name)
    if name == "APIError":
        return cls(status_code=502, message=message, llm_provider="openai", model=MODEL)
    if name in ("UnprocessableEntityError", "PermissionDeniedError"):
        status = 422 if name == "UnprocessableEntityError" else 403
        response = httpx.Response(status, request=httpx.Request("POST", "https://example.invalid"))
        return cls(message=message, llm_provider="openai", model=MODEL, response=response)
    return cls(message=message, llm_provider="openai", model=MODEL)


@pytest.mark.parametrize(
    ("name", "kind", "retryable"),
    [
        ("RateLimitError", "rate_limit", True),
        ("Timeout", "timeout", True),
        ("InternalServerError", "server", True),
        ("ServiceUnavailableError", "server", True),
        ("BadGatewayError", "server", True),
        ("APIError", "server", True),
        ("APIConnectionError", "connection", True),
        ("BadRequestError", "bad_request", False),
        ("ContextWindowExceededError", "bad_request", False),
        ("UnprocessableEntityError", "bad_request", False),
        ("AuthenticationError", "auth", False),
        ("PermissionDeniedError", "auth", False),
        ("NotFoundError", "unknown_model", False),
    ],
)
def test_litellm_exceptions_map_to_kinds(name: str, kind: str, retryable: bool) -> None:
    error = from_exception(build(name), MODEL, timeout=30)
    assert (error.kind, error.retryable) == (kind, retryable)
    assert MODEL in error.message
    assert "litellm." not in error.message and "Traceback" not in error.message


def test_a_missing_key_message_names_the_variable() -> None:
    raw = build(
        "AuthenticationError",
        "The api_key client option must be set either by passing api_key to the client or by setting the "
        "OPENAI_API_KEY environment variable",
    )
    error = from_exception(raw, MODEL)
    assert error.kind == "missing_key"
    assert error.message == f"OPENAI_API_KEY is not set; add it to .env or the environment to use {MODEL}."


def test_unknown_provider() -> None:
    litellm = load_litellm()
    raw = litellm.exceptions.LiteLLMUnknownProvider(model="zzz/model", custom_llm_provider="zzz")
    error = from_exception(raw, "zzz/model")
    assert error.kind == "unknown_model"
    assert error.message.startswith("unknown model string 'zzz/model'")


def test_plain_exceptions() -> None:
    assert from_exception(TimeoutError("slow"), MODEL, timeout=5).message == f"{MODEL} did not answer within 5 s."
    assert from_exception(ConnectionRefusedError("refused"), MODEL).kind == "connection"
    assert from_exception(RuntimeError("odd"), MODEL).kind == "server"
    same = ModelError("auth", "no")
    assert from_exception(same, MODEL) is same


def test_model_error_shape() -> None:
    error = ModelError("rate_limit", "Slow down.")
    assert (error.kind, error.message, error.retryable, str(error)) == ("rate_limit", "Slow down.", True, "Slow down.")
    assert ModelError("bad_request", "No.").retryable is False
    assert ModelError("server", "x", retryable=False).retryable is False
    assert "missing_package" in KINDS and "missing_key" in KINDS
    with pytest.raises(ValueError):
        ModelError("oops", "x")


def test_provider_detail_is_one_short_line() -> None:
    detail = provider_detail(build("BadRequestError", "first line\nsecond line " + "x" * 500))
    assert detail == "first line"
    long = provider_detail(build("BadRequestError", "y" * 500), limit=50)
    assert len(long) == 50 and long.endswith("…")


def test_a_model_stuck_in_a_loop_is_cut_without_retry() -> None:
    raw = build("InternalServerError", "The model is repeating the same chunk = again.")
    error = from_exception(raw, MODEL)
    assert (error.kind, error.retryable) == ("server", False)
    assert error.message == f"{MODEL} kept repeating the same text, so the reply was cut off."


def _wrapped(inner: BaseException, outer: Exception) -> Exception:
    """``outer`` raised while handling ``inner``, as litellm raises its own exceptions."""
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 — the implicit context is what litellm leaves
    except Exception as e:  # noqa: BLE001
        return e


def test_a_refused_connection_wrapped_as_a_server_error_is_named_as_refused() -> None:
    request = httpx.Request("POST", "http://127.0.0.1:8899/v1/chat/completions")
    connect = httpx.ConnectError("[Errno 111] Connection refused", request=request)
    connect.__cause__ = ConnectionRefusedError(111, "Connection refused")
    litellm = load_litellm()
    raw = _wrapped(
        connect, litellm.InternalServerError(message="OpenAIException - Connection error.", llm_provider="openai", model=MODEL)
    )
    error = from_exception(raw, MODEL)
    assert error.kind == "connection" and error.retryable
    assert error.message == f"Could not connect to http://127.0.0.1:8899/v1: connection refused ({MODEL})."


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [({"retry-after": "7"}, 7.0), ({"retry-after-ms": "1500"}, 1.5), ({"retry-after": "soon"}, None), ({}, None)],
)
def test_retry_after_is_read_from_the_response_headers(headers: dict[str, str], seconds: float | None) -> None:
    from lab.llm._errors import retry_after

    response = httpx.Response(429, headers=headers, request=httpx.Request("POST", "https://example.invalid/v1"))
    raw = load_litellm().RateLimitError(message="slow down", llm_provider="openai", model=MODEL, response=response)
    assert retry_after(raw) == seconds
    assert from_exception(raw, MODEL).retry_after == seconds


def test_an_http_date_in_retry_after_counts_from_now() -> None:
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    from lab.llm._errors import retry_after

    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    response = httpx.Response(503, headers={"retry-after": later}, request=httpx.Request("POST", "https://example.invalid"))
    raw = load_litellm().ServiceUnavailableError(message="busy", llm_provider="openai", model=MODEL, response=response)
    wait = retry_after(raw)
    assert wait is not None and 25 < wait <= 30


def test_a_parameter_of_the_wrong_type_is_a_bad_request_not_a_connection_to_retry() -> None:
    """litellm wraps a TypeError met while building the request as an APIConnectionError."""
    litellm = load_litellm()
    cause = TypeError("type str doesn't define __round__ method")
    raw = litellm.APIConnectionError(
        message=f"litellm.APIConnectionError: {cause}\nTraceback (most recent call last): …",
        llm_provider="anthropic",
        model="claude-3-7-sonnet-latest",
    )
    raw.__cause__ = cause
    error = from_exception(raw, "anthropic/claude-3-7-sonnet-latest")
    assert (error.kind, error.retryable) == ("bad_request", False)
    assert "could not be made from its parameters" in error.message and "Traceback" not in error.message
    assert (from_exception(TypeError("bad"), MODEL).kind, from_exception(TypeError("bad"), MODEL).retryable) == (
        "bad_request",
        False,
    )


def test_a_real_connection_failure_stays_transient() -> None:
    litellm = load_litellm()
    raw = litellm.APIConnectionError(message="refused", llm_provider="openai", model=MODEL)
    raw.__context__ = ConnectionRefusedError(111, "Connection refused")
    error = from_exception(raw, MODEL)
    assert (error.kind, error.retryable) == ("connection", True)
