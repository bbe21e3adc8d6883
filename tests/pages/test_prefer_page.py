"""The Compare replies page in-process (AppTest): who may open it, blindness, refusals, judging, and the agreement tab."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from annotation_data import accounts
from preference_data import COMPARISONS, MODEL_WORDS, SLUG, build
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from lab import annotation as ann
from lab import preference as pref
from lab.db import make_engine, migrate
from lab.schema import Account, PreferenceJudgement
from tests.pages.staff_session import fresh_copy, sign_in_as, texts

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The branched preference study, two annotators assigned (two per comparison), an experimenter."""
    folder = tmp_path_factory.mktemp("prefer")
    path = folder / "lab.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    build(f"sqlite:///{path}", folder)
    with Session(engine) as s, s.begin():
        accounts(s, ["annotator1", "annotator2", "annotator3"])
        accounts(s, ["experimenter1"], role="experimenter")
        ann.assign(s, SLUG, ["annotator1", "annotator2"], 2)
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


def page(name: str = "prefer") -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=30)


def errors(at: AppTest) -> list[str]:
    """The page's error messages as read (shown literally: Markdown marks are escaped)."""
    return [e.value.replace("\\", "") for e in at.error]


def save(at: AppTest, choice: str | None, reason: str) -> AppTest:
    """Answer the question on the page and press "Save and next"."""
    if choice is not None:
        at.radio[0].set_value(choice)
    at.text_area[0].input(reason)
    next(b for b in at.button if b.label == "Save and next").click()
    return at.run()


@pytest.mark.parametrize("user", [None, "experimenter1", "annotator3", "annotator1"])
def test_who_may_open_the_page(user: str | None, as_user: Callable[[str | None], None]) -> None:
    as_user(user)
    at = page().run()
    assert not at.exception, at.exception
    body = texts(at)
    if user is None:
        assert at.info[0].value.startswith("Please sign in") and "Reply 1" not in body
    elif user == "experimenter1":
        assert "not available to your role" in at.error[0].value and "Reply 1" not in body
    elif user == "annotator3":
        assert "No study is assigned to you yet." in body and "Reply 1" not in body
    else:
        assert f"Comparison 1 of {COMPARISONS}" in body and pref.QUESTION in body


def test_the_page_is_blind_through_every_comparison(lab_db: Engine, as_user: Callable[[str | None], None]) -> None:
    as_user("annotator1")
    at = page().run()
    seen = []
    for n in range(1, COMPARISONS + 1):
        body = texts(at)
        assert f"Comparison {n} of {COMPARISONS}" in body
        assert "Reply 1" in body and "Reply 2" in body and "Participant" in body
        seen.append(body)
        at = save(at, ["Reply 1", "Reply 2", "Tie"][n % 3], f"reason {n}")
        assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Nothing left for you to compare in this study" in texts(at)
    shown = "\n".join(seen).lower()
    for word in (*MODEL_WORDS, "branch", "original", "clarification", "answer_attempt", "rollout", "score", "annotator2"):
        assert word.lower() not in shown, word
    with Session(lab_db) as s:
        rows = s.scalars(select(PreferenceJudgement).order_by(PreferenceJudgement.id)).all()
    assert len(rows) == COMPARISONS and {r.annotator for r in rows} == {"annotator1"}
    # the reply shown left is drawn per comparison and stored; the choice is mapped back to reply A or B
    assert {r.left for r in rows} == {"a", "b"}
    for n, r in enumerate(rows, start=1):
        side = ["left", "right", "tie"][n % 3]
        expected = "tie" if side == "tie" else r.left if side == "left" else ({"a", "b"} - {r.left}).pop()
        assert r.choice == expected and r.reason == f"reason {n}" and r.seconds is not None


def test_a_choice_and_a_reason_are_required(lab_db: Engine, as_user: Callable[[str | None], None]) -> None:
    as_user("annotator1")
    at = save(page().run(), "Reply 2", "   ")
    assert any("Give a short reason for your choice" in e for e in errors(at))
    assert at.radio[0].value == "Reply 2"  # the choice stays for the reason to be added
    at = save(at, None, "clearer")
    with Session(lab_db) as s:
        assert s.scalar(select(func.count()).select_from(PreferenceJudgement)) == 1
    assert f"Comparison 2 of {COMPARISONS}" in texts(at) and "Saved comparison 1" in texts(at)
    at = save(at, None, "no choice made")
    assert any("Choose Reply 1, Reply 2 or Tie" in e for e in errors(at))
    with Session(lab_db) as s:
        assert s.scalar(select(func.count()).select_from(PreferenceJudgement)) == 1


def test_the_experimenter_sees_the_annotators_agreement(lab_db: Engine, as_user: Callable[[str | None], None]) -> None:
    with Session(lab_db) as s, s.begin():
        ids = dict(s.execute(select(Account.username, Account.id)).all())
        shared = pref.study_comparisons(s, SLUG)[:4]
        for name in ("annotator1", "annotator2"):
            q = pref.queue(s, SLUG, ids[name])
            for c in shared:
                side = "left" if q.left(c) == "a" else "right"  # both choose reply A every time
                pref.save_judgement(s, SLUG, ids[name], c, left=q.left(c), side=side, reason="better")
    as_user("experimenter1")
    at = page("agreement").run()
    assert not at.exception, at.exception
    metrics: dict[str, Any] = {m.label: m.value for m in at.metric}
    assert metrics["Judged by two or more"] == "4" and metrics["Percent agreement"] == "100%"
    assert "Compare replies" in texts(at)
