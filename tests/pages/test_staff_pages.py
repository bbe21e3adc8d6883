"""Staff pages in-process (AppTest): every page × every role, and what each page does.

Each page file is run directly, as Streamlit serves it by URL on a cold server (before any
navigation exists), so the role check at the page's top is what stands between a visitor
and the data. Being signed in is simulated at the one point where the page reads the
request: the staff cookie (a real signed cookie, checked against the database as usual).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from lab.accounts import create_account
from lab.assign import assign
from lab.db import migrate
from lab.participants import create_participant
from lab.schema import Account, Event, Participant, Study
from lab.spec import load_spec_file, parse_spec
from lab.studies import get_study, load_study
from lab.web import guard
from lab.web.visitor import cookie_for, visitor_from_cookie
from tests.pages.staff_session import fresh_copy, sign_in_as, texts

ROOT = Path(__file__).resolve().parents[2]
DEMO_TITLE = "Repair in conversation: piece-by-piece tasks, loaded questions, missing details"
PASSWORD = "correct horse battery"
ROLES = ("anonymous", "annotator", "experimenter", "admin")
STAFF_PAGES = ("studies", "links", "monitor", "models", "accounts", "account")
ALLOWED: dict[str, set[str]] = {
    "studies": {"experimenter", "admin"},
    "links": {"experimenter", "admin"},
    "monitor": {"experimenter", "admin"},
    "models": {"experimenter", "admin"},
    "accounts": {"admin"},
    "account": {"annotator", "experimenter", "admin"},
}
"""Who may open each staff page; everyone else sees a sign-in prompt or a refusal."""
PROLIFIC_PID = "60d5ec49f2a1b3c4d5e6f7a8"


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database with the demo study and one account per role, built once per module."""
    from lab.db import make_engine

    path = tmp_path_factory.mktemp("template") / "lab.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    with Session(engine) as s, s.begin():
        demo = ROOT / "studies" / "demo.yaml"
        load_study(s, load_spec_file(demo), str(demo))
        for role in ("annotator", "experimenter", "admin"):
            create_account(s, f"{role}1", role, PASSWORD)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture
def lab_db(template_db: Path) -> Iterator[Engine]:
    """The configured temporary database: a fresh copy of the template."""
    yield from fresh_copy(template_db)


@pytest.fixture
def as_role(monkeypatch: pytest.MonkeyPatch, lab_db: Engine) -> Callable[[str], None]:
    """Make page runs carry the signed cookie of the role's account (none for anonymous)."""

    def set_role(role: str) -> None:
        sign_in_as(monkeypatch, lab_db, None if role == "anonymous" else f"{role}1")

    return set_role


def page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=30)


def assert_locked_out(at: AppTest, role: str) -> None:
    assert not at.exception, at.exception
    body = texts(at)
    assert len(at.title) == 0 and len(at.dataframe) == 0 and len(at.button) == 0
    for secret in (DEMO_TITLE, "RLDEMO01", "smollm2", "experimenter1", "admin1", "?study=demo"):
        assert secret not in body, secret
    if role == "anonymous":
        assert at.info[0].value.startswith("Please sign in")
        assert "/auth/login?next=" in at.markdown[0].value and 'target="_self"' in at.markdown[0].value
    else:
        assert f"This page is not available to your role ({role})." in at.error[0].value


# --- the role matrix -------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", STAFF_PAGES)
def test_role_matrix(name: str, role: str, as_role: Callable[[str], None]) -> None:
    as_role(role)
    at = page(name).run()
    if role not in ALLOWED[name]:
        assert_locked_out(at, role)
        return
    assert not at.exception, at.exception
    body = texts(at)
    assert f"Signed in as <b>{role}1</b>" in at.markdown[0].value
    expected = {
        "studies": DEMO_TITLE,
        "links": "?study=demo&PROLIFIC_PID={{%PROLIFIC_PID%}}",
        "monitor": "Cells: conversations against target",
        "models": "local/smollm2-135m",
        "accounts": "experimenter1",
        "account": f"Username: **{role}1**",
    }[name]
    assert expected in body


def test_the_sign_in_page_sends_only_to_local_paths(as_role: Callable[[str], None]) -> None:
    as_role("anonymous")
    at = AppTest.from_string(
        "from lab.web.guard import go_to\n"
        "for target in ('https://evil.example/x', '//evil.example/x', 'javascript:alert(1)', '/a\\\\b'):\n"
        "    try:\n"
        "        go_to(target)\n"
        "    except ValueError:\n"
        "        pass\n"
        "    else:\n"
        "        raise AssertionError(target)\n"
        "go_to('/auth/login?next=%2F</script>')\n",
        default_timeout=30,
    ).run()
    assert not at.exception, at.exception
    [script] = [h.proto.body for h in at.get("html")]
    assert "</script>" not in script.removesuffix("</script>") and "\\u003c/script>" in script
    at = page("login")
    at.query_params["next"] = "//evil.example"
    at.run()
    assert [h.proto.body for h in at.get("html")] == ['<script>window.location.replace("/auth/login?next=%2F");</script>']


@pytest.mark.parametrize("role", ROLES)
def test_public_pages_show_no_data(role: str, as_role: Callable[[str], None]) -> None:
    as_role(role)
    at = page("login").run()
    assert not at.exception
    assert DEMO_TITLE not in texts(at)
    if role == "anonymous":
        assert any("/auth/login?next=%2F" in m.value for m in at.markdown)
        assert [h.proto.body for h in at.get("html")] == ['<script>window.location.replace("/auth/login?next=%2F");</script>']
        home = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
        assert home.title[0].value == "Repair Lab" and DEMO_TITLE not in texts(home)
    else:
        assert at.success[0].value == f"You are signed in as {role}1 ({role})."


def test_disabled_account_is_locked_out_at_once(as_role: Callable[[str], None], lab_db: Engine) -> None:
    as_role("experimenter")
    assert page("studies").run().title[0].value == "Studies"
    with Session(lab_db) as s, s.begin():
        s.scalars(select(Account).where(Account.username == "experimenter1")).one().active = False
    assert_locked_out(page("studies").run(), "anonymous")


@pytest.mark.parametrize(
    ("role", "default", "menu"),
    [
        ("anonymous", "Repair Lab", {"Repair Lab", "Sign in"}),
        ("annotator", "Repair Lab", {"My account", "Annotate", "Compare replies"}),
        (
            "experimenter",
            "Repair Lab",
            {
                "Studies",
                "Links",
                "Live monitor",
                "Models",
                "Compare models",
                "Export",
                "My account",
                "Annotation & agreement",
                "Adjudicate",
            },
        ),
        (
            "admin",
            "Repair Lab",
            {
                "Studies",
                "Links",
                "Live monitor",
                "Models",
                "Compare models",
                "Export",
                "Accounts",
                "My account",
                "Annotation & agreement",
                "Adjudicate",
                "Annotate",
                "Compare replies",
            },
        ),
    ],
)
def test_app_navigation_by_role(role: str, default: str, menu: set[str], as_role: Callable[[str], None]) -> None:
    from lab.navigation import pages_for

    as_role(role)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    assert not at.exception, at.exception
    assert at.title[0].value == default
    sections, _ = pages_for(guard.current_visitor(), {})
    assert {p.title for pages in sections.values() for p in pages} == menu
    links = {el.proto.label for el in at.get("page_link")}
    assert links == ({"Staff sign in"} if role == "anonymous" else menu)


def test_experimenter_moves_between_pages(as_role: Callable[[str], None]) -> None:
    as_role("experimenter")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    at.switch_page("pages/monitor.py").run()
    assert at.title[0].value == "Live monitor"
    fresh = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    fresh.switch_page("pages/accounts.py").run()  # not in an experimenter's menu, but its address answers
    assert_locked_out(fresh, "experimenter")


@pytest.mark.parametrize("role", ["anonymous", "annotator"])
@pytest.mark.parametrize("name", STAFF_PAGES)
def test_every_staff_address_answers_once_the_app_has_run(name: str, role: str, as_role: Callable[[str], None]) -> None:
    # On a server whose navigation has run, a page missing from it would be "Page not found".
    as_role(role)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    at.switch_page(f"pages/{name}.py").run()
    if role in ALLOWED[name]:
        assert not at.exception and at.title[0].value == "My account"
    else:
        assert_locked_out(at, role)


def test_a_participant_link_reaches_no_staff_page(as_role: Callable[[str], None]) -> None:
    as_role("admin")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.query_params["study"] = "demo"
    at.run()
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/studies.py")


# --- studies ---------------------------------------------------------------------------------

UPLOAD = """\
slug: uploaded
title: An uploaded study
consent: ok
instructions: chat
models: {bot: {model: lab/scripted}}
conditions: {full: {model: bot}, sharded: {model: bot, reveal: SHARDED}}
items: [{file: up.jsonl}]
"""
ITEM = b'{"id": "u1", "kind": "sharded", "shards": [{"id": 1, "text": "part one"}]}\n'


def test_upload_with_errors_shows_them_and_saves_nothing(as_role: Callable[[str], None], lab_db: Engine) -> None:
    as_role("experimenter")
    at = page("studies").run()
    broken = UPLOAD.replace("model: bot}, sharded", "model: robot}, sharded")
    at.file_uploader[0].set_value(
        [("up.yaml", broken.encode(), "application/yaml"), ("up.jsonl", ITEM, "application/jsonl")]
    ).run()
    assert not at.exception
    assert any("nothing was saved" in e.value for e in at.error)
    assert any("up.yaml:6: conditions.full.model: unknown model 'robot' (declared: bot)" in c.value for c in at.code)
    assert not [b for b in at.button if b.label == "Save study"]
    with Session(lab_db) as s:
        assert s.scalars(select(Study.slug)).all() == ["demo"]


def test_upload_previews_then_saves(as_role: Callable[[str], None], lab_db: Engine) -> None:
    as_role("experimenter")
    at = page("studies").run()
    at.file_uploader[0].set_value(
        [("up.yaml", UPLOAD.encode(), "application/yaml"), ("up.jsonl", ITEM, "application/jsonl")]
    ).run()
    assert any("Valid: study 'uploaded' with 2 conditions and 1 items." in s.value for s in at.success)
    frames = [d.value for d in at.dataframe]
    assert any("u1" in f.to_string() for f in frames) and any("sharded" in f.to_string() for f in frames)
    with Session(lab_db) as s:
        assert "uploaded" not in s.scalars(select(Study.slug)).all()  # a preview writes nothing
    next(b for b in at.button if b.label == "Save study").click().run()
    assert any("Study 'uploaded' created as version 1 (draft)." in s.value for s in at.success)
    with Session(lab_db) as s:
        assert get_study(s, "uploaded").source_path == "upload:up.yaml"


def test_a_fixed_spec_uploaded_after_a_broken_one_is_the_one_checked(as_role: Callable[[str], None], lab_db: Engine) -> None:
    as_role("experimenter")
    at = page("studies").run()
    broken = UPLOAD.replace("model: bot}, sharded", "model: robot}, sharded")
    first = [("up.yaml", broken.encode(), "application/yaml"), ("up.jsonl", ITEM, "application/jsonl")]
    at.file_uploader[0].set_value(first).run()
    assert any("nothing was saved" in e.value for e in at.error)
    # Dropping the fixed file adds it to the uploader's list, after the broken one.
    at.file_uploader[0].set_value([*first, ("up-fixed.yaml", UPLOAD.encode(), "application/yaml")]).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Valid: study 'uploaded' with 2 conditions and 1 items." in s.value for s in at.success)
    assert any("Checking up-fixed.yaml, the spec uploaded last" in i.value and "(up.yaml)" in i.value for i in at.info)
    next(b for b in at.button if b.label == "Save study").click().run()
    with Session(lab_db) as s:
        assert get_study(s, "uploaded").source_path == "upload:up-fixed.yaml"


def test_editing_a_study_with_data_makes_a_new_version(as_role: Callable[[str], None], lab_db: Engine) -> None:
    with Session(lab_db) as s, s.begin():
        create_participant(s, get_study(s, "demo"))
    as_role("experimenter")
    at = page("studies").run()
    area = at.text_area[0]
    assert area.value.startswith("# The demo study")
    area.set_value(area.value.replace("turn_limit: 10", "turn_limit: 12")).run()
    at.button(key="save_edit").click().run()
    assert any("Version 2 created" in s.value for s in at.success), [s.value for s in at.success]
    with Session(lab_db) as s:
        rows = s.execute(select(Study.version, Study.status).where(Study.slug == "demo").order_by(Study.version)).all()
        assert rows == [(1, "superseded"), (2, "draft")]
        assert get_study(s, "demo").spec["plan"]["turn_limit"] == 12


def test_editing_with_an_error_keeps_the_study(as_role: Callable[[str], None], lab_db: Engine) -> None:
    as_role("experimenter")
    at = page("studies").run()
    at.text_area[0].set_value(at.text_area[0].value.replace("design: within", "design: sideways")).run()
    assert any("nothing was saved" in e.value for e in at.error)
    assert any("plan.design" in c.value and "sideways" in c.value for c in at.code)
    with Session(lab_db) as s:
        assert s.scalars(select(Study.version)).all() == [1]


def test_the_editor_shows_and_exports_the_spec_as_written(as_role: Callable[[str], None], lab_db: Engine) -> None:
    inline = UPLOAD.replace("items: [{file: up.jsonl}]", "items: [{id: u1, kind: open, prompt: Hi}]  # inline")
    written = "# Written by hand; this comment stays.\n" + inline
    as_role("experimenter")
    at = page("studies").run()
    at.file_uploader[0].set_value([("up.yaml", written.encode(), "application/yaml")]).run()
    next(b for b in at.button if b.label == "Save study").click().run()
    at.selectbox(key="edit_slug").set_value("uploaded").run()
    assert at.text_area[0].value == written
    assert [d.label for d in at.get("download_button")] == ["Download the spec (YAML)"]  # the text shown above
    # A comment-only edit keeps the same study and saves the new text.
    at.text_area[0].set_value(written.replace("this comment stays", "this comment was edited")).run()
    assert any("Only comments or layout changed" in i.value for i in at.info)
    at.button(key="save_edit").click().run()
    with Session(lab_db) as s:
        study = get_study(s, "uploaded")
        assert study.version == 1 and "this comment was edited" in (study.spec_text or "")


def test_open_pause_close(as_role: Callable[[str], None], lab_db: Engine) -> None:
    as_role("experimenter")
    at = page("studies").run()
    at.button(key="open_demo").click().run()
    assert any("version 1 is now open" in s.value for s in at.success)
    assert at.button(key="open_demo").disabled and not at.button(key="pause_demo").disabled
    at.button(key="pause_demo").click().run()
    at.button(key="close_demo").click().run()
    with Session(lab_db) as s:
        assert get_study(s, "demo").status == "closed"


def test_a_study_cannot_open_without_working_models(
    as_role: Callable[[str], None], lab_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    text = UPLOAD.replace("slug: uploaded", "slug: keyed").replace(
        "{bot: {model: lab/scripted}}", "{bot: {model: openai/gpt-4o-mini}}"
    )
    text = text.replace("items: [{file: up.jsonl}]", "items: [{id: u1, kind: sharded, shards: [{id: 1, text: x}]}]")
    with Session(lab_db) as s, s.begin():
        load_study(s, parse_spec(text, "keyed.yaml"))
    as_role("experimenter")
    at = page("studies").run()
    at.selectbox(key="manage_slug").set_value("keyed").run()
    at.button(key="open_keyed").click().run()
    assert any("cannot open study 'keyed'" in e.value and "OPENAI_API_KEY" in e.value for e in at.error)
    with Session(lab_db) as s:
        assert get_study(s, "keyed").status == "draft"


# --- links -----------------------------------------------------------------------------------


def test_links_page_makes_links_once(as_role: Callable[[str], None], lab_db: Engine) -> None:
    as_role("experimenter")
    at = page("links").run()
    assert any("RLDEMO01" == c.value for c in at.code)
    at.number_input[0].set_value(5).run()
    next(b for b in at.button if b.label == "Make links").click().run()
    assert any("5 new link(s) made" in s.value for s in at.success)
    assert at.get("download_button")[0].label == "Download 5 links (CSV)"
    slug, version, n, csv_text = at.session_state["links_file"]
    assert (slug, version, n) == ("demo", 1, 5) and csv_text.count("/?t=") == 5
    with Session(lab_db) as s:
        assert len(s.scalars(select(Participant)).all()) == 5
    # The tokens are nowhere on the page once the file is gone from the session.
    token = csv_text.splitlines()[1].split("?t=")[1]
    fresh = page("links").run()
    assert token not in texts(fresh)


def test_links_page_warns_when_links_point_elsewhere_than_the_page(
    as_role: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    as_role("experimenter")
    monkeypatch.delenv("LAB_PUBLIC_URL", raising=False)
    monkeypatch.setattr(guard, "page_url", lambda: "http://10.0.0.5:8501/links")
    at = page("links").run()
    [warning] = [w.value for w in at.warning if "LAB_PUBLIC_URL" in w.value]
    assert "http://localhost:8501" in warning and "http://10.0.0.5:8501" in warning
    assert any(c.value.startswith("http://localhost:8501/?study=demo") for c in at.code)
    monkeypatch.setenv("LAB_PUBLIC_URL", "http://10.0.0.5:8501")
    at = page("links").run()
    assert not [w.value for w in at.warning if "LAB_PUBLIC_URL" in w.value]
    assert any(c.value.startswith("http://10.0.0.5:8501/?study=demo") for c in at.code)


# --- monitor ---------------------------------------------------------------------------------


def test_monitor_shows_progress_and_times_out_a_participant(as_role: Callable[[str], None], lab_db: Engine) -> None:
    from lab.dialogue import start_session
    from lab.schema import Turn

    with Session(lab_db) as s, s.begin():
        study = get_study(s, "demo")
        p = create_participant(
            s, study, status="active", prolific={"PROLIFIC_PID": PROLIFIC_PID, "STUDY_ID": "st", "SESSION_ID": "se"}
        )
        plan = assign(s, p)
        chat = start_session(s, p, plan[0].item, plan[0].condition)
        s.add(Turn(session_id=chat.id, index=0, role="user", content="my very own words"))
        pid = p.id
    as_role("experimenter")
    at = page("monitor").run()
    assert not at.exception, at.exception
    body = texts(at)
    assert "my very own words" in body and f"P{pid}" in body
    assert PROLIFIC_PID not in body
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["active"] == "1" and metrics["turns, last hour"] == "1"
    at.button(key="timeout_button").click().run()
    assert any(f"Time out P{pid}?" in w.value for w in at.warning)  # asked once more first
    with Session(lab_db) as s:
        assert s.get(Participant, pid).status == "active"
    at.button(key="timeout_confirm").click().run()
    assert any(f"P{pid} timed out" in s.value for s in at.success)
    with Session(lab_db) as s:
        assert s.get(Participant, pid).status == "timed_out"
        assert s.scalars(select(Event.data).where(Event.kind == "timed_out")).one() == {"by": "experimenter1", "was": "active"}


def test_the_monitor_shows_a_timed_out_participant_gone_at_once(as_role: Callable[[str], None], lab_db: Engine) -> None:
    with Session(lab_db) as s, s.begin():
        p = create_participant(s, get_study(s, "demo"), status="active")
        assign(s, p)
        pid = p.id
    as_role("experimenter")
    at = page("monitor").run()
    at.button(key="timeout_button").click().run()
    at.button(key="timeout_confirm").click().run()
    assert not at.exception, at.exception
    assert any(f"P{pid} timed out" in s.value for s in at.success)
    assert not [w.value for w in at.warning if "Time out" in w.value]  # the question is answered
    assert {m.label: m.value for m in at.metric}["active"] == "0"
    assert "Nobody is in the middle of the study." in texts(at) and "timeout_choice" not in [b.key for b in at.selectbox]
    at.run()  # the message is shown once
    assert not [s.value for s in at.success if "timed out" in s.value]


# --- models ----------------------------------------------------------------------------------


def test_models_page_checks_each_model(as_role: Callable[[str], None], lab_db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.llm import scripted

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    text = UPLOAD.replace("slug: uploaded", "slug: checked").replace(
        "{bot: {model: lab/scripted}}", "{bot: {model: lab/scripted}, api: {model: openai/gpt-4o-mini, optional: true}}"
    )
    text = text.replace("items: [{file: up.jsonl}]", "items: [{id: u1, kind: sharded, shards: [{id: 1, text: x}]}]")
    with Session(lab_db) as s, s.begin():
        load_study(s, parse_spec(text, "checked.yaml"))
    scripted.enqueue("ready")
    as_role("experimenter")
    at = page("models").run()
    at.selectbox[0].set_value("checked").run()
    assert any("needs OPENAI_API_KEY" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Check every model").click().run()
    assert any(s.value.startswith("Answered in") and "“ready”" in s.value for s in at.success)
    assert any("OPENAI_API_KEY is not set" in e.value for e in at.error)


# --- accounts --------------------------------------------------------------------------------


def test_admin_adds_and_disables_accounts(as_role: Callable[[str], None], lab_db: Engine) -> None:
    as_role("admin")
    at = page("accounts").run()
    at.text_input[0].set_value("newbie")
    at.selectbox[0].set_value("annotator")
    at.text_input[1].set_value("short")
    at.button[0].click().run()
    assert any("at least 10 characters" in e.value for e in at.error)
    at.text_input[1].set_value("aaaaaaaaaa")
    at.button[0].click().run()
    assert any("password: too easy to guess" in e.value for e in at.error)
    at.text_input[1].set_value("long enough secret")
    at.button[0].click().run()
    assert any("Account 'newbie' (annotator) added." in s.value for s in at.success)
    assert (
        at.text_input(key="new_username").value == "" and at.text_input(key="new_password").value == ""
    )  # ready for the next one
    assert at.selectbox(key="new_role").value == "experimenter"
    at.selectbox(key="account_choice").set_value("admin1").run()
    at.checkbox[0].uncheck()
    at.button[1].click().run()
    assert any("last active admin" in e.value for e in at.error)
    with Session(lab_db) as s:
        accounts = {a.username: (a.role, a.active) for a in s.scalars(select(Account))}
    assert accounts["newbie"] == ("annotator", True) and accounts["admin1"] == ("admin", True)


def test_changing_my_password_ends_my_sign_in(as_role: Callable[[str], None], lab_db: Engine) -> None:
    as_role("annotator")
    with Session(lab_db) as s:
        old_cookie = cookie_for(s.scalars(select(Account).where(Account.username == "annotator1")).one())
    at = page("account").run()
    at.text_input[0].set_value("wrong password")
    at.text_input[1].set_value("a new long password")
    at.text_input[2].set_value("a new long password")
    at.button[0].click().run()
    assert any("does not match" in e.value for e in at.error)
    at.text_input[0].set_value(PASSWORD)
    at.text_input[1].set_value("a new long password")
    at.text_input[2].set_value("a new long password")
    at.button[0].click().run()
    assert any("password was changed" in s.value for s in at.success)
    assert visitor_from_cookie(old_cookie).role is None


INLINE_ITEMS = "items: [{id: u1, kind: open, prompt: Hi}]"

# --- the chosen study stays in the address ---------------------------------------------------


@pytest.mark.parametrize("name", ["links", "monitor", "models"])
def test_the_chosen_study_is_kept_in_the_address(name: str, as_role: Callable[[str], None], lab_db: Engine) -> None:
    text = UPLOAD.replace("slug: uploaded", "slug: second").replace("items: [{file: up.jsonl}]", INLINE_ITEMS)
    with Session(lab_db) as s, s.begin():
        load_study(s, parse_spec(text, "second.yaml"))
    as_role("experimenter")
    at = page(name).run()
    at.selectbox[0].set_value("second").run()
    assert at.query_params["slug"] in ("second", ["second"])
    # A reload is a new session with the same address: the choice is still there.
    again = page(name)
    again.query_params["slug"] = "second"
    assert again.run().selectbox[0].value == "second"
    unknown = page(name)
    unknown.query_params["slug"] = "no-such-study"
    assert unknown.run().selectbox[0].value == "demo"


def test_the_studies_page_keeps_the_study_chosen_in_the_address(as_role: Callable[[str], None], lab_db: Engine) -> None:
    text = UPLOAD.replace("slug: uploaded", "slug: second").replace("items: [{file: up.jsonl}]", INLINE_ITEMS)
    with Session(lab_db) as s, s.begin():
        load_study(s, parse_spec(text, "second.yaml"))
    as_role("experimenter")
    at = page("studies").run()
    at.selectbox(key="manage_slug").set_value("second").run()
    assert at.query_params["slug"] in ("second", ["second"])
    again = page("studies")
    again.query_params["slug"] = "second"
    again.run()
    assert again.selectbox(key="manage_slug").value == "second" and again.selectbox(key="edit_slug").value == "second"
