"""Each measure on small hand-computed tables, the paper's percentiles, and the bootstrap's coverage."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from lab import metrics
from lab.analysis_data import AnalysisData, AnalysisError, from_tables, resolve_labels

NO_DRAWS = metrics.Options(draws=0)


def conv(
    cid: int,
    *,
    model: str = "m1",
    condition: str = "full",
    reveal: str = "FULL",
    item: int = 1,
    participant: int | None = None,
    score: float | None = None,
    kind: str = "sharded",
    n_required: int = 0,
    presupposition: str | None = None,
    needs: bool | None = None,
    probe: float = float("nan"),
    participant_kind: str = "simulated",
) -> dict[str, Any]:
    """One row of the conversations frame as the loader returns it."""
    return {
        "id": cid,
        "study_id": 1,
        "participant_id": participant if participant is not None else cid,
        "item_id": item,
        "condition_id": 1,
        "position": 0,
        "model": model,
        "status": "ended",
        "outcome": "answered",
        "score": np.nan if score is None else score,
        "item_key": f"item-{item}",
        "item_kind": kind,
        "needs_clarification": needs,
        "n_required": n_required,
        "condition_key": condition,
        "reveal": reveal,
        "presupposition": presupposition,
        "intervention": "none",
        "model_key": model,
        "participant_kind": participant_kind,
        "probe_score": probe,
    }


def build(
    convs: list[dict[str, Any]],
    turns: list[tuple[Any, ...]] = (),
    labels: list[tuple[Any, ...]] = (),
    repairs: list[dict[str, Any]] | None = None,
) -> AnalysisData:
    """Frames from compact rows.

    Turns are (id, session_id, index, role, n_shards, chars, tokens_out); labels are
    (turn_id, annotator, layer, code).
    """
    conversations = pd.DataFrame(convs, columns=list(conv(0)))
    participants = (
        pd.DataFrame({"id": conversations["participant_id"].unique(), "study_id": 1, "kind": "simulated", "status": "completed"})
        if len(conversations)
        else pd.DataFrame(columns=["id", "study_id", "kind", "status"])
    )
    t = pd.DataFrame(list(turns), columns=["id", "session_id", "index", "role", "n_shards", "content_chars", "tokens_out"])
    t["source"] = "model"
    t["tokens_in"] = np.nan
    t["latency_ms"] = np.nan
    t["partial"] = False
    t["is_error"] = False
    lab = pd.DataFrame(list(labels), columns=["turn_id", "annotator", "layer", "code"])
    lab.insert(0, "id", range(1, len(lab) + 1))
    lab["confidence"] = np.nan
    tables = {"participants": participants, "conversations": conversations, "turns": t, "labels": lab}
    if repairs is not None:
        tables["repair_sequences"] = pd.DataFrame(repairs)
    return from_tables(tables, slug="hand")


def row(table: pd.DataFrame, measure: str, key: str = "", **cell: str) -> pd.Series:
    t = table[(table["measure"] == measure) & (table["key"] == key)]
    for k, v in cell.items():
        t = t[t[k] == v]
    assert len(t) == 1, t
    return t.iloc[0]


# --- P, A90, U90_10 as the Lost in Conversation code computes them ----------------------------


def test_laban_percentiles_are_numpy_linear_and_averaged_over_items() -> None:
    scores = {1: [0.1, 0.5, 0.9, 0.3], 2: [0.4]}
    convs = [conv(10 * i + j, item=i, score=s) for i, ss in scores.items() for j, s in enumerate(ss)]
    # With the paper's 10 runs per item required, these items are too thin for A90 and U90_10.
    default = metrics.compute(build(convs), NO_DRAWS).table
    assert np.isnan(row(default, "U90_10")["value"]) and row(default, "U90_10")["runs"] == 1
    assert row(default, "U90_10")["note"] == "not enough runs: the fewest item has 1 of 10"
    assert row(default, "P")["value"] == pytest.approx(42.5)
    table = metrics.compute(build(convs), metrics.Options(draws=0, min_runs=1)).table
    # Item 1 sorted ×100: 10, 30, 50, 90; linear interpolation at (n−1)·q.
    a90_1 = 50 + 0.7 * 40
    a10_1 = 10 + 0.3 * 20
    assert a90_1 == pytest.approx(np.percentile([10, 50, 90, 30], 90))
    assert row(table, "A90")["value"] == pytest.approx((a90_1 + 40) / 2)
    assert row(table, "A10")["value"] == pytest.approx((a10_1 + 40) / 2)
    assert row(table, "U90_10")["value"] == pytest.approx((a90_1 - a10_1 + 0) / 2)
    # P averages item means (45 and 40), not the five conversations (44).
    assert row(table, "P")["value"] == pytest.approx(42.5)
    assert row(table, "score")["value"] == pytest.approx(np.mean([0.1, 0.5, 0.9, 0.3, 0.4]))
    assert row(table, "P")["n"] == 5 and row(table, "P")["label_source"] == metrics.SCORE_SOURCE


def test_ties_all_failed_items_and_unscored_conversations() -> None:
    convs = [
        conv(1, item=1, score=1.0),
        conv(2, item=1, score=1.0),
        conv(3, item=2, score=0.0),
        conv(4, item=2, score=0.0),
        conv(5, item=3, score=None),
        conv(6, model="m2", item=1, score=0.0),
        conv(7, model="m2", item=2, score=0.0),
        conv(8, model="m2", reveal="SHARDED", condition="sharded", item=1, score=0.0),
    ]
    table = metrics.compute(build(convs), metrics.Options(draws=0, min_runs=1)).table
    # Tied scores: every percentile of a constant item is that constant.
    assert row(table, "A90", model="m1")["value"] == 50.0
    assert row(table, "U90_10", model="m1")["value"] == 0.0
    assert row(table, "P", model="m1")["n"] == 4  # the unscored conversation is not a zero
    # All-failed: zeros, not missing rows, and degradation from a zero FULL is undefined, not an error.
    assert row(table, "P", model="m2", condition_key="full")["value"] == 0.0
    deg = metrics.degradation(metrics.degradation_figures(build(convs), NO_DRAWS))
    m2 = deg[deg["model"] == "m2"].iloc[0]
    assert (deg["task"] != metrics.TASK_MEAN).all()  # no family has a defined degradation to average
    assert m2["mode"] == "SHARDED" and np.isnan(m2["value"])


def test_no_answer_attempt_scores_zero_unless_attempted_only() -> None:
    convs = [conv(1, item=1, score=1.0), conv(2, item=1, score=0.0), conv(3, item=2, score=1.0), conv(4, item=2, score=None)]
    data = build(convs)
    # Conversation 2 was stored as a 0 for having no attempt; 4 before the lab stored such zeros.
    data.conversations["no_attempt"] = data.conversations["id"].isin([2, 4])
    published = metrics.compute(data, NO_DRAWS).table
    assert row(published, "P")["value"] == pytest.approx((50 + 50) / 2) and row(published, "P")["n"] == 4
    assert row(published, "score")["scoring"] == metrics.PUBLISHED
    attempted = metrics.compute(data, metrics.Options(draws=0, attempted_only=True)).table
    assert row(attempted, "P")["value"] == pytest.approx(100.0) and row(attempted, "P")["n"] == 2
    assert row(attempted, "P")["scoring"] == metrics.ATTEMPTED_ONLY


def test_math_as_published_takes_the_authors_comparison_where_recorded() -> None:
    data = build([conv(1, item=1, score=1.0), conv(2, item=1, score=1.0)])
    data.conversations["score_authors"] = [0.0, np.nan]  # the first replied "42.0" for 42
    assert row(metrics.compute(data, NO_DRAWS).table, "P")["value"] == 100.0
    strict = metrics.compute(data, metrics.Options(draws=0, math_as_published=True)).table
    assert row(strict, "P")["value"] == 50.0


def test_spread_over_people_is_labelled_between_participant() -> None:
    convs = [conv(i, item=1, score=float(i % 2), participant_kind="human") for i in range(1, 11)]
    convs += [conv(i, item=1, score=float(i % 2)) for i in range(11, 21)]
    table = metrics.compute(build(convs), NO_DRAWS).table
    assert row(table, "U90_10", participant_kind="human")["note"] == "between-participant spread"
    assert pd.isna(row(table, "U90_10", participant_kind="simulated")["note"])
    assert row(table, "U90_10", participant_kind="human")["value"] == 100.0


def test_empty_and_single_conversation_cells() -> None:
    empty = metrics.compute(build([]), NO_DRAWS)
    assert empty.table.empty and list(empty.table.columns)[:2] == ["measure", "key"]
    one = metrics.compute(
        build([conv(1, score=1.0), conv(2, model="m2", condition="sharded", reveal="SHARDED", score=0.0)]),
        metrics.Options(draws=50),
    )
    cells = one.table[one.table["measure"] == "score"]
    # Only the two cells that have data appear; each is flagged, none is hidden.
    assert len(cells) == 2 and cells["small"].all() and (cells["n"] == 1).all()
    assert (cells["lo"] == cells["value"]).all() and (cells["hi"] == cells["value"]).all()


def test_degradation_against_full_with_interval() -> None:
    convs = []
    cid = 0
    for item in range(6):
        for rep in range(4):
            cid += 1
            convs.append(conv(cid, item=item, participant=cid, score=1.0 if rep < 3 else 0.0))
            cid += 1
            convs.append(
                conv(cid, item=item, participant=cid, reveal="SHARDED", condition="sharded", score=1.0 if rep < 1 else 0.0)
            )
            cid += 1
            convs.append(
                conv(cid, item=item, participant=cid, reveal="CONCAT", condition="concat", score=1.0 if rep < 3 else 0.0)
            )
    fig = metrics.degradation_figures(build(convs), metrics.Options(draws=200))
    rows = metrics.degradation(fig)
    # Items without a task family form one family, so the mean over families is its figure.
    assert set(rows["task"]) == {"—", metrics.TASK_MEAN}
    deg = rows[rows["task"] == metrics.TASK_MEAN].set_index("mode")
    assert deg.loc["SHARDED", "value"] == pytest.approx((75 - 25) / 75)
    assert deg.loc["CONCAT", "value"] == pytest.approx(0.0)
    assert deg.loc["SHARDED", "lo"] <= deg.loc["SHARDED", "value"] <= deg.loc["SHARDED", "hi"]
    assert deg.loc["SHARDED", "n"] == 48


# --- premature answers, clarification, interactivity, tokens ---------------------------------


def sharded_turns(cid: int, first_turn_id: int, codes: list[str]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """User reveals one shard per turn; the assistant answers with the given layer-S codes."""
    turns, labels = [], []
    tid = first_turn_id
    for i, code in enumerate(codes):
        turns.append((tid, cid, 2 * i, "user", 1, 10, None))
        turns.append((tid + 1, cid, 2 * i + 1, "assistant", 0, 100 * (i + 1), 25 * (i + 1)))
        labels.append((tid + 1, "auto:rules", "S", code))
        tid += 2
    return turns, labels


def test_premature_rate_first_attempt_and_answer_lengths() -> None:
    convs = [conv(c, reveal="SHARDED", condition="sharded", n_required=3, score=s) for c, s in ((1, 0.0), (2, 1.0))]
    t1, l1 = sharded_turns(1, 100, ["answer_attempt", "answer_attempt", "answer_attempt"])
    t2, l2 = sharded_turns(2, 200, ["clarification", "clarification", "answer_attempt"])
    table = metrics.compute(build(convs, t1 + t2, l1 + l2), NO_DRAWS).table
    assert row(table, "premature_rate")["value"] == 0.5
    assert row(table, "first_answer_turn")["value"] == 2.0  # turns 1 and 3
    assert row(table, "score_by_first_answer", "20-40%")["value"] == 0.0  # 1 of 3 shards out
    assert row(table, "score_by_first_answer", "all revealed")["value"] == 1.0
    assert row(table, "answer_chars", "1")["value"] == pytest.approx((100 + 300) / 2)
    assert row(table, "answer_chars", "3")["value"] == 300 and row(table, "answer_chars", "3")["n"] == 1
    assert row(table, "tokens_read")["value"] == pytest.approx(150)
    # Interactivity: conversation 2 asked before answering (1), conversation 1 never asked (0).
    assert row(table, "interactivity")["value"] == pytest.approx(50.0)
    assert row(table, "premature_rate")["label_source"] == "auto:rules"


def test_clarification_ask_and_over_ask_rates() -> None:
    convs = [
        conv(1, kind="clarification", needs=True, condition="ask", score=1.0),
        conv(2, kind="clarification", needs=True, condition="ask", score=0.0),
        conv(3, kind="clarification", needs=False, condition="ask", score=1.0),
        conv(4, kind="clarification", needs=False, condition="ask", score=1.0),
    ]
    turns = [(10 * c + 1, c, 1, "assistant", 0, 50, 10) for c in range(1, 5)]
    codes = {1: "clarification", 2: "answer_attempt", 3: "interrogation", 4: "answer_attempt"}
    labels = [(10 * c + 1, "auto:rules", "S", codes[c]) for c in range(1, 5)]
    table = metrics.compute(build(convs, turns, labels), NO_DRAWS).table
    assert row(table, "ask_rate")["value"] == 0.5 and row(table, "ask_rate")["n"] == 2
    assert row(table, "over_ask_rate")["value"] == 0.5
    assert row(table, "clarified_score")["value"] == 1.0 and row(table, "clarified_score")["n"] == 1


# --- presupposition, grounding, repair -----------------------------------------------------------


def test_presupposition_rates_and_knows_but_accommodates() -> None:
    codes = ["ACCOMMODATE", "AMPLIFY", "REJECT", "REJECT_CORRECT", "HEDGE"]
    probes = [1.0, 0.0, 1.0, 1.0, 1.0]
    convs = [
        conv(c + 1, kind="presupposition", presupposition="loaded", condition="loaded", probe=p) for c, p in enumerate(probes)
    ]
    convs.append(conv(9, kind="presupposition", presupposition="control", condition="control"))
    turns = [(100 + c, c, 1, "assistant", 0, 40, 10) for c in (1, 2, 3, 4, 5, 9)]
    labels = [(100 + c + 1, "auto:rules", "P", code) for c, code in enumerate(codes)] + [(109, "auto:rules", "P", "NA")]
    table = metrics.compute(build(convs, turns, labels), NO_DRAWS).table
    assert row(table, "rejection_rate")["value"] == pytest.approx(2 / 5)
    assert row(table, "correction_rate")["value"] == pytest.approx(1 / 5)
    # Probe answered correctly by 4; of those, one accommodated (the amplifier did not know).
    assert row(table, "knows_but_accommodates")["value"] == pytest.approx(1 / 4)
    assert row(table, "knows_but_accommodates")["n"] == 4
    assert row(table, "presupposition_share", "HEDGE")["value"] == pytest.approx(1 / 5)
    assert "control" not in set(table.loc[table["measure"] == "rejection_rate", "condition_key"])


def test_grounding_rates_and_relative_gap() -> None:
    convs = [conv(1), conv(2)]
    turns = [(c * 10 + i, c, i, "user" if i % 2 == 0 else "assistant", 0, 10, 3) for c in (1, 2) for i in range(4)]
    g = {10: "ACK", 12: "ACK", 20: "NONE", 22: "ACK", 11: "ACK", 13: "NONE", 21: "NONE", 23: "NONE"}
    labels = [(t, "coder", "G", code) for t, code in g.items()]
    table = metrics.compute(build(convs, turns, labels), NO_DRAWS).table
    assert row(table, "grounding_rate", "user:ACK")["value"] == pytest.approx(3 / 4)
    assert row(table, "grounding_rate", "assistant:ACK")["value"] == pytest.approx(1 / 4)
    assert row(table, "grounding_gap", "ACK")["value"] == pytest.approx((1 / 4 - 3 / 4) / (3 / 4))
    assert row(table, "grounding_rate", "user:ACK")["label_source"] == "majority"


def test_repair_success_and_turns_to_resolution() -> None:
    convs = [conv(1), conv(2)]
    repairs = [
        {"id": 1, "session_id": 1, "annotator": "coder", "outcome": "resolved", "turns_to_resolution": 2.0},
        {"id": 2, "session_id": 1, "annotator": "coder", "outcome": "misrepair", "turns_to_resolution": np.nan},
        {"id": 3, "session_id": 2, "annotator": "coder", "outcome": "resolved", "turns_to_resolution": 4.0},
        {"id": 4, "session_id": 2, "annotator": "auto:rules", "outcome": "unresolved", "turns_to_resolution": np.nan},
    ]
    table = metrics.compute(build(convs, repairs=repairs), NO_DRAWS).table
    # The human sequences win over the automatic one in the same conversation.
    assert row(table, "repair_success")["value"] == pytest.approx(2 / 3)
    assert row(table, "turns_to_resolution")["value"] == pytest.approx(3.0)
    assert row(table, "repair_outcome", "misrepair")["value"] == pytest.approx(1 / 3)
    auto = metrics.compute(build(convs, repairs=repairs), metrics.Options(draws=0, source="auto")).table
    assert row(auto, "repair_success")["value"] == 0.0 and row(auto, "repair_success")["n"] == 1


# --- label sources ---------------------------------------------------------------------------------


def test_label_sources_gold_majority_auto_and_abstentions() -> None:
    data = build(
        [conv(1)],
        [(1, 1, 1, "assistant", 0, 5, 1), (2, 1, 3, "assistant", 0, 5, 1), (3, 1, 5, "assistant", 0, 5, 1)],
        [
            (1, "gold", "S", "hedge"),
            (1, "ann1", "S", "answer_attempt"),
            (1, "auto:rules", "S", "answer_attempt"),
            (2, "ann1", "S", "clarification"),
            (2, "ann2", "S", "discussion"),  # a tie: no majority
            (2, "auto:rules", "S", "UNSURE"),  # an abstention never counts
            (3, "ann1", "S", "refuse"),
            (3, "ann2", "S", "refuse"),
            (3, "ann3", "S", "hedge"),
        ],
    )
    best = resolve_labels(data, "best").set_index("turn_id")
    assert best.loc[1, "code"] == "hedge" and best.loc[1, "label_source"] == "gold"
    assert 2 not in best.index
    assert best.loc[3, "code"] == "refuse" and best.loc[3, "label_source"] == "majority"
    auto = resolve_labels(data, "auto").set_index("turn_id")
    assert list(auto.index) == [1] and auto.loc[1, "label_source"] == "auto:rules"
    assert set(resolve_labels(data, "gold")["turn_id"]) == {1}
    assert set(resolve_labels(data, "majority")["turn_id"]) == {1, 3}
    with pytest.raises(AnalysisError, match="unknown label source"):
        resolve_labels(data, "crowd")


def test_human_and_simulated_participants_stay_apart_unless_pooled() -> None:
    convs = [conv(1, score=1.0, participant_kind="human"), conv(2, score=0.0)]
    apart = metrics.compute(build(convs), NO_DRAWS).table
    assert set(apart.loc[apart["measure"] == "score", "participant_kind"]) == {"human", "simulated"}
    pooled = metrics.compute(build(convs), metrics.Options(draws=0, pool_participants=True)).table
    assert row(pooled, "score")["value"] == 0.5 and "participant_kind" not in pooled


def test_pairwise_differences_use_shared_draws() -> None:
    convs = [conv(c, model="a" if c % 2 else "b", item=c % 5, participant=c // 2, score=float(c % 2)) for c in range(40)]
    fig = metrics.compute(build(convs), metrics.Options(draws=300))
    pw = metrics.pairwise(fig, "score")
    r = pw.iloc[0]
    assert (r["a"], r["b"]) == ("a", "b") and r["diff"] == 1.0
    assert r["lo"] == pytest.approx(1.0) and r["hi"] == pytest.approx(1.0)


# --- the bootstrap -----------------------------------------------------------------------------------


def test_interval_is_numpy_percentile_and_ignores_undefined_draws() -> None:
    d = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, 5.0], [10.0, np.nan]])
    lo, hi = metrics._interval(d, 0.5)
    assert lo[0] == pytest.approx(np.percentile(d[:, 0], 25)) and hi[0] == pytest.approx(np.percentile(d[:, 0], 75))
    assert lo[1] == hi[1] == 5.0


def test_bootstrap_coverage_is_close_to_95_percent() -> None:
    """Repeated studies with known truth: items have their own success rates, participants none.

    P averages item means, so its target is the mean success rate of the population of
    items, E[clip(0.6 + N(0, 0.15), 0, 1)] = 0.6 to three decimals.
    """
    rng = np.random.default_rng(42)
    truth = 60.0
    reps, covered = 60, 0
    for _ in range(reps):
        n_items, n_part = 15, 30
        p_item = np.clip(0.6 + rng.normal(0, 0.15, n_items), 0, 1)
        convs = []
        cid = 0
        for p in range(n_part):
            for i in rng.choice(n_items, 4, replace=False):
                cid += 1
                convs.append(conv(cid, item=int(i), participant=p, score=float(rng.random() < p_item[i])))
        options = metrics.Options(draws=150, seed=int(rng.integers(1 << 30)))
        r = row(metrics.compute(build(convs), options, performance_only=True).table, "P")
        covered += bool(r["lo"] <= truth <= r["hi"])
    assert 0.85 <= covered / reps <= 1.0
