"""Connectivity checks: a tiny call with its latency, and one clear sentence for every failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.llm import scripted
from lab.modelcheck import check, check_study, preflight, study_models
from lab.spec import ModelSpec, load_spec_file


def test_a_working_model_answers_with_latency() -> None:
    scripted.enqueue("ready")
    result = check("bot", ModelSpec(model="lab/scripted"))
    assert result.ok and result.reply == "ready"
    assert result.latency_ms is not None and result.latency_ms >= 0
    assert result.message.startswith("Answered in")


def test_missing_key_is_named_without_a_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    scripted.enqueue("must stay queued")
    result = check("gpt", ModelSpec(model="openai/gpt-4o-mini"))
    assert not result.ok and result.kind == "missing_key" and result.latency_ms is None
    assert "OPENAI_API_KEY is not set" in result.message and ".env" in result.message
    optional = check("gpt", ModelSpec(model="openai/gpt-4o-mini", optional=True))
    assert "left out" in optional.message
    assert scripted.pending() == 1


@pytest.mark.parametrize(
    ("kind", "words"),
    [("auth", "key"), ("rate_limit", "rate"), ("connection", "reach"), ("server", "")],
)
def test_provider_failures_become_one_sentence(kind: str, words: str) -> None:
    scripted.enqueue(scripted.ModelFailure(kind))
    result = check("bot", ModelSpec(model="lab/scripted"))
    assert not result.ok and result.kind == kind and result.latency_ms is not None
    assert "\n" not in result.message and "Traceback" not in result.message
    assert words in result.message.lower()
    assert scripted.pending() == 0  # no retries: one failure, one call


def test_bad_model_strings_and_parameters_fail_before_any_call() -> None:
    assert preflight("x", ModelSpec(model="lab/nonsense")) is not None
    bad = check("x", ModelSpec(model="lab/scripted", params={"fallbacks": ["other"]}))
    assert not bad.ok and "fallbacks" in bad.message and bad.latency_ms is None


def test_study_models_say_where_they_are_used(scripted_demo_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    d = load_spec_file(scripted_demo_path)
    models = {m.key: m for m in study_models(d)}
    assert models["smollm2"].used_by[:2] == ("full", "sharded") and "sharded-mediator (mediator)" not in models["smollm2"].used_by
    assert models["gpt-4o-mini"].optional and models["gpt-4o-mini"].missing_env == ("OPENAI_API_KEY",)
    assert models["gpt-4o-mini"].used_by == ("sharded-gpt",)


@pytest.mark.local_model
def test_the_embedded_model_answers(demo_spec_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    d = load_spec_file(demo_spec_path)
    results = {r.key: r for r in check_study(d)}
    assert results["smollm2"].ok, results["smollm2"].message
    assert not results["gpt-4o-mini"].ok and results["gpt-4o-mini"].kind == "missing_key"
