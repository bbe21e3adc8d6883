"""Bundles: what goes in, in what order and type, what never goes in, and the data dictionary."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab.bundle import read_bundle
from lab.export import TABLES, ExportError, ExportOptions, dictionary_markdown, export_study, fate
from lab.schema import Base, ChatSession, Turn
from lab.spec import spec_hash
from tests.export_study import BIG, MARKER, RTL, SECRETS, UNICODE, build_study

FORMATS = ("parquet", "csv", "jsonl")


@pytest.fixture
def study(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> tuple[Engine, object]:
    monkeypatch.setenv("OPENAI_API_KEY", SECRETS["env_key"])
    return engine, build_study(engine)


def _all_text(path: Path) -> str:
    """Every table decoded to text plus every plain file of the bundle."""
    parts = [p.read_text(encoding="utf-8", errors="replace") for p in path.rglob("*") if p.is_file() and p.suffix != ".parquet"]
    for p in path.rglob("*.parquet"):
        parts.append(pq.read_table(p).to_pandas().to_csv())
    return "\n".join(parts)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_matches_the_database(study: tuple[Engine, object], tmp_path: Path, fmt: str) -> None:
    engine, built = study
    export_study(engine, "demo", tmp_path / "b", ExportOptions(format=fmt))
    b = read_bundle(tmp_path / "b")
    turns = b["turns"]
    with Session(engine) as s:
        db = s.scalars(
            select(Turn).join(ChatSession, Turn.session_id == ChatSession.id).order_by(Turn.session_id, Turn.index)
        ).all()
        assert list(turns["id"]) == [t.id for t in db]
        for row, t in zip(turns.to_dict("records"), db, strict=True):
            assert row["content"] == t.content
            assert row["session_id"] == t.session_id and row["index"] == t.index and row["role"] == t.role
            assert row["shards"] == t.shards
            assert row["sent_at"].to_pydatetime() == t.sent_at.replace(tzinfo=UTC)
            assert row["sent_at"].tzinfo is not None
            assert bool(row["partial"]) is t.partial
            assert (None if pd.isna(row["tokens_in"]) else row["tokens_in"]) == t.tokens_in
            assert (None if pd.isna(row["cost"]) else row["cost"]) == t.cost
            if t.first_token_at is not None:
                assert row["first_token_at"].to_pydatetime() == t.first_token_at.replace(tzinfo=UTC)
    by_id = turns.set_index("id")
    assert by_id.loc[built.turns["s1u1"], "content"] == f"{UNICODE} {MARKER}"
    assert by_id.loc[built.turns["s1u2"], "content"] == f"{RTL} {MARKER}"
    assert by_id.loc[built.turns["s6u1"], "content"] == BIG and len(BIG) == 100_000
    assert by_id.loc[built.turns["s1u1"], "client"] == {"typing_started": "2026-01-05T09:31:00Z", "edits": 3}
    assert by_id.loc[built.turns["s1cut"], "partial"]
    assert "[redacted]" in by_id.loc[built.turns["s1err"], "error"]
    assert by_id.loc[built.turns["s1a1"], "params"] == {"temperature": 0.0, "max_tokens": 256, "api_key": "[redacted]"}
    conv = b["conversations"].set_index("id")
    assert built.sessions["s5"] in conv.index and built.sessions["s5"] not in set(turns["session_id"])
    assert conv.loc[built.sessions["s3"], "probe"] == {
        "question": "How long is a goldfish's memory?",
        "reply": "Months.",
        "score": 1.0,
    }
    assert conv.loc[built.sessions["s1"], "item"] == "math-bakery" and conv.loc[built.sessions["s1"], "reveal"] == "SHARDED"
    assert b["responses"].set_index("question").loc["difficulty", "value"] == {"value": "إجابة 😀"}
    assert b["participants"]["created_at"].dt.tz is not None


def test_parquet_files_read_with_pandas_and_pyarrow(study: tuple[Engine, object], tmp_path: Path) -> None:
    engine, built = study
    export_study(engine, "demo", tmp_path / "b")
    turns = pd.read_parquet(tmp_path / "b" / "data" / "turns")
    schema = pq.read_schema(tmp_path / "b" / "data" / "turns" / "turns.parquet")
    assert str(schema.field("sent_at").type) == "timestamp[us, tz=UTC]"
    assert str(schema.field("tokens_in").type) == "int64" and str(schema.field("partial").type) == "bool"
    assert list(turns.columns) == [c.name for c in TABLES[2].columns]
    assert turns.loc[turns["id"] == built.turns["s1u1"], "content"].item() == f"{UNICODE} {MARKER}"
    assert json.loads(turns.loc[turns["id"] == built.turns["s1u1"], "shards"].item()) == [1]
    for t in TABLES:
        frame = pd.read_parquet(tmp_path / "b" / "data" / t.name)
        assert list(frame.columns) == t.names


def test_participants_are_pseudonymous_and_consistent(study: tuple[Engine, object], tmp_path: Path) -> None:
    engine, built = study
    export_study(engine, "demo", tmp_path / "b")
    b = read_bundle(tmp_path / "b")
    assert list(b["participants"]["id"]) == [1, 2, 3]
    assert list(b["participants"]["kind"]) == ["human", "simulated", "human"]
    conv = b["conversations"].set_index("id")
    assert conv.loc[built.sessions["s1"], "participant_id"] == 1 and conv.loc[built.sessions["s2"], "participant_id"] == 2
    labels = b["labels"]
    assert set(labels["annotator"]) == {"auto:rules", "annotator-1", "gold:expert"}
    assert dict(zip(labels["annotator"], labels["source"], strict=True)) == {
        "auto:rules": "auto",
        "annotator-1": "human",
        "gold:expert": "gold",
    }
    human = labels[labels["annotator"] == "annotator-1"].sort_values("id")
    assert list(human["code"]) == ["ACK", "CLARIFY"] and human["supersedes_id"].iloc[1] == human["id"].iloc[0]
    assert list(human["codebook_version"]) == ["cb-1", "cb-1"]
    assert set(b["repair_sequences"]["annotator"]) == {"annotator-1"}
    events = b["events"]
    assert events.loc[events["kind"] == "timed_out", "data"].item() == {"by": "staff", "was": "active"}
    runs = events[events["kind"] == "simulate_run"]
    assert [d["run"] for d in runs["data"]] == ["r1"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_private_value_in_any_bundle(study: tuple[Engine, object], tmp_path: Path, fmt: str) -> None:
    engine, _ = study
    export_study(engine, "demo", tmp_path / "b", ExportOptions(format=fmt))
    text = _all_text(tmp_path / "b")
    for name, secret in SECRETS.items():
        assert secret not in text, name
    assert "secret-path" not in text
    assert not (tmp_path / "b" / "private").exists()


def test_prolific_ids_only_with_their_flag_in_a_separate_file(study: tuple[Engine, object], tmp_path: Path) -> None:
    engine, _ = study
    export_study(engine, "demo", tmp_path / "b", ExportOptions(include_prolific_ids=True))
    private = tmp_path / "b" / "private" / "prolific_ids.csv"
    rows = pd.read_csv(private, dtype=str, keep_default_na=False)
    assert rows.to_dict("records")[0] == {
        "participant_id": "1",
        "prolific_pid": SECRETS["prolific"],
        "prolific_study_id": SECRETS["prolific_study"],
        "prolific_session_id": SECRETS["prolific_session"],
        "completion_code": SECRETS["completion"],
        "status": "completed",
    }
    private.unlink()
    text = _all_text(tmp_path / "b")
    assert SECRETS["prolific"] not in text and SECRETS["completion"] not in text
    assert json.loads((tmp_path / "b" / "bundle.json").read_text())["private_files"] == ["private/prolific_ids.csv"]


def test_filters(study: tuple[Engine, object], tmp_path: Path) -> None:
    engine, built = study

    def ids(**kw: object) -> tuple[list[str], set[int]]:
        out = tmp_path / "f"
        export_study(engine, "demo", out, ExportOptions(**kw))  # type: ignore[arg-type]
        b = read_bundle(out, ["participants", "conversations", "events"])
        return list(b["participants"]["kind"]), set(b["conversations"]["id"])

    s = built.sessions
    assert ids(participants="human") == (["human", "human"], {s["s1"], s["s3"], s["s5"], s["s6"]})
    assert ids(participants="simulated") == (["simulated"], {s["s2"], s["s4"]})
    assert ids(completed_only=True) == (["human", "simulated"], {s["s1"], s["s2"], s["s3"], s["s4"]})
    assert ids(since=datetime(2026, 2, 1, tzinfo=UTC)) == (["simulated", "human"], {s["s2"], s["s4"], s["s5"], s["s6"]})
    b = read_bundle(tmp_path / "f")
    assert set(b["labels"]["turn_id"]) <= set(b["turns"]["id"])


def test_bundle_files_and_provenance(study: tuple[Engine, object], tmp_path: Path) -> None:
    engine, _ = study
    r = export_study(engine, "demo", tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert meta["migration_revision"] and meta["lab_version"]
    assert meta["prompt_versions"]["judge_rules"] and meta["prompt_versions"]["simulator_prompt"]
    assert meta["rows"] == r.rows and r.rows["turns"] == 16 and r.rows["conversations"] == 6
    spec = json.loads((tmp_path / "b" / "spec" / "v1.json").read_text())
    with Session(engine) as s:
        from lab.schema import Study

        stored = s.scalars(select(Study)).one()
        assert spec == stored.spec and meta["studies"][0]["spec_sha256"] == stored.spec_sha256 == spec_hash(spec)
    raw = (tmp_path / "b" / "spec" / "v1.json").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == meta["studies"][0]["spec_file_sha256"]
    assert list(spec["conditions"]) == list(stored.spec["conditions"])
    package = json.loads((tmp_path / "b" / "datapackage.json").read_text())
    for res in package["resources"]:
        schema = pq.read_schema(tmp_path / "b" / res["path"])
        assert [f["name"] for f in res["schema"]["fields"]] == schema.names
    readme = (tmp_path / "b" / "README.md").read_text()
    assert readme.startswith("---\n") and "config_name: turns" in readme and "data_files: data/turns/turns.parquet" in readme


def test_every_database_column_is_in_the_data_dictionary() -> None:
    """A column added to the schema without saying what an export does with it fails here."""
    undocumented = [
        f"{t.name}.{c.name}" for t in Base.metadata.sorted_tables for c in t.columns if fate(f"{t.name}.{c.name}") is None
    ]
    assert undocumented == []
    text = dictionary_markdown()
    assert "UNDOCUMENTED" not in text
    for t in TABLES:
        for c in t.columns:
            assert f"| `{c.name}` | {c.type}" in text
            assert c.description
            if c.source is not None:
                table, column = c.source.split(".")
                assert column in Base.metadata.tables[table].columns, c.source


def _json_strings(value: object) -> list[str]:
    """Every key and every string anywhere inside a decoded JSON value."""
    if isinstance(value, dict):
        return [str(k) for k in value] + [s for v in value.values() for s in _json_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _json_strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize("fmt", FORMATS)
def test_json_columns_carry_no_staff_username_or_participant_id_in_keys_or_values(
    study: tuple[Engine, object], tmp_path: Path, fmt: str
) -> None:
    """Adjudication stores who decided and each annotator's code inside ``meta``: all pseudonymised."""
    from lab.accounts import create_account
    from lab.adjudication import adjudicate
    from lab.export._dictionary import JSON_TYPES
    from lab.labels import add_label
    from lab.schema import Account, Event, Participant

    engine, built = study
    turn = built.turns["s3a1"]  # type: ignore[attr-defined]
    with Session(engine) as s, s.begin():
        a1 = create_account(s, "a1", "annotator", "correct horse battery")
        a2 = create_account(s, "a2", "annotator", "correct horse battery")
        exp1 = create_account(s, "exp1", "experimenter", "correct horse battery")
        add_label(s, turn, "a1", "P", "REJECT_CORRECT", account_id=a1.id)
        add_label(s, turn, "a2", "P", "ACCOMMODATE", account_id=a2.id)
        adjudicate(s, "demo", turn, "P", "REJECT_CORRECT", exp1.id)
        s.add(
            Event(
                participant_id=built.participants["p1"],  # type: ignore[attr-defined]
                kind="note",
                data={"text": f"exp1 checked {SECRETS['prolific']} with a2.", SECRETS["prolific3"]: "data1"},
            )
        )
    with Session(engine) as s:
        staff = set(s.scalars(select(Account.username)))
        outside = {
            v
            for p in s.scalars(select(Participant))
            for v in (p.prolific_pid, p.prolific_study_id, p.prolific_session_id, p.completion_code)
            if v
        }
    assert {"a1", "a2", "exp1"} <= staff and SECRETS["prolific"] in outside

    export_study(engine, "demo", tmp_path / "b", ExportOptions(format=fmt))
    b = read_bundle(tmp_path / "b")
    found = []
    for table in TABLES:
        for column in table.columns:
            if column.type not in JSON_TYPES:
                continue
            for value in b[table.name][column.name]:
                for text in _json_strings(value):
                    words = set(text.replace(",", " ").split())
                    if text in staff | outside or words & (staff | outside):
                        found.append((table.name, column.name, text))
    assert found == []

    labels = b["labels"]
    gold = labels[(labels["annotator"] == "gold") & (labels["layer"] == "P")]
    meta = gold["meta"].item()
    human = labels[(labels["layer"] == "P") & (labels["source"] == "human")]
    pseudonym = dict(zip(human["code"], human["annotator"], strict=True))
    assert meta["human_codes"] == {
        pseudonym["REJECT_CORRECT"]: "REJECT_CORRECT",
        pseudonym["ACCOMMODATE"]: "ACCOMMODATE",
        "gold:expert": "REJECT_CORRECT",
    }
    assert meta["decided_by"].startswith("annotator-") and meta["decided_by"] not in pseudonym.values()
    note = b["events"].loc[b["events"]["kind"] == "note", "data"].item()
    assert note == {"text": f"{meta['decided_by']} checked [redacted] with {pseudonym['ACCOMMODATE']}.", "[redacted]": "data1"}


def test_private_columns_are_never_exported() -> None:
    from lab.export import WITHHELD, exported_sources

    assert not set(WITHHELD) & set(exported_sources())
    for column in (
        "participant.prolific_pid",
        "participant.token_hash",
        "label.account_id",
        "account.username",
        "study.source_path",
    ):
        assert column in WITHHELD


def test_api_keys_never_reach_a_bundle_even_in_the_spec(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRETS["env_key"])
    build_study(engine)
    with Session(engine) as s, s.begin():
        from lab.schema import Study

        study = s.scalars(select(Study)).one()
        spec = dict(study.spec)
        spec["models"] = {k: dict(v) for k, v in spec["models"].items()}
        spec["models"]["smollm2"]["params"] = dict(spec["models"]["smollm2"]["params"]) | {
            "api_key": SECRETS["param_key"],
            "note": SECRETS["env_key"],
        }
        study.spec = spec
    export_study(engine, "demo", tmp_path / "b", ExportOptions(format="jsonl"))
    text = _all_text(tmp_path / "b")
    assert SECRETS["param_key"] not in text and SECRETS["env_key"] not in text
    assert json.loads((tmp_path / "b" / "bundle.json").read_text())["studies"][0]["spec_redacted"] is True


def test_clear_errors(study: tuple[Engine, object], tmp_path: Path) -> None:
    engine, _ = study
    with pytest.raises(ExportError, match="no study 'nope'"):
        export_study(engine, "nope", tmp_path / "x")
    with pytest.raises(ExportError, match="--format must be one of"):
        export_study(engine, "demo", tmp_path / "x", ExportOptions(format="xlsx"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "thesis.docx").write_text("mine")
    with pytest.raises(ExportError, match="not empty and holds no bundle"):
        export_study(engine, "demo", tmp_path / "full")
    assert (tmp_path / "full" / "thesis.docx").read_text() == "mine"


def test_cli_export(
    study: tuple[Engine, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.cli import main

    engine, _ = study
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    assert (
        main(
            [
                "export",
                "demo",
                "--out",
                str(tmp_path / "b"),
                "--format",
                "csv",
                "--participants",
                "human",
                "--since",
                "2026-01-01",
            ]
        )
        == 0
    )
    assert "2 participants, 4 conversations" in capsys.readouterr().out
    assert main(["export", "demo", "--out", str(tmp_path / "b"), "--since", "last week"]) == 1
    assert "--since: 'last week' is not a date" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", FORMATS)
def test_arrow_and_row_paths_write_the_same_bundle(
    study: tuple[Engine, object], tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ADBC batches (the fast path) and plain rows (other databases) give identical tables."""
    from lab.export import _arrow

    engine, _ = study
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite is always read by rows (see lab/export/_arrow.py)")
    assert _arrow.available(engine)
    options = ExportOptions(format=fmt, since=datetime(2026, 1, 1, tzinfo=UTC), batch_rows=3)
    export_study(engine, "demo", tmp_path / "fast", options)
    monkeypatch.setattr(_arrow, "available", lambda _engine: False)
    export_study(engine, "demo", tmp_path / "rows", options)
    fast, rows = read_bundle(tmp_path / "fast"), read_bundle(tmp_path / "rows")
    for t in TABLES:
        pd.testing.assert_frame_equal(fast[t.name], rows[t.name])
        assert fast.meta["rows"][t.name] == rows.meta["rows"][t.name]


def test_codebook_travels_with_the_bundle_when_the_lab_has_one(
    study: tuple[Engine, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundle ships the lab's codebook, its version a property of the base codebook."""
    from dataclasses import dataclass

    engine, _ = study

    @dataclass(frozen=True)
    class Book:
        base_version: str
        layers: dict

        @property
        def version(self) -> str:
            return self.base_version

    monkeypatch.setattr("lab.codebook.base_codebook", lambda: Book("cb-7", {"G": ["ACK", "CLARIFY"]}))
    export_study(engine, "demo", tmp_path / "b")
    shipped = json.loads((tmp_path / "b" / "codebook.json").read_text())
    assert shipped == {"version": "cb-7", "codebook": {"base_version": "cb-7", "layers": {"G": ["ACK", "CLARIFY"]}}}
    assert json.loads((tmp_path / "b" / "bundle.json").read_text())["codebook"] == {"version": "cb-7", "file": "codebook.json"}
