"""One unit never ends a run: long items run whole, and an error stops its unit alone, named with its item."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab.dialogue import Conversation
from lab.items import import_lost_in_conversation, write_items
from lab.schema import Turn
from lab.simulate import ScriptedSimulator, UserMove

from .conftest import load, sessions_of, simulate

FIVE_CONDITIONS: dict[str, Any] = {
    reveal.lower(): {"model": "bot", "reveal": reveal} for reveal in ("FULL", "CONCAT", "SHARDED", "SNOWBALL", "RECAP")
}
"""The five ways of revealing a sharded task, each with the scripted model."""

BOT: dict[str, Any] = {"bot": {"model": "lab/scripted", "params": {"script": "fixed", "reply": "Noted."}}}

DOCUMENT = " ".join(f"Sentence {n} of a long report on the harbour's trade." for n in range(1, 1300))
"""About 65,000 characters, as the Lost in Conversation summary documents run."""

LONG_ITEM: dict[str, Any] = {
    "id": "report",
    "kind": "sharded",
    "shards": [
        {"id": 1, "text": f"Summarise these documents in three sentences.\n\n{DOCUMENT}"},
        {"id": 2, "text": f"Here is one more document.\n\n{DOCUMENT}"},
        {"id": 3, "text": "Keep the summary under one hundred words."},
    ],
}

SHORT_ITEM: dict[str, Any] = {
    "id": "add",
    "kind": "sharded",
    "shards": [
        {"id": 1, "text": "Add two numbers."},
        {"id": 2, "text": "The first number is 2."},
        {"id": 3, "text": "The second number is 3."},
    ],
    "answer": {"type": "number", "value": "5"},
}


def test_openings_built_from_a_long_item_are_not_held_to_the_limit_for_people(
    sqlite_engine: Engine, study_spec: Callable[..., str]
) -> None:
    spec = study_spec("long", models=BOT, conditions=FIVE_CONDITIONS, items=[LONG_ITEM, SHORT_ITEM], plan={"turn_limit": 6})
    study, d = load(sqlite_engine, spec)
    plan, result = simulate(sqlite_engine, study, d)
    assert result.complete and not result.failures and plan.total == 10
    with Session(sqlite_engine) as s:
        longest = max(len(t.content) for t in s.scalars(select(Turn).where(Turn.role == "user")))
    assert longest >= len(DOCUMENT) * 2, "the whole item reached the model, not a cut at the human limit"


class Breaking(ScriptedSimulator):
    """The scripted simulator, failing with an unexpected error on one item."""

    def __init__(self, item: str) -> None:
        self.item = item

    async def next_move(self, conv: Conversation) -> UserMove:
        if conv.item.id == self.item:
            raise ValueError("the simulator tripped")
        return await super().next_move(conv)


def test_an_error_in_one_unit_stops_that_unit_alone_named_with_its_item(
    sqlite_engine: Engine, study_spec: Callable[..., str]
) -> None:
    spec = study_spec("units", models=BOT, conditions=FIVE_CONDITIONS, items=[LONG_ITEM, SHORT_ITEM], plan={"turn_limit": 6})
    study, d = load(sqlite_engine, spec)
    plan, result = simulate(sqlite_engine, study, d, Breaking("add"), concurrency=3)
    stopped = {message for _sid, message in result.failures}
    # FULL and CONCAT send everything at once: nothing is left for the simulator to say.
    assert len(result.failures) == 3 and not result.complete
    assert stopped == {
        f"item add ({condition}): unexpected ValueError: the simulator tripped" for condition in ("sharded", "snowball", "recap")
    }
    assert result.done == plan.total - 3, "every other unit went on to its end"
    _, again = simulate(sqlite_engine, study, d)
    assert again.complete and not again.failures and again.resumed == 3
    assert all(c.status == "ended" for c in sessions_of(sqlite_engine, plan.run_id))


def test_the_lost_in_conversation_sample_runs_in_five_conditions(
    sqlite_engine: Engine, study_spec: Callable[..., str], shared_datasets: Path, tmp_path: Path
) -> None:
    folder = shared_datasets / "lost_in_conversation"
    sample = import_lost_in_conversation(folder / "thirdparty_sample_5_per_task.json").items
    translation = import_lost_in_conversation(folder / "sharded_translation.json").items
    # The summary items carry the long openings; two of every other family keep the test short.
    families: dict[str | None, int] = {}
    chosen = []
    for item in [*sample, *translation]:
        families[item.source.task if item.source else None] = n = families.get(item.source.task if item.source else None, 0) + 1
        if n <= 2 or (item.source is not None and item.source.task == "summary"):
            chosen.append(item)
    write_items(chosen, tmp_path / "items" / "lic.jsonl")
    spec = study_spec("lic", models=BOT, conditions=FIVE_CONDITIONS, items=[{"file": "items/lic.jsonl"}], plan={"turn_limit": 12})
    study, d = load(sqlite_engine, spec, tmp_path)
    plan, result = simulate(sqlite_engine, study, d, concurrency=8)
    assert not result.failures, result.failures[:3]
    assert result.complete and plan.total == 5 * len(chosen)
    with Session(sqlite_engine) as s:
        longest = max(len(t.content) for t in s.scalars(select(Turn).where(Turn.role == "user")))
    assert longest > 50_000
