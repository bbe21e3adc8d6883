"""Study versions: a changed spec on a study with data is a new version; opening checks models."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab.participants import create_participant
from lab.schema import Study
from lab.spec import parse_spec, spec_hash
from lab.studies import StudyError, get_study, load_study, set_status

ECHO = {"bot": {"model": "lab/scripted", "params": {"script": "echo"}}}


@pytest.fixture
def versioned(study_spec: Callable[..., str]) -> Callable[..., str]:
    """The study 'v' (one open item, "Hello") with options."""
    return functools.partial(
        study_spec, "v", title="Versions", instructions="ok", models=ECHO, items=[{"id": "a", "kind": "open", "prompt": "Hello"}]
    )


def _load(engine: Engine, text: str) -> tuple[str, int, str]:
    with Session(engine) as s, s.begin():
        r = load_study(s, parse_spec(text, "v.yaml"))
        return r.action, r.study.version, r.study.status


def test_versions(engine: Engine, versioned: Callable[..., str]) -> None:
    spec = versioned()
    assert _load(engine, spec) == ("created", 1, "draft")
    assert _load(engine, spec) == ("unchanged", 1, "draft")
    assert _load(engine, spec.replace("Hello", "Hi")) == ("replaced", 1, "draft")  # no data yet
    with Session(engine) as s, s.begin():
        set_status(s, "v", "open")
        create_participant(s, get_study(s, "v"))
    assert _load(engine, spec.replace("Hello", "Hey")) == ("new-version", 2, "open")
    with Session(engine) as s:
        rows = s.scalars(select(Study).order_by(Study.version)).all()
        assert [(r.version, r.status) for r in rows] == [(1, "superseded"), (2, "open")]
        assert rows[0].spec["items"][0]["prompt"] == "Hi" and rows[1].spec["items"][0]["prompt"] == "Hey"


def test_new_version_of_open_study_needs_working_models(sqlite_engine: Engine, versioned: Callable[..., str]) -> None:
    _load(sqlite_engine, versioned())
    with Session(sqlite_engine) as s, s.begin():
        set_status(s, "v", "open")
        create_participant(s, get_study(s, "v"))
    changed = versioned(models={"bot": {"model": "openai/gpt-4o-mini"}})
    assert _load(sqlite_engine, changed) == ("new-version", 2, "paused")
    with Session(sqlite_engine) as s, s.begin(), pytest.raises(StudyError, match="OPENAI_API_KEY"):
        set_status(s, "v", "open")


def test_status_changes(sqlite_engine: Engine, versioned: Callable[..., str]) -> None:
    _load(sqlite_engine, versioned())
    with Session(sqlite_engine) as s, s.begin():
        with pytest.raises(StudyError, match="cannot pause study 'v': it is draft"):
            set_status(s, "v", "pause")
        assert set_status(s, "v", "open").status == "open"
        assert set_status(s, "v", "pause").status == "paused"
        assert set_status(s, "v", "close").status == "closed"
        with pytest.raises(StudyError, match="cannot open"):
            set_status(s, "v", "open")


def test_a_stored_study_with_a_bad_model_parameter_cannot_open(sqlite_engine: Engine, versioned: Callable[..., str]) -> None:
    """A spec stored before its parameters were checked is checked again when it opens."""
    _load(sqlite_engine, versioned())
    with Session(sqlite_engine) as s, s.begin():
        study = get_study(s, "v")
        spec = dict(study.spec)
        spec["models"] = {"bot": {**spec["models"]["bot"], "params": {"script": "echo", "temperature": "hot"}}}
        study.spec, study.spec_sha256 = spec, spec_hash(spec)
    with Session(sqlite_engine) as s, s.begin(), pytest.raises(StudyError, match="'temperature' must be a number from 0 to 2"):
        set_status(s, "v", "open")
