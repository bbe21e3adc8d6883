"""Read an exported bundle back: as typed tables for analysis, or into an empty database.

:func:`read_bundle` gives the eight tables as pandas frames with the database's column
types (nullable integers, UTC timestamps, JSON columns decoded), whatever the bundle's
format, so analysis code can take a bundle where it would take the database.
:func:`import_bundle` loads a bundle into an empty lab database so a second team can
browse and annotate it; participants keep their bundle pseudonyms as ids.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]  # pandas-stubs is not installed
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type information
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from .db import migrate
from .errors import LabError
from .export import TABLES, TABLES_BY_NAME, Table
from .export._dictionary import JSON_TYPES
from .schema import ChatSession, Condition, Event, ItemRow, Label, Participant, RepairSequence, Response, Study, Turn


class BundleError(LabError, ValueError):
    """A folder that is not a readable bundle, or a database that cannot take one."""


@dataclass
class Bundle:
    """A bundle as read from disk."""

    path: Path
    """Its folder."""
    meta: dict[str, Any]
    """``bundle.json``: study, versions and hashes, filters, provenance."""
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    """Table name → frame."""
    specs: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Study version → stored spec."""

    def __getitem__(self, name: str) -> pd.DataFrame:
        """A table by name (``bundle["turns"]``)."""
        return self.tables[name]


def _meta(path: Path) -> dict[str, Any]:
    meta_path = path / "bundle.json"
    if not meta_path.is_file():
        raise BundleError(f"{path} is not a bundle: bundle.json is missing")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") not in ("parquet", "csv", "jsonl"):
        raise BundleError(
            f"{path}: bundle.json has format '{meta.get('format')}', which is not a table bundle (sft and dpo are read as JSONL)"
        )
    return meta


def _jsonl_table(path: Path, table: Table) -> pa.Table:
    columns: dict[str, list[Any]] = {c.name: [] for c in table.columns}
    json_cols = {c.name for c in table.columns if c.type in JSON_TYPES}
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            for name, values in columns.items():
                v = row.get(name)
                if name in json_cols and v is not None:
                    v = json.dumps(v, ensure_ascii=False)
                values.append(v)
    arrays = []
    for c in table.columns:
        values = columns[c.name]
        if c.type == "datetime":
            arrays.append(pa.array([None if v is None else pd.Timestamp(v).tz_convert("UTC") for v in values], type=c.arrow_type))
        else:
            arrays.append(pa.array(values, type=c.arrow_type))
    return pa.Table.from_arrays(arrays, schema=table.schema())


def read_arrow(path: str | Path, name: str) -> pa.Table:
    """One table of a bundle as an Arrow table with the dictionary's schema."""
    path = Path(path)
    meta = _meta(path)
    table = TABLES_BY_NAME[name]
    fmt = meta["format"]
    file = path / meta["tables"][name]
    if fmt == "parquet":
        import pyarrow.parquet as pq  # type: ignore[import-untyped]  # pyarrow ships no type information

        return pq.read_table(file, schema=table.schema())
    if fmt == "csv":
        import pyarrow.csv as pcsv  # type: ignore[import-untyped]  # pyarrow ships no type information

        opts = pcsv.ConvertOptions(
            column_types=table.schema(),
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
            true_values=["true"],
            false_values=["false"],
        )
        return pcsv.read_csv(file, convert_options=opts).select(table.names).cast(table.schema())
    return _jsonl_table(file, table)


_PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(), pa.float64(): pd.Float64Dtype()}


def to_frame(arrow: pa.Table, name: str, decode_json: bool = True) -> pd.DataFrame:
    """An Arrow table of the bundle as a pandas frame (nullable types, JSON decoded)."""
    frame = arrow.to_pandas(types_mapper=lambda t: _PANDAS_TYPES.get(t))
    if decode_json:
        for c in TABLES_BY_NAME[name].columns:
            if c.type in JSON_TYPES:
                values = arrow.column(c.name).to_pylist()
                frame[c.name] = pd.Series([None if v is None else json.loads(v) for v in values], index=frame.index, dtype=object)
    return frame


def read_bundle(path: str | Path, tables: list[str] | None = None, decode_json: bool = True) -> Bundle:
    """Read a bundle's tables, specs and provenance.

    Args:
        path: The bundle's folder.
        tables: Names to read (default: all eight).
        decode_json: Turn JSON text columns into Python values.

    Returns:
        The bundle.

    Raises:
        BundleError: The folder is not a table bundle.
    """
    path = Path(path)
    meta = _meta(path)
    bundle = Bundle(path, meta)
    for name in tables or [t.name for t in TABLES]:
        if name not in TABLES_BY_NAME:
            raise BundleError(f"no table '{name}' in a bundle (tables: {', '.join(TABLES_BY_NAME)})")
        bundle.tables[name] = to_frame(read_arrow(path, name), name, decode_json)
    for entry in meta.get("studies", []):
        spec_path = path / entry["spec_file"]
        if spec_path.is_file():
            bundle.specs[int(entry["version"])] = json.loads(spec_path.read_text(encoding="utf-8"))
    return bundle


# --- into a database ---------------------------------------------------------------------------------------


@dataclass
class ImportResult:
    """What an import loaded."""

    slug: str
    """The study."""
    rows: dict[str, int] = field(default_factory=dict)
    """Rows per table."""


def _records(arrow: pa.Table, name: str, size: int = 20_000) -> Iterator[list[dict[str, Any]]]:
    json_cols = {c.name for c in TABLES_BY_NAME[name].columns if c.type in JSON_TYPES}
    for batch in arrow.to_batches(max_chunksize=size):
        rows = batch.to_pylist()
        for r in rows:
            for c in json_cols:
                if r[c] is not None:
                    r[c] = json.loads(r[c])
        yield rows


def import_bundle(engine: Engine, path: str | Path) -> ImportResult:
    """Load a bundle into an empty, migrated database.

    The study's versions, conditions and items are rebuilt from the stored specs; every
    other row keeps its bundle id, so labels, repair sequences and events still point at
    the right turns. Participants get no link (they cannot take part again).

    Raises:
        BundleError: Not a bundle, or the database already holds studies.
    """
    path = Path(path)
    meta = _meta(path)
    migrate(engine)
    with Session(engine) as s:
        if s.scalar(select(func.count()).select_from(Study)):
            raise BundleError("import bundle needs an empty database: this one already holds studies")
    result = ImportResult(meta["study"])
    ids = _Ids()
    with Session(engine) as s, s.begin():
        _rebuild_studies(s, path, meta, ids)
        _rebuild_items(s, path, ids)
        _rebuild_unlisted_conditions(s, path, ids)
    with engine.begin() as conn:
        for name, model, shape in _row_plan(ids):
            n = 0
            for rows in _records(read_arrow(path, name), name):
                conn.execute(insert(model.__table__), [shape(r) for r in rows])
                n += len(rows)
            result.rows[name] = n
        result.rows["items"] = len(ids.items)
        if engine.dialect.name == "postgresql":
            # Rows came with their ids: move each id sequence past them.
            for model in (Participant, ChatSession, Turn, Label, RepairSequence, Response, Event):
                t = model.__table__.name
                top = f'COALESCE((SELECT MAX(id) FROM "{t}"), 0) + 1'
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('\"{t}\"', 'id'), {top}, false)"))
    return result


@dataclass
class _Ids:
    """Database ids of what the import rebuilt, by what the bundle calls them."""

    versions: dict[int, int] = field(default_factory=dict)
    """Study version → study id."""
    items: dict[tuple[int, str], int] = field(default_factory=dict)
    """(study version, item key) → item id."""
    conditions: dict[tuple[int, str], int] = field(default_factory=dict)
    """(study version, condition key) → condition id."""


def _rebuild_studies(s: Session, path: Path, meta: dict[str, Any], ids: _Ids) -> None:
    """Each study version, closed, from its stored spec, with the conditions the spec lists."""
    for entry in meta["studies"]:
        spec = json.loads((path / entry["spec_file"]).read_text(encoding="utf-8"))
        study = Study(
            slug=meta["study"],
            version=entry["version"],
            title=entry["title"],
            spec=spec,
            spec_sha256=entry["spec_sha256"],
            status="closed",
            seed=entry.get("seed", 0),
            source_path=None,
        )
        s.add(study)
        s.flush()
        ids.versions[entry["version"]] = study.id
        for key, cond in (spec.get("conditions") or {}).items():
            row = Condition(
                study_id=study.id,
                key=key,
                reveal=cond.get("reveal", "FULL"),
                presupposition=cond.get("presupposition"),
                intervention=cond.get("intervention") or "none",
                model_key=cond.get("model", ""),
                config=cond,
            )
            s.add(row)
            s.flush()
            ids.conditions[(entry["version"], key)] = row.id


def _rebuild_items(s: Session, path: Path, ids: _Ids) -> None:
    for rows in _records(read_arrow(path, "items"), "items"):
        for r in rows:
            item_row = ItemRow(
                study_id=ids.versions[r["study_version"]],
                key=r["key"],
                kind=r["kind"],
                payload=r["payload"],
                source_dataset=r["source_dataset"],
                source_id=r["source_id"],
            )
            s.add(item_row)
            s.flush()
            ids.items[(r["study_version"], r["key"])] = item_row.id


def _rebuild_unlisted_conditions(s: Session, path: Path, ids: _Ids) -> None:
    """A condition the spec does not list (a study written without one), rebuilt from its conversations."""
    conv = (
        read_arrow(path, "conversations")
        .select(["study_version", "condition", "reveal", "presupposition", "intervention", "model_key"])
        .to_pylist()
    )
    for r in conv:
        key = (r["study_version"], r["condition"])
        if key not in ids.conditions:
            row = Condition(
                study_id=ids.versions[r["study_version"]],
                key=r["condition"],
                reveal=r["reveal"],
                presupposition=r["presupposition"],
                intervention=r["intervention"],
                model_key=r["model_key"],
                config={},
            )
            s.add(row)
            s.flush()
            ids.conditions[key] = row.id


_PARTICIPANT_COLUMNS = (
    "id",
    "kind",
    "status",
    "plan",
    "position",
    "simulator",
    "created_at",
    "updated_at",
    "consented_at",
    "completed_at",
)
"""Participant columns a bundle carries as they were."""


def _row_plan(ids: _Ids) -> list[tuple[str, Any, Callable[[dict[str, Any]], dict[str, Any]]]]:
    """(bundle table, model, how a bundle row becomes a database row) in the order they are loaded."""
    return [
        (
            "participants",
            Participant,
            lambda r: {k: r[k] for k in _PARTICIPANT_COLUMNS} | {"study_id": ids.versions[r["study_version"]]},
        ),
        (
            "conversations",
            ChatSession,
            lambda r: {
                "id": r["id"],
                "participant_id": r["participant_id"],
                "study_id": ids.versions[r["study_version"]],
                "item_id": ids.items[(r["study_version"], r["item"])],
                "condition_id": ids.conditions[(r["study_version"], r["condition"])],
                "position": r["position"],
                "model": r["model"],
                "model_params": r["model_params"],
                "status": r["status"],
                "outcome": r["outcome"],
                "score": r["score"],
                "probe": r["probe"],
                "started_at": r["started_at"],
                "ended_at": r["ended_at"],
            },
        ),
        ("turns", Turn, lambda r: r),
        ("labels", Label, lambda r: {k: v for k, v in r.items() if k not in ("source", "codebook_version")}),
        ("repair_sequences", RepairSequence, lambda r: r),
        ("responses", Response, lambda r: r),
        ("events", Event, lambda r: r),
    ]


# --- for analysis ----------------------------------------------------------------------------------------


def to_analysis(bundle: Bundle, version: int | None = None) -> Any:
    """The frames :mod:`lab.metrics` computes from, built from a bundle instead of the database.

    One study version, as :func:`lab.analysis_data.load_study` reads it: sessions, items (from
    the stored spec) and conditions go through the same joins and derivations, so every
    figure equals the figure computed from the database the bundle came from.

    Args:
        bundle: A bundle read with all tables.
        version: A study version in the bundle (default: the newest).

    Returns:
        A :class:`lab.analysis_data.AnalysisData`.

    Raises:
        BundleError: The version is not in the bundle.
    """
    from . import analysis_data as ad

    v = _bundle_version(bundle, version)
    people = bundle["participants"]
    people = people[people["study_version"] == v]
    participants = pd.DataFrame(
        {
            "id": people["id"].astype("int64"),
            "study_id": people["study_version"].astype("int64"),
            "kind": people["kind"].astype(str).astype("category"),
            "status": people["status"].astype(str).astype("category"),
        }
    ).reset_index(drop=True)
    conv = bundle["conversations"]
    conv = conv[conv["study_version"] == v].reset_index(drop=True)
    session = _session_frame(conv)
    items = bundle["items"]
    items = items[items["study_version"] == v]
    item = pd.DataFrame(
        {
            "id": items["id"].astype("int64").to_numpy(),
            "key": items["key"].astype(str).to_numpy(),
            "kind": items["kind"].astype(str).to_numpy(),
            "payload": list(items["payload"]),
        }
    )
    cond_cols = ["condition_id", "condition", "reveal", "presupposition", "intervention", "model_key"]
    cond = conv.drop_duplicates("condition_id")[cond_cols].rename(columns={"condition_id": "id", "condition": "key"})
    cond["id"] = cond["id"].astype("int64")
    sessions = set(session["id"])
    turns = _turns_frame(bundle["turns"], sessions)
    labels = bundle["labels"]
    labels = labels[labels["turn_id"].isin(set(turns["id"]))]
    repairs = bundle["repair_sequences"]
    repairs = repairs[repairs["session_id"].isin(sessions)]
    repair_frame = pd.DataFrame({c: repairs[c] for c in ad.REPAIR_COLUMNS}).reset_index(drop=True)
    for c, dtype in ad.REPAIR_COLUMNS.items():
        repair_frame[c] = repair_frame[c].astype(dtype)
    answers = bundle["responses"]
    data = ad.from_tables(
        {
            "participants": participants,
            "session": session,
            "item": item,
            "condition": cond,
            "turns": turns,
            "labels": _label_frame(labels),
            "repair_sequences": repair_frame,
            "responses": _responses_frame(answers[answers["participant_id"].isin(set(participants["id"]))]),
        },
        slug=bundle.meta["study"],
        versions=[v],
    )
    data.judge_versions = _judge_versions(labels)
    data.conversations = ad.with_score_flags(data.conversations, ad.event_score_flags(bundle.tables.get("events")))
    return data


def _bundle_version(bundle: Bundle, version: int | None) -> int:
    """The study version to analyse: the one asked for, else the bundle's newest.

    Raises:
        BundleError: The bundle lists no version, or not this one.
    """
    versions = sorted(int(s["version"]) for s in bundle.meta.get("studies", []))
    if not versions:
        raise BundleError(f"{bundle.path}: bundle.json lists no study version")
    v = versions[-1] if version is None else version
    if v not in versions:
        raise BundleError(f"no version {v} in the bundle (versions: {', '.join(map(str, versions))})")
    return v


def _session_frame(conv: pd.DataFrame) -> pd.DataFrame:
    """The version's conversations with the columns and types the database loader reads."""
    return pd.DataFrame(
        {
            "id": conv["id"].astype("int64"),
            "study_id": conv["study_version"].astype("int64"),
            "participant_id": conv["participant_id"].astype("int64"),
            "item_id": conv["item_id"].astype("int64"),
            "condition_id": conv["condition_id"].astype("int64"),
            "position": conv["position"].astype("int64"),
            "model": conv["model"].astype("string"),
            "status": conv["status"].astype("string"),
            "outcome": conv["outcome"].astype("string"),
            "score": conv["score"].astype("float64"),
            "probe": conv["probe"],
        }
    )


def _turns_frame(all_turns: pd.DataFrame, sessions: set[int]) -> pd.DataFrame:
    """The conversations' turns, their text reduced to its length as the database loader reads it."""
    from . import analysis_data as ad

    all_turns = all_turns[all_turns["session_id"].isin(sessions)]
    turns = pd.DataFrame({c: all_turns[c] for c in ad.TURN_COLUMNS})
    turns["content_chars"] = all_turns["content"].fillna("").astype(str).str.len().astype("int64")
    turns["is_error"] = all_turns["error"].notna().astype(bool)
    turns["n_shards"] = [len(v) if isinstance(v, list) else 0 for v in all_turns["shards"]]
    return turns


def _label_frame(labels: pd.DataFrame) -> pd.DataFrame:
    """The labels with the columns and types the database loader reads."""
    return pd.DataFrame(
        {
            "id": labels["id"].astype("int64"),
            "turn_id": labels["turn_id"].astype("int64"),
            "annotator": labels["annotator"].astype(str).astype("category"),
            "layer": labels["layer"].astype(str).astype("category"),
            "code": labels["code"].astype(str).astype("category"),
            "confidence": labels["confidence"].astype("float64"),
            "supersedes_id": labels["supersedes_id"].astype("float64"),
        }
    )


def _responses_frame(answers: pd.DataFrame) -> pd.DataFrame:
    """The survey answers, each value unwrapped from its stored ``{"value": …}``."""
    return pd.DataFrame(
        {
            "id": answers["id"].astype("int64"),
            "participant_id": answers["participant_id"].astype("int64"),
            "session_id": answers["session_id"].astype("float64"),
            "question": answers["question"].astype("string"),
            "value": pd.Series(
                [v.get("value") if isinstance(v, dict) else v for v in answers["value"]], index=answers.index, dtype=object
            ),
        }
    ).reset_index(drop=True)


def _judge_versions(labels: pd.DataFrame) -> dict[tuple[str, str], str]:
    """The judge version in the newest label of each automatic annotator per layer (as the database loader reads it)."""
    out: dict[tuple[str, str], str] = {}
    auto = labels[labels["annotator"].astype(str).str.startswith("auto:")]
    for (annotator, layer), group in auto.groupby([auto["annotator"].astype(str), auto["layer"].astype(str)]):
        meta = group.loc[group["id"].idxmax(), "meta"]
        version = meta.get("version") if isinstance(meta, dict) else None
        if version:
            out[(str(annotator), str(layer))] = str(version)
    return out
