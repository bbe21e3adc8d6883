"""Checking model strings, parameters and API keys without calling any model."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from . import _local, _scripted
from ._errors import unknown_model_message
from ._providers import IN_PROCESS_PROVIDERS, LOCAL_PROVIDER, SCRIPTED_PROVIDER, load_litellm

RESERVED_PARAMS: frozenset[str] = frozenset({"model", "messages", "stream"})

SECRET_PARAM = re.compile(
    r"(?:^|_)(?:api_?key|access_?key(?:_id)?|private_?key|secret(?:_access_key)?|token|password|passwd|credentials?)$",
    re.IGNORECASE,
)
"""Parameter names that hold credentials: a spec may not carry them (they would be stored and exported)."""

KEY_FROM_ENV = "api_key_env"
"""The parameter that names the environment variable holding a model's API key, read at call time."""
"""Parameters the gateway sets itself."""

FALLBACK_PARAMS: frozenset[str] = frozenset(
    {
        "fallbacks",
        "context_window_fallback_dict",
        "content_policy_fallbacks",
        "default_fallbacks",
        "model_list",
        "num_retries",
        "max_retries",
        "retry_policy",
    }
)
"""litellm parameters that would retry or switch models behind the gateway's back."""

KEY_ENV: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "text-completion-openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"),
    "anthropic_text": ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "mistral": ("MISTRAL_API_KEY",),
    "codestral": ("CODESTRAL_API_KEY",),
    "groq": ("GROQ_API_KEY",),
    "together_ai": ("TOGETHERAI_API_KEY", "TOGETHER_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHER_AI_TOKEN"),
    "openrouter": ("OPENROUTER_API_KEY",),
    "cohere": ("COHERE_API_KEY",),
    "cohere_chat": ("COHERE_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "xai": ("XAI_API_KEY",),
    "fireworks_ai": ("FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY", "FIREWORKSAI_API_KEY", "FIREWORKS_AI_TOKEN"),
    "perplexity": ("PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"),
    "deepinfra": ("DEEPINFRA_API_KEY",),
    "cerebras": ("CEREBRAS_API_KEY",),
    "huggingface": ("HUGGINGFACE_API_KEY", "HF_TOKEN"),
    "nvidia_nim": ("NVIDIA_NIM_API_KEY",),
    "sambanova": ("SAMBANOVA_API_KEY",),
    "ai21": ("AI21_API_KEY",),
    "ai21_chat": ("AI21_API_KEY",),
    "replicate": ("REPLICATE_API_KEY", "REPLICATE_API_TOKEN"),
}
"""The environment variable each provider reads its key from (first name first; any one
of them will do)."""

KEYLESS_PROVIDERS: frozenset[str] = frozenset(
    {
        "ollama",
        "ollama_chat",
        "hosted_vllm",
        "vllm",
        "lm_studio",
        "llamafile",
        "xinference",
        "oobabooga",
        "docker_model_runner",
        "lemonade",
        "custom_openai",
        "openai_like",
        *IN_PROCESS_PROVIDERS,
    }
)
"""Providers that are usually self-hosted servers or in-process models and need no key."""

OPENAI_COMPATIBLE: frozenset[str] = frozenset({"openai", "text-completion-openai"})
"""Providers that talk to any OpenAI-compatible server when given an ``api_base``."""


_Check = tuple[str, Callable[[Any], bool]]
"""What a parameter's value must be, in words, and the test of a value."""


def _number(low: float | None = None, high: float | None = None) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:  # v != v: NaN
            return False
        return (low is None or v >= low) and (high is None or v <= high)

    return check


def _whole(low: int | None = None, high: int | None = None) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and (low is None or v >= low) and (high is None or v <= high)

    return check


def _text(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _stop(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))


COMMON_PARAMS: dict[str, _Check] = {
    "temperature": ("a number from 0 to 2", _number(0, 2)),
    "top_p": ("a number from 0 to 1", _number(0, 1)),
    "top_k": ("a whole number, -1 (off) or more", _whole(-1)),
    "min_p": ("a number from 0 to 1", _number(0, 1)),
    "max_tokens": ("a whole number, 1 or more", _whole(1)),
    "max_completion_tokens": ("a whole number, 1 or more", _whole(1)),
    "n": ("a whole number, 1 or more", _whole(1)),
    "presence_penalty": ("a number from -2 to 2", _number(-2, 2)),
    "frequency_penalty": ("a number from -2 to 2", _number(-2, 2)),
    "repetition_penalty": ("a number above 0", lambda v: _number(0)(v) and v > 0),
    "seed": ("a whole number", _whole()),
    "stop": ("a text or a list of texts", _stop),
    "logprobs": ("true or false", lambda v: isinstance(v, bool)),
    "top_logprobs": ("a whole number from 0 to 20", _whole(0, 20)),
    "logit_bias": (
        "a mapping of token ids to numbers from -100 to 100",
        lambda v: isinstance(v, dict) and all(_number(-100, 100)(x) for x in v.values()),
    ),
    "response_format": ("a mapping such as {type: json_object}", lambda v: isinstance(v, dict)),
    "api_base": (
        "an address starting with http:// or https://",
        lambda v: isinstance(v, str) and v.startswith(("http://", "https://")),
    ),
    "api_version": ("a text", _text),
    "reasoning_effort": ("a text such as low, medium or high", _text),
    "user": ("a text", _text),
}
"""The common OpenAI-style parameters and what each accepts (the widest range any provider takes):
a wrong type or range is caught when the spec is validated, not as a failed call mid-study."""


def param_findings(params: dict[str, Any] | None, *, own: frozenset[str] = frozenset()) -> list[tuple[str | None, str]]:
    """Problems with a model's parameters, each with the parameter it is about.

    Args:
        params: The parameters from the study spec.
        own: Parameters the model defines for itself, which the common OpenAI-style checks
            leave to the model's own rules (the scripted model's ``n`` counts replies before
            a failure, 0 included).

    Returns:
        ``(name, sentence)`` pairs; ``name`` is the parameter (None when the problem is
        about the parameters as a whole).
    """
    if params is None:
        return []
    if not isinstance(params, dict):
        return [(None, f"the model parameters must be a mapping of names to values, not {type(params).__name__}.")]
    problems: list[tuple[str | None, str]] = []
    for name in sorted(RESERVED_PARAMS & params.keys()):
        problems.append((name, f"the parameter '{name}' is set by the lab itself and cannot be given."))
    for name in sorted(k for k in params if isinstance(k, str) and SECRET_PARAM.search(k) and k != KEY_FROM_ENV):
        problems.append(
            (
                name,
                f"the parameter '{name}' would store a secret in the study, its versions, every conversation and "
                f"every export; set the key in the environment (.env) instead, or name the variable that holds it "
                f"with '{KEY_FROM_ENV}: VARIABLE_NAME'.",
            )
        )
    env_name = params.get(KEY_FROM_ENV)
    if env_name is not None and not (isinstance(env_name, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env_name)):
        problems.append(
            (KEY_FROM_ENV, f"the parameter '{KEY_FROM_ENV}' must name an environment variable, such as MY_PROVIDER_KEY.")
        )
    for name in sorted(FALLBACK_PARAMS & params.keys()):
        problems.append(
            (
                name,
                f"the parameter '{name}' is not allowed: the lab retries transient errors itself and never "
                "replaces the model by another.",
            )
        )
    for name, (expected, valid) in COMMON_PARAMS.items():
        if name in params and name not in own and params[name] is not None and not valid(params[name]):
            problems.append((name, f"the parameter '{name}' must be {expected}, not {params[name]!r}."))
    return problems


def param_problems(params: dict[str, Any] | None, *, own: frozenset[str] = frozenset()) -> list[str]:
    """Problems with a model's parameters that no provider would accept from the lab.

    Args:
        params: The parameters from the study spec.
        own: As for :func:`param_findings`.

    Returns:
        One sentence per problem.
    """
    return [message for _, message in param_findings(params, own=own)]


def provider_of(model: str) -> str | None:
    """The provider prefix a model string names, without resolving it (``openai/x`` → ``openai``)."""
    return model.split("/", 1)[0] if "/" in model else None


def resolve_provider(model: str, params: dict[str, Any] | None = None) -> str:
    """The provider litellm will use for a model string.

    Args:
        model: The model string.
        params: The model's parameters (an ``api_base`` can decide the provider).

    Returns:
        The provider name.

    Raises:
        ValueError: When litellm does not recognise the model string.
    """
    prefix = provider_of(model)
    if prefix in KEY_ENV or prefix in KEYLESS_PROVIDERS:
        return prefix
    litellm = load_litellm()
    from litellm.constants import PROVIDERS_THAT_AUTHENTICATE_ON_PROVIDER_INFO

    if prefix in PROVIDERS_THAT_AUTHENTICATE_ON_PROVIDER_INFO:
        return prefix  # resolving these starts an interactive sign-in
    api_base = (params or {}).get("api_base")
    try:
        _, provider, _, _ = litellm.get_llm_provider(model=model, api_base=api_base)
    except Exception as error:  # noqa: BLE001 — litellm raises several types for an unknown model
        raise ValueError(str(error)) from None
    return str(provider)


def check_model(model: str, params: dict[str, Any] | None = None) -> list[str]:
    """Problems with a model string and its parameters, found without calling any model.

    API keys are not checked here; see `missing_env`.

    Args:
        model: A litellm model string such as ``openai/gpt-4o-mini``, ``lab/scripted`` or
            ``local/smollm2-135m``.
        params: The model's parameters from the study spec.

    Returns:
        One sentence per problem; empty when the model can be called.
    """
    return [message for _, message in model_findings(model, params)]


def model_findings(model: str, params: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """Like `check_model`, each problem with the field it is about.

    Returns:
        ``(field, sentence)`` pairs; ``field`` is ``model``, ``params`` or ``params.<name>``.
    """
    if not isinstance(model, str) or not model.strip():
        return [("model", "the model string is empty; name a model such as local/smollm2-135m or openai/gpt-4o-mini.")]
    prefix = provider_of(model)
    findings = param_findings(params, own=_scripted.PARAMS if prefix == SCRIPTED_PROVIDER else frozenset())
    problems = [("params" if name is None else f"params.{name}", message) for name, message in findings]
    if not isinstance(params, (dict, type(None))):
        return problems
    name = model.split("/", 1)[1] if prefix else model
    if prefix == LOCAL_PROVIDER:
        return problems + [("model", p) for p in _local.problems(name)]
    if prefix == SCRIPTED_PROVIDER:
        if name != "scripted":
            return problems + [("model", f"unknown model string '{model}': the lab's scripted model is lab/scripted.")]
        return problems + [("params", p) for p in _scripted.check_params(params)]
    try:
        resolve_provider(model, params)
    except ValueError:
        problems.append(("model", unknown_model_message(model)))
    return problems


def required_env(model: str) -> list[str]:
    """The environment variables holding the API key a model needs.

    Args:
        model: The model string.

    Returns:
        The variable names (e.g. ``["OPENAI_API_KEY"]``); empty for local, scripted and
        self-hosted models, and for providers whose key variables the lab does not know.
    """
    try:
        provider = resolve_provider(model)
    except ValueError:
        return []
    if provider in KEYLESS_PROVIDERS:
        return []
    if provider in KEY_ENV:
        return [KEY_ENV[provider][0]]
    # Beyond KEY_ENV only litellm knows the variables, and it names them only while unset.
    return _litellm_missing(model, {})


def _litellm_missing(model: str, params: dict[str, Any]) -> list[str]:
    litellm = load_litellm()
    try:
        found = litellm.validate_environment(model=model, api_key=params.get("api_key"), api_base=params.get("api_base"))
    except Exception:  # noqa: BLE001 — an unknown provider has no known key variables
        return []
    return [str(name) for name in found.get("missing_keys") or []]


def missing_env(model: str, params: dict[str, Any] | None = None) -> list[str]:
    """The API key variables a model needs that are not set.

    An ``api_key`` in the parameters satisfies the need, and so does an ``api_base`` for an
    OpenAI-compatible model string (a self-hosted server that needs no key).

    Args:
        model: The model string.
        params: The model's parameters from the study spec.

    Returns:
        The names of the unset variables, e.g. ``["OPENAI_API_KEY"]``; empty when nothing
        is missing.
    """
    params = params or {}
    if params.get("api_key"):
        return []
    try:
        provider = resolve_provider(model, params)
    except ValueError:
        return []
    if provider in KEYLESS_PROVIDERS:
        return []
    if provider in OPENAI_COMPATIBLE and params.get("api_base"):
        return []
    if provider in KEY_ENV:
        names = KEY_ENV[provider]
        return [] if any(os.environ.get(name) for name in names) else [names[0]]
    return _litellm_missing(model, params)


def known_missing_env(model: str, params: dict[str, Any]) -> list[str]:
    """Like `missing_env`, but only for providers in `KEY_ENV`, so no import is needed.

    The gateway uses it before each call to name the variable to set instead of sending a
    request that can only fail.
    """
    provider = provider_of(model)
    if provider not in KEY_ENV or params.get("api_key") or params.get(KEY_FROM_ENV):
        return []
    if provider in OPENAI_COMPATIBLE and params.get("api_base"):
        return []
    names = KEY_ENV[provider]
    return [] if any(os.environ.get(name) for name in names) else [names[0]]
