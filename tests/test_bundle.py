"""Reading bundles back, and loading one into an empty database."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from lab.bundle import BundleError, import_bundle, read_bundle
from lab.db import make_engine, migrate
from lab.export import TABLES, ExportOptions, export_study
from lab.schema import Label, Turn
from tests.export_study import build_study


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_every_format_reads_back_the_same(engine: Engine, tmp_path: Path, fmt: str) -> None:
    build_study(engine)
    export_study(engine, "demo", tmp_path / "parquet")
    export_study(engine, "demo", tmp_path / fmt, ExportOptions(format=fmt))
    a, b = read_bundle(tmp_path / "parquet"), read_bundle(tmp_path / fmt)
    for t in TABLES:
        pd.testing.assert_frame_equal(a[t.name], b[t.name])
    assert a.specs == b.specs and a.meta["study"] == "demo"


def test_import_into_an_empty_database_and_export_again(engine: Engine, tmp_path: Path) -> None:
    build_study(engine)
    export_study(engine, "demo", tmp_path / "first")
    target = make_engine(f"sqlite:///{tmp_path / 'second.db'}")
    r = import_bundle(target, tmp_path / "first")
    assert r.rows == json.loads((tmp_path / "first" / "bundle.json").read_text())["rows"]
    export_study(target, "demo", tmp_path / "again")
    first, again = read_bundle(tmp_path / "first"), read_bundle(tmp_path / "again")
    for t in TABLES:
        pd.testing.assert_frame_equal(first[t.name], again[t.name])
    with Session(target) as s, s.begin():
        # The second team labels on top: new rows get fresh ids after the imported ones.
        turn = s.scalars(select(Turn).order_by(Turn.id)).first()
        s.add(Label(turn_id=turn.id, annotator="erin", layer="G", code="ACK"))
        s.flush()
        assert s.scalar(select(func.max(Label.id))) > int(first["labels"]["id"].max())
    with pytest.raises(BundleError, match="needs an empty database"):
        import_bundle(target, tmp_path / "first")


def test_import_into_postgres(sqlite_engine: Engine, pg_engine: Engine, tmp_path: Path) -> None:
    build_study(sqlite_engine)
    export_study(sqlite_engine, "demo", tmp_path / "b", ExportOptions(format="csv"))
    import_bundle(pg_engine, tmp_path / "b")
    with Session(pg_engine) as s, s.begin():
        s.add(Label(turn_id=s.scalars(select(Turn.id)).first(), annotator="erin", layer="G", code="ACK"))
    export_study(pg_engine, "demo", tmp_path / "again", ExportOptions(format="csv"))
    assert len(read_bundle(tmp_path / "again")["labels"]) == len(read_bundle(tmp_path / "b")["labels"]) + 1


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="bundle.json is missing"):
        read_bundle(tmp_path)
    (tmp_path / "bundle.json").write_text(json.dumps({"format": "sft"}))
    with pytest.raises(BundleError, match="not a table bundle"):
        read_bundle(tmp_path)


def test_cli_import_bundle(
    sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.cli import main

    build_study(sqlite_engine)
    export_study(sqlite_engine, "demo", tmp_path / "b")
    target = tmp_path / "team2.db"
    migrate(make_engine(f"sqlite:///{target}"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{target}")
    assert main(["import", "bundle", str(tmp_path / "b")]) == 0
    assert "imported study 'demo': 3 participants, 6 conversations, 16 turns" in capsys.readouterr().out
    assert main(["import", "falseqa", str(tmp_path / "x.csv")]) == 1
    assert "--out is required" in capsys.readouterr().err


def test_huggingface_datasets_reads_the_bundle(sqlite_engine: Engine, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    build_study(sqlite_engine)
    export_study(sqlite_engine, "demo", tmp_path / "b")
    turns = datasets.load_dataset(str(tmp_path / "b"), "turns")["train"]
    assert turns.num_rows == 16
    conversations = datasets.load_dataset("parquet", data_dir=str(tmp_path / "b" / "data" / "conversations"))["train"]
    assert conversations.num_rows == 6


def test_every_figure_from_a_bundle_equals_the_figure_from_the_database(engine: Engine, tmp_path: Path) -> None:
    from lab import analysis_data, metrics
    from lab.bundle import to_analysis
    from lab.report import build
    from lab.synth import make_study

    make_study(engine, "syn", 240, human_share=0.3, seed=3)
    export_study(engine, "syn", tmp_path / "b")
    options = metrics.Options(draws=200, seed=1)
    from_db = build(analysis_data.load_study(engine, "syn"), options).table
    from_bundle = build(to_analysis(read_bundle(tmp_path / "b")), options).table
    assert len(from_db) > 300 and {"P", "premature_rate", "rejection_rate", "repair_success"} <= set(from_db["measure"])
    pd.testing.assert_frame_equal(from_db, from_bundle)


def test_metrics_command_prints_the_same_figures_from_a_bundle(
    sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.cli import main
    from lab.synth import make_study

    make_study(sqlite_engine, "syn", 120, human_share=0.5, seed=5)
    monkeypatch.setenv("DATABASE_URL", sqlite_engine.url.render_as_string(hide_password=False))
    assert main(["export", "syn", "--out", str(tmp_path / "b"), "--format", "csv"]) == 0
    capsys.readouterr()
    assert main(["metrics", "syn", "--draws", "100", "--format", "csv"]) == 0
    from_db = capsys.readouterr().out
    assert main(["metrics", "--bundle", str(tmp_path / "b"), "--draws", "100", "--format", "csv"]) == 0
    assert capsys.readouterr().out == from_db and from_db.count("\n") > 100
    assert main(["metrics", "--draws", "10"]) == 1
    assert "name a study (SLUG) or an exported bundle (--bundle DIR)" in capsys.readouterr().err
