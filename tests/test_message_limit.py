"""The participant message limit: the study's, else the deployment's ``LAB_MAX_MESSAGE_CHARS``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from lab.dialogue import Conversation, MessageRejected
from lab.flow import Flow
from lab.participants import create_participant, new_token
from lab.spec import parse_spec
from lab.studies import load_study, set_status


def conversation(engine: Engine, spec: str) -> Conversation:
    """One participant of ``spec`` at its chat step."""
    with Session(engine) as s, s.begin():
        study = load_study(s, parse_spec(spec, "study.yaml")).study
        set_status(s, study.slug, "open")
        pid = create_participant(s, study, token=new_token()).id
    flow = Flow.load(engine, pid)
    flow.consent(True)
    flow.begin()
    return flow.conversation()


@pytest.mark.parametrize(("plan", "limit"), [(None, 50), ({"max_message_chars": 80}, 80)])
def test_the_deployment_limit_applies_when_a_study_sets_none(
    sqlite_engine: Engine, study_spec: Callable[..., str], monkeypatch: pytest.MonkeyPatch, plan: Any, limit: int
) -> None:
    monkeypatch.setenv("LAB_MAX_MESSAGE_CHARS", "50")
    conv = conversation(sqlite_engine, study_spec("limits", plan=plan))
    assert conv.max_message_chars == limit
    with pytest.raises(MessageRejected, match=f"the limit is {limit}"):
        conv.send("x" * (limit + 1))
    conv.send("x" * limit)
