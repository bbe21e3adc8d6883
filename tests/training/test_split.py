"""Held-out items: the split command, simulating one split, and training files that leave held-out items out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.cli import main
from lab.db import get_engine
from lab.export import TrainingFilter, export_training
from lab.schema import ChatSession, ItemRow, ItemSplit
from lab.split import SplitError, item_splits, make_split


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def demo(capsys: pytest.CaptureFixture[str], scripted_demo_path: Path) -> Path:
    assert run(capsys, "migrate")[0] == 0
    assert run(capsys, "study", "load", str(scripted_demo_path))[0] == 0
    return scripted_demo_path


def test_split_is_stratified_stored_and_reproducible(capsys: pytest.CaptureFixture[str], demo: Path) -> None:
    code, out, _ = run(capsys, "split", "demo", "--heldout", "0.3", "--seed", "0")
    assert code == 0 and "items held out" in out
    engine = get_engine()
    first = item_splits(engine, "demo")
    assert len(first) == 13 and set(first.values()) == {"train", "heldout"}
    with Session(engine) as s:
        rows = s.scalars(select(ItemSplit)).all()
    by_family: dict[str, set[str]] = {}
    for r in rows:
        by_family.setdefault(r.family, set()).add(r.split)
    # every family with two or more items has items on both sides
    sizes = {f: sum(1 for r in rows if r.family == f) for f in by_family}
    assert all(v == {"train", "heldout"} for f, v in by_family.items() if sizes[f] >= 2)
    code, _, err = run(capsys, "split", "demo", "--heldout", "0.3")
    assert code == 1 and "--replace" in err
    assert make_split(engine, "demo", 0.3, 0, replace=True).replaced
    assert item_splits(engine, "demo") == first
    with pytest.raises(SplitError, match="--heldout"):
        make_split(engine, "demo", 1.0, replace=True)


def test_simulate_split_runs_only_those_items(capsys: pytest.CaptureFixture[str], demo: Path) -> None:
    code, _, err = run(capsys, "simulate", "demo", "--repeats", "1", "--split", "heldout")
    assert code == 1 and "no split yet" in err
    run(capsys, "split", "demo", "--heldout", "0.3")
    engine = get_engine()
    heldout = {k for k, v in item_splits(engine, "demo").items() if v == "heldout"}
    code, _, err = run(capsys, "simulate", "demo", "--repeats", "1", "--split", "heldout", "--models", "lab/scripted")
    assert code == 0, err
    with Session(engine) as s:
        ran = set(s.scalars(select(ItemRow.key).join(ChatSession, ChatSession.item_id == ItemRow.id)))
    assert ran and ran <= heldout


def test_training_files_leave_heldout_and_test_only_items_out(
    capsys: pytest.CaptureFixture[str], demo: Path, tmp_path: Path
) -> None:
    engine = get_engine()
    with Session(engine) as s, s.begin():
        # One item stands for an item imported from a test-only dataset.
        row = s.scalar(select(ItemRow).where(ItemRow.key == "presup-goldfish"))
        assert row is not None
        row.source_dataset = "falseqa"
    assert run(capsys, "simulate", "demo", "--repeats", "1", "--models", "lab/scripted")[0] == 0
    code, _, err = run(capsys, "export", "demo", "--format", "sft", "--out", str(tmp_path / "nosplit"))
    assert code == 0 and "no held-out items" in err
    run(capsys, "split", "demo", "--heldout", "0.3")
    heldout = {k for k, v in item_splits(engine, "demo").items() if v == "heldout"}
    code, _, err = run(capsys, "export", "demo", "--format", "sft", "--out", str(tmp_path / "sft"))
    assert code == 0 and f"{len(heldout)} held-out item(s)" in err
    lines = [json.loads(x) for x in (tmp_path / "sft" / "data" / "sft.jsonl").read_text().splitlines()]
    items = {r["item"] for r in lines}
    assert items and not items & heldout and "presup-goldfish" not in items
    meta = json.loads((tmp_path / "sft" / "bundle.json").read_text())
    assert sorted(heldout) == meta["split"]["heldout_items_left_out"]
    assert "held-out item(s) are left out" in (tmp_path / "sft" / "README.md").read_text()
    from lab.export import export_study

    export_study(engine, "demo", tmp_path / "bundle")
    bundle = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert bundle["item_split"] == dict(sorted(item_splits(engine, "demo").items()))
    allowed = export_training(engine, "demo", tmp_path / "allowed", "sft", flt=TrainingFilter(allow_test_items=True))
    assert any("test-only" in w for w in allowed.warnings)
    if "presup-goldfish" not in heldout:
        got = {json.loads(x)["item"] for x in (tmp_path / "allowed" / "data" / "sft.jsonl").read_text().splitlines()}
        assert "presup-goldfish" in got


def test_empty_training_file_says_why(capsys: pytest.CaptureFixture[str], demo: Path, tmp_path: Path) -> None:
    code, out, err = run(capsys, "export", "demo", "--format", "dpo", "--out", str(tmp_path / "dpo"))
    assert code == 0 and "wrote 0 pairs" in out
    assert "note: the file is empty: the study has no conversations yet: run `python -m lab simulate" in err
    assert "This file is empty" in (tmp_path / "dpo" / "README.md").read_text()
    meta = json.loads((tmp_path / "dpo" / "bundle.json").read_text())
    assert meta["empty_reason"].startswith("the study has no conversations yet")
