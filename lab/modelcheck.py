"""One-click connectivity checks for a study's models, before participants meet an error.

A check first looks at what can be known without a call (the model string, its
parameters, the API key variable); only then does it make one tiny call (a few tokens,
no retries) and time it. Every outcome is one sentence an experimenter can act on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from . import llm
from .spec import ModelSpec, StudyDefinition

PROBE = [{"role": "user", "content": "Reply with one word: ready"}]
"""The message of a check call."""
PROBE_MAX_TOKENS = 8
CHECK_TIMEOUT = 30.0
"""Seconds a check call may take."""


@dataclass(frozen=True)
class StudyModel:
    """A model of a study and where it is used."""

    key: str
    """The model's id in the spec."""
    model: str
    """The litellm model string."""
    params: dict[str, Any]
    optional: bool
    used_by: tuple[str, ...]
    """Conditions (and ``judge``, ``simulator``, ``mediator``) that call it."""
    missing_env: tuple[str, ...]
    """API key variables it needs that are not set."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check."""

    key: str
    model: str
    ok: bool
    message: str
    """One sentence: what worked or what to do."""
    latency_ms: float | None = None
    """Time of the call, when one was made."""
    reply: str | None = None
    """The start of the model's reply."""
    kind: str | None = None
    """The gateway's error kind (``missing_key``, ``auth``, ``connection``…) on failure."""


def study_models(d: StudyDefinition) -> list[StudyModel]:
    """The study's models in spec order, with the parts of the study that call them."""
    used: dict[str, list[str]] = {key: [] for key in d.spec.models}
    for cname, cond in d.spec.conditions.items():
        used.setdefault(cond.model, []).append(cname)
        if cond.mediator_model:
            used.setdefault(cond.mediator_model, []).append(f"{cname} (mediator)")
    if d.spec.judge.model:
        used.setdefault(d.spec.judge.model, []).append("judge")
    if d.spec.simulator.model:
        used.setdefault(d.spec.simulator.model, []).append("simulator")
    out = []
    for key, m in d.spec.models.items():
        out.append(
            StudyModel(
                key, m.model, dict(m.params), m.optional, tuple(used.get(key, [])), tuple(llm.missing_env(m.model, m.params))
            )
        )
    return out


def preflight(key: str, m: ModelSpec) -> CheckResult | None:
    """What is wrong without calling the model, or None when a call can be tried."""
    problems = llm.check_model(m.model, m.params)
    if problems:
        return CheckResult(key, m.model, False, problems[0], kind="bad_request")
    missing = llm.missing_env(m.model, m.params)
    if missing:
        extra = " Its conditions are left out until then (the model is optional)." if m.optional else ""
        return CheckResult(
            key,
            m.model,
            False,
            f"{missing[0]} is not set: add it to .env or the server's environment and restart the app.{extra}",
            kind="missing_key",
        )
    return None


def check(key: str, m: ModelSpec, timeout: float = CHECK_TIMEOUT) -> CheckResult:
    """Check one model with a tiny call.

    Args:
        key: The model's id in the spec.
        m: Its spec.
        timeout: Seconds the call may take.

    Returns:
        The outcome; never raises for a model problem.
    """
    early = preflight(key, m)
    if early is not None:
        return early
    params = {k: v for k, v in m.params.items() if k not in ("max_tokens", "max_completion_tokens")}
    params["max_tokens"] = PROBE_MAX_TOKENS
    start = time.perf_counter()
    try:
        reply = llm.complete(m.model, PROBE, params, timeout=timeout, max_retries=0)
    except llm.ModelError as e:
        elapsed = (time.perf_counter() - start) * 1000
        return CheckResult(key, m.model, False, e.message, latency_ms=elapsed, kind=e.kind)
    latency = reply.latency_ms if reply.latency_ms is not None else (time.perf_counter() - start) * 1000
    text = (reply.text or "").strip()
    if not text:
        return CheckResult(
            key, m.model, False, "The model answered with no text; check its parameters (max_tokens, stop).", latency_ms=latency
        )
    return CheckResult(key, m.model, True, f"Answered in {latency:,.0f} ms.", latency_ms=latency, reply=text[:120])


def check_study(d: StudyDefinition, timeout: float = CHECK_TIMEOUT) -> list[CheckResult]:
    """Check every model of a study, one after the other."""
    return [check(key, m, timeout) for key, m in d.spec.models.items()]
