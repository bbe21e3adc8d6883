"""Blind side-by-side preferences: comparisons, each annotator's queue, judgements, agreement and the DPO export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from annotation_data import accounts
from preference_data import ANSWER, ASK, COMPARISONS, GUESS, SECOND, SLUG, build
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from lab import annotation as ann
from lab import preference as pref
from lab.branch import point_prompt, prompt_sha256
from lab.cli import main
from lab.dialogue import Conversation
from lab.export import TrainingFilter, export_training
from lab.schema import Account, Participant, PreferenceJudgement, Turn


@pytest.fixture
def study(engine: Engine, tmp_path: Path) -> Engine:
    """The branched study (see ``preference_data``) with annotators ann1 and ann2 assigned, two per comparison."""
    build(engine.url.render_as_string(hide_password=False), tmp_path)
    with Session(engine) as s, s.begin():
        accounts(s, ["ann1", "ann2", "ann3"])
        ann.assign(s, SLUG, ["ann1", "ann2"], 2)
    return engine


def account(engine: Engine, name: str) -> int:
    with Session(engine) as s:
        return s.scalars(select(Account.id).where(Account.username == name)).one()


def texts(engine: Engine) -> dict[int, str]:
    with Session(engine) as s:
        return dict(s.execute(select(Turn.id, Turn.content)).all())


def judge(engine: Engine, name: str, comparison: pref.Comparison, winner: str, reason: str = "clearer") -> None:
    """Store ``name``'s choice of reply ``winner`` (a, b or tie), answering as the screen would."""
    me = account(engine, name)
    with Session(engine) as s, s.begin():
        left = pref.queue(s, SLUG, me).left(comparison)
        side = "tie" if winner == "tie" else "left" if winner == left else "right"
        pref.save_judgement(s, SLUG, me, comparison, left=left, side=side, reason=reason)


def test_comparisons_join_distinct_replies_that_answer_the_same_messages(study: Engine) -> None:
    with Session(study) as s:
        points = pref.study_points(s, SLUG)
        comparisons = pref.study_comparisons(s, SLUG)
    assert len(comparisons) == COMPARISONS and len(set(comparisons)) == COMPARISONS
    words = texts(study)
    with Session(study) as s:
        params = dict(s.execute(select(Turn.id, Turn.params)).all())
    for p in points:
        conv = Conversation.load(study, p.session_id, autolabel=False)
        digest = prompt_sha256(point_prompt(conv, p.index) or [])
        for reply, _ in p.replies:
            assert reply == p.point_turn_id or params[reply]["branch"]["prompt_sha256"] == digest
    for c in comparisons:
        assert c.reply_a < c.reply_b and words[c.reply_a] != words[c.reply_b]
    # At the first point the asking branch says what the original said: one reply, one comparison there.
    first = [p for p in points if words[p.point_turn_id] == ASK]
    assert len(first) == 2 and all(sorted(t for _, t in p.replies) == sorted([ASK, GUESS]) for p in first)
    assert {frozenset({words[c.reply_a], words[c.reply_b]}) for c in comparisons} == {
        frozenset(x) for x in ({ASK, GUESS}, {SECOND, ASK}, {SECOND, GUESS}, {ANSWER, ASK}, {ANSWER, GUESS})
    }


def test_each_annotator_has_an_own_stable_order_and_sides(study: Engine) -> None:
    with Session(study) as s:
        one = pref.queue(s, SLUG, account(study, "ann1"))
        two = pref.queue(s, SLUG, account(study, "ann2"))
        again = pref.queue(s, SLUG, account(study, "ann1"))
    assert set(one.comparisons) == set(two.comparisons) and one.total == COMPARISONS  # two per comparison, two annotators
    assert one.comparisons == again.comparisons and one.comparisons != two.comparisons
    sides_one = [one.left(c) for c in one.comparisons]
    assert sides_one == [again.left(c) for c in again.comparisons] and set(sides_one) == {"a", "b"}
    assert sides_one != [two.left(c) for c in one.comparisons]
    with Session(study) as s, pytest.raises(ann.NotYours):
        pref.queue(s, SLUG, account(study, "ann3"))


def test_with_three_annotators_each_comparison_reaches_exactly_two(study: Engine) -> None:
    with Session(study) as s, s.begin():
        ann.assign(s, SLUG, ["ann3"])
    with Session(study) as s:
        queues = [pref.queue(s, SLUG, account(study, n)) for n in ("ann1", "ann2", "ann3")]
        everything = pref.study_comparisons(s, SLUG)
    for c in everything:
        assert sum(c in q.comparisons for q in queues) == 2
    assert all(q.total for q in queues)


def test_a_judgement_stores_what_was_shown_and_a_new_one_supersedes(study: Engine) -> None:
    me = account(study, "ann1")
    with Session(study) as s:
        view = pref.next_comparison(s, SLUG, me)
    assert view is not None and (view.number, view.total) == (1, COMPARISONS)
    c = view.comparison
    words = texts(study)
    shown_first = c.reply_a if view.left == "a" else c.reply_b
    assert view.reply_1 == words[shown_first] and {view.reply_1, view.reply_2} == {words[c.reply_a], words[c.reply_b]}
    with Session(study) as s, s.begin():
        for side, reason, message in (
            ("", "fine", "Choose Reply 1, Reply 2 or Tie"),
            ("left", "   ", "Give a short reason"),
            ("left", "x" * 2001, "shorten it"),
        ):
            with pytest.raises(pref.PreferenceError, match=message):
                pref.save_judgement(s, SLUG, me, c, left=view.left, side=side, reason=reason)
        first = pref.save_judgement(s, SLUG, me, c, left=view.left, side="left", reason=" asks for what is missing ", seconds=4.2)
        assert first is not None and first.choice == view.left and first.reason == "asks for what is missing"
        assert pref.save_judgement(s, SLUG, me, c, left=view.left, side="left", reason="asks for what is missing") is None
        second = pref.save_judgement(s, SLUG, me, c, left=view.left, side="right", reason="on second thought")
        assert second is not None and second.supersedes_id == first.id and second.choice == ({"a", "b"} - {view.left}).pop()
        third = pref.save_judgement(s, SLUG, me, c, left=view.left, side="tie", reason="both fine")
        assert third is not None and third.choice == "tie"
    with Session(study) as s:
        rows = pref.history(s, me, c)
        assert [r.choice for r in rows][-1] == "tie" and len(rows) == 3
        assert (rows[0].left, rows[0].seconds, rows[0].annotator) == (view.left, 4.2, "ann1")
        nxt = pref.next_comparison(s, SLUG, me)
        assert nxt is not None and nxt.comparison != c and nxt.number == 2
        stranger = pref.Comparison(c.point_turn_id, c.reply_a, c.reply_a + 10_000)
    with Session(study) as s, s.begin(), pytest.raises(ann.NotYours):
        pref.save_judgement(s, SLUG, me, stranger, left="a", side="left", reason="x")
    with Session(study) as s, s.begin(), pytest.raises(ann.NotYours):
        pref.save_judgement(s, SLUG, account(study, "ann3"), c, left="a", side="left", reason="x")


def test_the_view_carries_no_model_branch_label_or_score(study: Engine) -> None:
    with Session(study) as s:
        view = pref.next_comparison(s, SLUG, account(study, "ann1"))
    assert view is not None
    shown = " ".join([view.title, view.reply_1, view.reply_2, *(f"{t.role} {t.content}" for t in view.history)]).lower()
    for word in ("quokkabot", "askerzeta", "guesserkappa", "scripted", "branch", "original", "clarification", "rollout"):
        assert word not in shown, word
    assert all(t.role in ("user", "assistant") for t in view.history) and view.history[0].role == "user"


def test_agreement_figures_on_a_small_case_worked_by_hand(study: Engine) -> None:
    """Two annotators on three comparisons: a/a, b/b, a/tie; a fourth judged by one only."""
    with Session(study) as s:
        c1, c2, c3, c4 = pref.study_comparisons(s, SLUG)[:4]
    for c, (x, y) in zip((c1, c2, c3), (("a", "a"), ("b", "b"), ("a", "tie")), strict=True):
        judge(study, "ann1", c, x)
        judge(study, "ann2", c, y)
    judge(study, "ann1", c4, "b")
    with Session(study) as s:
        found = pref.preference_agreement(s, SLUG, bootstrap=0)
    assert (found.comparisons, found.judged, found.shared, found.annotators, found.judgements, found.ties) == (
        COMPARISONS,
        4,
        3,
        2,
        7,
        1,
    )
    # Raw: 2 of 3 pairs agree. α: coincidences a 3, b 2, tie 1 (n = 6), 2 disagreeing: 1 − 5·2 / (36 − 14).
    # AC1 (Gwet: π over every unit rated, the fourth too): p_a = 2/3, π = (3/8, 1/2, 1/8), p_e = Σπ(1 − π)/2 = 19/64.
    # κ: p_o = 2/3, p_e = (2·1 + 1·1)/9.
    assert found.value("raw") == pytest.approx(2 / 3)
    assert found.value("alpha") == pytest.approx(12 / 22)
    assert found.value("ac1") == pytest.approx((2 / 3 - 19 / 64) / (1 - 19 / 64))
    assert found.value("kappa") == pytest.approx(0.5)
    assert all(r.units == 3 for r in found.rows)


def export_pairs(engine: Engine, out: Path, source: str = "human") -> tuple[list[dict[str, object]], str, dict[str, object]]:
    export_training(engine, SLUG, out, "dpo", flt=TrainingFilter(label_source=source))
    lines = (out / "data" / "dpo.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines], (out / "README.md").read_text(), json.loads((out / "bundle.json").read_text())


def test_preferences_become_pairs_with_source_human(study: Engine, tmp_path: Path) -> None:
    with Session(study) as s:
        c1, c2, c3 = pref.study_comparisons(s, SLUG)[:3]
    judge(study, "ann1", c1, "b")
    judge(study, "ann2", c1, "b")  # both: b → a pair, b chosen
    judge(study, "ann1", c2, "tie")
    judge(study, "ann2", c2, "tie")  # a tie: no pair
    judge(study, "ann1", c3, "a")
    judge(study, "ann2", c3, "b")  # split: left out
    judge(study, "ann2", c3, "a", reason="changed my mind")  # ann2's newer judgement supersedes: now a majority for a
    pairs, card, meta = export_pairs(study, tmp_path / "human")
    human = [p for p in pairs if p["rule"] == "human_preference"]
    assert pairs == human and len(human) == 2
    words = texts(study)
    decided = {(p["chosen_turn_id"], p["rejected_turn_id"]) for p in human}
    assert decided == {(c1.reply_b, c1.reply_a), (c3.reply_a, c3.reply_b)}
    with Session(study) as s:
        params = dict(s.execute(select(Turn.id, Turn.params)).all())
    for p in human:
        assert p["chosen_source"] == p["rejected_source"] == "human"
        assert (p["chosen_label"], p["rejected_label"]) == ("preference:preferred", "preference:not_preferred")
        assert p["chosen"] == [{"role": "assistant", "content": words[p["chosen_turn_id"]]}]  # type: ignore[index]
        digest = prompt_sha256(p["prompt"])  # type: ignore[arg-type]
        assert digest == p["point"]["prompt_sha256"]  # type: ignore[index]
        for side in ("chosen_reply", "rejected_reply"):
            reply = p[side]
            assert reply["kind"] == "original" or params[reply["turn_id"]]["branch"]["prompt_sha256"] == digest  # type: ignore[index]
        assert "ann1" not in json.dumps(p) and "ann2" not in json.dumps(p)
    assert {json.dumps(p["decided_by"], sort_keys=True) for p in human} == {
        json.dumps({"judgements": 2, "for_chosen": 2, "for_rejected": 0, "ties": 0}, sort_keys=True)
    }
    assert meta["human_preference"] == {"judged": 3, "ties": 1, "unresolved": 0}
    assert "`human` 100%" in card and "3 comparison(s) judged" in card and "1 had a majority for a tie" in card
    # gold only: people's preferences are no adjudicated labels
    pairs, card, _ = export_pairs(study, tmp_path / "gold", "gold")
    assert not [p for p in pairs if p["rule"] == "human_preference"]
    # any: the rule judge's pairs come too, and the card's share by source names both
    pairs, card, _ = export_pairs(study, tmp_path / "any", "any")
    assert {p["rule"] for p in pairs} >= {"human_preference", "clarify_when_needed"}
    assert "`human`" in card and "`auto:rules`" in card


def test_a_split_is_left_without_a_majority_and_said_so(study: Engine, tmp_path: Path) -> None:
    with Session(study) as s:
        c = pref.study_comparisons(s, SLUG)[0]
    judge(study, "ann1", c, "a")
    judge(study, "ann2", c, "tie")
    pairs, card, meta = export_pairs(study, tmp_path / "out")
    assert pairs == [] and meta["human_preference"] == {"judged": 1, "ties": 0, "unresolved": 1}
    assert "1 without a majority (people split) were left out" in card


def test_held_out_items_offer_no_comparison_and_reach_no_file(study: Engine, tmp_path: Path) -> None:
    from lab.split import item_splits, make_split

    with Session(study) as s:
        everything = pref.study_comparisons(s, SLUG)
        items = {p.point_turn_id: p.item for p in pref.study_points(s, SLUG)}
    for c in everything:
        judge(study, "ann1", c, "a")
        judge(study, "ann2", c, "a")
    pairs, _, _ = export_pairs(study, tmp_path / "before")
    assert len(pairs) == COMPARISONS
    seed = next(
        n for n in range(50) if make_split(study, SLUG, 0.5, n, replace=True) and item_splits(study, SLUG)["add"] == "heldout"
    )
    assert item_splits(study, SLUG) == {"add": "heldout", "add-again": "train"}, seed
    with Session(study) as s:
        left = pref.study_comparisons(s, SLUG)
        q = pref.queue(s, SLUG, account(study, "ann1"))
    assert left and all(items[c.point_turn_id] == "add-again" for c in left) and set(q.comparisons) == set(left)
    pairs, _, meta = export_pairs(study, tmp_path / "after")
    assert len(pairs) == len(left) and all(p["item"] == "add-again" for p in pairs)
    assert meta["split"]["heldout_items_left_out"] == ["add"]  # type: ignore[index]


def test_withdrawal_takes_the_judgements_on_its_conversations(study: Engine) -> None:
    from lab.withdraw import withdraw

    with Session(study) as s:
        c = pref.study_comparisons(s, SLUG)[0]
        pid = s.scalars(select(Participant.id).where(Participant.kind == "simulated").order_by(Participant.id)).first()
    judge(study, "ann1", c, "a")
    withdraw(study, str(pid))
    with Session(study) as s:
        assert s.scalar(select(func.count()).select_from(PreferenceJudgement)) == 0


def test_the_command_prints_the_figures(
    study: Engine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", study.url.render_as_string(hide_password=False))
    with Session(study) as s:
        c1, c2 = pref.study_comparisons(s, SLUG)[:2]
    for c in (c1, c2):
        judge(study, "ann1", c, "a")
        judge(study, "ann2", c, "a" if c == c1 else "b")
    assert main(["preferences", SLUG, "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert f"{COMPARISONS} comparisons offered; 2 judged, 2 by two or more annotators" in out
    assert "humans" in out and "alpha" in out and "0.500" in out  # raw agreement: one of two
    assert main(["preferences", SLUG, "--format", "json", "--bootstrap", "0"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["shared"] == 2 and {r["measure"] for r in data["rows"]} == {"raw", "kappa", "alpha", "ac1"}
    assert main(["preferences", "prefz"]) == 1
    assert "did you mean 'prefs'" in capsys.readouterr().err
