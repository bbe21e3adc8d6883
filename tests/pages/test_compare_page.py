"""The comparison page in-process (AppTest): who may open it, and what it shows after a simulated run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from lab import synth
from lab.accounts import create_account
from lab.cli import main
from lab.db import migrate
from lab.spec import load_spec_file
from lab.studies import load_study, set_status
from tests.pages.staff_session import fresh_copy, sign_in_as

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo study after a scripted simulated run, a synthetic study, and staff accounts."""
    import os

    from lab.db import make_engine

    path = tmp_path_factory.mktemp("compare") / "lab.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    with Session(engine) as s, s.begin():
        demo = ROOT / "studies" / "demo.yaml"
        load_study(s, load_spec_file(demo), str(demo))
        set_status(s, "demo", "open")
        for role in ("annotator", "experimenter"):
            create_account(s, f"{role}1", role, PASSWORD)
    synth.make_study(engine, "synthetic", 300, exchanges=3, items_per_kind=5)
    old = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    try:
        assert (
            main(
                [
                    "simulate",
                    "demo",
                    "--repeats",
                    "1",
                    "--models",
                    "lab/scripted",
                    "--conditions",
                    "full,sharded,loaded,control,on-request",
                ]
            )
            == 0
        )
    finally:
        if old is None:
            del os.environ["DATABASE_URL"]
        else:
            os.environ["DATABASE_URL"] = old
    engine.dispose()
    return path


@pytest.fixture
def lab_db(template_db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    yield from fresh_copy(template_db)


def sign_in(monkeypatch: pytest.MonkeyPatch, engine: Engine, role: str | None) -> None:
    sign_in_as(monkeypatch, engine, None if role is None else f"{role}1")


def page() -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / "compare.py"), default_timeout=120)


@pytest.mark.parametrize("role", [None, "annotator"])
def test_only_experimenters_see_figures(role: str | None, lab_db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    sign_in(monkeypatch, lab_db, role)
    at = page().run()
    assert not at.exception, at.exception
    assert len(at.title) == 0 and len(at.dataframe) == 0
    if role is None:
        assert at.info[0].value.startswith("Please sign in")
    else:
        assert "not available to your role" in at.error[0].value


def test_demo_study_after_a_simulated_run(lab_db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    sign_in(monkeypatch, lab_db, "experimenter")
    at = page()
    at.session_state["_study_choice"] = "demo"
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Compare models"
    subheaders = [h.value for h in at.subheader]
    assert subheaders[:6] == [
        "averaged performance P (0–100) by model and condition",
        "FULL → SHARDED degradation",
        "Premature answers",
        "Presupposition handling",
        "Grounding acts",
        "Repair outcomes",
    ]
    assert "Training effect on held-out items" in subheaders
    assert any("No tuned model ran beside its base" in m.value for m in at.markdown)
    captions = " ".join(c.value for c in at.caption)
    assert "conversations" in captions
    table = at.dataframe[-1].value
    assert set(table["model"].dropna()) == {"lab/scripted"}
    # The scripted model's replies to loaded questions give the rule judge no evidence either
    # way: it abstains (UNSURE), and abstentions are never counted as presupposition findings.
    assert {"P", "premature_rate"} <= set(table["measure"])
    assert "Replies to questions with a false presupposition" in captions
    # The label-source filter recomputes with automatic labels only.
    at.selectbox(key="compare_source").set_value("auto").run()
    assert not at.exception, at.exception
    table = at.dataframe[-1].value
    labelled = table[table["measure"] == "premature_rate"]
    assert len(labelled) and set(labelled["label_source"]) == {"auto:rules@rules-2"}


def test_filters_and_participant_kinds(lab_db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    sign_in(monkeypatch, lab_db, "experimenter")
    at = page()
    at.session_state["_study_choice"] = "synthetic"
    at.run()
    assert not at.exception, at.exception
    full = at.dataframe[-1].value
    assert set(full["model"].dropna()) == {synth.STEADY, synth.FRAGILE}
    at.multiselect(key="compare_models").set_value([synth.FRAGILE]).run()
    assert not at.exception, at.exception
    only = at.dataframe[-1].value
    assert set(only["model"].dropna()) == {synth.FRAGILE}
    assert "Only one model in the selection." in [m.value for m in at.markdown]
    at.selectbox(key="compare_participants").set_value("human").run()
    assert not at.exception, at.exception
    assert any("No conversation" in c.value or "No " in c.value for c in at.caption)
