"""The analysis loader on SQLite and Postgres: typed frames, versions, superseded labels, bundles."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from lab import synth
from lab.analysis_data import AnalysisError, from_tables, load_study, resolve_labels
from lab.labels import add_label
from lab.schema import ChatSession, Label, Study, Turn


def test_frames_match_the_database(engine: Engine) -> None:
    r = synth.make_study(engine, "loadme", 60, exchanges=3, items_per_kind=4, seed=3)
    data = load_study(engine, "loadme")
    with Session(engine) as s:
        assert len(data.conversations) == s.scalar(select(func.count()).select_from(ChatSession)) == 60
        assert len(data.turns) == s.scalar(select(func.count()).select_from(Turn)) == r.turns == 360
        assert len(data.labels) == s.scalar(select(func.count()).select_from(Label)) == r.labels
    conv = data.conversations
    assert {
        "id",
        "participant_id",
        "item_id",
        "model",
        "score",
        "item_kind",
        "condition_key",
        "reveal",
        "presupposition",
        "participant_kind",
        "probe_score",
        "n_required",
    } <= set(conv.columns)
    assert conv["id"].dtype == "int64" and conv["score"].dtype == "float64"
    assert set(conv["model"]) == {synth.STEADY, synth.FRAGILE}
    assert (conv.loc[conv["item_kind"] == "sharded", "n_required"] == 3).all()
    turns = data.turns
    assert "content" not in turns and (turns.loc[turns["role"] == "assistant", "content_chars"] >= 200).all()
    sharded = conv.loc[conv["reveal"] == "SHARDED", "id"]
    user = turns[turns["session_id"].isin(sharded) & (turns["role"] == "user")]
    assert (user["n_shards"] == 1).all()
    full = conv.loc[(conv["reveal"] == "FULL") & (conv["item_kind"] == "sharded"), "id"]
    first = turns[turns["session_id"].isin(full) & (turns["index"] == 0)]
    assert (first["n_shards"] == 3).all()
    probes = conv.loc[conv["item_kind"] == "presupposition", "probe_score"]
    assert probes.notna().all() and set(probes) <= {0.0, 1.0}
    assert set(data.judge_versions.values()) == {"rules-1"} and {a for a, _ in data.judge_versions} == {"auto:rules"}
    assert resolve_labels(data, "auto")["label_source"].iloc[0] == "auto:rules@rules-1"
    # Rows written in bulk with explicit ids leave the id sequences usable (Postgres).
    with Session(engine) as s, s.begin():
        add_label(s, int(turns["id"].iloc[0]), "gold", "S", "hedge")
    assert "gold" in set(load_study(engine, "loadme").labels["annotator"])


def test_newer_labels_supersede_and_versions_are_chosen(sqlite_engine: Engine) -> None:
    synth.make_study(sqlite_engine, "sup", 5, exchanges=2, items_per_kind=2)
    data = load_study(sqlite_engine, "sup")
    turn_id = int(data.labels.loc[data.labels["annotator"] == "auto:rules", "turn_id"].iloc[0])
    with Session(sqlite_engine) as s, s.begin():
        add_label(s, turn_id, "auto:rules", "S", "refuse")
    again = load_study(sqlite_engine, "sup")
    current = again.labels[(again.labels["turn_id"] == turn_id) & (again.labels["layer"] == "S")]
    assert list(current["code"]) == ["refuse"]
    assert again.state_key != data.state_key
    with pytest.raises(AnalysisError, match="no study with slug 'nope'"):
        load_study(sqlite_engine, "nope")
    with pytest.raises(AnalysisError, match="has no version 2"):
        load_study(sqlite_engine, "sup", 2)
    with Session(sqlite_engine) as s, s.begin():
        s.add(Study(slug="sup", version=2, title="second", spec={}, spec_sha256="x", status="draft"))
    newest = load_study(sqlite_engine, "sup")
    assert newest.versions == [2] and newest.conversations.empty and newest.turns.empty
    assert load_study(sqlite_engine, "sup", 1).versions == [1]


def test_bundle_tables_load_into_the_same_frames(sqlite_engine: Engine) -> None:
    synth.make_study(sqlite_engine, "bundle", 30, exchanges=2, items_per_kind=3)
    data = load_study(sqlite_engine, "bundle")
    with sqlite_engine.connect() as conn:
        tables = {
            name: pd.read_sql_table(table, conn)
            for name, table in (
                ("session", "session"),
                ("item", "item"),
                ("condition", "condition"),
                ("turns", "turn"),
                ("labels", "label"),
            )
        }
    tables["participants"] = data.participants
    again = from_tables(tables, slug="bundle", versions=[1])
    cols = ["id", "model", "score", "item_kind", "condition_key", "reveal", "n_required"]
    pd.testing.assert_frame_equal(
        again.conversations[cols].reset_index(drop=True), data.conversations[cols].reset_index(drop=True), check_dtype=False
    )
    assert (again.turns["n_shards"].to_numpy() == data.turns["n_shards"].to_numpy()).all()
    assert (again.turns["content_chars"].to_numpy() == data.turns["content_chars"].to_numpy()).all()
    assert len(again.labels) == len(data.labels)


def test_data_state_changes_on_deletion_and_rescoring(sqlite_engine: Engine, tmp_path) -> None:
    """Cached figures follow a withdrawal (rows deleted, no id grows) and a rescore (updated in place)."""
    from sqlalchemy import update

    from lab.analysis_data import data_state
    from lab.db import make_engine, migrate
    from lab.withdraw import withdraw

    synth.make_study(sqlite_engine, "stateful", 20, exchanges=2, items_per_kind=2, seed=1)
    before = data_state(sqlite_engine, "stateful")
    assert data_state(sqlite_engine, "stateful") == before
    with Session(sqlite_engine) as s:
        first = s.scalar(select(ChatSession.participant_id).order_by(ChatSession.participant_id))
        scored = s.scalar(select(ChatSession.id).order_by(ChatSession.id.desc()))
    withdraw(sqlite_engine, str(first), slug="stateful")
    after_withdrawal = data_state(sqlite_engine, "stateful")
    assert after_withdrawal != before
    with Session(sqlite_engine) as s, s.begin():
        s.execute(update(ChatSession).where(ChatSession.id == scored).values(score=0.123))
    assert data_state(sqlite_engine, "stateful") != after_withdrawal
    # The same rows in another database are another key.
    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    migrate(other)
    synth.make_study(other, "stateful", 20, exchanges=2, items_per_kind=2, seed=1)
    assert data_state(other, "stateful")[1:] == before[1:]
    assert data_state(other, "stateful") != before
    other.dispose()
