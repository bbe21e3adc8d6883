"""``python -m lab``: commands work end to end; errors are one line and a non-zero exit."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.cli import main
from lab.db import get_engine
from lab.schema import ChatSession, Study, Turn

ROOT = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_demo(capsys: pytest.CaptureFixture[str], scripted_demo_path: Path) -> None:
    code, out, _ = run(capsys, "study", "validate", str(scripted_demo_path))
    assert code == 0 and "ok — study 'demo'" in out and "13 items" in out


def test_validate_broken_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("slug: x\ntitle: [unclosed\n")
    code, out, err = run(capsys, "study", "validate", str(bad))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {bad}:") and "YAML syntax error" in err
    assert "Traceback" not in err


def test_no_traceback_in_subprocess(tmp_path: Path) -> None:
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path}/x.db", LAB_DATA_DIR=str(tmp_path))
    r = subprocess.run(
        [sys.executable, "-m", "lab", "study", "validate", str(tmp_path / "missing.yaml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and r.stderr.strip() == f"error: {tmp_path / 'missing.yaml'}: file not found"


@pytest.mark.usefixtures("scripted_demo_init")
def test_init_load_open_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "init")
    assert code == 0 and "loaded and opened the demo study: take part at http://localhost:8501/?study=demo" in out
    assert "/auth/setup?token=" in out  # no staff account yet
    code, out, _ = run(capsys, "init")
    assert "demo" not in out  # only into an empty database
    code, out, _ = run(capsys, "study", "pause", "demo")
    assert code == 0 and "is paused" in out
    code, out, _ = run(capsys, "study", "open", "demo")
    assert code == 0 and "is open" in out
    code, out, _ = run(capsys, "study", "list")
    assert "demo" in out and "open" in out
    code, _, err = run(capsys, "study", "open", "nosuch")
    assert code == 1 and err == "error: no study with slug 'nosuch'\n"


def test_study_load_versions(capsys: pytest.CaptureFixture[str], scripted_demo_path: Path, tmp_path: Path) -> None:
    run(capsys, "migrate")
    assert "created" in run(capsys, "study", "load", str(scripted_demo_path))[1]
    assert "unchanged" in run(capsys, "study", "load", str(scripted_demo_path))[1]
    changed = tmp_path / "demo.yaml"
    changed.write_text(scripted_demo_path.read_text().replace("turn_limit: 10", "turn_limit: 8"))
    (tmp_path / "items").mkdir()
    (tmp_path / "items" / "demo.jsonl").write_text((scripted_demo_path.parent / "items" / "demo.jsonl").read_text())
    assert "replaced" in run(capsys, "study", "load", str(changed))[1]  # no data yet: updated in place
    with Session(get_engine()) as s:
        assert len(s.scalars(select(Study)).all()) == 1


def test_user_add(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    run(capsys, "migrate")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.delenv("LAB_PASSWORD", raising=False)
    code, _, err = run(capsys, "user", "add", "ada", "--role", "experimenter")
    assert code == 1 and "LAB_PASSWORD" in err
    monkeypatch.setenv("LAB_PASSWORD", "correct horse battery")
    code, out, _ = run(capsys, "user", "add", "ada", "--role", "experimenter")
    assert code == 0 and "'ada' (experimenter) created" in out
    code, _, err = run(capsys, "user", "add", "ada", "--role", "annotator")
    assert code == 1 and "taken" in err


def test_import_fixture(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = ROOT / "tests" / "fixtures" / "datasets" / "falseqa" / "sample.csv"
    code, out, err = run(capsys, "import", "falseqa", str(src), "--out", str(tmp_path / "f.jsonl"))
    assert code == 0 and "wrote 4 items" in out and "control 2, loaded 2" in out
    assert err.count("skipped record") == 2 and "skipped record 4: label:" in err  # malformed records named on stderr
    assert len((tmp_path / "f.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize(
    ("dataset", "relative", "count"),
    [
        ("lost-in-conversation", "lost_in_conversation/thirdparty_sample_5_per_task.json", 30),
        ("lost-in-conversation", "lost_in_conversation/sharded_translation.json", 30),
        ("falseqa", "falseqa/test.csv", 1374),
        ("clamber", "clamber/clamber_benchmark.jsonl", 3202),
    ],
)
def test_import_shared_datasets(
    capsys: pytest.CaptureFixture[str], shared_datasets: Path, tmp_path: Path, dataset: str, relative: str, count: int
) -> None:
    out_file = tmp_path / "items.jsonl"
    code, out, _ = run(capsys, "import", dataset, str(shared_datasets / relative), "--out", str(out_file))
    assert code == 0 and f"wrote {count} items" in out
    assert len(out_file.read_text().splitlines()) == count


def test_chat_in_terminal(
    capsys: pytest.CaptureFixture[str], write_study: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_study(
        "t",
        models={"bot": {"model": "lab/scripted", "params": {"script": "echo"}}},
        conditions={"sharded": {"model": "bot", "reveal": "SHARDED"}},
        items=[
            {
                "id": "a",
                "kind": "sharded",
                "shards": [{"id": 1, "text": "Add two numbers."}, {"id": 2, "text": "The first is 2."}],
            }
        ],
    )
    run(capsys, "migrate")
    run(capsys, "study", "load", str(spec))
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n/2 it's two\n/cards\n/done\n"))
    code, out, _ = run(capsys, "chat", "t", "--condition", "sharded")
    assert code == 0
    assert "[1]" in out and "assistant> You said: Add two numbers." in out and "You said: it's two" in out
    with Session(get_engine()) as s:
        chat = s.scalars(select(ChatSession)).one()
        kind, status = chat.participant.kind, chat.participant.status
        turns = s.scalars(select(Turn).order_by(Turn.index)).all()
    assert chat.outcome == "answered" and kind == "pilot" and status == "completed"
    assert [(t.role, t.shards) for t in turns] == [("user", [1]), ("assistant", None), ("user", [2]), ("assistant", None)]
    assert all(t.latency_ms is not None for t in turns if t.role == "assistant")
