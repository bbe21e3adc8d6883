"""The export page: who may open it, downloads built only on click, withdrawal with confirmation."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

import lab.export
from lab.participants import create_participant
from lab.schema import Participant, Withdrawal
from lab.studies import get_study
from tests.pages.test_staff_pages import as_role, assert_locked_out, lab_db, page, template_db  # noqa: F401 - fixtures


@pytest.mark.parametrize("role", ["anonymous", "annotator"])
def test_locked_out(role: str, as_role: Callable[[str], None]) -> None:  # noqa: F811
    as_role(role)
    assert_locked_out(page("export").run(), role)


@pytest.mark.parametrize("role", ["experimenter", "admin"])
def test_download_is_built_only_on_click(role: str, as_role: Callable[[str], None], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    calls: list[tuple[str, str]] = []
    real = lab.export.export_zip

    def counting(engine: Engine, slug: str, fmt: str, *args: object) -> bytes:
        calls.append((slug, fmt))
        return real(engine, slug, fmt, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(lab.export, "export_zip", counting)
    as_role(role)
    at = page("export").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Export"
    buttons = at.get("download_button")
    assert [b.proto.label for b in buttons] == ["Download demo-parquet.zip"]
    assert calls == []
    at.radio(key="export_kind").set_value("dpo").run()
    assert [b.proto.label for b in at.get("download_button")] == ["Download demo-dpo.zip"]
    assert [m.label for m in at.multiselect] == ["Outcomes", "Conditions"]
    assert calls == []


@pytest.mark.parametrize("fmt", ["parquet", "sft", "dpo"])
def test_zip_holds_the_bundle(fmt: str, lab_db: Engine) -> None:  # noqa: F811
    blob = lab.export.export_zip(lab_db, "demo", fmt)
    names = zipfile.ZipFile(io.BytesIO(blob)).namelist()
    assert f"demo-{fmt}/README.md" in names and f"demo-{fmt}/bundle.json" in names
    if fmt == "parquet":
        assert "demo-parquet/data/turns/turns.parquet" in names and "demo-parquet/datapackage.json" in names
    else:
        assert f"demo-{fmt}/data/{fmt}.jsonl" in names and f"demo-{fmt}/schema/{fmt}.schema.json" in names
    assert not any("private" in n for n in names)


def test_withdraw_needs_confirmation(as_role: Callable[[str], None], lab_db: Engine) -> None:  # noqa: F811
    with Session(lab_db) as s, s.begin():
        p = create_participant(s, get_study(s, "demo"), kind="human", status="active")
        p.prolific_pid = "5f0000000000000000000abc"
    as_role("experimenter")
    at = page("export").run()
    at.text_input(key="withdraw_who").set_value("5f0000000000000000000abc").run()
    assert not at.exception, at.exception
    button = at.button(key="withdraw_button")
    assert button.disabled
    at.checkbox(key="withdraw_sure").check().run()
    at.button(key="withdraw_button").click().run()
    assert at.success[0].value.startswith("Withdrew 1 participant(s): deleted")
    with Session(lab_db) as s:
        assert (
            s.scalar(select(func.count()).select_from(Participant).where(Participant.prolific_pid == "5f0000000000000000000abc"))
            == 0
        )
        assert s.scalars(select(Withdrawal)).one().by == "experimenter1"


def test_empty_training_download_says_why(as_role: Callable[[str], None], lab_db: Engine) -> None:  # noqa: F811
    as_role("experimenter")
    at = page("export").run()
    at.radio(key="export_kind").set_value("dpo").run()
    assert not at.exception, at.exception
    expected = lab.export.training_notice(lab_db, "demo", "dpo")
    assert expected is not None
    (warning,) = [w.value for w in at.warning]
    assert warning.startswith("This download will hold no pairs:") and expected in warning
    assert "python -m lab" in warning
