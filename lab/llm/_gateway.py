"""The model gateway: every model call of the lab, streamed or not, goes through here.

Calls go to litellm, so any provider string works. The gateway adds what a study needs on
top: one error type, bounded retries with backoff on transient errors (never on bad
requests or refused credentials), no fallback to another model, and for every call the
text with its usage, cost and timing — also for a stream that is cut short.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any, TypedDict, Unpack

from ..blocking import run_blocking
from . import _local
from ._completion import Completion, utc_now
from ._errors import ModelError, from_exception
from ._observer import Attempt, report
from ._providers import IN_PROCESS_PROVIDERS, LOCAL_PROVIDER, SCRIPTED_PROVIDER, litellm_if_loaded, load_litellm
from ._retry import RetryPolicy, retry_policy
from ._scripted import PARAMS as SCRIPT_PARAMS
from ._scripted import check_params
from ._validation import KEY_FROM_ENV, OPENAI_COMPATIBLE, known_missing_env, param_problems, provider_of

LOCAL_DEFAULT = "local/smollm2-135m"
"""The embedded local model: SmolLM2-135M-Instruct run in-process."""

SCRIPTED = "lab/scripted"
"""The deterministic, offline scripted model (see `lab.llm.scripted`)."""

DEFAULT_TIMEOUT = 120.0
"""Seconds one request may take before it counts as timed out."""

DEFAULT_MAX_RETRIES = 2
"""Retries after a transient error before the call gives up."""


class CallOptions(TypedDict, total=False):
    """How a model call is made: the keyword arguments of `complete`, `stream` and their twins."""

    timeout: float
    """Seconds one request may take (default `DEFAULT_TIMEOUT`)."""

    max_retries: int
    """Retries after transient errors (timeouts, rate limits, server and connection errors;
    other errors are raised at once), made by a stream only before its first piece
    (default `DEFAULT_MAX_RETRIES`)."""


def _preflight(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> None:
    """Refuse, before any request, a call that cannot succeed."""
    if not isinstance(model, str) or not model.strip():
        raise ModelError("unknown_model", "No model was named; give a model string such as local/smollm2-135m.", False)
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) and "role" in m for m in messages):
        raise ModelError("bad_request", "The messages must be a non-empty list of {'role': …, 'content': …} entries.", False)
    provider = provider_of(model)
    problems = param_problems(params, own=SCRIPT_PARAMS if provider == SCRIPTED_PROVIDER else frozenset())
    if provider == LOCAL_PROVIDER:
        _local.model_file(model.split("/", 1)[1])
    elif provider == SCRIPTED_PROVIDER:
        if model != SCRIPTED:
            raise ModelError("unknown_model", f"unknown model string '{model}': the lab's scripted model is {SCRIPTED}.", False)
        problems += check_params(params)
    if problems:
        message = problems[0]
        raise ModelError("bad_request", f"Cannot call {model}: {message}", False)
    env_name = params.get(KEY_FROM_ENV)
    if isinstance(env_name, str) and env_name and not os.environ.get(env_name):
        raise ModelError("missing_key", f"{env_name} is not set; add it to .env or the environment to use {model}.", False)
    missing = known_missing_env(model, params)
    if missing:
        raise ModelError("missing_key", f"{missing[0]} is not set; add it to .env or the environment to use {model}.", False)


def _request(model: str, messages: list[dict[str, str]], params: dict[str, Any], timeout: float, stream: bool) -> dict:
    """The keyword arguments of one litellm call."""
    kwargs: dict[str, Any] = dict(params)
    env_name = kwargs.pop(KEY_FROM_ENV, None)
    if env_name:
        # Read at call time, so the key lives only in the environment, never in the spec or the database.
        kwargs["api_key"] = os.environ.get(env_name, "")
    kwargs.update(model=model, messages=list(messages), timeout=timeout, num_retries=0)
    provider = provider_of(model)
    if provider in OPENAI_COMPATIBLE and params.get("api_base") and not params.get("api_key"):
        # The OpenAI client insists on some key even for a self-hosted server that needs none.
        if not os.environ.get("OPENAI_API_KEY"):
            kwargs["api_key"] = "no-key"
    if stream:
        kwargs["stream"] = True
        # litellm never rejects stream_options; it makes the last chunk carry the usage.
        kwargs.setdefault("stream_options", {"include_usage": True})
    return kwargs


def _guard(litellm: Any) -> Any:
    """Litellm with its process-wide fallback and retry settings off, whoever set them.

    ``litellm.model_fallbacks`` would make any failing call silently answer with another
    model; the model is a controlled variable of a study, so it is cleared before each call.
    """
    if litellm.model_fallbacks is not None:
        litellm.model_fallbacks = None
    if litellm.num_retries is not None:
        litellm.num_retries = None
    return litellm


def _cost(model: str, tokens_in: int | None, tokens_out: int | None, response: Any = None) -> float:
    """The price of a call in US dollars; 0.0 for in-process models and models litellm cannot price."""
    litellm = litellm_if_loaded()
    if litellm is None or provider_of(model) in IN_PROCESS_PROVIDERS:
        return 0.0
    try:
        if response is not None:
            value = litellm.completion_cost(completion_response=response, model=model)
        elif tokens_in is None and tokens_out is None:
            return 0.0
        else:
            prompt, completion = litellm.cost_per_token(
                model=model, prompt_tokens=tokens_in or 0, completion_tokens=tokens_out or 0
            )
            value = prompt + completion
        return max(0.0, float(value or 0.0))
    except Exception:  # noqa: BLE001 — an unpriced model costs nothing the lab can know of
        return 0.0


def _usage_of(obj: Any) -> tuple[int | None, int | None]:
    usage = getattr(obj, "usage", None)
    if usage is None:
        return None, None
    prompt = getattr(usage, "prompt_tokens", None)
    completion = getattr(usage, "completion_tokens", None)
    return (int(prompt) if prompt is not None else None, int(completion) if completion is not None else None)


class _Retries:
    """The gateway's one retry rule, for every kind of call.

    Iterate it for attempts; when an attempt fails, :meth:`wait` says how long to wait
    before the next one, or raises the call's :class:`ModelError` when there is none: the
    error is not transient, the retries are used up, the provider asked for a longer wait
    than the policy allows, or text has already been passed on (a stream), which a retry
    could not take back. A provider's ``Retry-After`` sets the wait. Every attempt that
    ends is reported to the watchers (see `watching`).
    """

    def __init__(self, model: str, timeout: float, max_retries: int, where: str | None = None) -> None:
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.where = where
        self.attempts = 0
        """Attempts made so far."""
        self.policy = retry_policy()

    def __iter__(self) -> Iterator[int]:
        while True:
            self.attempts += 1
            yield self.attempts

    def succeeded(self) -> None:
        """Report the attempt that succeeded."""
        report(Attempt(self.model, None, self.attempts, self.max_retries + 1))

    def wait(self, exc: BaseException, *, produced: bool) -> float:
        """Seconds to wait before retrying after ``exc``.

        Args:
            exc: What the failed attempt raised.
            produced: Whether the attempt had passed on text before it failed.

        Raises:
            ModelError: no retry: the error as the lab reports it (with the attempts made).
        """
        error = from_exception(exc, self.model, self.timeout, self.where)
        delay = self.policy.delay(self.attempts)
        asked = error.retry_after
        too_long = asked is not None and asked > self.policy.max_retry_after
        if not error.retryable or self.attempts > self.max_retries or produced or too_long:
            if too_long:
                error = error.again(f"{error.message} (longer than the lab waits: {self.policy.max_retry_after:g} s)")
            elif self.attempts > 1:
                error = error.again(f"{error.message} (gave up after {self.attempts} attempts)")
            report(Attempt(self.model, error, self.attempts, self.max_retries + 1))
            raise error from exc
        if asked is not None:
            delay = asked
        report(Attempt(self.model, error, self.attempts, self.max_retries + 1, delay))
        return delay


class _Chunks:
    """A blocking litellm stream read as an async iterator that never suspends."""

    def __init__(self, upstream: Any) -> None:
        self._chunks = iter(upstream)

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> Any:
        try:
            return next(self._chunks)
        except StopIteration:
            raise StopAsyncIteration from None


class _Blocking:
    """The I/O of a call made in the caller's thread: its awaitables finish without suspending."""

    async def load(self) -> Any:
        """Litellm, imported in this thread if it is not yet."""
        return _guard(load_litellm())

    async def call(self, litellm: Any, request: dict[str, Any]) -> Any:
        """Send one request and wait for the response (or the stream's start)."""
        return litellm.completion(**request)

    def chunks(self, upstream: Any) -> AsyncIterator[Any]:
        """The chunks of a stream."""
        return _Chunks(upstream)

    async def close(self, upstream: Any) -> None:
        """Release a stream that is being abandoned."""
        _close_upstream(upstream)

    async def wait(self, policy: RetryPolicy, seconds: float) -> None:
        """Wait before a retry, blocking the thread."""
        policy.sleep(seconds)


class _OnLoop:
    """The I/O of a call made on the event loop, which keeps running while it waits."""

    async def load(self) -> Any:
        """Litellm, imported in a worker thread if it is not yet."""
        return _guard(litellm_if_loaded() or await asyncio.to_thread(load_litellm))

    async def call(self, litellm: Any, request: dict[str, Any]) -> Any:
        """Send one request and await the response (or the stream's start)."""
        return await litellm.acompletion(**request)

    def chunks(self, upstream: Any) -> AsyncIterator[Any]:
        """The chunks of a stream."""
        return upstream

    async def close(self, upstream: Any) -> None:
        """Release a stream that is being abandoned."""
        aclose = getattr(upstream, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:  # noqa: BLE001 — the stream is being abandoned either way
                pass

    async def wait(self, policy: RetryPolicy, seconds: float) -> None:
        """Wait before a retry, letting the event loop run."""
        await policy.asleep(seconds)


_BLOCKING = _Blocking()
_ON_LOOP = _OnLoop()


def complete(
    model: str,
    messages: list[dict[str, str]],
    params: dict | None = None,
    *,
    streamed: bool = False,
    **options: Unpack[CallOptions],
) -> Completion:
    """Ask a model for one reply and wait for all of it.

    Args:
        model: A litellm model string: ``openai/gpt-4o-mini``, ``anthropic/…``,
            ``ollama_chat/…``, ``hosted_vllm/…`` (with ``api_base``), ``local/smollm2-135m``,
            ``lab/scripted``, ….
        messages: The conversation, as ``{"role": …, "content": …}`` dicts.
        params: Parameters passed through to the provider (temperature, max_tokens, top_p,
            seed, stop, api_base, …).
        streamed: Ask for the reply as a stream and read all of it, so that its time to
            first token is measured (a reply that is not streamed arrives at once, and its
            ``ttft_ms`` equals its ``latency_ms``). A stream is retried only before its first
            piece; a failure after it raises, keeping nothing.
        **options: ``timeout`` and ``max_retries``; see `CallOptions`.

    Returns:
        The reply with its usage, cost and timing.

    Raises:
        ModelError: When no reply could be obtained.

    Example:
        ```python
        reply = complete("lab/scripted", [{"role": "user", "content": "hi"}])
        reply.text  # "You said: hi"
        ```
    """
    return run_blocking(_Reading(model, messages, params, streaming=streamed, **options).whole(_BLOCKING))


async def acomplete(
    model: str,
    messages: list[dict[str, str]],
    params: dict | None = None,
    *,
    streamed: bool = False,
    **options: Unpack[CallOptions],
) -> Completion:
    """As `complete`, without blocking the event loop (the same arguments, result and errors)."""
    return await _Reading(model, messages, params, streaming=streamed, **options).whole(_ON_LOOP)


def _from_response(model: str, params: dict[str, Any], response: Any, started_at: Any, start: float, attempts: int) -> Completion:
    ended_at, latency_ms = utc_now(), (time.perf_counter() - start) * 1000
    choice = response.choices[0]
    text = getattr(choice.message, "content", None) or ""
    tokens_in, tokens_out = _usage_of(response)
    return Completion(
        text=text,
        model=model,
        params=params,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost=_cost(model, tokens_in, tokens_out, response),
        latency_ms=latency_ms,
        ttft_ms=latency_ms if text else None,
        finish_reason=getattr(choice, "finish_reason", None),
        partial=False,
        started_at=started_at,
        first_token_at=ended_at if text else None,
        ended_at=ended_at,
        attempts=attempts,
    )


class _Record:
    """What a stream has received so far, and the `Completion` made from it at the end."""

    def __init__(self, model: str, params: dict[str, Any]) -> None:
        self.model = model
        self.params = params
        self.parts: list[str] = []
        self.started_at = utc_now()
        self.start = time.perf_counter()
        self.first_token_at: Any = None
        self.first_token = 0.0
        self.finish_reason: str | None = None
        self.tokens_in: int | None = None
        self.tokens_out: int | None = None
        self.attempts = 0
        self.completion: Completion | None = None
        self.error: ModelError | None = None

    def restart(self) -> None:
        """Forget what a failed attempt reported (it sent no text, or it would not be retried)."""
        self.finish_reason = None
        self.tokens_in = self.tokens_out = None

    def absorb(self, chunk: Any) -> str | None:
        """Take in one litellm stream chunk and return its text, if any."""
        choices = getattr(chunk, "choices", None) or []
        piece = None
        if choices:
            choice = choices[0]
            delta = getattr(choice, "delta", None)
            piece = getattr(delta, "content", None) if delta is not None else None
            if getattr(choice, "finish_reason", None):
                self.finish_reason = choice.finish_reason
        tokens_in, tokens_out = _usage_of(chunk)
        if tokens_in is not None or tokens_out is not None:
            self.tokens_in, self.tokens_out = tokens_in, tokens_out
        if piece:
            if not self.parts:
                self.first_token_at, self.first_token = utc_now(), time.perf_counter()
            self.parts.append(piece)
            return piece
        return None

    def snapshot(self, partial: bool) -> Completion:
        """The completion as it stands now."""
        ended_at, now = utc_now(), time.perf_counter()
        return Completion(
            text="".join(self.parts),
            model=self.model,
            params=self.params,
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            cost=_cost(self.model, self.tokens_in, self.tokens_out),
            latency_ms=(now - self.start) * 1000,
            ttft_ms=(self.first_token - self.start) * 1000 if self.parts else None,
            finish_reason=None if partial else self.finish_reason,
            partial=partial,
            started_at=self.started_at,
            first_token_at=self.first_token_at,
            ended_at=ended_at,
            attempts=self.attempts,
        )

    def finish(self, partial: bool) -> Completion:
        """Fix the completion once the stream has ended, failed or been closed."""
        if self.completion is None:
            self.completion = self.snapshot(partial)
        return self.completion


def _close_upstream(response: Any) -> None:
    """Close a litellm stream so the provider (or the local model's lock) is released at once."""
    inner = getattr(response, "completion_stream", None)
    for target in (inner, response):
        close = getattr(target, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001 — the stream is being abandoned either way
                pass
            return


class _Reading:
    """One call to a model, streamed or not: the request, the one retry loop, what arrived.

    `complete`, `Stream` and their asynchronous twins all run :meth:`_read`; they differ
    only in the I/O they plug in (blocking, or on the event loop) and in how they hand the
    reply on.
    """

    def __init__(
        self,
        model: str,
        messages: list[dict[str, str]],
        params: dict | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        streaming: bool = True,
    ) -> None:
        """Prepare the call; see `stream` (``streaming=False``: one whole reply, see `complete`)."""
        self.model = model
        self.messages = messages
        self.params = dict(params or {})
        self.timeout = timeout
        self.max_retries = max_retries
        self.streaming = streaming
        self._record = _Record(model, self.params)
        self._pieces: Any = None
        self._upstream: Any = None

    _stop = False
    """Set by `Stream.close` while another thread reads: the reader stops at its next chunk."""

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._record.parts)

    @property
    def error(self) -> ModelError | None:
        """The error that ended the stream, if any."""
        return self._record.error

    async def _read(self, io: _Blocking | _OnLoop) -> AsyncGenerator[str, None]:
        """Make the call, retrying transient errors, and yield the text pieces as they arrive.

        A stream is retried only before its first piece. Whatever ends the reading (the
        end of the reply, an error, the reader stopping or being cancelled) fixes the
        completion, partial unless the reply ended.
        """
        record = self._record
        record.started_at, record.start = utc_now(), time.perf_counter()
        try:
            _preflight(self.model, self.messages, self.params)
            litellm = await io.load()
            # Timing starts after the one-off import of litellm, which is the process's cost, not the model's.
            record.started_at, record.start = utc_now(), time.perf_counter()
            api_base = self.params.get("api_base")
            retries = _Retries(self.model, self.timeout, self.max_retries, api_base if isinstance(api_base, str) else None)
            for record.attempts in retries:
                try:
                    response = await io.call(
                        litellm, _request(self.model, self.messages, self.params, self.timeout, self.streaming)
                    )
                    if self.streaming:
                        self._upstream = response
                        async for chunk in io.chunks(response):
                            piece = record.absorb(chunk)
                            if piece:
                                yield piece
                            if self._stop:
                                record.finish(partial=True)
                                await self._release(io)
                                return
                    break
                except Exception as exc:  # noqa: BLE001 — every provider error becomes a ModelError
                    await self._release(io)
                    delay = retries.wait(exc, produced=bool(record.parts))
                    record.restart()
                    await io.wait(retries.policy, delay)
            retries.succeeded()
            if not self.streaming:
                record.completion = _from_response(
                    self.model, self.params, response, record.started_at, record.start, record.attempts
                )
        except ModelError as error:
            record.error = error
            if self.streaming:  # a reply that is not streamed keeps nothing of a failed call
                record.finish(partial=True)
            raise
        except BaseException:  # GeneratorExit when the reader stops, CancelledError when cancelled, or the thread is stopped
            record.finish(partial=True)
            await self._release(io)
            raise
        record.finish(partial=False)

    async def _release(self, io: _Blocking | _OnLoop) -> None:
        """Close the provider's stream, if one is open, so it is released at once."""
        upstream, self._upstream = self._upstream, None
        await io.close(upstream)

    async def whole(self, io: _Blocking | _OnLoop) -> Completion:
        """Make the call, read all of it and return its completion."""
        async for _ in self._read(io):
            pass  # the pieces of a streamed reply are kept in the record
        return self._record.finish(partial=False)


class Stream(_Reading):
    """A reply read piece by piece as the model produces it.

    Iterate it for the text pieces (never empty strings). Nothing is sent until iteration
    starts. Transient errors are retried only before the first piece; after that a failure
    ends the stream with a `ModelError` and `completion` keeps the text received, marked
    partial. Stopping early (breaking out, closing, or a rerun that abandons the
    generator) also leaves a partial `completion`.

    Example:
        ```python
        reply = stream("local/smollm2-135m", messages, {"max_tokens": 64})
        for piece in reply:
            show(piece)
        save(reply.completion)
        ```
    """

    def __iter__(self) -> Generator[str, None, None]:
        if self._pieces is None:
            self._pieces = self._generate()
        return self._pieces

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _generate(self) -> Generator[str, None, None]:
        pieces = self._read(_BLOCKING)
        try:
            while True:
                try:
                    piece = run_blocking(pieces.__anext__())
                except StopAsyncIteration:
                    return
                yield piece
        finally:
            # Also when the reader stops (GeneratorExit): the reading fixes a partial completion.
            run_blocking(pieces.aclose())

    def close(self) -> None:
        """Stop reading; the completion so far is kept and marked partial."""
        if self._record.completion is not None:
            return
        if self._pieces is not None:
            try:
                self._pieces.close()
            except ValueError:  # being read in another thread: it stops at its next chunk
                self._stop = True
                return
        self._record.finish(partial=True)

    @property
    def completion(self) -> Completion:
        """The reply with usage, cost and timing; reading it before the end closes the stream."""
        if self._record.completion is None:
            self.close()
        return self._record.completion or self._record.snapshot(partial=True)


class AsyncStream(_Reading):
    """A reply read piece by piece without blocking the event loop; see `Stream`.

    Use ``async for piece in reply`` and, when stopping early, ``await reply.aclose()`` (or
    ``async with``) so the provider is released at once.
    """

    def __aiter__(self) -> AsyncIterator[str]:
        if self._pieces is None:
            self._pieces = self._read(_ON_LOOP)
        return self._pieces

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading; the completion so far is kept and marked partial."""
        if self._record.completion is not None:
            return
        if self._pieces is not None:
            await self._pieces.aclose()
        self._record.finish(partial=True)

    @property
    def completion(self) -> Completion:
        """The reply with usage, cost and timing.

        Before the end, a partial snapshot (call `aclose` to end it).
        """
        return self._record.completion or self._record.snapshot(partial=True)


def stream(model: str, messages: list[dict[str, str]], params: dict | None = None, **options: Unpack[CallOptions]) -> Stream:
    """Ask a model for a reply and read it as it is produced.

    Args:
        model: A litellm model string (see `complete`).
        messages: The conversation.
        params: Parameters passed through to the provider.
        **options: ``timeout`` and ``max_retries``; see `CallOptions`.

    Returns:
        A `Stream`: iterate it for text pieces, then read ``.completion``.
    """
    return Stream(model, messages, params, **options)


async def astream(
    model: str, messages: list[dict[str, str]], params: dict | None = None, **options: Unpack[CallOptions]
) -> AsyncStream:
    """As `stream`, read with ``async for`` on the event loop (the same arguments); see `AsyncStream`."""
    return AsyncStream(model, messages, params, **options)
