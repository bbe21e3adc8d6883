"""The console's spec work: uploads validated in full before anything is written, item files kept
inside the spec's folder, previews, and spec versioning."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from lab.console import check_spec_text, preview, spec_source
from lab.participants import create_participant
from lab.schema import Study
from lab.spec import SpecError, load_spec_file
from lab.studies import get_study, load_study


@pytest.fixture
def spec(study_spec: Callable[..., str]) -> str:
    """A study whose one item comes from the file ``mine.jsonl`` beside it."""
    return study_spec(
        "upload",
        title="Uploaded study",
        conditions={"full": {"model": "bot", "reveal": "FULL"}, "sharded": {"model": "bot", "reveal": "SHARDED"}},
        items=[{"file": "mine.jsonl"}],
        plan={"items_per_participant": 1, "balance": "latin-square"},
    )


ITEM = {"id": "u1", "kind": "sharded", "title": "Upload item", "shards": [{"id": 1, "text": "part"}]}


def test_uploaded_item_files_are_used(tmp_path: Path, spec: str) -> None:
    d = check_spec_text(spec, "upload.yaml", tmp_path, {"mine.jsonl": (json.dumps(ITEM) + "\n").encode()})
    p = preview(d)
    assert p.slug == "upload" and [i["id"] for i in p.items] == ["u1"]
    assert [c["condition"] for c in p.conditions] == ["full", "sharded"] and all(c["active"] for c in p.conditions)
    assert p.cells == 2 and p.plan_length == 1
    assert p.method.balance == "latin-square"  # one item per participant is every item here


def test_item_files_are_found_beside_the_spec(tmp_path: Path, spec: str) -> None:
    (tmp_path / "mine.jsonl").write_text(json.dumps(ITEM) + "\n")
    assert check_spec_text(spec, "upload.yaml", tmp_path).spec.slug == "upload"


def test_missing_and_bad_item_files_are_reported_by_their_names(tmp_path: Path, spec: str) -> None:
    with pytest.raises(SpecError) as e:
        check_spec_text(spec, "upload.yaml", tmp_path)
    assert any("upload.yaml" in p and "mine.jsonl" in p and "not found" in p for p in e.value.problems)
    assert not any("lab-spec-" in p for p in e.value.problems)
    with pytest.raises(SpecError) as e:
        check_spec_text(spec, "upload.yaml", tmp_path, {"mine.jsonl": b"{not json\n"})
    assert any("mine.jsonl:1" in p and "invalid JSON" in p for p in e.value.problems)


@pytest.mark.parametrize("ref", ["../secret.jsonl", "/etc/passwd", "a/../../b.jsonl"])
def test_item_files_cannot_leave_the_spec_folder(tmp_path: Path, ref: str, spec: str) -> None:
    (tmp_path.parent / "secret.jsonl").write_text(json.dumps(ITEM) + "\n")
    with pytest.raises(SpecError, match="inside the spec's folder"):
        check_spec_text(spec.replace("mine.jsonl", ref), "upload.yaml", tmp_path)


def test_spec_errors_name_line_and_field(spec: str) -> None:
    text = spec.replace("model: bot, reveal: SHARDED", "model: robot, reveal: SHARDED")
    line = text.splitlines().index("  sharded: {model: robot, reveal: SHARDED}") + 1
    with pytest.raises(SpecError) as e:
        check_spec_text(text, "upload.yaml", None, {"mine.jsonl": json.dumps(ITEM).encode()})
    assert e.value.problems == [f"upload.yaml:{line}: conditions.sharded.model: unknown model 'robot' (declared: bot)"]


def test_the_demo_spec_is_offered_for_editing_from_its_file(sqlite_engine: Engine, scripted_demo_path: Path) -> None:
    with Session(sqlite_engine) as s, s.begin():
        study = load_study(s, load_spec_file(scripted_demo_path), str(scripted_demo_path)).study
        text, base = spec_source(study)
        digest = study.spec_sha256
    assert text == scripted_demo_path.read_text() and base == scripted_demo_path.parent
    assert check_spec_text(text, "demo.yaml", base).sha256() == digest


def test_a_study_without_its_file_is_edited_from_the_stored_spec(sqlite_engine: Engine, tmp_path: Path, spec: str) -> None:
    d = check_spec_text(spec, "upload.yaml", tmp_path, {"mine.jsonl": json.dumps(ITEM).encode()})
    with Session(sqlite_engine) as s, s.begin():
        study = load_study(s, d, "upload:upload.yaml").study
        text, base = spec_source(study)
        digest = study.spec_sha256
    assert base is None and "u1" in text and "null" not in text
    assert check_spec_text(text, "upload.yaml").sha256() == digest


def test_changed_spec_on_a_study_with_data_is_a_new_version(sqlite_engine: Engine, tmp_path: Path, spec: str) -> None:
    uploads = {"mine.jsonl": json.dumps(ITEM).encode()}
    first = check_spec_text(spec, "upload.yaml", tmp_path, uploads)
    changed = check_spec_text(spec.replace("Uploaded study", "Uploaded study, reworded"), "upload.yaml", tmp_path, uploads)
    again = check_spec_text(spec.replace("Uploaded study", "Uploaded study, again"), "upload.yaml", tmp_path, uploads)
    with Session(sqlite_engine) as s, s.begin():
        assert load_study(s, first).action == "created"
        assert load_study(s, first).action == "unchanged"
        # No participant yet: the draft is changed in place.
        result = load_study(s, changed)
        assert result.action == "replaced" and result.study.version == 1
        create_participant(s, result.study)
        result = load_study(s, again)
        assert result.action == "new-version" and result.study.version == 2
    with Session(sqlite_engine) as s:
        versions = s.execute(
            select(Study.version, Study.status, Study.title).where(Study.slug == "upload").order_by(Study.version)
        ).all()
        assert versions == [(1, "superseded", "Uploaded study, reworded"), (2, "draft", "Uploaded study, again")]
        assert get_study(s, "upload").version == 2


def test_a_spec_with_errors_never_reaches_the_database(sqlite_engine: Engine, tmp_path: Path, spec: str) -> None:
    with pytest.raises(SpecError):
        check_spec_text(
            spec.replace("title: Uploaded study", "title: ''"), "upload.yaml", tmp_path, {"mine.jsonl": json.dumps(ITEM).encode()}
        )
    with Session(sqlite_engine) as s:
        assert s.scalar(select(func.count()).select_from(Study)) == 0
