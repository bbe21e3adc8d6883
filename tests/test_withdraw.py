"""Withdrawal: every row about the participant goes, from the tables and the database files; a record stays."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.orm import Session

from lab.bundle import read_bundle
from lab.export import ExportOptions, export_study
from lab.schema import Participant, Withdrawal
from lab.withdraw import WithdrawError, withdraw
from tests.export_study import MARKER, SECRETS, build_study


def _rows_mentioning(engine: Engine, needle: str) -> list[str]:
    """Every table.column whose text holds ``needle``, across the whole database."""
    hits = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            for col in inspect(engine).get_columns(table):
                expr = f'CAST("{col["name"]}" AS TEXT)'
                n = conn.execute(text(f'SELECT COUNT(*) FROM "{table}" WHERE {expr} LIKE :n'), {"n": f"%{needle}%"}).scalar()
                if n:
                    hits.append(f"{table}.{col['name']}")
    return hits


def test_withdrawal_leaves_no_trace(engine: Engine, tmp_path: Path) -> None:
    built = build_study(engine)
    assert _rows_mentioning(engine, MARKER)
    r = withdraw(engine, str(built.participants["p1"]), by="alice")
    assert r.participants == 1
    assert r.rows == {"label": 6, "repair_sequence": 1, "event": 2, "response": 2, "turn": 9, "session": 2, "participant": 1}
    for needle in (MARKER, SECRETS["prolific"], SECRETS["token_hash"], SECRETS["completion"], SECRETS["ip"]):
        assert _rows_mentioning(engine, needle) == [], needle
    with Session(engine) as s:
        record = s.scalars(select(Withdrawal)).one()
        assert (record.kind, record.status, record.by) == ("human", "completed", "alice")
        assert s.scalar(select(func.count()).select_from(Participant)) == 2
    if engine.dialect.name == "sqlite":
        engine.dispose()
        db = Path(engine.url.database)
        blob = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
        assert MARKER.encode() not in blob and SECRETS["prolific"].encode() not in blob
    export_study(engine, "demo", tmp_path / "b", ExportOptions(format="jsonl"))
    b = read_bundle(tmp_path / "b")
    assert list(b["participants"]["kind"]) == ["simulated", "human"]
    assert set(b["conversations"]["id"]) == {built.sessions[k] for k in ("s2", "s4", "s5", "s6")}
    everything = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert MARKER not in everything
    import json

    assert json.loads((tmp_path / "b" / "bundle.json").read_text())["withdrawals"] == 1


def test_withdraw_by_prolific_id_and_study(engine: Engine) -> None:
    build_study(engine)
    with pytest.raises(WithdrawError, match="in study 'other'"):
        withdraw(engine, SECRETS["prolific3"], slug="other")
    assert withdraw(engine, SECRETS["prolific3"], slug="demo").rows["session"] == 2
    with pytest.raises(WithdrawError, match="no participant with id or Prolific id 'nobody'"):
        withdraw(engine, "nobody")


def test_cli_asks_before_deleting(engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main

    built = build_study(engine)
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    p2 = str(built.participants["p2"])
    assert main(["withdraw", p2]) == 1
    assert "pass --yes to confirm" in capsys.readouterr().err
    assert main(["withdraw", p2, "--yes"]) == 0
    assert "withdrew 1 participant(s): deleted" in capsys.readouterr().out
    assert main(["withdraw", p2, "--yes"]) == 1
    assert f"no participant with id or Prolific id '{p2}'" in capsys.readouterr().err
