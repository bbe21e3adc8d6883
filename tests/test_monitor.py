"""The live monitor's figures: statuses, cells against target, time per item, error turns, latest
conversations (blind to Prolific ids), idle participants and timing one out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab import monitor
from lab.assign import assign, cell_counts, cells
from lab.dialogue import start_session
from lab.participants import create_participant
from lab.schema import ChatSession, Event, Participant, Turn, utcnow
from lab.spec import load_spec_file
from lab.studies import get_study, load_study

PID = "5f8e2b7c9d1a4e3f2b6c8d0e"


@pytest.fixture
def demo(engine: Engine, scripted_demo_path: Path) -> Engine:
    with Session(engine) as s, s.begin():
        load_study(s, load_spec_file(scripted_demo_path))
    return engine


def arrive(engine: Engine, status: str = "active", prolific: dict[str, str] | None = None, kind: str = "human") -> int:
    with Session(engine) as s, s.begin():
        p = create_participant(s, get_study(s, "demo"), status=status, prolific=prolific, kind=kind)
        assign(s, p)
        return p.id


def converse(
    engine: Engine,
    participant_id: int,
    step: int,
    turns: list[tuple[str, str]],
    *,
    minutes: float = 0,
    ended: bool = False,
    **turn_fields: object,
) -> int:
    """Start the participant's ``step``-th conversation, add turns ``minutes`` ago, optionally end it."""
    with Session(engine) as s, s.begin():
        p = s.get(Participant, participant_id)
        a = p.plan[step]
        chat = start_session(s, p, a["item"], a["condition"], position=step)
        start = utcnow() - timedelta(minutes=minutes)
        chat.started_at = start
        for n, (role, content) in enumerate(turns):
            s.add(
                Turn(session_id=chat.id, index=n, role=role, content=content, sent_at=start + timedelta(seconds=n), **turn_fields)
            )
        if ended:
            chat.status, chat.outcome, chat.ended_at = "ended", "answered", start + timedelta(minutes=minutes)
        return chat.id


def test_participants_by_status_lists_every_status(demo: Engine) -> None:
    for status in ("active", "active", "completed", "invited"):
        with Session(demo) as s, s.begin():
            create_participant(s, get_study(s, "demo"), status=status)
    with Session(demo) as s:
        counts = monitor.participants_by_status(s, get_study(s, "demo").id)
    assert counts["active"] == 2 and counts["completed"] == 1 and counts["invited"] == 1
    assert counts["timed_out"] == 0 and set(counts) >= {"consented", "withdrawn", "declined"}


def test_cells_against_target(demo: Engine, scripted_demo_path: Path) -> None:
    ids = [arrive(demo) for _ in range(3)]
    converse(demo, ids[0], 0, [("user", "hi")], ended=True)
    converse(demo, ids[1], 0, [("user", "hi")])
    with Session(demo) as s:
        study = get_study(s, "demo")
        rows = monitor.cell_table(s, study, target_participants=40)
        planned = cell_counts(s, study)
    all_cells = cells(load_spec_file(scripted_demo_path))
    assert [(r.condition, r.item) for r in rows] == all_cells
    assert sum(r.planned for r in rows) == 12 and all(r.planned == planned[(r.condition, r.item)] for r in rows)
    assert sum(r.started for r in rows) == 2 and sum(r.ended for r in rows) == 1
    # 40 participants × 4 items spread over the demo's cells.
    expected = -(-40 * 4 // len(all_cells))
    assert {r.target for r in rows} == {expected}


def test_between_subject_targets(sqlite_engine: Engine, write_study: Callable[..., Path]) -> None:
    spec = write_study(
        "b",
        conditions={"one": {"model": "bot"}, "two": {"model": "bot", "items": ["a", "b"]}},
        items=[{"id": key, "kind": "sharded", "shards": [{"id": 1, "text": "x"}]} for key in "abcd"],
        plan={"design": "between", "items_per_participant": 2},
    )
    with Session(sqlite_engine) as s, s.begin():
        study = load_study(s, load_spec_file(spec)).study
        targets = monitor.cell_targets(study, 10)
    # Five participants per condition; 'one' spreads their 2 items over 4 cells, 'two' over 2.
    assert targets[("one", "a")] == 3 and targets[("two", "a")] == 5


def test_median_time_per_item_and_problem_turns(demo: Engine) -> None:
    p = arrive(demo)
    q = arrive(demo)
    converse(demo, p, 0, [("user", "a"), ("assistant", "b")], minutes=2, ended=True)
    converse(demo, p, 1, [("user", "a")], minutes=4, ended=True)
    converse(demo, q, 0, [("user", "a")], minutes=9, ended=True)
    converse(demo, q, 1, [("assistant", "")], minutes=1, error="The model provider refused the key.")
    converse(demo, q, 2, [("assistant", "half")], minutes=1, partial=True)
    converse(demo, q, 3, [("assistant", "old")], minutes=120, error="old error")
    with Session(demo) as s:
        study = get_study(s, "demo")
        median, finished = monitor.median_item_seconds(s, study.id)
        turns, errors, partial = monitor.turn_problems(s, study.id, utcnow() - timedelta(hours=1))
    assert finished == 3 and median == pytest.approx(240, abs=1)
    assert (turns, errors, partial) == (6, 1, 1)


def test_latest_conversations_are_readable_and_blind_to_prolific_ids(demo: Engine) -> None:
    p = arrive(demo, prolific={"PROLIFIC_PID": PID, "STUDY_ID": "S-77", "SESSION_ID": "X-99"})
    q = arrive(demo)
    converse(demo, p, 0, [("user", "first question"), ("assistant", "first answer")], minutes=10)
    newest = converse(demo, q, 0, [("user", "second question"), ("assistant", "second answer")], minutes=1)
    with Session(demo) as s:
        study = get_study(s, "demo")
        views = monitor.latest_conversations(s, study.id, limit=5)
        snap = monitor.snapshot(s, study, 10)
    assert [v.session_id for v in views][0] == newest
    assert [t.content for t in views[0].turns] == ["second question", "second answer"]
    assert {v.participant for v in views} == {f"P{p}", f"P{q}"}
    everything = repr(views) + repr(snap)
    for secret in (PID, "S-77", "X-99"):
        assert secret not in everything


def test_idle_participants_and_stale_flag(demo: Engine) -> None:
    busy = arrive(demo)
    idle = arrive(demo)
    converse(demo, busy, 0, [("user", "hello")], minutes=0)
    with Session(demo) as s:
        study = get_study(s, "demo")
        live = monitor.live_participants(s, study, now=utcnow() + timedelta(minutes=100))
    by_id = {p.id: p for p in live}
    assert set(by_id) == {busy, idle}
    assert by_id[idle].stale and by_id[idle].idle_minutes >= 99.5
    assert by_id[busy].step == 1 and by_id[busy].steps == 4 and by_id[idle].step == 0
    with Session(demo) as s:
        live_now = monitor.live_participants(s, get_study(s, "demo"))
    assert not any(p.stale for p in live_now)


def test_time_out_frees_cells_and_is_logged(demo: Engine) -> None:
    p = arrive(demo)
    chat = converse(demo, p, 0, [("user", "stuck here")])
    with Session(demo) as s, s.begin():
        study = get_study(s, "demo")
        assert sum(cell_counts(s, study).values()) == 4
        assert monitor.time_out(s, study, p, by="erin")
    with Session(demo) as s, s.begin():
        study = get_study(s, "demo")
        assert s.get(Participant, p).status == "timed_out"
        assert s.get(ChatSession, chat).status == "abandoned"
        event = s.scalars(select(Event).where(Event.participant_id == p, Event.kind == "timed_out")).one()
        assert event.data == {"by": "erin", "was": "active"}
        assert sum(cell_counts(s, study).values()) == 0
        # A second click, another study's participant, or a finished one change nothing.
        assert not monitor.time_out(s, study, p, by="erin")
        assert not monitor.time_out(s, study, 99999, by="erin")
    done = arrive(demo, status="completed")
    with Session(demo) as s, s.begin():
        assert not monitor.time_out(s, get_study(s, "demo"), done, by="erin")


def test_snapshot_of_an_empty_study(demo: Engine) -> None:
    with Session(demo) as s:
        snap = monitor.snapshot(s, get_study(s, "demo"))
    assert snap.target_participants == 0 and snap.median_item_seconds is None
    assert sum(snap.by_status.values()) == 0 and all(c.target == 0 and c.started == 0 for c in snap.cells)
    assert snap.live == [] and snap.timeout_minutes == 90


def test_default_target_counts_links_and_people_taking_part(demo: Engine) -> None:
    from lab.links import make_personal_links

    with Session(demo) as s, s.begin():
        make_personal_links(s, get_study(s, "demo"), 12)
    arrive(demo)
    with Session(demo) as s:
        assert monitor.default_target(s, get_study(s, "demo")) == 12


def test_what_the_page_shows_of_a_snapshot(demo: Engine) -> None:
    p = arrive(demo)
    converse(demo, p, 0, [("user", "hello"), ("assistant", "hi")], minutes=2, ended=True)
    with Session(demo) as s:
        study = get_study(s, "demo")
        snap = monitor.snapshot(s, study, 4)
        (conv,) = monitor.latest_conversations(s, study.id)
    figures = {f.label: f for f in monitor.headline(snap)}
    assert list(figures)[:4] == ["consented", "active", "completed", "timed out"]
    assert figures["active"].value == 1 and figures["turns, last hour"].value == 2
    assert figures["median time per item"].value == "2.0 min"
    assert figures["median time per item"].help == "over 1 finished conversations"
    assert [r["status"] for r in monitor.status_rows(snap)] == list(monitor.STATUS_ORDER)
    rows = monitor.cell_rows(snap)
    assert len(rows) == len(snap.cells) and sum(r["finished"] for r in rows) == 1
    assert monitor.cell_scale(snap) == max(1, *(c.target for c in snap.cells))
    assert monitor.live_rows(snap) == [
        {
            "participant": f"P{p}",
            "kind": "human",
            "status": "active",
            "conversations": "1 of 4",
            "idle (min)": snap.live[0].idle_minutes,
            "past time limit": False,
        }
    ]
    assert monitor.conversation_title(conv) == f"P{p} (human) · {conv.condition} · {conv.item} · ended"


def test_run_lines_show_this_version_and_running_ones() -> None:
    def run(run_id: str, version: int, finished: bool, **more: object) -> SimpleNamespace:
        fields = {"eta_seconds": None, "rate_per_minute": None, "simulator": "scripted", "ended": 3, "total": 4, "fraction": 0.75}
        return SimpleNamespace(run_id=run_id, version=version, finished=finished, **(fields | more))

    runs = [run("a", 2, False, eta_seconds=120, rate_per_minute=1.5), run("b", 1, True), run("c", 1, False), run("d", 2, True)]
    assert monitor.run_lines(runs, 2) == [
        (0.75, "a (scripted, v2): 3 of 4 conversations · 1.5/min · about 2 min left"),
        (0.75, "c (scripted, v1): 3 of 4 conversations"),
        (0.75, "d (scripted, v2): 3 of 4 conversations"),
    ]
    assert len(monitor.run_lines(runs * 2, 2)) == 3
