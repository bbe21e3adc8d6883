"""The participant flow: links, consent, steps, cards, messages, answers, completion, browser timing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from lab import flow
from lab.dialogue import GO_AHEAD, ConversationOver, MessageRejected
from lab.flow import AnswersRejected, Flow, LinkNotValid, Visit, check_answers, resolve_link
from lab.llm import scripted
from lab.participants import create_participant, new_token
from lab.schema import ChatSession, Event, Participant, Response, Study, Turn
from lab.spec import QuestionSpec, parse_spec
from lab.studies import load_study, set_status

SPEC = """\
slug: web
title: Web test
consent: Consent text.
instructions: Instructions text.
debrief: Debrief text.
models:
  bot: {model: lab/scripted, params: {script: echo}}
conditions:
  sharded: {model: bot, reveal: SHARDED}
plan: {items_per_participant: 1, turn_limit: 4, max_message_chars: 40}
items:
  - id: add
    kind: sharded
    shards:
      - {id: 1, text: "Add two numbers."}
      - {id: 2, text: "The first is 2."}
      - {id: 3, text: "The second is 3."}
    full: "Add 2 and 3."
questions:
  post_item:
    - {key: understood, text: "It understood me.", type: likert, scale: 5, options: ["No", "Yes"]}
    - {key: corrected, text: "Did it correct you?", type: yesno}
  post_study:
    - {key: comments, text: "Comments?", type: text, required: false}
completion: {code: WEBCODE1, redirect: "https://app.prolific.com/submissions/complete?cc={code}"}
"""

MODES = """\
slug: modes
title: Modes
consent: ok
instructions: ok
models:
  bot: {model: lab/scripted, params: {script: echo}}
  asker: {model: lab/scripted, params: {script: sequence, replies: ["What is the second number?", "Thanks."]}}
conditions:
  full: {model: bot, reveal: FULL, kinds: [sharded]}
  concat: {model: bot, reveal: CONCAT, kinds: [sharded]}
  on-request: {model: asker, reveal: ON_REQUEST, kinds: [sharded]}
  mediated: {model: bot, reveal: SHARDED, intervention: mediator, kinds: [sharded]}
  loaded: {model: bot, presupposition: loaded}
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
    control: "Why is the Great Wall hard to see from orbit?"
    correction: ["It is not visible from the Moon."]
"""

NO_QUESTIONS = """\
slug: quiet
title: Quiet
consent: ok
instructions: ok
models:
  bot: {model: lab/scripted, params: {script: echo}}
conditions:
  full: {model: bot, reveal: FULL}
items:
  - {id: one, kind: open, prompt: "Say hello."}
  - {id: two, kind: open, prompt: "Say goodbye."}
"""


def make_study(engine: Engine, spec: str = SPEC, status: str | None = "open") -> int:
    with Session(engine) as s, s.begin():
        study = load_study(s, parse_spec(spec, "spec.yaml")).study
        if status in ("open", "paused", "closed"):
            set_status(s, study.slug, "open")
            if status != "open":
                set_status(s, study.slug, {"paused": "pause", "closed": "close"}[status])
        return study.id


def set_study_status(engine: Engine, study_id: int, status: str) -> None:
    with Session(engine) as s, s.begin():
        study = s.get(Study, study_id)
        assert study is not None
        study.status = status


def invite(engine: Engine, study_id: int, *, kind: str = "human", status: str = "invited") -> tuple[int, str]:
    token = new_token()
    with Session(engine) as s, s.begin():
        study = s.get(Study, study_id)
        assert study is not None
        p = create_participant(s, study, kind=kind, token=token, status=status)
        return p.id, token


def set_participant(engine: Engine, pid: int, **fields: object) -> None:
    with Session(engine) as s, s.begin():
        p = s.get(Participant, pid)
        assert p is not None
        for k, v in fields.items():
            setattr(p, k, v)


def events(engine: Engine, pid: int) -> list[Event]:
    with Session(engine) as s:
        return list(s.scalars(select(Event).where(Event.participant_id == pid).order_by(Event.id)))


def started(engine: Engine, spec: str = SPEC, condition: str | None = None, item: str | None = None) -> Flow:
    """A participant past consent and instructions, planned onto one item and condition."""
    study_id = make_study(engine, spec)
    pid, _ = invite(engine, study_id)
    f = Flow.load(engine, pid)
    f.consent(True)
    if condition is not None:
        set_participant(engine, pid, plan=[{"item": item, "condition": condition}])
    f.begin()
    return f


# --- links --------------------------------------------------------------------------------


def test_personal_link_resolves_and_tampered_links_do_not(engine: Engine) -> None:
    study_id = make_study(engine)
    pid, token = invite(engine, study_id)
    assert resolve_link(engine, {"t": token}) == Visit(pid)
    for query in (
        {"t": token[:-1] + ("A" if token[-1] != "A" else "B")},
        {"t": new_token()},
        {"t": ""},
        {"t": "x" * 500},
        {},
        {"x": "1"},
    ):
        with pytest.raises(LinkNotValid, match="This link is not valid"):
            resolve_link(engine, query)


def test_open_link_mints_a_participant_with_a_personal_token(engine: Engine) -> None:
    make_study(engine)
    visit = resolve_link(engine, {"study": "web"})
    assert visit.token
    assert resolve_link(engine, {"t": visit.token}) == Visit(visit.participant_id)
    other = resolve_link(engine, {"study": "web"})
    assert other.participant_id != visit.participant_id
    assert [e.data for e in events(engine, visit.participant_id) if e.kind == "link"] == [{"via": "open", "prolific": False}]


def test_same_prolific_pid_resumes_the_same_participant(engine: Engine) -> None:
    make_study(engine)
    query = {"study": "web", "PROLIFIC_PID": "5f1a2b3c4d5e6f7a8b9c0d1e", "STUDY_ID": "s-1", "SESSION_ID": "x_9"}
    first = resolve_link(engine, query)
    assert first.token is None  # the Prolific URL itself brings them back
    assert resolve_link(engine, query) == Visit(first.participant_id)
    assert resolve_link(engine, {**query, "SESSION_ID": "x_10"}) == Visit(first.participant_id)
    assert resolve_link(engine, {**query, "PROLIFIC_PID": "other"}).participant_id != first.participant_id
    with Session(engine) as s:
        p = s.get(Participant, first.participant_id)
        assert p is not None
        assert (p.prolific_pid, p.prolific_study_id, p.prolific_session_id) == ("5f1a2b3c4d5e6f7a8b9c0d1e", "s-1", "x_9")
        assert p.token_hash is None
        assert s.scalar(select(func.count()).select_from(Participant)) == 2


def test_same_prolific_pid_arriving_twice_at_once_makes_one_participant(sqlite_engine: Engine) -> None:
    make_study(sqlite_engine)
    query = {"study": "web", "PROLIFIC_PID": "racer"}
    out: list[int] = []
    threads = [threading.Thread(target=lambda: out.append(resolve_link(sqlite_engine, query).participant_id)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == 1 and len(out) == 4


@pytest.mark.parametrize(
    "query", [{"study": "nope"}, {"study": "web", "PROLIFIC_PID": "bad pid!"}, {"study": "web", "STUDY_ID": "x" * 65}]
)
def test_unknown_study_and_malformed_ids_are_not_valid(engine: Engine, query: dict[str, str]) -> None:
    make_study(engine)
    with pytest.raises(LinkNotValid):
        resolve_link(engine, query)


@pytest.mark.parametrize("status", ["draft", "paused", "closed"])
def test_open_link_needs_an_open_study(engine: Engine, status: str) -> None:
    make_study(engine, status=status)
    with pytest.raises(LinkNotValid):
        resolve_link(engine, {"study": "web"})


@pytest.mark.parametrize(
    ("participant", "study", "enters"),
    [
        ("invited", "open", True),
        ("invited", "paused", False),
        ("consented", "paused", True),
        ("active", "paused", True),
        ("active", "closed", False),
        ("active", "draft", False),
        ("completed", "closed", True),
        ("declined", "open", True),
        ("withdrawn", "open", False),
        ("timed_out", "open", False),
    ],
)
def test_which_personal_links_lead_in(sqlite_engine: Engine, participant: str, study: str, enters: bool) -> None:
    study_id = make_study(sqlite_engine)
    pid, token = invite(sqlite_engine, study_id, status=participant)
    set_study_status(sqlite_engine, study_id, study)
    if enters:
        assert resolve_link(sqlite_engine, {"t": token}).participant_id == pid
    else:
        with pytest.raises(LinkNotValid):
            resolve_link(sqlite_engine, {"t": token})


def test_pilots_may_enter_a_draft_and_simulated_participants_never(sqlite_engine: Engine) -> None:
    study_id = make_study(sqlite_engine, status=None)
    pilot, pilot_token = invite(sqlite_engine, study_id, kind="pilot")
    assert resolve_link(sqlite_engine, {"t": pilot_token}).participant_id == pilot
    set_study_status(sqlite_engine, study_id, "open")
    _, sim_token = invite(sqlite_engine, study_id, kind="simulated")
    with pytest.raises(LinkNotValid):
        resolve_link(sqlite_engine, {"t": sim_token})


def test_a_superseded_version_follows_the_newest(sqlite_engine: Engine) -> None:
    study_id = make_study(sqlite_engine)
    pid, token = invite(sqlite_engine, study_id, status="active")
    with Session(sqlite_engine) as s, s.begin():
        load_study(s, parse_spec(SPEC.replace("Consent text.", "New consent."), "spec.yaml"))
    assert resolve_link(sqlite_engine, {"t": token}).participant_id == pid
    with Session(sqlite_engine) as s, s.begin():
        set_status(s, "web", "close")
    with pytest.raises(LinkNotValid):
        resolve_link(sqlite_engine, {"t": token})


# --- consent and steps -----------------------------------------------------------------------


def test_declining_ends_the_study_politely_and_is_recorded(engine: Engine) -> None:
    study_id = make_study(engine)
    pid, token = invite(engine, study_id)
    f = Flow.load(engine, pid)
    assert f.step().kind == "consent" and f.consent_text == "Consent text."
    assert f.consent(False).kind == "declined"
    assert f.consent(True).kind == "declined"  # an answer is given once
    with Session(engine) as s:
        p = s.get(Participant, pid)
        assert p is not None and p.status == "declined" and p.plan is None and p.consented_at is None
    assert [e.data for e in events(engine, pid) if e.kind == "consent"] == [{"agreed": False}]
    assert resolve_link(engine, {"t": token}).participant_id == pid  # the goodbye is shown again


def test_whole_flow_from_consent_to_completion_code(engine: Engine) -> None:
    study_id = make_study(engine)
    pid, _ = invite(engine, study_id)
    f = Flow.load(engine, pid)
    assert f.consent(True).kind == "instructions"
    assert f.begin() == flow.Step("chat", 0, 1, None)
    conv = f.conversation()
    assert f.conversation().session_id == conv.session_id  # started once
    assert f.step() == flow.Step("chat", 0, 1, conv.session_id)
    flow.send_message(conv, "Please add two numbers for me")
    conv.reply().consume()
    flow.send_message(conv, "The first one is 2", 2)
    conv.reply().consume()
    step = f.finish_item(conv, "answered")
    assert step == flow.Step("post_item", 0, 1, conv.session_id)
    with pytest.raises(AnswersRejected, match="It understood me"):
        f.answer("post_item", {"corrected": "yes"}, 0)
    assert f.answer("post_item", {"understood": 4, "corrected": "no"}, 0).kind == "post_study"
    assert f.answer("post_item", {"understood": 1, "corrected": "yes"}, 0).kind == "post_study"  # a second submit is ignored
    assert f.answer("post_study", {"comments": "  "}, 1).kind == "done"
    end = f.completion()
    assert end == flow.Completion("WEBCODE1", "https://app.prolific.com/submissions/complete?cc=WEBCODE1", "Debrief text.")
    with Session(engine) as s:
        p = s.get(Participant, pid)
        assert p is not None and p.status == "completed" and p.completion_code == "WEBCODE1" and p.completed_at is not None
        answers = {(r.question, r.session_id): r.value for r in s.scalars(select(Response).where(Response.participant_id == pid))}
        assert answers == {("understood", conv.session_id): {"value": 4}, ("corrected", conv.session_id): {"value": False}}
        chat = s.get(ChatSession, conv.session_id)
        assert chat is not None and chat.outcome == "answered" and chat.ended_at is not None
    kinds = [e.kind for e in events(engine, pid)]
    assert (
        kinds.index("consent")
        < kinds.index("instructions")
        < kinds.index("start")
        < kinds.index("end")
        < kinds.index("item_done")
        < kinds.index("completed")
    )


def test_steps_without_questions_are_passed_over_and_a_code_is_made(sqlite_engine: Engine) -> None:
    f = started(sqlite_engine, NO_QUESTIONS)
    for position in range(2):
        step = f.step()
        assert (step.kind, step.position, step.total) == ("chat", position, 2)
        conv = f.conversation()
        flow.send_message(conv, "hello")
        conv.reply().consume()
        f.finish_item(conv, "gave_up")
    assert f.step().kind == "done"
    code = f.completion().code
    assert len(code) == 8 and f.completion().redirect is None and f.completion().code == code


def test_conversation_outside_a_chat_step_is_refused(sqlite_engine: Engine) -> None:
    study_id = make_study(sqlite_engine)
    pid, _ = invite(sqlite_engine, study_id)
    with pytest.raises(LookupError, match="not chatting"):
        Flow.load(sqlite_engine, pid).conversation()
    with pytest.raises(ValueError, match="outcome"):
        started(sqlite_engine, NO_QUESTIONS).finish_item(None, "correct")  # type: ignore[arg-type]


def test_a_participant_timed_out_mid_way_is_told_their_time_ran_out(sqlite_engine: Engine) -> None:
    f = started(sqlite_engine)
    f.conversation()
    set_participant(sqlite_engine, f.participant_id, status="timed_out")
    assert f.step().kind == "timed_out"


# --- answers --------------------------------------------------------------------------------


def q(key: str, type_: str, **kw: object) -> QuestionSpec:
    return QuestionSpec(key=key, text=key.capitalize(), type=type_, **kw)  # type: ignore[arg-type]


def test_check_answers_validates_each_type() -> None:
    questions = [
        q("lik", "likert", scale=7),
        q("yn", "yesno"),
        q("ch", "choice", options=["a", "b"]),
        q("num", "number"),
        q("txt", "text", required=False),
    ]
    good = {"lik": 7, "yn": "Yes", "ch": "b", "num": 2.5, "txt": "fine"}
    assert check_answers(questions, good) == {"lik": 7, "yn": True, "ch": "b", "num": 2.5, "txt": "fine"}
    assert "txt" not in check_answers(questions, {**good, "txt": ""})
    for bad, message in [
        ({"lik": 8}, "1 to 7"),
        ({"lik": True}, "1 to 7"),
        ({"yn": "maybe"}, "yes or no"),
        ({"ch": "c"}, "choices"),
        ({"num": float("nan")}, "number"),
        ({"txt": "x" * 4001}, "limit is 4,000"),
        ({"txt": "fine\x00"}, "invisible control characters"),
        ({"num": None}, 'Please answer "Num"'),
    ]:
        with pytest.raises(AnswersRejected, match=message):
            check_answers(questions, {**good, **bad})


# --- cards and messages --------------------------------------------------------------------


def test_sharded_cards_reveal_one_per_message(sqlite_engine: Engine) -> None:
    conv = started(sqlite_engine).conversation()
    assert flow.presentation(conv) == "pieces"
    assert [(c.id, c.state) for c in flow.cards(conv)] == [(1, "start"), (2, "locked"), (3, "locked")]
    assert flow.card_choices(conv) == []
    turn = flow.send_message(conv, "Add two numbers please", 3)  # the first message shares card 1 only
    assert turn.shards == [1]
    conv.reply().consume()
    assert [(c.id, c.state) for c in flow.cards(conv)] == [(1, "shared"), (2, "available"), (3, "available")]
    assert flow.card_choices(conv) == [2, 3]
    assert flow.send_message(conv, "second is 3", 3).shards == [3]
    conv.reply().consume()
    assert flow.send_message(conv, "no new card here").shards == []
    conv.reply().consume()
    with Session(sqlite_engine) as s:
        stored = [
            t.shards
            for t in s.scalars(select(Turn).where(Turn.session_id == conv.session_id, Turn.role == "user").order_by(Turn.index))
        ]
    assert stored == [[1], [3], []]
    with pytest.raises(MessageRejected, match="Card 9 cannot be shared"):
        flow.send_message(conv, "what?", 9)


@pytest.mark.parametrize(
    ("condition", "text"),
    [("full", "Add 2 and 3."), ("concat", "- Add two numbers.\n- The first number is 2.\n- The second number is 3.")],
)
def test_full_and_concat_show_the_whole_task(sqlite_engine: Engine, condition: str, text: str) -> None:
    conv = started(sqlite_engine, MODES, condition, "add").conversation()
    assert flow.presentation(conv) == "whole"
    assert flow.cards(conv) == [flow.Card(0, text, "start")]
    assert flow.send_message(conv, text, 2).shards == [1, 2, 3]
    conv.reply().consume()
    assert flow.cards(conv)[0].state == "shared" and flow.card_choices(conv) == []


def test_presupposition_item_is_a_question_card(sqlite_engine: Engine) -> None:
    conv = started(sqlite_engine, MODES, "loaded", "wall").conversation()
    assert flow.presentation(conv) == "question"
    assert flow.cards(conv) == [flow.Card(0, "Why is the Great Wall visible from the Moon?", "start")]


def test_on_request_cards_open_only_when_the_assistant_asks(sqlite_engine: Engine) -> None:
    conv = started(sqlite_engine, MODES, "on-request", "add").conversation()
    assert flow.presentation(conv) == "on_request"
    assert [c.state for c in flow.cards(conv)] == ["start", "held", "held"]
    flow.send_message(conv, "I need two numbers added")
    assert flow.requested_card(conv) is None  # no reply yet
    conv.reply().consume()  # "What is the second number?"
    assert [c.state for c in flow.cards(conv)] == ["shared", "held", "asked"]
    assert flow.card_choices(conv) == [3] and flow.go_ahead_text(conv) is None
    with pytest.raises(MessageRejected, match="only when the assistant asks"):
        flow.send_message(conv, "the first is 2", 2)
    assert flow.send_message(conv, "it is 3", 3).shards == [3]
    conv.reply().consume()  # "Thanks." asks for nothing
    assert flow.card_choices(conv) == [] and flow.go_ahead_text(conv) == GO_AHEAD


def test_messages_are_screened(sqlite_engine: Engine) -> None:
    conv = started(sqlite_engine).conversation()
    with pytest.raises(MessageRejected, match="write a message"):
        flow.send_message(conv, "  \n ")
    with pytest.raises(MessageRejected, match="the limit is 40"):
        flow.send_message(conv, "x" * 41)
    with pytest.raises(MessageRejected, match="control characters"):
        flow.send_message(conv, "add\x07 two\u202e numbers")
    assert conv.turns == []
    html = '<img src=x onerror="alert(1)"><script>alert(2)</script>'[:40]
    assert flow.send_message(conv, html).content == html  # stored verbatim
    assert flow.send_message(conv, "two\r\nlines").content == "two\nlines"


def test_client_timing_is_stored_with_the_turn(sqlite_engine: Engine) -> None:
    conv = started(sqlite_engine).conversation()
    state = {"log": [{"seq": 1, "kind": "draft", "at": 1_700_000_005_000, "typing_started_at": 1_700_000_000_000, "edits": 12}]}
    draft = flow.latest_draft(state, 0)
    flow.send_message(conv, "hello there", client=flow.client_timing(draft))
    with Session(sqlite_engine) as s:
        turn = s.scalars(select(Turn).where(Turn.session_id == conv.session_id)).one()
        assert turn.client == {
            "typing_started_at": "2023-11-14T22:13:20+00:00",
            "edits": 12,
            "reported_at": "2023-11-14T22:13:25+00:00",
            "clock": "browser",
        }


def test_turn_limit_ends_the_conversation(sqlite_engine: Engine) -> None:
    conv = started(sqlite_engine).conversation()
    for i in range(4):
        flow.send_message(conv, f"message {i}")
        conv.reply().consume()
    assert conv.over_reason() == "turn_limit"
    with pytest.raises(ConversationOver, match="limit of 4"):
        flow.send_message(conv, "one more")


def test_transcript_hides_mediator_turns_and_replaced_errors(sqlite_engine: Engine) -> None:
    conv = started(sqlite_engine, MODES, "mediated", "add").conversation()
    flow.send_message(conv, "Add two numbers.")
    assert flow.reply_pending(conv) and not flow.failed_reply(conv) and not flow.can_finish(conv)
    scripted.enqueue("Please add two numbers.", scripted.ModelFailure("bad_request"))
    conv.reply().consume()
    assert [t.role for t in conv.turns] == ["user", "mediator", "assistant"]
    assert [t.role for t in flow.transcript(conv)] == ["user", "assistant"] and flow.failed_reply(conv)
    assert not flow.reply_pending(conv)
    scripted.enqueue("Please add two numbers.")
    conv.reply().consume()
    shown = flow.transcript(conv)
    assert [(t.role, t.error is None) for t in shown] == [("user", True), ("assistant", True)]
    assert shown[-1].content == "You said: Please add two numbers." and flow.can_finish(conv)


# --- browser reports and streams -------------------------------------------------------------


def test_client_records_drop_malformed_reports() -> None:
    state = {
        "log": [
            {"seq": 1, "kind": "hidden", "at": 1_700_000_000_000},
            {"seq": 2, "kind": "draft", "at": 1_700_000_001_000, "typing_started_at": "soon", "edits": -1},
            {"seq": 3, "kind": "eval", "at": 1_700_000_002_000},
            {"seq": "4", "kind": "visible", "at": 1_700_000_003_000},
            {"seq": 5, "kind": "visible", "at": True},
            "junk",
            {"seq": 6, "kind": "visible", "at": 1_700_000_004_000},
        ]
    }
    records = flow.client_records(state, 0)
    assert [(r.seq, r.kind) for r in records] == [(1, "hidden"), (2, "draft"), (6, "visible")]
    assert records[0].at == datetime.fromtimestamp(1_700_000_000, UTC)
    assert records[1].typing_started_at is None and records[1].edits is None
    assert flow.client_timing(records[1]) is None
    assert [r.seq for r in flow.client_records(state, 2)] == [6]
    assert flow.client_records(None, 0) == [] and flow.client_records({"log": "x"}, 0) == []


def test_visibility_reports_become_events(sqlite_engine: Engine) -> None:
    f = started(sqlite_engine)
    conv = f.conversation()
    state = {
        "log": [{"seq": 1, "kind": "hidden", "at": 1_700_000_000_000}, {"seq": 2, "kind": "visible", "at": 1_700_000_009_000}]
    }
    f.record_visibility(flow.client_records(state, 0), conv.session_id)
    logged = [(e.kind, e.session_id, e.data) for e in events(sqlite_engine, f.participant_id) if e.kind.startswith("page_")]
    assert logged == [
        ("page_hidden", conv.session_id, {"client_at": "2023-11-14T22:13:20+00:00"}),
        ("page_visible", conv.session_id, {"client_at": "2023-11-14T22:13:29+00:00"}),
    ]


TEMPERATURE = """\
slug: temperature
title: Temperature
consent: ok
instructions: ok
models:
  bot: {model: lab/scripted, params: {script: echo}}
conditions:
  sharded-mediator: {model: bot, reveal: SHARDED, intervention: mediator}
  full: {model: bot, reveal: FULL, kinds: [sharded]}
items:
  - id: clarify-temperature
    kind: clarification
    title: Convert a temperature
    question: "Can you convert 30 degrees for me?"
    needs_clarification: true
    missing: [{id: 2, text: "It's 30 degrees Celsius and I want it in Fahrenheit."}]
  - id: add
    kind: sharded
    shards:
      - {id: 1, text: "Add two numbers."}
      - {id: 2, text: "The first number is 2."}
      - {id: 3, text: "The second number is 3."}
    full: "Add 2 and 3."
"""


@pytest.mark.parametrize("text", ["Can you convert 30 degrees for me?", "I need 30 degrees converted, please."])
def test_card_one_goes_through_though_card_two_shares_its_number(sqlite_engine: Engine, text: str) -> None:
    f = started(sqlite_engine, TEMPERATURE, "sharded-mediator", "clarify-temperature")
    conv = f.conversation()
    card_one = flow.cards(conv)[0]
    assert (card_one.id, card_one.state) == (1, "start")
    assert flow.send_message(conv, text).shards == [1]
    assert not [e for e in events(sqlite_engine, f.participant_id) if e.kind == "cards"]
    conv.reply().consume()
    assert [(c.id, c.state) for c in flow.cards(conv)] == [(1, "shared"), (2, "available")]


def test_full_marks_shared_only_what_the_messages_gave(sqlite_engine: Engine) -> None:
    f = started(sqlite_engine, TEMPERATURE, "full", "add")
    conv = f.conversation()
    assert flow.send_message(conv, "Hi, I have a small task for you.").shards == []
    conv.reply().consume()
    assert flow.cards(conv) == [flow.Card(0, "Add 2 and 3.", "available")]
    assert flow.send_message(conv, "The first number is 2.").shards == [2]
    conv.reply().consume()
    assert flow.cards(conv)[0].state == "partly"
    assert flow.send_message(conv, "Add 2 and 3.").shards == [1, 3]
    conv.reply().consume()
    assert flow.cards(conv)[0].state == "shared"
    with Session(sqlite_engine) as s:
        stored = s.scalars(select(Turn.shards).where(Turn.session_id == conv.session_id, Turn.role == "user")).all()
    assert stored == [[], [2], [1, 3]]


def test_every_unanswered_required_question_is_named() -> None:
    questions = [q("lik", "likert", scale=5), q("yn", "yesno"), q("txt", "text", required=False), q("num", "number")]
    with pytest.raises(AnswersRejected) as refused:
        check_answers(questions, {"yn": " ", "txt": ""})
    assert str(refused.value) == 'Please answer "Lik", "Yn" and "Num".'


def test_annotators_see_as_new_only_the_shards_a_full_message_gave(sqlite_engine: Engine) -> None:
    from annotation_data import accounts

    from lab import annotation

    f = started(sqlite_engine, TEMPERATURE, "full", "add")
    conv = f.conversation()
    flow.send_message(conv, "Hi, I have a small task for you.")
    conv.reply().consume()
    flow.send_message(conv, "The first number is 2.")
    conv.reply().consume()
    f.finish_item(conv, "answered")
    with Session(sqlite_engine) as s, s.begin():
        accs = accounts(s, ["ada"])
        annotation.assign(s, "temperature", ["ada"], 1)
        slot = annotation.claim_next(s, "temperature", accs[0].id)
        assert slot is not None and slot.session_id == conv.session_id
        view = annotation.conversation_view(s, slot.id, accs[0].id)
    users = [t for t in view.turns if t.role == "user"]
    assert [t.new_shards for t in users] == [(), ("The first number is 2.",)]


def test_refusals_a_caller_can_cause_are_lab_errors(sqlite_engine: Engine) -> None:
    from lab.dialogue import Conversation
    from lab.errors import LabError
    from lab.setup import resolve_setup
    from lab.terminal import pick_item

    f = started(sqlite_engine)
    with pytest.raises(LabError, match="no participant 9999: check the id"):
        Flow.load(sqlite_engine, 9999)
    with pytest.raises(LabError, match="outcome 'won' cannot be chosen"):
        f.finish_item(f.conversation(), "won")
    with Session(sqlite_engine) as s:
        study = s.get(Study, f.study_id)
        assert study is not None
        with pytest.raises(LabError, match="unknown condition 'nope'"):
            resolve_setup(s, study, "add", "nope")
        with pytest.raises(LabError, match="unknown item 'nope'"):
            resolve_setup(s, study, "nope", "sharded")
    with pytest.raises(LabError, match="unknown item 'nope'"):
        pick_item(f.definition, "sharded", "nope")
    with pytest.raises(LabError, match="no conversation 9999: check the id"):
        Conversation.load(sqlite_engine, 9999)
