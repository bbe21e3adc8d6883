"""Mechanical checks of simulator lines against the reveal rules."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from lab.dialogue import GO_AHEAD
from lab.items import Shard, import_lost_in_conversation
from lab.simulate import (
    check_message,
    mentions,
    run_report,
)

from .conftest import RuleBreaker, load, simulate


def test_on_request_double_reveals_what_was_not_asked(sqlite_engine: Engine, spec: str) -> None:
    study, d = load(sqlite_engine, spec)
    plan, _ = simulate(sqlite_engine, study, d, RuleBreaker(["unasked"]), conditions=["on-request"])
    with Session(sqlite_engine) as s:
        report = run_report(s, plan.run_id)
    # Asked for the total (shard 2), it gives shard 3; then asked about people, it gives shard 2.
    assert report.drift["unrequested_shard"] == 2 and report.drift["ignored_request"] == 1


def test_check_message_rules() -> None:
    shards = [Shard(id=1, text="Add two numbers."), Shard(id=2, text="The first is 2."), Shard(id=3, text="The second is 3.")]
    ok = check_message(reveal="SHARDED", shards=shards, revealed={1}, assistant_text="Sure?", text="first one is 2", sent=[2])
    assert ok == []
    both = check_message(
        reveal="SHARDED", shards=shards, revealed={1}, assistant_text="", text="first is 2, second is 3", sent=[2]
    )
    assert [k for k, _ in both] == ["two_shards", "unclaimed_shard"]
    claimed = check_message(
        reveal="SHARDED", shards=shards, revealed={1}, assistant_text="", text="x", sent=[2], claimed=[2, 3, 9]
    )
    assert {k for k, _ in claimed} == {"two_shards", "unknown_shard"}
    none = check_message(reveal="SNOWBALL", shards=shards, revealed={1}, assistant_text="", text="ok, and you?", sent=[])
    assert {k for k, _ in none} == {"nothing_new", "asked_question"}
    assert check_message(reveal="SHARDED", shards=shards, revealed={1, 2, 3}, assistant_text="", text="thanks", sent=[]) == []
    question_shard = [Shard(id=1, text="Hi."), Shard(id=2, text="Can it be done by Friday?")]
    assert (
        check_message(
            reveal="SHARDED", shards=question_shard, revealed={1}, assistant_text="", text="Can it be done by Friday?", sent=[2]
        )
        == []
    )
    asked = check_message(
        reveal="ON_REQUEST",
        shards=shards,
        revealed={1},
        assistant_text="What is the second number?",
        text="The first is 2.",
        sent=[2],
    )
    assert {k for k, _ in asked} == {"unrequested_shard", "ignored_request"}
    assert (
        check_message(reveal="ON_REQUEST", shards=shards, revealed={1}, assistant_text="The answer is 9.", text=GO_AHEAD, sent=[])
        == []
    )
    assert mentions(Shard(id=5, text="They also sold 25 loaves of bread."), "oh and 25 loaves went too")
    assert not mentions(Shard(id=5, text="They also sold 25 loaves of bread."), "we sold 40 muffins")
    assert not mentions(Shard(id=6, text="A quarter went at half price."), "half of it")


def test_a_shard_sent_as_written_is_never_drift(shared_datasets: Path) -> None:
    """On the Lost in Conversation sample, every shard sent verbatim in order reveals one shard.

    The sample's shards share numbers and words (a table name, a quantity); read as
    content, 10 of its 158 later shards were once taken to give away a second one.
    """
    report = import_lost_in_conversation(shared_datasets / "lost_in_conversation" / "thirdparty_sample_5_per_task.json")
    lines, drift = 0, []
    for item in report.items:
        for n, shard in enumerate(item.shards[1:], start=1):
            revealed = {s.id for s in item.shards[:n]}
            problems = check_message(
                reveal="SHARDED", shards=list(item.shards), revealed=revealed, assistant_text="", text=shard.text, sent=[shard.id]
            )
            lines += 1
            drift += [(item.id, shard.id, kind) for kind, _ in problems if kind in ("two_shards", "unclaimed_shard")]
    assert lines == 158 and drift == []
