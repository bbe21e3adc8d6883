"""The reveal rules as pure functions, and the engine's card bookkeeping built on them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab import reveal
from lab.dialogue import Conversation, MessageRejected, clean_message, start_session
from lab.items import Shard
from lab.participants import create_participant
from lab.schema import Event, Turn
from lab.spec import parse_spec
from lab.studies import load_study

SHARDS = [
    Shard(id=1, text="Work out how much a bakery took in on Saturday."),
    Shard(id=2, text="They sell muffins at $3 each."),
    Shard(id=3, text="Loaves of bread cost $5 each."),
    Shard(id=4, text="On Saturday they sold 40 muffins and 25 loaves."),
]

SPEC = """\
slug: cards
title: Card bookkeeping
consent: ok
instructions: ok
models:
  bot: {model: lab/scripted, params: {script: echo}}
conditions:
  sharded: {model: bot, reveal: SHARDED}
  snowball: {model: bot, reveal: SNOWBALL}
  concat: {model: bot, reveal: CONCAT}
plan: {turn_limit: 6, max_message_chars: 500, carried_cards: POLICY}
items:
  - id: bakery
    kind: sharded
    shards:
      - {id: 1, text: "Work out how much a bakery took in on Saturday."}
      - {id: 2, text: "They sell muffins at $3 each."}
      - {id: 3, text: "Loaves of bread cost $5 each."}
      - {id: 4, text: "On Saturday they sold 40 muffins and 25 loaves."}
"""

EMOJI_FILE = Path(__file__).parent / "data" / "emoji_fully_qualified.txt"


@dataclass
class FakeTurn:
    role: str
    shards: list[int] | None


# --- pure rules ------------------------------------------------------------------------------


def test_revealed_and_progression_replay_the_user_turns() -> None:
    turns = [
        FakeTurn("user", [1]),
        FakeTurn("assistant", None),
        FakeTurn("user", [3]),
        FakeTurn("mediator", [2]),
        FakeTurn("user", []),
    ]
    assert reveal.revealed(turns) == {1, 3}
    before = [(t.role, set(done)) for t, done in reveal.progression(turns)]
    assert before == [("user", set()), ("assistant", {1}), ("user", {1}), ("mediator", {1, 3}), ("user", {1, 3})]
    assert [s.id for s in reveal.remaining(SHARDS, {1, 3})] == [2, 4]


def test_new_shards_splits_known_from_unknown() -> None:
    assert reveal.new_shards(SHARDS, {1}, [3, 3, 1, 9, 2]) == ([3, 2], [9])
    assert reveal.new_shards(SHARDS, {1}, None) == ([], [])


def test_snowball_and_recap_texts() -> None:
    assert reveal.snowball_content("SHARDED", SHARDS, {1}, [2], "hi", first=False) is None
    assert reveal.snowball_content("SNOWBALL", SHARDS, set(), [1], "hi", first=True) is None
    text = reveal.snowball_content("SNOWBALL", SHARDS, {1, 2}, [3], "bread is 5", first=False)
    assert text == f"{reveal.SNOWBALL_INTRO}\n- {SHARDS[0].text}\n- {SHARDS[1].text}\n\nbread is 5"
    assert reveal.recap_text(SHARDS[:2]).splitlines() == [reveal.RECAP_INTRO, f"- {SHARDS[0].text}", f"- {SHARDS[1].text}"]


def test_carried_shards_reads_the_content_of_unshared_cards() -> None:
    text = "Muffins are 3 dollars and bread is 5 dollars a loaf."
    assert reveal.carried_shards(SHARDS, {1}, text) == [2, 3]
    assert reveal.carried_shards(SHARDS, {1, 2}, text) == [3]
    assert reveal.carried_shards(SHARDS, {1}, "How much did they make?") == []


@pytest.mark.parametrize("policy", ["ask", "record"])
def test_check_cards_on_a_later_message(policy: str) -> None:
    two = "Muffins are 3 dollars and bread is 5 dollars a loaf."
    check = reveal.check_cards(SHARDS, {1}, [2], two, first=False, reveal="SHARDED", policy=policy)  # type: ignore[arg-type]
    assert (check.picked, check.carried) == ([2], [3])
    if policy == "ask":
        assert check.refusal == "Your message gives card 2 and card 3. Please share one card per message."
    else:
        assert check.refusal is None and check.shards == [2, 3]
    # One card, not ticked: it is recorded, whatever the policy (it is still one card).
    one = reveal.check_cards(SHARDS, {1}, [], "muffins cost 3 each", first=False, reveal="SHARDED", policy=policy)  # type: ignore[arg-type]
    assert one.refusal is None and one.shards == [2] and one.record() == {"picked": [], "carried": [2], "recorded": [2]}
    # Nothing beyond the pick: nothing to log.
    plain = reveal.check_cards(SHARDS, {1}, [2], "muffins cost 3 each", first=False, reveal="SHARDED", policy=policy)  # type: ignore[arg-type]
    assert plain.shards == [2] and plain.record() is None


def test_check_cards_on_the_first_message_and_whole_tasks() -> None:
    first = "How much did a bakery take on Saturday? Muffins are $3."
    asked = reveal.check_cards(SHARDS, set(), [1], first, first=True, reveal="SHARDED", policy="ask")
    assert asked.refusal is not None and "card 2" in asked.refusal
    recorded = reveal.check_cards(SHARDS, set(), [1], first, first=True, reveal="SHARDED", policy="record")
    assert recorded.shards == [1, 2] and recorded.refusal is None
    # FULL and CONCAT: what the message gave the model, never a refusal.
    concat = reveal.Opening(reveal.bullet_list(SHARDS), [1, 2, 3, 4])
    whole = reveal.check_cards(SHARDS, set(), [1, 2, 3, 4], first, first=True, reveal="CONCAT", policy="ask", opening=concat)
    assert whole.shards == [2] and whole.refusal is None and whole.record() is None


TEMPERATURE = [
    Shard(id=1, text="Can you convert 30 degrees for me?"),
    Shard(id=2, text="It's 30 degrees Celsius and I want it in Fahrenheit."),
]


def test_a_number_two_cards_share_does_not_stand_for_either() -> None:
    # Card 2 holds "30 degrees" too: card 1, as written or in other words, is card 1 alone.
    for text in ("Can you convert 30 degrees for me?", "I have 30 degrees to convert", "It's 30 degrees, convert it?"):
        check = reveal.check_cards(TEMPERATURE, set(), [1], text, first=True, reveal="SHARDED", policy="ask")
        assert (check.shards, check.refusal) == ([1], None), text
    # What only card 2 holds still gives it away.
    both = reveal.check_cards(
        TEMPERATURE, set(), [1], "Convert 30 degrees Celsius to Fahrenheit", first=True, reveal="SHARDED", policy="ask"
    )
    assert both.carried == [2] and both.refusal is not None
    assert reveal.carried_shards(TEMPERATURE, {1}, "celsius to fahrenheit, 30 of them") == [2]


@pytest.mark.parametrize("shards", [SHARDS, TEMPERATURE], ids=["bakery", "temperature"])
def test_a_card_sent_as_written_carries_no_other_card(shards: list[Shard]) -> None:
    for shard in shards:
        assert reveal.carried_shards(shards, {shard.id}, shard.text) == []
        assert reveal.carried_shards(shards, set(), shard.text) == [shard.id]
        assert reveal.carried_shards(shards, set(), f"  {shard.text.upper()}  thanks") == [shard.id]


def test_a_whole_task_records_what_the_message_gave() -> None:
    full = reveal.Opening("Work out a bakery's Saturday takings from its prices and sales.", [1, 2, 3, 4])

    def whole(text: str, done: set[int] | None = None) -> list[int]:
        done = done or set()
        check = reveal.check_cards(SHARDS, done, [1, 2, 3, 4], text, first=not done, reveal="FULL", policy="ask", opening=full)
        assert check.refusal is None
        return check.shards

    assert whole("Hello, can you help me with something?") == []
    assert whole(full.text) == [1, 2, 3, 4]
    assert whole("Muffins are $3 each, bread $5 a loaf.") == [2, 3]
    assert whole(f"As I said: {full.text}", {2, 3}) == [1, 4]


# --- the engine records what a message carries ---------------------------------------------------


def conversation(engine: Engine, policy: str, condition: str = "sharded") -> Conversation:
    with Session(engine, expire_on_commit=False) as s, s.begin():
        study = load_study(s, parse_spec(SPEC.replace("POLICY", policy), "cards.yaml")).study
        p = create_participant(s, study, status="active")
        chat = start_session(s, p, "bakery", condition)
    return Conversation.load(engine, chat.id, autolabel=False)


def card_events(engine: Engine, session_id: int) -> list[dict]:
    with Session(engine) as s:
        return [
            e.data
            for e in s.scalars(select(Event).where(Event.session_id == session_id, Event.kind == "cards").order_by(Event.id))
        ]


def stored_shards(engine: Engine, session_id: int) -> list[list[int]]:
    with Session(engine) as s:
        return [
            list(t.shards or [])
            for t in s.scalars(select(Turn).where(Turn.session_id == session_id, Turn.role == "user").order_by(Turn.index))
        ]


def test_a_message_carrying_two_cards_is_refused_under_ask(sqlite_engine: Engine) -> None:
    conv = conversation(sqlite_engine, "ask")
    conv.send("How much did the bakery take on Saturday?", source="participant")
    conv.reply(stream=False).consume()
    with pytest.raises(MessageRejected, match="card 2 and card 3"):
        conv.send("Muffins are 3 dollars and bread is 5 dollars a loaf.", [2], source="participant")
    assert stored_shards(sqlite_engine, conv.session_id) == [[1]]
    assert card_events(sqlite_engine, conv.session_id) == [
        {"picked": [2], "carried": [3], "recorded": [2, 3], "turn": None, "refused": True}
    ]
    conv.send("Muffins are 3 dollars.", [2], source="participant")
    assert stored_shards(sqlite_engine, conv.session_id) == [[1], [2]]


def test_every_card_a_message_carries_is_recorded_under_record(sqlite_engine: Engine) -> None:
    conv = conversation(sqlite_engine, "record", "snowball")
    first = conv.send("How much did the bakery take on Saturday? Muffins are $3 each.", source="participant")
    assert first.shards == [1, 2]
    conv.reply(stream=False).consume()
    turn = conv.send("Bread is 5 dollars a loaf; 40 muffins and 25 loaves were sold.", source="participant")
    assert turn.shards == [3, 4]
    assert turn.model_content is not None and "muffins at $3" in turn.model_content  # the snowball restates what is out
    assert conv.remaining == []
    assert card_events(sqlite_engine, conv.session_id) == [
        {"picked": [1], "carried": [2], "recorded": [1, 2], "turn": first.id},
        {"picked": [], "carried": [3, 4], "recorded": [3, 4], "turn": turn.id},
    ]


def test_simulated_messages_are_left_to_the_simulator_checks(sqlite_engine: Engine) -> None:
    conv = conversation(sqlite_engine, "ask")
    turn = conv.send("How much did the bakery take on Saturday? Muffins are $3 each.", source="simulator")
    assert turn.shards == [1] and card_events(sqlite_engine, conv.session_id) == []


def test_a_participant_message_is_read_once(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from lab import flow

    calls: dict[str, int] = {"clean": 0, "cards": 0}

    def counted(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(reveal, "strip_hidden", counted("clean", reveal.strip_hidden))
    monkeypatch.setattr(reveal, "check_cards", counted("cards", reveal.check_cards))
    conv = conversation(sqlite_engine, "ask")
    flow.send_message(conv, "How much did the bakery take on Saturday?")
    assert calls == {"clean": 1, "cards": 1}


# --- emoji are text, hidden controls are not -------------------------------------------------------


def emoji_sample() -> list[str]:
    return [
        line.rstrip("\n") for line in EMOJI_FILE.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")
    ]


def test_every_fully_qualified_emoji_is_kept_whole() -> None:
    sample = emoji_sample()
    assert len(sample) > 3900
    kinds = {
        "zwj": [e for e in sample if "\u200d" in e],
        "tag": [e for e in sample if "\U000e007f" in e],
        "keycap": [e for e in sample if "\u20e3" in e],
        "flag": [e for e in sample if len(e) == 2 and all(0x1F1E6 <= ord(c) <= 0x1F1FF for c in e)],
        "tone": [e for e in sample if any(0x1F3FB <= ord(c) <= 0x1F3FF for c in e)],
        "vs16": [e for e in sample if "\ufe0f" in e],
    }
    assert all(len(v) >= 3 for v in kinds.values()), {k: len(v) for k, v in kinds.items()}
    changed = [e for e in sample if clean_message(e, 100) != e]
    assert changed == []
    message = "Family time " + "".join(sample[::37]) + " 🏴󠁧󠁢󠁳󠁣󠁴󠁿 1️⃣ 👩🏽‍💻"
    assert clean_message(message, 10_000) == message


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("add\u202e two", "add two"),  # right-to-left override
        ("pay\u2066ment\u2069", "payment"),  # isolates
        ("a\u200bb", "ab"),  # zero-width space
        ("x\u2060y\ufeff", "xy"),  # word joiner, byte order mark
        ("\U000e0049\U000e0047\U000e004e\U000e004f\U000e0052\U000e0045 ok", " ok"),  # tags outside a flag smuggle text
        ("a\ufe0f\ufe01\ufe02", "a\ufe0f"),  # a run of variation selectors can carry data
        ("bell\x07 del\x7f c1\x85", "bell del c1"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"),  # Persian ZWNJ
    ],
)
def test_invisible_controls_are_still_removed(text: str, kept: str) -> None:
    assert clean_message(text, 100) == kept
