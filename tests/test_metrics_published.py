"""Lost in Conversation's measures worked out by hand from the paper's definitions, against the CLI.

Three task families (math with two items, code and data2text with one each), FULL and
SHARDED, 10 runs per item and mode, with known per-run scores; some SHARDED runs never
attempt an answer. The paper's definitions (Laban et al. 2025, §3 and the authors'
``utils_results.compute_results``): per item and setting, P_i is the mean of the 10 runs'
scores ×100, A90_i and A10_i their 90th and 10th percentiles (``numpy.percentile``,
linear), U90_10_i = A90_i − A10_i; a task's P, A90 and U90_10 are those averaged over its
items; a conversation that never attempts an answer scores 0; degradation of a task is
(P_FULL − P_SHARDED) / P_FULL, and the paper's aggregate averages it over tasks.

Percentiles of 10 sorted runs x0 ≤ … ≤ x9: A90 = x8 + 0.1 (x9 − x8), A10 = x0 + 0.9 (x1 − x0).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine

from lab import metrics
from lab.cli import main
from lab.schema import ChatSession, Condition, Event, ItemRow, Participant, Study

NO = "no attempt"
"""A run whose assistant never attempted an answer (stored as the published 0)."""
OLD_NO = "no attempt, stored before"
"""The same, stored without a score (as the lab stored it before scoring it 0)."""

RUNS: dict[tuple[str, str, str], list[Any]] = {
    # (model, item, reveal): the 10 runs' scores.
    ("m", "math-1", "FULL"): [1, 1, 1, 1, 1, 1, 1, 1, 1, 0],
    ("m", "math-2", "FULL"): [1] * 10,
    ("m", "math-1", "SHARDED"): [1, 1, 1, 1, 1, 0, 0, NO, NO, OLD_NO],
    ("m", "math-2", "SHARDED"): [1, 1, 0, 0, 0, 0, 0, 0, NO, NO],
    ("m", "code-1", "FULL"): [1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
    ("m", "code-1", "SHARDED"): [1, 0, 0, 0, NO, NO, NO, NO, NO, NO],
    ("m", "d2t-1", "FULL"): [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
    ("m", "d2t-1", "SHARDED"): [0.5, 0.5, 0.5, 0.5, 0.5, 0.3, 0.3, 0.3, NO, NO],
    # A model with only three runs per item: no A90 or U90_10 for it.
    ("thin", "code-1", "FULL"): [1, 1, 0],
    ("thin", "code-1", "SHARDED"): [0, NO, NO],
}
TASKS = {"math-1": "math", "math-2": "math", "code-1": "code", "d2t-1": "data2text"}

# --- The expected figures, by hand -------------------------------------------------------------
# math FULL: item 1 has nine 1s (mean 90; x0 = 0, x1 = 100: A10 = 90; A90 = 100; U = 10),
# item 2 ten 1s (100, 100, 100, 0). P = (90 + 100) / 2, A90 = 100, U90_10 = (10 + 0) / 2.
# math SHARDED, no attempt = 0: item 1 five 1s (mean 50, A90 = x8 = 100, A10 = 0, U = 100),
# item 2 two 1s (mean 20; x8 = x9 = 100: A90 = 100, A10 = 0, U = 100).
# code FULL: eight 1s (80; A90 100, A10 0, U 100). SHARDED: one 1 (10; x8 = 0, x9 = 100:
# A90 = 10, A10 = 0, U = 10).
# data2text FULL: 10, 20, …, 100 (mean 55; A90 = 90 + 0.1 · 10 = 91, A10 = 10 + 0.9 · 10 = 19,
# U = 72). SHARDED: 0, 0, 30, 30, 30, 50, 50, 50, 50, 50 (mean 34; A90 = 50, A10 = 0, U = 50).
EXPECTED = {
    ("math", "FULL"): {"P": 95.0, "A90": 100.0, "U90_10": 5.0},
    ("math", "SHARDED"): {"P": 35.0, "A90": 100.0, "U90_10": 100.0},
    ("code", "FULL"): {"P": 80.0, "A90": 100.0, "U90_10": 100.0},
    ("code", "SHARDED"): {"P": 10.0, "A90": 10.0, "U90_10": 10.0},
    ("data2text", "FULL"): {"P": 55.0, "A90": 91.0, "U90_10": 72.0},
    ("data2text", "SHARDED"): {"P": 34.0, "A90": 50.0, "U90_10": 50.0},
}
DEGRADATION = {"math": (95 - 35) / 95, "code": (80 - 10) / 80, "data2text": (55 - 34) / 55}
PAPER_AGGREGATE = (60 / 95 + 70 / 80 + 21 / 55) / 3
# Pooled over the four items: P_FULL = (90 + 100 + 80 + 55) / 4, P_SHARDED = (50 + 20 + 10 + 34) / 4.
POOLED = (81.25 - 28.5) / 81.25
# Attempted only, math item 1 SHARDED: five 1s of seven attempted runs.
ATTEMPTED_MATH_SHARDED = (5 / 7 * 100 + 2 / 8 * 100) / 2


def write_study(engine: Engine) -> None:
    """The study above, written straight to the database (one participant per conversation)."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        study_id = conn.execute(
            Study.__table__.insert().returning(Study.__table__.c.id),
            {
                "slug": "lic-hand",
                "version": 1,
                "title": "hand",
                "spec": {"slug": "lic-hand"},
                "spec_sha256": "0" * 64,
                "status": "closed",
                "seed": 0,
                "created_at": now,
                "updated_at": now,
            },
        ).scalar_one()
        conds = {}
        for key, reveal in (("full", "FULL"), ("sharded", "SHARDED")):
            conds[reveal] = conn.execute(
                Condition.__table__.insert().returning(Condition.__table__.c.id),
                {
                    "study_id": study_id,
                    "key": key,
                    "reveal": reveal,
                    "presupposition": None,
                    "intervention": "none",
                    "model_key": "m",
                    "config": {"reveal": reveal},
                },
            ).scalar_one()
        items = {}
        for key, task in TASKS.items():
            payload = {
                "id": key,
                "kind": "sharded",
                "source": {"dataset": "lost_in_conversation", "id": key, "task": task},
                "shards": [{"id": 1, "text": "the question"}, {"id": 2, "text": "a detail"}],
                "full": "the question with its detail",
            }
            items[key] = conn.execute(
                ItemRow.__table__.insert().returning(ItemRow.__table__.c.id),
                {
                    "study_id": study_id,
                    "key": key,
                    "kind": "sharded",
                    "payload": payload,
                    "source_dataset": "lic",
                    "source_id": key,
                },
            ).scalar_one()
        for (model, item, reveal), runs in RUNS.items():
            for run in runs:
                pid = conn.execute(
                    Participant.__table__.insert().returning(Participant.__table__.c.id),
                    {
                        "study_id": study_id,
                        "kind": "simulated",
                        "status": "completed",
                        "position": 0,
                        "created_at": now,
                        "updated_at": now,
                    },
                ).scalar_one()
                score = None if run == OLD_NO else 0.0 if run == NO else float(run)
                sid = conn.execute(
                    ChatSession.__table__.insert().returning(ChatSession.__table__.c.id),
                    {
                        "study_id": study_id,
                        "participant_id": pid,
                        "item_id": items[item],
                        "condition_id": conds[reveal],
                        "position": 0,
                        "model": model,
                        "model_params": {},
                        "status": "ended",
                        "outcome": "answered",
                        "score": score,
                        "started_at": now,
                    },
                ).scalar_one()
                no_attempt = run in (NO, OLD_NO)
                conn.execute(
                    Event.__table__.insert(),
                    {
                        "participant_id": pid,
                        "session_id": sid,
                        "kind": "task_score",
                        "data": {
                            "family": TASKS[item],
                            "status": "not_scorable" if run == OLD_NO else "scored",
                            "value": score,
                            "details": {"no_attempt": True} if no_attempt else {},
                            "turn_id": None,
                        },
                        "created_at": now,
                    },
                )


def printed(capsys: pytest.CaptureFixture[str], *args: str) -> pd.DataFrame:
    assert main(["metrics", "lic-hand", "--by", "model,condition,task", "--format", "json", "--draws", "0", *args]) == 0
    return pd.DataFrame(json.loads(capsys.readouterr().out))


def one(table: pd.DataFrame, measure: str, **cell: str) -> pd.Series:
    t = table[table["measure"] == measure]
    for k, v in cell.items():
        t = t[t[k] == v]
    assert len(t) == 1, t
    return t.iloc[0]


def test_paper_measures_by_hand_equal_the_cli(
    engine: Engine, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    write_study(engine)
    table = printed(capsys)
    for (task, reveal), figures in EXPECTED.items():
        cond = reveal.lower()
        for measure, value in figures.items():
            found = one(table, measure, model="m", condition_key=cond, task=task)
            assert found["value"] == pytest.approx(value), (task, reveal, measure)
            assert found["scoring"] == metrics.PUBLISHED
        assert one(table, "U90_10", model="m", condition_key=cond, task=task)["runs"] == 10
    for task, value in DEGRADATION.items():
        assert one(table, "degradation", model="m", key="SHARDED", task=task)["value"] == pytest.approx(value)
    assert one(table, "degradation", model="m", key="SHARDED", task=metrics.TASK_MEAN)["value"] == pytest.approx(PAPER_AGGREGATE)
    assert one(table, "degradation_pooled", model="m", key="SHARDED")["value"] == pytest.approx(POOLED)
    # Three runs per item: P is given, A90 and U90_10 are not, and the marker says why.
    thin = one(table, "U90_10", model="thin", condition_key="full", task="code")
    assert pd.isna(thin["value"]) and thin["runs"] == 3
    assert thin["note"] == "not enough runs: the fewest item has 3 of 10"
    assert one(table, "P", model="thin", condition_key="full", task="code")["value"] == pytest.approx(200 / 3)
    assert one(table, "P", model="thin", condition_key="sharded", task="code")["value"] == 0.0

    # The attempted-only view leaves the no-attempt conversations out, and says so.
    attempted = printed(capsys, "--attempted-only", "--min-runs", "1")
    math_sharded = one(attempted, "P", model="m", condition_key="sharded", task="math")
    assert math_sharded["value"] == pytest.approx(ATTEMPTED_MATH_SHARDED)
    assert math_sharded["scoring"] == metrics.ATTEMPTED_ONLY
    assert one(attempted, "P", model="thin", condition_key="sharded", task="code")["n"] == 1

    # Without --by task the headline is the paper's aggregate, the pooled figure beside it.
    assert main(["metrics", "lic-hand", "--format", "json", "--draws", "0", "--measures", "degradation,degradation_pooled"]) == 0
    headline = pd.DataFrame(json.loads(capsys.readouterr().out))
    m = headline[(headline["model"] == "m") & (headline["key"] == "SHARDED")]
    assert set(zip(m["measure"], m["task"], strict=True)) == {
        ("degradation", metrics.TASK_MEAN),
        ("degradation_pooled", metrics.TASK_POOLED),
    }
    assert m.set_index("measure").loc["degradation", "value"] == pytest.approx(PAPER_AGGREGATE)

    # An export bundle carries each item's task, and gives the same figures.
    assert main(["export", "lic-hand", "--out", str(tmp_path / "bundle"), "--format", "csv"]) == 0
    capsys.readouterr()
    items = pd.read_csv(tmp_path / "bundle" / "data" / "items" / "items.csv")
    assert dict(zip(items["key"], items["task"], strict=True)) == TASKS
    assert main(["metrics", "--bundle", str(tmp_path / "bundle"), "--by", "model,condition,task", "--format", "json"]) == 0
    from_bundle = pd.DataFrame(json.loads(capsys.readouterr().out))
    assert one(from_bundle, "degradation", model="m", key="SHARDED", task=metrics.TASK_MEAN)["value"] == pytest.approx(
        PAPER_AGGREGATE
    )

    # The report has the same per-family figures.
    assert main(["report", "lic-hand", "--out", str(tmp_path / "r.html"), "--draws", "0"]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "<h2>Per task family</h2>" in page and "data2text" in page

    # The comparison page's per-family panels.
    from lab.analysis_data import load_study
    from lab.report import by_family

    panels = by_family(load_study(engine, "lic-hand"), metrics.Options(draws=0))
    assert set(panels["task"]) == set(DEGRADATION)
    p = panels[(panels["measure"] == "P") & (panels["model"] == "m") & (panels["task"] == "math")]
    assert dict(zip(p["condition"], p["value"], strict=True)) == {"full": 95.0, "sharded": 35.0}
    d = panels[(panels["measure"] == "degradation") & (panels["model"] == "m") & (panels["task"] == "code")]
    assert d["value"].tolist() == [pytest.approx(DEGRADATION["code"])] and d["condition"].tolist() == ["SHARDED"]


def test_run_intervals_resample_runs_within_items() -> None:
    """One item per cell: resampling items alone gives a zero-width interval, resampling runs does not."""
    from lab.analysis_data import from_tables

    rows = []
    for i, s in enumerate([0, 0, 0, 1, 1, 1, 1, 1, 1, 1] * 2):
        rows.append(
            {
                "id": i + 1,
                "study_id": 1,
                "participant_id": i + 1,
                "item_id": 1,
                "condition_id": 1,
                "position": 0,
                "model": "m",
                "status": "ended",
                "outcome": "answered",
                "score": float(s),
                "item_key": "a",
                "item_kind": "sharded",
                "needs_clarification": None,
                "n_required": 0,
                "condition_key": "full",
                "reveal": "FULL",
                "presupposition": None,
                "intervention": "none",
                "model_key": "m",
                "participant_kind": "simulated",
                "probe_score": float("nan"),
            }
        )
    conv = pd.DataFrame(rows)
    participants = pd.DataFrame({"id": conv["participant_id"], "study_id": 1, "kind": "simulated", "status": "completed"})
    empty_turns = pd.DataFrame(
        columns=["id", "session_id", "index", "role", "source", "tokens_in", "tokens_out", "latency_ms", "partial"]
    )
    labels = pd.DataFrame(columns=["id", "turn_id", "annotator", "layer", "code", "confidence"])
    data = from_tables({"participants": participants, "conversations": conv, "turns": empty_turns, "labels": labels})
    u = one(metrics.compute(data, metrics.Options(draws=400)).table, "U90_10")
    assert u["value"] == 100.0
    assert u["lo"] < u["hi"]


def test_run_percentile_draws_are_distributed_as_resampled_runs() -> None:
    """The order-statistic draws behave as numpy.percentile of whole resamples (means and spreads)."""
    import numpy as np

    from lab.metrics import _run_percentiles

    rng = np.random.default_rng(5)
    for n in (2, 3, 10, 11):
        runs = np.round(rng.random(n) * 100)
        drawn = _run_percentiles(runs, np.array([0]), np.array([n]), 100_000, 0, np.array([True]))
        resampled = runs[rng.integers(0, n, (100_000, n))]
        a90, a10 = np.percentile(resampled, [90, 10], axis=1)
        assert drawn["A90"][:, 0].mean() == pytest.approx(a90.mean(), abs=0.3)
        assert drawn["A10"][:, 0].mean() == pytest.approx(a10.mean(), abs=0.3)
        assert drawn["U90_10"][:, 0].std() == pytest.approx((a90 - a10).std(), abs=0.3)
