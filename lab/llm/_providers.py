"""The lab's in-process models as litellm custom providers: ``lab/…`` and ``local/…``.

:data:`PROVIDERS` is their table (prefix, handler, description). Registering them in
``litellm.custom_provider_map`` makes the scripted and the embedded model ordinary model
strings: every call, local or remote, goes through litellm the same way. litellm passes a
custom provider the call's timeout but does not enforce it, so both providers bound the
call themselves.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from . import _hf, _local, _scripted

SCRIPTED_PROVIDER = "lab"
"""Provider prefix of the scripted model (``lab/scripted``)."""

LOCAL_PROVIDER = "local"
"""Provider prefix of in-process GGUF models (``local/smollm2-135m``, ``local/<file.gguf>``)."""


class _Timetable:
    """When a scripted stream's pieces are due, counted from its start.

    A real model's pieces wait in the connection when their reader is late, so a slow
    reader does not slow the model down; waiting each gap afresh after the reader comes
    back would add every delay of the reader's to the model's time.
    """

    def __init__(self) -> None:
        self.due = time.monotonic()

    def after(self, seconds: float) -> float:
        """Move the next piece ``seconds`` past the last one; return how long is left until it is due."""
        self.due += seconds
        return max(0.0, self.due - time.monotonic())


def _seconds(timeout: Any) -> float | None:
    """A timeout in seconds from what litellm passes (a number, an httpx.Timeout or None)."""
    if timeout is None:
        return None
    if isinstance(timeout, (int, float)):
        return float(timeout) if timeout > 0 else None
    for part in ("read", "connect", "pool"):
        value = getattr(timeout, part, None)
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    return None


def _usage_block(tokens_in: int | None, tokens_out: int | None) -> dict[str, int] | None:
    if tokens_in is None and tokens_out is None:
        return None
    return {
        "prompt_tokens": tokens_in or 0,
        "completion_tokens": tokens_out or 0,
        "total_tokens": (tokens_in or 0) + (tokens_out or 0),
    }


def _chunk(text: str, finished: bool = False, finish_reason: str = "", usage: dict[str, int] | None = None) -> dict:
    return {
        "text": text,
        "is_finished": finished,
        "finish_reason": finish_reason,
        "usage": usage,
        "index": 0,
        "tool_use": None,
    }


def _fill(litellm: Any, model_response: Any, model: str, text: str, finish_reason: str | None, usage: dict | None) -> Any:
    model_response.choices[0].message.content = text
    model_response.choices[0].finish_reason = finish_reason or "stop"
    model_response.model = model
    if usage is not None:
        model_response.usage = litellm.Usage(**usage)
    return model_response


_FAILURE_EXCEPTIONS = {
    "rate_limit": "RateLimitError",
    "timeout": "Timeout",
    "unavailable": "ServiceUnavailableError",
    "bad_request": "BadRequestError",
    "auth": "AuthenticationError",
    "not_found": "NotFoundError",
    "connection": "APIConnectionError",
}
"""The litellm exception a real provider's failure of each kind surfaces as (else a 500)."""


def _failure_error(litellm: Any, failure: _scripted.ModelFailure, model: str) -> Exception:
    """The litellm exception a real provider's failure of this kind would surface as."""
    cls = getattr(litellm, _FAILURE_EXCEPTIONS.get(failure.kind, "InternalServerError"))
    return cls(message=failure.message, model=model, llm_provider=SCRIPTED_PROVIDER)


class _InProcess:
    """What the in-process models share: the litellm module their errors and responses come from.

    The classes below hold the logic; :func:`_custom_llm` joins one to ``litellm.CustomLLM``
    when litellm is loaded, because this module must not import it.
    """

    def __init__(self, litellm: Any) -> None:
        super().__init__()
        self._litellm = litellm


class ScriptedModel(_InProcess):
    """``lab/<anything>``: the scripted model (see `lab.llm.scripted`)."""

    def _plan(self, model: str, messages: list, optional_params: dict) -> _scripted.Plan:
        try:
            return _scripted.plan(messages, dict(optional_params or {}))
        except ValueError as error:
            raise self._litellm.BadRequestError(message=str(error), model=model, llm_provider=SCRIPTED_PROVIDER) from None

    def _timeout_error(self, model: str, timeout: float) -> Exception:
        return self._litellm.Timeout(
            message=f"scripted latency exceeded the timeout of {timeout:g} s",
            model=model,
            llm_provider=SCRIPTED_PROVIDER,
        )

    def _steps(self, kwargs: dict[str, Any], *, stream: bool) -> Iterator[tuple[float, Any]]:
        """The one timing of a scripted call: ``(seconds to wait, what to give next)`` pairs.

        A stream gives its pieces one by one (``latency`` before the first,
        ``token_delay`` between them) and a last chunk with the usage; a whole reply
        waits as long as the stream would take and gives the filled response. Either
        raises litellm's timeout when the waits would pass the call's timeout, and the
        scripted failure at the end. ``None`` means nothing to give after the wait. The
        callers only wait (blocking or on the event loop) and pass the rest on.
        """
        model = kwargs["model"]
        plan = self._plan(model, kwargs["messages"], kwargs.get("optional_params") or {})
        timeout = _seconds(kwargs.get("timeout"))
        pieces = _scripted.pieces(plan.text)
        if not stream:
            delay = plan.latency + plan.token_delay * max(0, len(pieces) - 1)
            if timeout is not None and delay >= timeout:
                yield timeout, None
                raise self._timeout_error(model, timeout)
            if delay:
                yield delay, None
            if plan.failure is not None:
                raise _failure_error(self._litellm, plan.failure, model)
            usage = _usage_block(plan.tokens_in, plan.tokens_out)
            yield 0.0, _fill(self._litellm, kwargs["model_response"], model, plan.text, plan.finish_reason, usage)
            return
        deadline = time.monotonic() + timeout if timeout else None
        if plan.latency:
            if timeout is not None and plan.latency >= timeout:
                yield timeout, None
                raise self._timeout_error(model, timeout)
            yield plan.latency, None
        for number, piece in enumerate(pieces):
            wait = plan.token_delay if number else 0.0
            if wait:
                yield wait, None
            if deadline is not None and time.monotonic() > deadline:
                raise self._timeout_error(model, timeout or 0)
            yield 0.0, _chunk(piece)
        if plan.failure is not None:
            raise _failure_error(self._litellm, plan.failure, model)
        yield 0.0, _chunk("", True, plan.finish_reason, _usage_block(plan.tokens_in, plan.tokens_out))

    def streaming(self, *args: Any, **kwargs: Any) -> Iterator[dict]:
        """Yield the scripted reply word by word, then its usage, on a fixed timetable."""
        timetable = _Timetable()
        for wait, chunk in self._steps(kwargs, stream=True):
            if wait:
                time.sleep(timetable.after(wait))
            if chunk is not None:
                yield chunk

    async def astreaming(self, *args: Any, **kwargs: Any) -> AsyncIterator[dict]:
        """Like `streaming`, waiting with asyncio."""
        timetable = _Timetable()
        for wait, chunk in self._steps(kwargs, stream=True):
            if wait:
                await asyncio.sleep(timetable.after(wait))
            if chunk is not None:
                yield chunk

    def completion(self, *args: Any, **kwargs: Any) -> Any:
        """Return the whole scripted reply after its delays."""
        response = None
        for wait, given in self._steps(kwargs, stream=False):
            if wait:
                time.sleep(wait)
            response = given if given is not None else response
        return response

    async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
        """Like `completion`, waiting with asyncio."""
        response = None
        for wait, given in self._steps(kwargs, stream=False):
            if wait:
                await asyncio.sleep(wait)
            response = given if given is not None else response
        return response


class LocalModel(_InProcess):
    """``local/<name>``: a GGUF model run in-process by llama-cpp-python, or a model folder by transformers."""

    def _generation(self, kwargs: dict[str, Any]) -> _local.Generation | _hf.Generation:
        model = kwargs["model"]
        try:
            path = _local.model_file(model)
        except Exception as error:  # noqa: BLE001 — surfaced as the provider error litellm expects
            raise self._litellm.BadRequestError(message=str(error), model=model, llm_provider=LOCAL_PROVIDER) from None
        # A folder is a saved Hugging Face model (a tuned one); a file is GGUF for llama.cpp.
        kind = _hf.Generation if path.is_dir() else _local.Generation
        return kind(path, kwargs["messages"], dict(kwargs.get("optional_params") or {}), _seconds(kwargs.get("timeout")))

    def _events(self, generation: _local.Generation | _hf.Generation, model: str) -> Iterator[dict]:
        pieces = generation.pieces()
        try:
            for piece in pieces:
                yield _chunk(piece)
        except _local.LocalTimeout as error:
            raise self._litellm.Timeout(message=str(error), model=model, llm_provider=LOCAL_PROVIDER) from None
        finally:
            pieces.close()  # releases the model's lock at once when the reader stops early
        usage = _usage_block(generation.tokens_in, generation.tokens_out)
        yield _chunk("", True, generation.finish_reason or "stop", usage)

    def streaming(self, *args: Any, **kwargs: Any) -> Iterator[dict]:
        """Yield the reply as the model generates it, holding the model's lock."""
        yield from self._events(self._generation(kwargs), kwargs["model"])

    async def astreaming(self, *args: Any, **kwargs: Any) -> AsyncIterator[dict]:
        """Like `streaming`, generating in a thread so the event loop keeps running."""
        generation = self._generation(kwargs)
        events = _local.iterate_in_thread(lambda: self._events(generation, kwargs["model"]))
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()  # tells the generating thread to stop and free the model

    def _complete(self, kwargs: dict[str, Any]) -> Any:
        generation = self._generation(kwargs)
        for _ in self._events(generation, kwargs["model"]):
            pass
        usage = _usage_block(generation.tokens_in, generation.tokens_out)
        return _fill(self._litellm, kwargs["model_response"], kwargs["model"], generation.text, generation.finish_reason, usage)

    def completion(self, *args: Any, **kwargs: Any) -> Any:
        """Generate the whole reply."""
        return self._complete(kwargs)

    async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
        """Generate the whole reply in a thread."""
        return await asyncio.to_thread(self._complete, kwargs)


def _custom_llm(model: type[_InProcess], litellm: Any) -> Any:
    """An instance of ``model`` that litellm accepts as a custom provider."""
    return type(model.__name__, (model, litellm.CustomLLM), {})(litellm)


@dataclass(frozen=True)
class Provider:
    """One in-process model provider: what a study's ``model:`` names as ``<prefix>/…``."""

    handler: Callable[[Any], Any]
    """Makes the ``litellm.CustomLLM`` handler from the imported litellm module."""

    description: str
    """What it serves, in one line."""

    free_models: tuple[str, ...] = ()
    """Model names (after the prefix) priced at zero up front, so litellm never looks them up."""


PROVIDERS: dict[str, Provider] = {
    SCRIPTED_PROVIDER: Provider(
        lambda litellm: _custom_llm(ScriptedModel, litellm),
        "the scripted model of the tests and the demo, no network",
        ("scripted",),
    ),
    LOCAL_PROVIDER: Provider(
        lambda litellm: _custom_llm(LocalModel, litellm),
        "a GGUF file through llama-cpp-python, or a saved model folder through transformers",
        ("smollm2-135m",),
    ),
}
"""The lab's in-process providers by prefix; every other prefix is litellm's own."""

IN_PROCESS_PROVIDERS = frozenset(PROVIDERS)
"""Prefixes of the models that run inside the server process (no key, no network)."""


def build_handlers(litellm: Any) -> dict[str, Any]:
    """Create the provider objects; litellm is passed in because this module must not import it.

    Args:
        litellm: The imported litellm module.

    Returns:
        Handler objects keyed by provider prefix.
    """
    return {prefix: provider.handler(litellm) for prefix, provider in PROVIDERS.items()}


def register(litellm: Any) -> None:
    """Add the lab's providers to ``litellm.custom_provider_map`` (once per process).

    Args:
        litellm: The imported litellm module.
    """
    present = {item.get("provider") for item in litellm.custom_provider_map}
    missing = {name: handler for name, handler in build_handlers(litellm).items() if name not in present}
    litellm.custom_provider_map = [
        *litellm.custom_provider_map,
        *({"provider": name, "custom_handler": handler} for name, handler in missing.items()),
    ]
    litellm.utils.custom_llm_setup()
    # Priced at zero up front: otherwise litellm searches its price map for these names on
    # every call (a quarter of a millisecond each) before giving up.
    free = {
        "input_cost_per_token": 0.0,
        "output_cost_per_token": 0.0,
        "cache_creation_input_token_cost": 0.0,
        "cache_read_input_token_cost": 0.0,
        "mode": "chat",
    }
    litellm.register_model(
        {
            f"{prefix}/{name}": free | {"litellm_provider": prefix}
            for prefix, provider in PROVIDERS.items()
            for name in provider.free_models
        }
    )


_litellm: Any = None
_litellm_lock = threading.Lock()


def load_litellm() -> Any:
    """Import litellm once, offline, with the lab's providers registered.

    litellm is imported on first use, not when ``lab.llm`` is imported, because the import
    takes seconds. ``LITELLM_LOCAL_MODEL_COST_MAP`` keeps it from downloading its price
    list. Global retries and fallbacks are switched off: the gateway retries by itself and
    never replaces the requested model by another.

    Returns:
        The litellm module.
    """
    global _litellm
    if _litellm is not None:
        return _litellm
    with _litellm_lock:
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm

            litellm.suppress_debug_info = True
            litellm.num_retries = None
            litellm.model_fallbacks = None
            register(litellm)
            _litellm = litellm
    return _litellm


def litellm_if_loaded() -> Any | None:
    """The litellm module if the gateway has imported it already, else None."""
    return _litellm
