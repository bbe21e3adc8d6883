"""Fault-test helpers: a study with one participant at its chat step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from lab.dialogue import Conversation
from lab.flow import Flow
from lab.participants import create_participant, new_token
from lab.spec import parse_spec
from lab.studies import load_study, set_status


def chatting(engine: Engine, spec: str) -> tuple[Flow, Conversation]:
    """Load and open ``spec``, invite one participant, consent and start: their flow and conversation."""
    with Session(engine) as s, s.begin():
        study = load_study(s, parse_spec(spec, "study.yaml")).study
        set_status(s, study.slug, "open")
        pid = create_participant(s, study, token=new_token()).id
    flow = Flow.load(engine, pid)
    flow.consent(True)
    flow.begin()
    return flow, flow.conversation()


@pytest.fixture
def chat_with(study_spec: Callable[..., str]) -> Callable[..., tuple[Flow, Conversation]]:
    """Start a conversation on a study whose scripted model has the given params."""

    def start(engine: Engine, slug: str = "faults", **params: Any) -> tuple[Flow, Conversation]:
        return chatting(engine, study_spec(slug, models={"bot": {"model": "lab/scripted", "params": params}}))

    return start
