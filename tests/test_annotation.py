"""The annotation work queue, the labelling data, repair sequences, gold checks and adjudication."""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from annotation_data import SPEC, accounts, conversations, load, shown_turns
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from lab import annotation as ann
from lab.adjudication import adjudicate, change_rate, disagreements
from lab.cli import main
from lab.db import make_engine, migrate
from lab.labels import add_label
from lab.schema import AnnotationSlot, Label, RepairSequence, utcnow


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite database copied for each property example (migrating each time is slow)."""
    path = tmp_path_factory.mktemp("template") / "lab.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def fresh(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    target = tmp_path_factory.mktemp("q") / "lab.db"
    shutil.copyfile(template, target)
    return make_engine(f"sqlite:///{target}")


def setup(engine: Engine, n: int = 4, names: tuple[str, ...] = ("ada", "bo"), k: int = 2) -> tuple[list[int], dict[str, int]]:
    with Session(engine) as s, s.begin():
        study = load(s)
        ids = conversations(s, study, n)
        accs = {a.username: a.id for a in accounts(s, list(names))}
        ann.assign(s, "blindtest", list(names), k)
    return ids, accs


# --- the queue -----------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 12), m=st.integers(1, 5), k=st.integers(1, 5), late=st.integers(0, 6))
def test_every_conversation_reaches_exactly_k_distinct_annotators_evenly(
    template: Path, tmp_path_factory: pytest.TempPathFactory, n: int, m: int, k: int, late: int
) -> None:
    k = min(k, m)
    engine = fresh(template, tmp_path_factory)
    names = [f"ann{i}" for i in range(m)]
    with Session(engine) as s, s.begin():
        study = load(s)
        conversations(s, study, n)
        accounts(s, names)
        ann.assign(s, "blindtest", names, k)
        conversations(s, study, late)  # arriving after the assignment: placed on the next request
    with Session(engine) as s, s.begin():
        ids = {a.id: a.username for a in s.scalars(select(ann.Account))}
        claimed: Counter[str] = Counter()
        for acc_id in ids:
            while (slot := ann.claim_next(s, "blindtest", acc_id)) is not None:
                ann.finish(s, slot.id, acc_id)
                claimed[ids[acc_id]] += 1
        slots = s.execute(select(AnnotationSlot.session_id, AnnotationSlot.account_id, AnnotationSlot.status)).all()
    engine.dispose()
    per_conv: dict[int, list[int | None]] = {}
    for session_id, account_id, _ in slots:
        per_conv.setdefault(session_id, []).append(account_id)
    assert len(per_conv) == n + late
    for holders in per_conv.values():
        assert len(holders) == k and len(set(holders)) == k and None not in holders
    loads = [claimed[name] for name in names]
    assert sum(loads) == (n + late) * k
    assert max(loads) - min(loads) <= 1
    assert all(status == "done" for _, _, status in slots)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(minutes=st.integers(0, 90))
def test_a_claim_left_for_claim_minutes_returns_to_the_pool(
    template: Path, tmp_path_factory: pytest.TempPathFactory, minutes: int
) -> None:
    engine = fresh(template, tmp_path_factory)
    with Session(engine) as s, s.begin():
        study = load(s)
        conversations(s, study, 1)
        accs = {a.username: a.id for a in accounts(s, ["ada", "bo", "cy"])}
        ann.assign(s, "blindtest", ["ada", "bo", "cy"], 2)
    t0 = utcnow()
    with Session(engine) as s, s.begin():
        first = ann.claim_next(s, "blindtest", accs["ada"], now=t0)
        assert first is not None
        first_id = first.id
        assert ann.claim_next(s, "blindtest", accs["cy"], now=t0) is None  # ada and bo hold the two places
    later = t0 + timedelta(minutes=minutes)
    with Session(engine) as s, s.begin():
        taken = ann.claim_next(s, "blindtest", accs["cy"], now=later)
        if minutes > 30:
            assert taken is not None and taken.id == first_id and taken.account_id == accs["cy"]
            with pytest.raises(ann.NotYours):
                ann.conversation_view(s, first_id, accs["ada"])
        else:
            assert taken is None
            assert ann.conversation_view(s, first_id, accs["ada"]).slot_id == first_id
    engine.dispose()


def test_an_annotator_assigned_later_takes_a_share_of_the_unopened_conversations(engine: Engine) -> None:
    ids, accs = setup(engine, n=20, k=1)
    with Session(engine) as s, s.begin():
        for _ in range(2):
            done = ann.claim_next(s, "blindtest", accs["ada"])
            assert done is not None
            ann.finish(s, done.id, accs["ada"])
        opened = ann.claim_next(s, "blindtest", accs["ada"])
        assert opened is not None
        begun = s.scalars(select(AnnotationSlot).where(AnnotationSlot.status != "open"))
        started = {sl.id: (sl.account_id, sl.status) for sl in begun}
        accs |= {a.username: a.id for a in accounts(s, ["cy"])}
        ann.assign(s, "blindtest", ["cy"])
    with Session(engine) as s:
        slots = s.scalars(select(AnnotationSlot)).all()
        todo = Counter(sl.account_id for sl in slots if sl.status != "done")
        assert todo == {accs["ada"]: 6, accs["bo"]: 6, accs["cy"]: 6}  # 18 still to do, in three even shares
        assert sorted(Counter(sl.session_id for sl in slots).values()) == [1] * 20  # still one place per conversation
        assert {sl.id: (sl.account_id, sl.status) for sl in slots if sl.status != "open"} == started  # opened stay put
    with Session(engine) as s, s.begin():
        first = ann.claim_next(s, "blindtest", accs["cy"])
        assert first is not None and first.account_id == accs["cy"]


def test_rebalancing_never_gives_an_annotator_two_places_on_one_conversation(engine: Engine) -> None:
    ids, accs = setup(engine, n=9, names=("ada", "bo", "cy"), k=2)
    with Session(engine) as s, s.begin():
        accs |= {a.username: a.id for a in accounts(s, ["dee", "eve"])}
        ann.assign(s, "blindtest", ["dee", "eve"])
        slots = s.execute(select(AnnotationSlot.session_id, AnnotationSlot.account_id)).all()
    holders: dict[int, list[int | None]] = {}
    for session_id, account_id in slots:
        holders.setdefault(session_id, []).append(account_id)
    assert all(len(h) == 2 and len(set(h)) == 2 for h in holders.values())
    loads = Counter(account_id for _, account_id in slots)
    assert set(loads) == set(accs.values()) and max(loads.values()) - min(loads.values()) <= 1


def test_skip_come_back_and_done(sqlite_engine: Engine) -> None:
    ids, accs = setup(sqlite_engine, n=3)
    with Session(sqlite_engine) as s, s.begin():
        a = ann.claim_next(s, "blindtest", accs["ada"])
        assert a is not None and ann.claim_next(s, "blindtest", accs["ada"]).id == a.id  # type: ignore[union-attr]
        ann.skip(s, a.id, accs["ada"])
        b = ann.claim_next(s, "blindtest", accs["ada"])
        assert b is not None and b.session_id != a.session_id
        ann.finish(s, b.id, accs["ada"])
        back = ann.resume(s, a.id, accs["ada"])
        assert back.status == "claimed"
        statuses = {sl.session_id: sl.status for sl in ann.my_conversations(s, "blindtest", accs["ada"])}
        assert statuses[a.session_id] == "claimed" and statuses[b.session_id] == "done"


def test_assignment_refuses_unknown_accounts_and_too_few_annotators(sqlite_engine: Engine) -> None:
    with Session(sqlite_engine) as s, s.begin():
        load(s)
        accounts(s, ["ada"])
        accounts(s, ["exp"], role="experimenter")
        with pytest.raises(ann.AnnotationError, match="unknown account.*nobody"):
            ann.assign(s, "blindtest", ["ada", "nobody"])
        with pytest.raises(ann.AnnotationError, match="not an active annotator account: exp"):
            ann.assign(s, "blindtest", ["ada", "exp"])
        with pytest.raises(ann.AnnotationError, match="needs at least 2 assigned annotators"):
            ann.assign(s, "blindtest", ["ada"], 2)


def test_unassigned_annotator_gets_not_yours(sqlite_engine: Engine) -> None:
    ids, accs = setup(sqlite_engine)
    with Session(sqlite_engine) as s, s.begin():
        (other,) = accounts(s, ["zed"])
        with pytest.raises(ann.NotYours):
            ann.claim_next(s, "blindtest", other.id)
        slot = ann.claim_next(s, "blindtest", accs["ada"])
        assert slot is not None
        with pytest.raises(ann.NotYours):
            ann.conversation_view(s, slot.id, accs["bo"])
        turn = shown_turns(s, slot.session_id)[0]
        with pytest.raises(ann.NotYours):
            ann.record_label(s, slot.id, other.id, turn.id, "G", "ACK")


def test_scope_filters(sqlite_engine: Engine) -> None:
    spec = SPEC.replace(
        "  prelabels: shown\n", "  prelabels: shown\n  scope: {participants: human, conditions: [cond-xylophone]}\n"
    )
    with Session(sqlite_engine) as s, s.begin():
        study = load(s, spec)
        sim = conversations(s, study, 2, kind="simulated")
        human = conversations(s, study, 4, kind="human")
        conversations(s, study, 2, kind="human", status="active")
        accounts(s, ["ada", "bo"])
        ann.assign(s, "blindtest", ["ada", "bo"])
        placed = set(s.scalars(select(AnnotationSlot.session_id)))
    # conversations alternate between the two conditions; only finished human ones of cond-xylophone count
    assert placed == {human[0], human[2]} and not placed & set(sim)


# --- labels --------------------------------------------------------------------------------------


def test_labels_supersede_with_history_and_double_clicks_write_once(engine: Engine) -> None:
    ids, accs = setup(engine)
    with Session(engine) as s, s.begin():
        slot = ann.claim_next(s, "blindtest", accs["ada"])
        assert slot is not None
        turn = shown_turns(s, slot.session_id)[1]
        first = ann.record_label(s, slot.id, accs["ada"], turn.id, "G", "CLARIFY", confidence=0.8, note="asks which", seconds=4.2)
        assert (
            ann.record_label(s, slot.id, accs["ada"], turn.id, "G", "CLARIFY", confidence=0.8, note="asks which", seconds=5)
            is None
        )
        second = ann.record_label(s, slot.id, accs["ada"], turn.id, "G", "CHECK", seconds=9.5)
        assert first is not None and second is not None
        history = ann.label_history(s, turn.id, "ada", "G")
        assert [h.code for h in history] == ["CLARIFY", "CHECK"] and history[1].supersedes_id == history[0].id
        assert (
            history[0].meta["seconds"] == 4.2
            and history[0].meta["note"] == "asks which"
            and history[0].meta["codebook"] == "codebook-1"
        )
        view = ann.conversation_view(s, slot.id, accs["ada"])
        assert view.labels[(turn.id, "G")].code == "CHECK"


@pytest.mark.parametrize(
    ("layer", "code", "note", "message"),
    [
        ("G", "WAVE", None, "unknown code 'WAVE' for layer G"),
        ("P", "REJECT", None, "layer 'P' is not used in this study"),
        ("G", "ACK", "x" * 2001, "the note has 2001 characters; at most 2000"),
        ("S", "hedge", None, "layer S applies to assistant turns, not to a user turn"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(
    sqlite_engine: Engine, layer: str, code: str, note: str | None, message: str
) -> None:
    ids, accs = setup(sqlite_engine)
    with Session(sqlite_engine) as s, s.begin():
        slot = ann.claim_next(s, "blindtest", accs["ada"])
        assert slot is not None
        user_turn = shown_turns(s, slot.session_id)[0]
        with pytest.raises(ann.AnnotationError, match=message):
            ann.record_label(s, slot.id, accs["ada"], user_turn.id, layer, code, note=note)
        assert s.scalar(select(func.count()).select_from(Label)) == 0


def test_a_turn_of_another_study_is_refused(sqlite_engine: Engine) -> None:
    ids, accs = setup(sqlite_engine)
    with Session(sqlite_engine) as s, s.begin():
        other = load(s, SPEC.replace("slug: blindtest", "slug: other"))
        (foreign,) = conversations(s, other, 1)
        slot = ann.claim_next(s, "blindtest", accs["ada"])
        assert slot is not None
        with pytest.raises(ann.AnnotationError, match="is not a turn of this conversation"):
            ann.record_label(s, slot.id, accs["ada"], shown_turns(s, foreign)[0].id, "G", "ACK")
        with pytest.raises(ann.AnnotationError, match="is not a turn of study 'blindtest'"):
            adjudicate(s, "blindtest", shown_turns(s, foreign)[0].id, "G", "ACK", accs["ada"])
        assert s.scalar(select(func.count()).select_from(Label)) == 0


def test_two_annotators_and_double_clicks_at_once_lose_and_duplicate_nothing(engine: Engine) -> None:
    ids, accs = setup(engine, n=1)
    with Session(engine) as s, s.begin():
        slots = {name: ann.claim_next(s, "blindtest", acc).id for name, acc in accs.items()}  # type: ignore[union-attr]
        turns = [t.id for t in shown_turns(s, ids[0])]
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            barrier.wait()
            for tid in turns:
                with Session(engine) as s, s.begin():
                    ann.record_label(s, slots[name], accs[name], tid, "G", "ACK" if name == "ada" else "NONE", seconds=1.0)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(name,)) for name in ("ada", "ada", "bo", "bo")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with Session(engine) as s:
        rows = s.execute(select(Label.annotator, Label.turn_id, Label.code)).all()
    assert sorted(rows) == sorted([("ada", t, "ACK") for t in turns] + [("bo", t, "NONE") for t in turns])


# --- repair sequences ------------------------------------------------------------------------------


def test_repair_sequence_is_made_listed_and_edited_with_history(sqlite_engine: Engine) -> None:
    ids, accs = setup(sqlite_engine)
    with Session(sqlite_engine) as s, s.begin():
        slot = ann.claim_next(s, "blindtest", accs["ada"])
        assert slot is not None
        t = shown_turns(s, slot.session_id)
        seq = ann.save_sequence(
            s,
            slot.id,
            accs["ada"],
            trouble_turn_id=t[0].id,
            span=(0, 4),
            initiation_turn_id=t[1].id,
            initiation="OI-restricted-request",
            repair_turn_id=t[2].id,
            outcome="resolved",
            trouble_type="reference",
        )
        assert seq.initiator == "assistant" and seq.turns_to_resolution == 1 and (seq.span_start, seq.span_end) == (0, 4)
        assert ann.conversation_view(s, slot.id, accs["ada"]).labels[(t[1].id, "R")].code == "OI-restricted-request"
        ann.save_sequence(
            s,
            slot.id,
            accs["ada"],
            trouble_turn_id=t[0].id,
            initiation_turn_id=t[1].id,
            initiation="OI-open",
            repair_turn_id=t[2].id,
            outcome="partial",
            sequence_id=seq.id,
        )
        views = ann.conversation_view(s, slot.id, accs["ada"]).sequences
        assert len(views) == 1 and views[0].outcome == "partial" and views[0].initiation == "OI-open"
        stored = s.get(RepairSequence, seq.id)
        assert stored is not None and stored.meta["history"][0]["outcome"] == "resolved"
        with pytest.raises(ann.AnnotationError, match="^Initiation turn: it comes before the trouble source"):
            ann.save_sequence(s, slot.id, accs["ada"], trouble_turn_id=t[2].id, initiation_turn_id=t[1].id, initiation="TPR")
        with pytest.raises(ann.AnnotationError, match="^Trouble span: 0–999 is outside"):
            ann.save_sequence(
                s, slot.id, accs["ada"], trouble_turn_id=t[0].id, initiation_turn_id=t[1].id, initiation="TPR", span=(0, 999)
            )
        with pytest.raises(ann.AnnotationError, match="^Repair turn: it comes before the initiation"):
            ann.save_sequence(
                s,
                slot.id,
                accs["ada"],
                trouble_turn_id=t[0].id,
                initiation_turn_id=t[2].id,
                initiation="TPR",
                repair_turn_id=t[1].id,
            )
        with pytest.raises(ann.AnnotationError, match="^Outcome: unknown 'fixed'"):
            ann.save_sequence(
                s, slot.id, accs["ada"], trouble_turn_id=t[0].id, initiation_turn_id=t[1].id, initiation="TPR", outcome="fixed"
            )
        bo_slot = ann.claim_next(s, "blindtest", accs["bo"])
        assert bo_slot is not None
        with pytest.raises(ann.NotYours):
            ann.save_sequence(
                s, slot.id, accs["bo"], trouble_turn_id=t[0].id, initiation_turn_id=t[1].id, initiation="TPR", sequence_id=seq.id
            )


# --- pre-labels, gold checks, progress, resolution, adjudication -----------------------------------


def test_prelabels_half_draws_a_recorded_half(sqlite_engine: Engine) -> None:
    spec = SPEC.replace("prelabels: shown", "prelabels: half")
    names = [f"a{i}" for i in range(6)]
    with Session(sqlite_engine) as s, s.begin():
        study = load(s, spec)
        (sid,) = conversations(s, study, 1)
        accs = {a.username: a.id for a in accounts(s, names)}
        rows = ann.assign(s, "blindtest", names, 2)
        assert sum(r.sees_prelabels for r in rows) == 3
        again = ann.assign(s, "blindtest", names, 2)
        assert [r.sees_prelabels for r in again] == [r.sees_prelabels for r in rows]
        turn = shown_turns(s, sid)[1]
        add_label(s, turn.id, "auto:rules", "S", "clarification")
        for r in rows:
            slot = ann.claim_next(s, "blindtest", r.account_id)
            if slot is None:
                continue
            view = ann.conversation_view(s, slot.id, r.account_id)
            assert (view.prelabels.get((turn.id, "S")) == ["clarification"]) == r.sees_prelabels
            label = ann.record_label(s, slot.id, r.account_id, turn.id, "S", "hedge")
            assert label is not None and label.meta["prelabels_shown"] == r.sees_prelabels
    del accs


def test_gold_checks_show_accuracy_on_progress(sqlite_engine: Engine) -> None:
    ids, accs = setup(sqlite_engine, n=2)
    with Session(sqlite_engine) as s, s.begin():
        slot = ann.claim_next(s, "blindtest", accs["ada"])
        assert slot is not None
        t = shown_turns(s, slot.session_id)
        ann.set_check(s, "blindtest", t[0].id, "G", "ACK", None)
        ann.set_check(s, "blindtest", t[1].id, "G", "CLARIFY", None)
        ann.record_label(s, slot.id, accs["ada"], t[0].id, "G", "ACK")
        ann.record_label(s, slot.id, accs["ada"], t[1].id, "G", "NONE")
        ann.finish(s, slot.id, accs["ada"])
        p = ann.progress(s, "blindtest")
    ada = next(a for a in p.annotators if a.username == "ada")
    assert (ada.checks, ada.correct, ada.accuracy, ada.done, ada.labels) == (2, 1, 0.5, 1, 2)
    assert p.conversations == 2 and p.placed == 2 and p.complete == 0 and p.per_conversation == 2


def test_resolved_labels_read_gold_then_majority_then_judge_and_adjudication_changes_them(sqlite_engine: Engine) -> None:
    ids, accs = setup(sqlite_engine, n=1, names=("ada", "bo", "cy"), k=3)
    with Session(sqlite_engine) as s, s.begin():
        slots = {n: ann.claim_next(s, "blindtest", a) for n, a in accs.items()}
        t = shown_turns(s, ids[0])
        for name, codes in {"ada": ["ACK", "CLARIFY"], "bo": ["ACK", "CHECK"], "cy": ["NONE", "FOLLOWUP"]}.items():
            for turn, code in zip(t[:2], codes, strict=True):
                ann.record_label(s, slots[name].id, accs[name], turn.id, "G", code)  # type: ignore[union-attr]
        add_label(s, t[1].id, "auto:rules-g", "G", "CLARIFY")
        add_label(s, t[2].id, "auto:rules-g", "G", "ACK")
        r = ann.resolved_labels(s, "blindtest", "G")
        assert r[t[0].id] == ann.Resolved("ACK", "majority")
        assert r[t[1].id] == ann.Resolved("CLARIFY", "auto:rules-g")
        assert r[t[2].id] == ann.Resolved("ACK", "auto:rules-g")
        assert t[3].id not in r
        found = disagreements(s, "blindtest", "G")
        assert [d.turn_id for d in found] == [t[0].id, t[1].id] and found[0].majority == "ACK"
        (exp,) = accounts(s, ["eve"], role="experimenter")
        gold = adjudicate(s, "blindtest", t[0].id, "G", "NONE", exp.id)
        assert gold.annotator == "gold" and gold.account_id == exp.id and gold.meta["decided_by"] == "eve"
        adjudicate(s, "blindtest", t[1].id, "G", "CHECK", exp.id)
        r = ann.resolved_labels(s, "blindtest", "G")
        assert r[t[0].id] == ann.Resolved("NONE", "gold") and r[t[1].id] == ann.Resolved("CHECK", "gold")
        rate = change_rate(s, "blindtest", "G")
        assert (rate.adjudicated, rate.with_majority, rate.changed, rate.rate) == (2, 1, 1, 1.0)


def test_cli_assign_progress_and_agreement(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lab.db import get_engine

    engine = get_engine()
    migrate(engine)
    with Session(engine) as s, s.begin():
        study = load(s)
        (sid,) = conversations(s, study, 1)
        accounts(s, ["ada", "bo"])
    assert main(["annotate", "assign", "blindtest", "--annotators", "ada,bo", "--per-conversation", "2"]) == 0
    assert "2 annotators, 2 per conversation; 1 of 1 conversations placed" in capsys.readouterr().out
    assert main(["annotate", "assign", "blindtest", "--annotators", "ada,nobody"]) == 1
    assert "error: unknown account(s): nobody" in capsys.readouterr().err
    with Session(engine) as s, s.begin():
        for name in ("ada", "bo"):
            acc = s.scalar(select(ann.Account.id).where(ann.Account.username == name))
            slot = ann.claim_next(s, "blindtest", acc)
            for i, turn in enumerate(shown_turns(s, sid)):
                ann.record_label(s, slot.id, acc, turn.id, "G", "ACK" if i % 2 or name == "ada" else "NONE")  # type: ignore[union-attr]
    assert main(["annotate", "progress", "blindtest"]) == 0
    assert "ada" in capsys.readouterr().out
    assert main(["agreement", "blindtest", "--layer", "G", "--format", "csv", "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("comparison,layer,code,measure,value,low,high,units,verdict\nhumans,G,(all),raw,0.500,")
    assert main(["agreement", "blindtest", "--layer", "P"]) == 1
    assert "layer 'P' is not used in this study" in capsys.readouterr().err


def test_an_unblinded_study_names_condition_and_model(sqlite_engine: Engine) -> None:
    with Session(sqlite_engine) as s, s.begin():
        study = load(s, SPEC.replace("  prelabels: shown\n", "  prelabels: shown\n  blind: false\n"))
        conversations(s, study, 1)
        accs = {a.username: a.id for a in accounts(s, ["ada", "bo"])}
        ann.assign(s, "blindtest", ["ada", "bo"])
        slot = ann.claim_next(s, "blindtest", accs["ada"])
        assert slot is not None
        assert ann.conversation_view(s, slot.id, accs["ada"]).title == "Bakery takings · cond-xylophone · lab/scripted"


def test_annotator_candidates_are_the_active_annotator_accounts_not_yet_assigned(sqlite_engine: Engine) -> None:
    from lab.accounts import create_account, set_active
    from lab.annotation import annotator_candidates

    with Session(sqlite_engine) as s, s.begin():
        made = {
            name: create_account(s, name, role, "correct horse battery").id
            for name, role in (("zoe", "annotator"), ("adam", "admin"), ("eve", "experimenter"), ("olga", "annotator"))
        }
    with Session(sqlite_engine) as s, s.begin():
        set_active(s, made["olga"], False)
    with Session(sqlite_engine) as s:
        assert annotator_candidates(s) == ["zoe"], "the admin is not offered as an annotator"
        assert annotator_candidates(s, exclude=[made["zoe"]]) == []
