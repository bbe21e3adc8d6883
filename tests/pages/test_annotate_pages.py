"""Annotation pages in-process (AppTest): who may open them, blinding, labelling, agreement and adjudication."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from annotation_data import PASSWORD, accounts, conversations, load
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from lab import annotation as ann
from lab.db import make_engine, migrate
from lab.labels import add_label
from lab.schema import Account, ChatSession, Condition, Label, Participant, RepairSequence, Study, Turn
from tests.pages.staff_session import fresh_copy, sign_in_as, texts

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("annotate", "agreement", "adjudicate")
ALLOWED = {
    "annotate": {"annotator1", "annotator2", "admin1"},
    "agreement": {"experimenter1", "admin1"},
    "adjudicate": {"experimenter1", "admin1"},
}
PROLIFIC = "5f0c0ffee0ddba11deadbeef"


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The blinding study with six finished conversations, automatic pre-labels, and one account per role."""
    path = tmp_path_factory.mktemp("template") / "lab.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    with Session(engine) as s, s.begin():
        study = load(s)
        ids = conversations(s, study, 6, prolific=PROLIFIC)
        accounts(s, ["annotator1", "annotator2"])
        accounts(s, ["experimenter1"], role="experimenter")
        accounts(s, ["admin1"], role="admin")
        for tid in s.scalars(select(Turn.id).where(Turn.session_id.in_(ids), Turn.role == "assistant")):
            add_label(s, tid, "auto:rules", "S", "clarification", meta={"model": "lab/scripted"})
        ann.assign(s, "blindtest", ["annotator1", "annotator2"], 2)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture
def lab_db(template_db: Path) -> Iterator[Engine]:
    yield from fresh_copy(template_db)


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch, lab_db: Engine) -> Callable[[str | None], None]:
    def set_user(username: str | None) -> None:
        sign_in_as(monkeypatch, lab_db, username)

    return set_user


def page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=30)


def button(at: AppTest, label: str) -> Any:
    return next(b for b in at.button if b.label == label)


@pytest.mark.parametrize("user", [None, "annotator1", "experimenter1", "admin1"])
@pytest.mark.parametrize("name", PAGES)
def test_who_may_open_each_page(name: str, user: str | None, as_user: Callable[[str | None], None]) -> None:
    as_user(user)
    at = page(name).run()
    assert not at.exception, at.exception
    body = texts(at)
    if user not in ALLOWED[name]:
        assert len(at.button) == 0 and len(at.dataframe) == 0 and "user message" not in body and "Bakery" not in body
        if user is None:
            assert at.info[0].value.startswith("Please sign in")
        else:
            assert "not available to your role" in at.error[0].value
        return
    expected = {"annotate": "Turn 1 of 4", "agreement": "Annotation & agreement", "adjudicate": "Nothing to decide"}[name]
    if name == "annotate" and user == "admin1":
        expected = "No study is assigned to you yet."  # admins may annotate once assigned
    assert expected in body


def secrets(engine: Engine) -> set[str]:
    """Every model name, condition key and label, and Prolific id in the database."""
    with Session(engine) as s:
        found: set[str] = set()
        for spec in s.scalars(select(Study.spec)):
            for key, model in spec["models"].items():
                found |= {key, model["model"]}
            for key, cond in spec["conditions"].items():
                found.add(key)
                if cond.get("label"):
                    found.add(cond["label"])
        found |= {c for c in s.scalars(select(Condition.key))} | {m for m in s.scalars(select(Condition.model_key))}
        found |= set(s.scalars(select(ChatSession.model))) | {m for m in s.scalars(select(Turn.model)) if m}
        found |= {p for p in s.scalars(select(Participant.prolific_pid)) if p}
    return found


def test_annotator_pages_are_blind(lab_db: Engine, as_user: Callable[[str | None], None]) -> None:
    hidden = secrets(lab_db)
    assert {
        "zephyrmodelkey",
        "openai/quokka-secret-model",
        "cond-xylophone",
        "Hidden label one",
        f"{PROLIFIC}0",
        "lab/scripted",
    } <= hidden
    as_user("annotator1")
    at = page("annotate").run()
    seen = [texts(at)]
    # label one turn, then walk every turn on every layer, as the annotator can
    button(at, "NONE").click().run()
    for _ in range(4):
        for layer in at.radio(key="annotate_layer").options:
            at.radio(key="annotate_layer").set_value(layer.split(" · ")[0]).run()
            seen.append(texts(at))
        if button(at, "Next turn").disabled:
            break
        button(at, "Next turn").click().run()
    body = "\n".join(seen)
    assert "Pre-label (automatic, may be wrong): clarification" in body  # the study shows pre-labels
    for secret in hidden:
        assert secret not in body, secret
    for word in ("simulated", "simulator", "annotator2", "system prompt"):
        assert word not in body, word


def test_labelling_stores_each_choice_at_once_and_a_double_click_once(
    lab_db: Engine, as_user: Callable[[str | None], None]
) -> None:
    as_user("annotator1")
    at = page("annotate").run()
    button(at, "ACK").click().run()
    button(at, "ACK").click().run()
    at.radio(key="annotate_layer").set_value("R").run()
    button(at, "TPR").click().run()
    button(at, "Next turn").click().run()
    assert "Turn 2 of 4" in texts(at)
    at.radio(key="annotate_layer").set_value("S").run()
    button(at, "hedge").click().run()
    with Session(lab_db) as s:
        rows = s.execute(
            select(Label.annotator, Label.layer, Label.code, Label.meta).where(Label.annotator == "annotator1").order_by(Label.id)
        ).all()
    assert [(r.layer, r.code) for r in rows] == [("G", "ACK"), ("R", "TPR"), ("S", "hedge")]
    assert all(r.meta["seconds"] >= 0 and r.meta["codebook"] == "codebook-1" and r.meta["prelabels_shown"] for r in rows)


def test_a_refused_sequence_keeps_the_choices_and_names_the_field(lab_db: Engine, as_user: Callable[[str | None], None]) -> None:
    as_user("annotator1")
    at = page("annotate").run()
    span = next(t for t in at.text_input if t.label.startswith("Trouble span"))
    span.set_value("words nobody wrote")
    kind = next(b for b in at.selectbox if b.label == "Initiation type")
    kind.set_value(kind.options[-1])
    chosen = kind.options[-1]
    button(at, "Save sequence").click().run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    plain = error.replace("\\", "")  # shown literally: Markdown marks are escaped
    assert plain.startswith("Trouble span:") and "“words nobody wrote” is not in turn 1" in plain
    assert next(t for t in at.text_input if t.label.startswith("Trouble span")).value == "words nobody wrote"
    assert next(b for b in at.selectbox if b.label == "Initiation type").value == chosen
    assert {"Skip for now", "Done with this conversation"} <= {b.label for b in at.button}
    with Session(lab_db) as s:
        assert s.scalar(select(func.count()).select_from(RepairSequence)) == 0
    next(t for t in at.text_input if t.label.startswith("Trouble span")).set_value("user message")
    button(at, "Save sequence").click().run()
    assert "Repair sequence saved." in [m.value for m in at.success]
    with Session(lab_db) as s:
        seq = s.scalars(select(RepairSequence)).one()
    assert seq.initiation == chosen and (seq.span_start, seq.span_end) == (0, len("user message"))
    assert next(t for t in at.text_input if t.label.startswith("Trouble span")).value == ""  # a fresh form for the next one


def test_another_annotators_conversation_is_not_yours(lab_db: Engine, as_user: Callable[[str | None], None]) -> None:
    with Session(lab_db) as s, s.begin():
        ids = {a.username: a.id for a in s.scalars(select(Account))}
        theirs = ann.claim_next(s, "blindtest", ids["annotator2"])
        assert theirs is not None
        theirs_id = theirs.id
    as_user("annotator1")
    at = page("annotate")
    at.query_params["c"] = str(theirs_id)
    at.run()
    assert not at.exception
    assert any(e.value.startswith("This conversation is not yours") for e in at.error)
    assert "user message" not in texts(at)
    # not a dead end: one click leads to the annotator's own next conversation
    button(at, "Go to my next conversation").click().run()
    assert not at.exception and not at.error
    assert "Turn 1 of 4" in texts(at) and "c" not in at.query_params
    with Session(lab_db) as s:
        mine = ann.my_conversations(s, "blindtest", ids["annotator1"])
    assert [sl.status for sl in mine].count("claimed") == 1 and all(sl.id != theirs_id for sl in mine)


def test_two_annotators_agreement_shows_alpha_and_adjudication_stores_gold(
    lab_db: Engine, as_user: Callable[[str | None], None]
) -> None:
    with Session(lab_db) as s, s.begin():
        ids = {a.username: a.id for a in s.scalars(select(Account))}
        for name in ("annotator1", "annotator2"):
            slot = ann.claim_next(s, "blindtest", ids[name])
            assert slot is not None
            for t in ann.conversation_view(s, slot.id, ids[name]).turns:
                code = "NONE" if t.position != 2 or name == "annotator1" else "CLARIFY"
                ann.record_label(s, slot.id, ids[name], t.id, "G", code if t.position != 1 else "ACK")
    as_user("experimenter1")
    at = page("agreement").run()
    assert not at.exception, at.exception
    body = texts(at)
    assert "α · humans" in body and "Krippendorff" in body
    at = page("adjudicate").run()
    assert not at.exception, at.exception
    assert "Disagreement 1 of 1" in texts(at)
    button(at, "Decide CLARIFY").click().run()
    with Session(lab_db) as s:
        gold = s.execute(select(Label.code, Label.account_id, Label.meta).where(Label.annotator == "gold")).one()
    assert gold.code == "CLARIFY" and gold.account_id == ids["experimenter1"] and gold.meta["decided_by"] == "experimenter1"
    with Session(lab_db) as s:
        resolved = ann.resolved_labels(s, "blindtest", "G")
    assert sorted(r.source for r in resolved.values()).count("gold") == 1


def test_password_constant_is_shared() -> None:
    assert PASSWORD


def test_experimenter_assigns_on_the_page_and_sees_progress_and_checks(
    lab_db: Engine, as_user: Callable[[str | None], None]
) -> None:
    with Session(lab_db) as s, s.begin():
        accounts(s, ["annotator3"])
        turn = s.scalars(select(Turn.id).where(Turn.role == "user").order_by(Turn.id)).first()
    as_user("experimenter1")
    at = page("agreement").run()
    assert "Assigned: annotator1, annotator2." in [c.value.split(" Assigning")[0] for c in at.caption]
    assert at.multiselect[0].options == ["annotator3"]  # neither the assigned nor the admin account is offered
    at.multiselect[0].set_value(["annotator3"])
    at.button[0].click().run()
    assert not at.exception, at.exception
    # 6 conversations × 2 annotators, none opened: 12 places, 4 each once annotator3 joins
    assert "Assigned annotator3 (4 conversations to do)." in [m.value for m in at.success]
    body = texts(at)
    assert "annotator3" in body and "6 conversations in scope" in body
    at.number_input[1].set_value(turn)
    at.selectbox[1].set_value("G")
    at.text_input[0].set_value("ACK")
    at.button[1].click().run()
    assert f"Turn {turn} checks G = ACK." in [m.value for m in at.success]
    with Session(lab_db) as s:
        assert [a.study_slug for a in ann.assigned(s, "blindtest")].count("blindtest") == 3
