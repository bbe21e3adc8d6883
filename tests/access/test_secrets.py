"""API keys never reach the database, the logs or an error message."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from sqlalchemy import JSON, Engine, String, Text, select
from sqlalchemy.orm import Session

from lab import llm
from lab.flow import Flow
from lab.participants import create_participant, new_token
from lab.schema import Base
from lab.spec import SpecError, parse_spec
from lab.studies import load_study, set_status

SPEC_SECRET = "sk-test-SECRET123"
ENV_SECRET = "sk-env-SECRET456"


def stored_text(engine: Engine) -> list[tuple[str, str, str]]:
    """Every text and JSON value in every table of the lab's schema: (table, column, text)."""
    found: list[tuple[str, str, str]] = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, (String, Text, JSON))]
            if not columns:
                continue
            for row in conn.execute(select(*columns)):
                for column, value in zip(columns, row, strict=True):
                    if value is not None:
                        found.append((table.name, column.name, str(value)))
    return found


def run_failing_conversation(engine: Engine, spec: str) -> list[str]:
    """A participant's conversation whose second reply fails; returns every error text it produced."""
    errors: list[str] = []
    with Session(engine) as s, s.begin():
        study = load_study(s, parse_spec(spec, "secrets.yaml")).study
        set_status(s, study.slug, "open")
        pid = create_participant(s, study, token=new_token()).id
    flow = Flow.load(engine, pid)
    flow.consent(True)
    flow.begin()
    conv = flow.conversation()
    conv.send("first message")
    assert not conv.reply().consume().error
    conv.send("second message")
    try:
        for _ in conv.reply():
            pass
    except llm.ModelError as e:
        errors += [str(e), e.message, repr(e)]
    failed = [t for t in conv.turns if t.role == "assistant" and t.error]
    assert failed, "the failing script must have produced an error turn"
    return errors + [t.error or "" for t in failed]


@pytest.fixture
def secret_spec(study_spec: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A study whose model reads its key from a named variable and fails with an auth error; a key in the environment too."""
    monkeypatch.setenv("OPENAI_API_KEY", ENV_SECRET)
    monkeypatch.setenv("LAB_TEST_PROVIDER_KEY", SPEC_SECRET)
    params = {"script": "error_after", "n": 1, "error": "auth", "key": "secrets", "api_key_env": "LAB_TEST_PROVIDER_KEY"}
    return study_spec("secrets", models={"bot": {"model": "lab/scripted", "params": params}})


def test_a_spec_with_a_key_in_its_params_is_refused(study_spec: Callable[..., str]) -> None:
    params = {"temperature": 0, "api_key": SPEC_SECRET}
    with pytest.raises(SpecError) as info:
        parse_spec(study_spec("leaky", models={"bot": {"model": "lab/scripted", "params": params}}), "leaky.yaml")
    message = str(info.value)
    assert "api_key" in message and "environment" in message
    assert SPEC_SECRET not in message


def test_api_keys_never_reach_the_logs_or_error_messages(
    engine: Engine, secret_spec: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    errors = run_failing_conversation(engine, secret_spec)
    out, err = capfd.readouterr()
    assert "error_after" in caplog.text + out + err, "the model call's debug log was not captured"
    where = [
        name
        for name, text in (("log records", caplog.text), ("stdout", out), ("stderr", err), ("error text", "\n".join(errors)))
        for secret in (SPEC_SECRET, ENV_SECRET)
        if secret in text
    ]
    assert not where, f"an API key was found in: {', '.join(sorted(set(where)))}"


def test_api_keys_never_reach_the_database(engine: Engine, secret_spec: str) -> None:
    run_failing_conversation(engine, secret_spec)
    where = [
        f"{table}.{column}"
        for table, column, value in stored_text(engine)
        for secret in (SPEC_SECRET, ENV_SECRET)
        if secret in value
    ]
    assert not where, f"an API key is stored in: {', '.join(sorted(set(where)))}"
