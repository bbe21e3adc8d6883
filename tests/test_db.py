"""Migrations on SQLite and Postgres: one head, round trips, ORM matches migrations, data survives."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.orm import Session

from lab.db import current_revision, downgrade, head_revision, make_engine, migrate
from lab.schema import Base, ChatSession, Participant, Study, Turn

EXPECTED_TABLES = {
    "account",
    "study",
    "condition",
    "item",
    "participant",
    "session",
    "turn",
    "event",
    "label",
    "repair_sequence",
    "response",
    "alembic_version",
    "participant_withdrawal",
    "sign_in_failure",
}
EXPECTED_TABLES |= {"annotation_assignment", "annotation_slot", "annotation_check"}
EXPECTED_TABLES |= {"simulation_claim"}
EXPECTED_TABLES |= {"item_split"}
EXPECTED_TABLES |= {"preference_judgement"}


def test_one_head() -> None:
    assert head_revision()


def test_tables_and_revision(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    assert set(inspect(engine).get_table_names()) == EXPECTED_TABLES


def test_exact_turn_columns(engine: Engine) -> None:
    cols = {c["name"]: c["nullable"] for c in inspect(engine).get_columns("turn")}
    assert cols == {
        "id": False,
        "session_id": False,
        "index": False,
        "role": False,
        "source": False,
        "content": False,
        "model_content": True,
        "shards": True,
        "sent_at": False,
        "first_token_at": True,
        "last_token_at": True,
        "model": True,
        "params": True,
        "tokens_in": True,
        "tokens_out": True,
        "cost": True,
        "latency_ms": True,
        "ttft_ms": True,
        "finish_reason": True,
        "error": True,
        "partial": False,
        "client": True,
    }


def test_orm_matches_migrations(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_round_trip(engine: Engine) -> None:
    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate(engine)
    assert current_revision(engine) == head_revision()


def _populate(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        study = Study(slug="s", title="t", spec={"a": [1, 2]}, spec_sha256="0" * 64)
        s.add(study)
        s.flush()
        from lab.schema import Condition, ItemRow

        cond = Condition(study_id=study.id, key="c", reveal="FULL", model_key="m", config={})
        item = ItemRow(study_id=study.id, key="i", kind="open", payload={"prompt": "hi"})
        part = Participant(study_id=study.id, prolific_pid="P1")
        s.add_all([cond, item, part])
        s.flush()
        chat = ChatSession(
            study_id=study.id,
            participant_id=part.id,
            item_id=item.id,
            condition_id=cond.id,
            model="lab/scripted",
            model_params={},
        )
        s.add(chat)
        s.flush()
        s.add(Turn(session_id=chat.id, index=1, role="user", content="héllo <b>", shards=[1]))


def test_populated_database_survives_upgrade(engine: Engine) -> None:
    _populate(engine)
    migrate(engine)  # already at head: a no-op that must not touch data
    with Session(engine) as s:
        turn = s.scalars(select(Turn)).one()
        assert turn.content == "héllo <b>" and turn.shards == [1]
        assert s.scalars(select(Study)).one().spec == {"a": [1, 2]}


def test_json_mutation_tracked(engine: Engine) -> None:
    _populate(engine)
    with Session(engine) as s, s.begin():
        study = s.scalars(select(Study)).one()
        study.spec["b"] = True
    with Session(engine) as s:
        assert s.scalars(select(Study)).one().spec == {"a": [1, 2], "b": True}


def test_foreign_keys_enforced(engine: Engine) -> None:
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), Session(engine) as s, s.begin():
        s.add(Turn(session_id=999, index=1, role="user", content="x"))


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_concurrent_migrations_migrate_once(tmp_path: Path) -> None:
    import threading

    url = f"sqlite:///{tmp_path / 'race.db'}"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrate(make_engine(url))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert current_revision(make_engine(url)) == head_revision()


def test_branch_columns_on_session(engine: Engine) -> None:
    cols = {c["name"]: c["nullable"] for c in inspect(engine).get_columns("session")}
    assert {k: cols[k] for k in ("kind", "point_turn_id", "reply_turn_id")} == {
        "kind": False,
        "point_turn_id": True,
        "reply_turn_id": True,
    }
