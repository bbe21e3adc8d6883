"""A study's data as one typed pandas frame per table, read in bulk for analysis.

Frames keep the database's own table and column names wherever a column comes straight
from a table (``participants``, ``conversations`` (the ``session`` table), ``turns``,
``labels``, ``repair_sequences``, ``responses``, ``events``), so an export bundle with the
same names loads into the same frames (:func:`from_tables`). Columns the loader derives
carry names no table uses (``item_kind``, ``content_chars``, ``n_shards``…).

Turn text is never loaded: the measures need its length, which the database computes.
Rows are fetched with plain Core ``SELECT``s through the driver's cursor, without ORM
objects, so a million turns load in a few seconds.

Label sources: :func:`resolve_labels` chooses, per turn and layer, the code a figure uses
(adjudicated gold, the human majority, or an automatic judge). It is the one place to point
at the annotation module's resolution once that exists.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # pandas-stubs is not installed
from sqlalchemy import Engine, func, select, text

from .errors import LabError
from .schema import (
    PARTICIPANT_CONVERSATION_SQL,
    REAL_PARTICIPANT_SQL,
    TURN_ROLES,
    ChatSession,
    Condition,
    ItemRow,
    Study,
)

LABEL_SOURCES = ("best", "gold", "majority", "auto")
"""Label sources a figure can be asked for: ``best`` is gold, else human majority, else auto."""

GOLD_ANNOTATOR = "gold"
"""Annotator name of adjudicated labels."""

AUTO_PREFIX = "auto:"
"""Annotator prefix of automatic judges (``auto:rules``, ``auto:llm:<model>``)."""

ABSTAIN_CODES = frozenset({"UNSURE"})
"""Codes with which a judge abstains; they never count as findings."""


class AnalysisError(LabError, LookupError):
    """A study, version or label source that cannot be analysed; the message says which."""


@dataclass
class AnalysisData:
    """One study version's tables as frames, ready for :mod:`lab.metrics`."""

    slug: str
    """The study's slug."""
    versions: list[int]
    """Study versions whose rows the frames hold."""
    participants: pd.DataFrame
    """``participant`` rows: id, study_id, kind (human | simulated), status."""
    conversations: pd.DataFrame
    """``session`` rows joined with their item (``item_key``, ``item_kind``,
    ``needs_clarification``, ``n_required``, ``task``: the task family of
    :func:`lab.scoring.family_of`) and condition (``condition_key``, ``reveal``,
    ``presupposition``, ``intervention``, ``model_key``), the participant's kind
    (``participant_kind``), the knowledge probe's score (``probe_score``), ``no_attempt``
    (the stored evaluation says the assistant never attempted an answer) and
    ``score_authors`` (the authors' own math comparison, where it was recorded)."""
    turns: pd.DataFrame
    """``turn`` rows without text: id, session_id, index, role, source, tokens_in,
    tokens_out, latency_ms, partial, plus ``content_chars``, ``n_shards`` and ``is_error``."""
    labels: pd.DataFrame
    """Current ``label`` rows (superseded ones dropped): id, turn_id, annotator, layer, code,
    confidence."""
    repair_sequences: pd.DataFrame
    """``repair_sequence`` rows."""
    responses: pd.DataFrame
    """``response`` rows, ``value`` unwrapped from its ``{"value": …}`` envelope."""
    events: pd.DataFrame | None = None
    """``event`` rows (kind and ids), loaded only when asked for."""
    judge_versions: dict[tuple[str, str], str] = field(default_factory=dict)
    """(automatic annotator, layer) → the judge version of its newest label on that layer
    (``("auto:rules", "P")`` → ``rules-2``; one judge labels each layer under its own version)."""

    @property
    def state_key(self) -> tuple[Any, ...]:
        """Changes whenever a figure could: versions, row counts and the newest label id."""
        newest = int(self.labels["id"].max()) if len(self.labels) else 0
        return (self.slug, tuple(self.versions), len(self.conversations), len(self.turns), len(self.labels), newest)


PARTICIPANT_COLUMNS = {"id": "int64", "study_id": "int64", "kind": "category", "status": "category"}
CONVERSATION_COLUMNS = {
    "id": "int64",
    "study_id": "int64",
    "participant_id": "int64",
    "item_id": "int64",
    "condition_id": "int64",
    "position": "int64",
    "model": "string",
    "status": "string",
    "outcome": "string",
    "score": "float64",
}
TURN_COLUMNS = {
    "id": "int64",
    "session_id": "int64",
    "index": "int64",
    "role": "category",
    "source": "category",
    "tokens_in": "float64",
    "tokens_out": "float64",
    "latency_ms": "float64",
    "partial": "bool",
}
LABEL_COLUMNS = {
    "id": "int64",
    "turn_id": "int64",
    "annotator": "category",
    "layer": "category",
    "code": "category",
    "confidence": "float64",
    "supersedes_id": "float64",
}
REPAIR_COLUMNS = {
    "id": "int64",
    "session_id": "int64",
    "annotator": "string",
    "trouble_turn_id": "float64",
    "initiation_turn_id": "float64",
    "repair_turn_id": "float64",
    "initiation": "string",
    "initiator": "string",
    "trouble_type": "string",
    "outcome": "string",
    "turns_to_resolution": "float64",
}
RESPONSE_COLUMNS = {"id": "int64", "participant_id": "int64", "session_id": "float64", "question": "string", "value": "object"}
EVENT_COLUMNS = {"id": "int64", "participant_id": "float64", "session_id": "float64", "kind": "string"}


def _frame(rows: pd.DataFrame | Iterable[tuple[Any, ...]], columns: Mapping[str, str]) -> pd.DataFrame:
    """Rows (or a positional frame) as a frame with the given column names and dtypes."""
    if isinstance(rows, pd.DataFrame):
        df = rows.set_axis(list(columns), axis=1) if len(rows.columns) == len(columns) else pd.DataFrame(columns=list(columns))
    else:
        df = pd.DataFrame.from_records(list(rows), columns=list(columns))
    for col, dtype in columns.items():
        if dtype == "bool":
            df[col] = df[col].fillna(False).astype(bool)
        elif dtype != "object":
            df[col] = df[col].astype(dtype)
    return df


def _fetch(engine: Engine, sql: str) -> pd.DataFrame:
    """All rows of one SELECT as a frame with positional column labels.

    Arrow-native through ADBC on Postgres when its driver is installed (several times faster
    than Python rows); otherwise the driver cursor, without SQLAlchemy row objects.
    """
    df = _fetch_arrow(engine, sql)
    if df is None:
        with engine.connect() as conn:
            result = conn.exec_driver_sql(sql)
            n = len(result.keys())
            rows = result.cursor.fetchall() if result.cursor is not None else []
        df = pd.DataFrame.from_records(rows, columns=range(n)) if rows else pd.DataFrame(columns=range(n))
    df.columns = range(len(df.columns))
    return df


@dataclass(frozen=True)
class _Encoding:
    """A text column sent as the index of its value among the column's distinct values."""

    values: list[str]
    sql: str

    def decode(self, codes: pd.Series) -> pd.Categorical:
        """The codes back as a categorical of the values."""
        ints = pd.to_numeric(codes).fillna(-1).astype("int64").to_numpy()
        return pd.Categorical.from_codes(ints, categories=pd.Index(self.values, dtype=object))


def _encoding(values: list[str], column: str) -> _Encoding:
    """A CASE expression mapping a column's values to 0, 1, … (other values and NULL give NULL)."""
    if not values:
        return _Encoding([], "NULL")
    whens = " ".join(f"WHEN '{v.replace(chr(39), chr(39) * 2)}' THEN {i}" for i, v in enumerate(values))
    return _Encoding(values, f"CASE {column} {whens} END")


def _fetch_arrow(engine: Engine, sql: str) -> pd.DataFrame | None:
    """The rows through ADBC on Postgres, or None when its driver is not installed.

    Not used for SQLite: the ADBC SQLite driver did not see rows committed to the write-ahead
    log by the app's connections (tried here), and the lab's SQLite runs in WAL mode.
    """
    url = engine.url
    try:
        if url.get_backend_name() == "postgresql":
            import adbc_driver_postgresql.dbapi as adbc_pg  # type: ignore[import-untyped]  # adbc ships no type information

            conn = adbc_pg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
        else:
            return None
    except ImportError:
        return None
    try:
        cur = conn.cursor()
        cur.execute(sql)
        table = cur.fetch_arrow_table()
        cur.close()
    finally:
        conn.close()
    return table.to_pandas()


def study_ids(engine: Engine, slug: str, version: int | None = None) -> tuple[list[int], list[int]]:
    """Study row ids and versions for a slug: one version, or the newest when None.

    Raises:
        AnalysisError: The slug or version does not exist.
    """
    with engine.connect() as conn:
        rows = conn.execute(select(Study.id, Study.version).where(Study.slug == slug).order_by(Study.version)).all()
    if not rows:
        raise AnalysisError(f"no study with slug '{slug}'")
    if version is None:
        chosen = [rows[-1]]
    else:
        chosen = [r for r in rows if r.version == version]
        if not chosen:
            raise AnalysisError(f"study '{slug}' has no version {version} (versions: {', '.join(str(r.version) for r in rows)})")
    return [r.id for r in chosen], [r.version for r in chosen]


def data_state(engine: Engine, slug: str, version: int | None = None) -> tuple[Any, ...]:
    """A cheap key that changes whenever a study's figures could change.

    Per table the figures read, the row count and the newest id: an insert raises the
    newest id, a deletion (a withdrawal, a pruned run) lowers the count. The chosen study's
    conversations add what is updated in place (status, end time, score: a rescore changes
    no id). The database's address is part of the key, so two databases served by one
    process (or tests in one process) never share a cached figure.
    """
    ids, versions = study_ids(engine, slug, version)
    sessions = ChatSession.__table__
    with engine.connect() as conn:
        tables = tuple(
            tuple(conn.execute(text(f"SELECT COUNT(*), MAX(id) FROM {table}")).one())  # noqa: S608 - fixed table names
            for table in ("participant", "session", "turn", "label", "repair_sequence", "response")
        )
        chats = tuple(
            conn.execute(
                select(
                    func.count(sessions.c.id),
                    func.count(sessions.c.ended_at),
                    func.max(sessions.c.ended_at),
                    func.count(sessions.c.score),
                    func.sum(sessions.c.score),
                ).where(sessions.c.study_id.in_(ids))
            ).one()
        )
    return (engine.url.render_as_string(hide_password=True), slug, tuple(ids), tuple(versions), tables, chats)


def study_versions(engine: Engine, slug: str) -> list[int]:
    """The versions a study has, oldest first."""
    with engine.connect() as conn:
        return [int(v) for v in conn.execute(select(Study.version).where(Study.slug == slug).order_by(Study.version)).scalars()]


def load_study(engine: Engine, slug: str, version: int | None = None, *, events: bool = False) -> AnalysisData:
    """Read one study version's tables into frames.

    Args:
        engine: The lab database (SQLite or Postgres).
        slug: The study.
        version: A study version; None reads the newest.
        events: Also read the ``event`` table (kinds and ids only).

    Returns:
        The frames; empty frames (with their columns) for a study without data.

    Raises:
        AnalysisError: Unknown slug or version.
    """
    ids, versions = study_ids(engine, slug, version)
    ids_sql = ",".join(str(int(i)) for i in ids)
    participants = _frame(
        _fetch(
            engine, f"SELECT id, study_id, kind, status FROM participant WHERE study_id IN ({ids_sql}) AND {REAL_PARTICIPANT_SQL}"
        ),
        PARTICIPANT_COLUMNS,
    )
    conversations = _load_conversations(engine, ids, ids_sql, participants)
    turns = _load_turns(engine, ids_sql)
    labels = _load_labels(engine, ids_sql)
    judge_versions = _judge_versions(engine, labels)
    repairs = _frame(
        _fetch(
            engine,
            "SELECT r.id, r.session_id, r.annotator, r.trouble_turn_id, r.initiation_turn_id, r.repair_turn_id, r.initiation, "
            "r.initiator, r.trouble_type, r.outcome, r.turns_to_resolution FROM repair_sequence r "
            f"JOIN session s ON s.id = r.session_id WHERE s.study_id IN ({ids_sql}) AND s.{PARTICIPANT_CONVERSATION_SQL}",
        ),
        REPAIR_COLUMNS,
    )
    response_rows = _fetch(
        engine,
        "SELECT r.id, r.participant_id, r.session_id, r.question, CAST(r.value AS TEXT) FROM response r "
        f"JOIN participant p ON p.id = r.participant_id WHERE p.study_id IN ({ids_sql})",
    )
    responses = _frame([(*r[:4], _unwrap(r[4])) for r in response_rows.itertuples(index=False, name=None)], RESPONSE_COLUMNS)
    event_frame = None
    if events:
        event_frame = _frame(
            _fetch(
                engine,
                "SELECT e.id, e.participant_id, e.session_id, e.kind FROM event e "
                f"JOIN participant p ON p.id = e.participant_id WHERE p.study_id IN ({ids_sql}) AND p.{REAL_PARTICIPANT_SQL}",
            ),
            EVENT_COLUMNS,
        )
    return AnalysisData(
        slug=slug,
        versions=versions,
        participants=participants,
        conversations=conversations,
        turns=turns,
        labels=current_labels(labels),
        repair_sequences=repairs,
        responses=responses,
        events=event_frame,
        judge_versions=judge_versions,
    )


def _load_conversations(engine: Engine, ids: list[int], ids_sql: str, participants: pd.DataFrame) -> pd.DataFrame:
    """The study's participant conversations with their item, condition, probe and score columns."""
    sessions = _frame(
        _fetch(
            engine,
            "SELECT id, study_id, participant_id, item_id, condition_id, position, model, status, outcome, score "
            f"FROM session WHERE study_id IN ({ids_sql}) AND {PARTICIPANT_CONVERSATION_SQL}",
        ),
        CONVERSATION_COLUMNS,
    )
    with engine.connect() as conn:
        item_rows = conn.execute(
            select(ItemRow.id, ItemRow.key, ItemRow.kind, ItemRow.payload).where(ItemRow.study_id.in_(ids))
        ).all()
        cond_rows = conn.execute(
            select(
                Condition.id,
                Condition.key,
                Condition.reveal,
                Condition.presupposition,
                Condition.intervention,
                Condition.model_key,
            ).where(Condition.study_id.in_(ids))
        ).all()
        # A None probe is stored as the JSON scalar null, which IS NOT NULL does not exclude.
        probe_rows = conn.execute(
            text(
                f"SELECT id, CAST(probe AS TEXT) FROM session WHERE study_id IN ({ids_sql}) AND {PARTICIPANT_CONVERSATION_SQL} "
                "AND CAST(probe AS TEXT) <> 'null'"
            )
        ).all()
    items = pd.DataFrame(
        [
            (
                r.id,
                r.key,
                r.kind,
                _needs_clarification(r.kind, r.payload),
                _n_required(r.kind, r.payload),
                task_of(r.payload, r.key),
            )
            for r in item_rows
        ],
        columns=["item_id", "item_key", "item_kind", "needs_clarification", "n_required", "task"],
    )
    conds = pd.DataFrame(
        [tuple(r) for r in cond_rows],
        columns=["condition_id", "condition_key", "reveal", "presupposition", "intervention", "model_key"],
    )
    probes = pd.DataFrame([(r[0], _probe_score(r[1])) for r in probe_rows], columns=["id", "probe_score"])
    conversations = conversations_frame(sessions, items, conds, participants, probes)
    return with_score_flags(conversations, _score_flags(engine, ids_sql))


def _load_turns(engine: Engine, ids_sql: str) -> pd.DataFrame:
    """The turns of the study's participant conversations, without their text (its length only)."""
    # The database counts shard ids itself, so no JSON text crosses into Python.
    if engine.dialect.name == "postgresql":
        # SQLAlchemy stores a Python None in a JSON column as the JSON scalar null.
        n_shards = "CASE WHEN json_typeof(CAST(t.shards AS json)) = 'array' THEN json_array_length(CAST(t.shards AS json)) END"
    else:
        n_shards = "json_array_length(t.shards)"
    # Text columns with few distinct values travel as small integers (Python shares those
    # objects; every string would be a new one) and become categoricals here.
    role = _encoding(list(TURN_ROLES), "t.role")
    raw_turns = _fetch(
        engine,
        f'SELECT t.id, t.session_id, t."index", {role.sql}, t.source, t.tokens_in, t.tokens_out, t.latency_ms, t.partial, '
        f"LENGTH(t.content), COALESCE({n_shards}, 0), CASE WHEN t.error IS NULL THEN 0 ELSE 1 END "
        f"FROM turn t JOIN session s ON s.id = t.session_id WHERE s.study_id IN ({ids_sql}) AND s.{PARTICIPANT_CONVERSATION_SQL}",
    )
    raw_turns[3] = role.decode(raw_turns[3])
    return turns_frame(raw_turns)


def _load_labels(engine: Engine, ids_sql: str) -> pd.DataFrame:
    """Every label of the study's participant turns, superseded ones too."""
    with engine.connect() as conn:
        # One scan finds the distinct values of all three coded columns.
        combos = conn.execute(text("SELECT DISTINCT annotator, layer, code FROM label")).all()
    annotator, layer, code = (
        _encoding(sorted({str(c[k]) for c in combos}), f"l.{col}") for k, col in enumerate(("annotator", "layer", "code"))
    )
    raw_labels = _fetch(
        engine,
        f"SELECT l.id, l.turn_id, {annotator.sql}, {layer.sql}, {code.sql}, l.confidence, l.supersedes_id FROM label l "
        f"JOIN turn t ON t.id = l.turn_id JOIN session s ON s.id = t.session_id WHERE s.study_id IN ({ids_sql}) "
        f"AND s.{PARTICIPANT_CONVERSATION_SQL}",
    )
    raw_labels[2], raw_labels[3], raw_labels[4] = (
        annotator.decode(raw_labels[2]),
        layer.decode(raw_labels[3]),
        code.decode(raw_labels[4]),
    )
    return _frame(raw_labels, LABEL_COLUMNS)


def conversations_frame(
    sessions: pd.DataFrame,
    items: pd.DataFrame,
    conditions: pd.DataFrame,
    participants: pd.DataFrame,
    probes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Join session rows with their item, condition, participant kind and probe score.

    Args:
        sessions: ``session`` rows (``CONVERSATION_COLUMNS``).
        items: item_id, item_key, item_kind, needs_clarification, n_required (and ``task``).
        conditions: condition_id, condition_key, reveal, presupposition, intervention, model_key.
        participants: ``participant`` rows (id, kind).
        probes: session id and ``probe_score`` (1 when the model answered the probe correctly).
    """
    if "task" not in items:
        items = items.assign(task=None)
    df = sessions.merge(items, on="item_id", how="left").merge(conditions, on="condition_id", how="left")
    kinds = participants[["id", "kind"]].rename(columns={"id": "participant_id", "kind": "participant_kind"})
    df = df.merge(kinds, on="participant_id", how="left")
    if probes is not None and len(probes):
        df = df.merge(probes, on="id", how="left")
    else:
        df["probe_score"] = np.nan
    for col in (
        "item_key",
        "item_kind",
        "condition_key",
        "reveal",
        "presupposition",
        "intervention",
        "model_key",
        "participant_kind",
        "task",
    ):
        df[col] = df[col].astype("string")
    df["needs_clarification"] = df["needs_clarification"].astype("boolean")
    df["n_required"] = df["n_required"].fillna(0).astype("int64")
    df["probe_score"] = df["probe_score"].astype("float64")
    df["no_attempt"] = df["no_attempt"].fillna(False).astype(bool) if "no_attempt" in df else False
    return df.sort_values("id", kind="stable").reset_index(drop=True)


def turns_frame(rows: pd.DataFrame | list[tuple[Any, ...]]) -> pd.DataFrame:
    """Turn rows (TURN_COLUMNS, content length, number of shards, error flag) as a frame."""
    cols = [*TURN_COLUMNS, "content_chars", "n_shards", "is_error"]
    if isinstance(rows, pd.DataFrame):
        df = rows.set_axis(cols, axis=1) if len(rows.columns) == len(cols) else pd.DataFrame(columns=cols)
    else:
        df = pd.DataFrame.from_records(rows, columns=cols)
    for col, dtype in TURN_COLUMNS.items():
        df[col] = df[col].fillna(False).astype(bool) if dtype == "bool" else df[col].astype(dtype)
    df["content_chars"] = df["content_chars"].fillna(0).astype("int64")
    df["is_error"] = df["is_error"].astype(bool)
    df["n_shards"] = df["n_shards"].fillna(0).astype("int64")
    return df.sort_values(["session_id", "index"], kind="stable").reset_index(drop=True)


def shard_counts(shards: pd.Series) -> np.ndarray:
    """How many shard ids each JSON list holds (``[1, 3]`` → 2; null or ``[]`` → 0)."""
    s = shards.astype("string").fillna("").str.strip()
    empty = (s == "") | (s == "[]") | (s == "null")
    counts = s.str.count(",").fillna(0).to_numpy(dtype="int64") + 1
    return np.where(empty.to_numpy(dtype=bool), 0, counts)


def from_tables(tables: Mapping[str, pd.DataFrame], slug: str = "", versions: list[int] | None = None) -> AnalysisData:
    """Frames from tables named as the database names them (an export bundle's CSV/Parquet).

    Args:
        tables: ``participants``, ``conversations`` (already joined as :func:`load_study`
            returns them) or ``session`` plus ``item`` and ``condition``, ``turns``,
            ``labels``, and optionally ``repair_sequences``, ``responses``, ``events``.
        slug: The study's slug, for figure captions.
        versions: The study versions the tables hold.
    """
    participants = tables["participants"].copy()
    if "conversations" in tables:
        conversations = tables["conversations"].copy()
    else:
        items = tables["item"].rename(columns={"id": "item_id", "key": "item_key", "kind": "item_kind"})
        if "n_required" not in items:
            items["needs_clarification"] = [
                _needs_clarification(k, p) for k, p in zip(items["item_kind"], items["payload"], strict=True)
            ]
            items["n_required"] = [_n_required(k, p) for k, p in zip(items["item_kind"], items["payload"], strict=True)]
        if "task" not in items:
            items["task"] = (
                [task_of(p, k) for p, k in zip(items["payload"], items["item_key"], strict=True)] if "payload" in items else None
            )
        conds = tables["condition"].rename(columns={"id": "condition_id", "key": "condition_key"})
        sessions = tables["session"]
        probes = None
        if "probe" in sessions:
            probes = pd.DataFrame({"id": sessions["id"], "probe_score": [_probe_score(p) for p in sessions["probe"]]})
        conversations = conversations_frame(
            sessions[list(CONVERSATION_COLUMNS)],
            items[["item_id", "item_key", "item_kind", "needs_clarification", "n_required", "task"]],
            conds[["condition_id", "condition_key", "reveal", "presupposition", "intervention", "model_key"]],
            participants,
            probes,
        )
    for col, default in (("task", None), ("no_attempt", False), ("score_authors", np.nan)):
        if col not in conversations:
            conversations[col] = default
    conversations["task"] = conversations["task"].astype("string")
    conversations["no_attempt"] = conversations["no_attempt"].fillna(False).astype(bool)
    turns = tables["turns"].copy()
    if "content_chars" not in turns:
        turns["content_chars"] = turns["content"].fillna("").astype(str).str.len() if "content" in turns else 0
    if "n_shards" not in turns:
        turns["n_shards"] = (
            shard_counts(turns["shards"].map(lambda v: v if isinstance(v, str) else json.dumps(v))) if "shards" in turns else 0
        )
    if "is_error" not in turns:
        turns["is_error"] = turns["error"].notna() if "error" in turns else False
    turns = _coerce(turns, TURN_COLUMNS | {"content_chars": "int64", "n_shards": "int64", "is_error": "bool"})
    labels = tables["labels"].copy()
    if "supersedes_id" not in labels:
        labels["supersedes_id"] = np.nan
    labels = _coerce(labels, LABEL_COLUMNS)
    empty_repairs = pd.DataFrame({c: pd.Series(dtype=d) for c, d in REPAIR_COLUMNS.items()})
    empty_responses = pd.DataFrame({c: pd.Series(dtype=d) for c, d in RESPONSE_COLUMNS.items()})
    return AnalysisData(
        slug=slug,
        versions=versions or [],
        participants=participants,
        conversations=conversations,
        turns=turns.sort_values(["session_id", "index"], kind="stable").reset_index(drop=True),
        labels=current_labels(labels),
        repair_sequences=tables.get("repair_sequences", empty_repairs),
        responses=tables.get("responses", empty_responses),
        events=tables.get("events"),
    )


def _coerce(df: pd.DataFrame, dtypes: Mapping[str, str]) -> pd.DataFrame:
    """Columns present in ``df`` cast to the loader's dtypes (an empty table reads as object)."""
    for col, dtype in dtypes.items():
        if col not in df:
            continue
        if dtype == "bool":
            df[col] = df[col].fillna(False).astype(bool)
        elif dtype == "int64":
            df[col] = pd.to_numeric(df[col]).fillna(0).astype("int64")
        elif dtype != "object":
            df[col] = df[col].astype(dtype)
    return df


def current_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """Each annotator's newest label per turn and layer (newer labels supersede older ones)."""
    if labels.empty:
        return labels.reset_index(drop=True)
    out = labels.sort_values("id", kind="stable").drop_duplicates(["turn_id", "annotator", "layer"], keep="last")
    return out.reset_index(drop=True)


def _judge_versions(engine: Engine, labels: pd.DataFrame) -> dict[tuple[str, str], str]:
    """The judge version in the newest label's meta of each automatic annotator on each layer."""
    if labels.empty:
        return {}
    auto = labels[(annotator_class(labels["annotator"]) == "auto").to_numpy(dtype=bool)]
    if auto.empty:
        return {}
    newest = auto.groupby([auto["annotator"].astype(str), auto["layer"].astype(str)])["id"].max()
    ids = ",".join(str(int(i)) for i in newest.to_numpy())
    out: dict[tuple[str, str], str] = {}
    rows = _fetch(engine, f"SELECT annotator, layer, CAST(meta AS TEXT) FROM label WHERE id IN ({ids})")
    for annotator, layer, meta in rows.itertuples(index=False, name=None):
        try:
            version = (json.loads(meta) or {}).get("version") if meta else None
        except (TypeError, ValueError):
            version = None
        if version:
            out[(str(annotator), str(layer))] = str(version)
    return out


def _payload(payload: Any) -> dict[str, Any]:
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return {}
    return payload if isinstance(payload, dict) else {}


def _needs_clarification(kind: str, payload: Any) -> bool | None:
    """For clarification items, whether a good assistant should ask; None for other kinds."""
    if kind != "clarification":
        return None
    return bool(_payload(payload).get("needs_clarification"))


def _n_required(kind: str, payload: Any) -> int:
    """Pieces of information an item needs before it can be answered (shards or withheld values)."""
    p = _payload(payload)
    if kind == "sharded":
        return len(p.get("shards") or [])
    if kind == "clarification":
        return len(p.get("missing") or [])
    return 0


def task_of(payload: Any, key: str = "") -> str | None:
    """The task family of an item payload (:func:`lab.scoring.family_of`), None when nothing scores it."""
    from .items import parse_item
    from .scoring import family_of

    try:
        item = parse_item(_payload(payload), key)
    except Exception:  # noqa: BLE001 - an item the current parser refuses simply has no family
        return None
    return family_of(item)


def score_flags(session_ids: Iterable[Any], data: Iterable[Any]) -> tuple[list[int], dict[int, float]]:
    """Flags from each conversation's newest ``task_score`` data.

    Returns:
        The conversations without an answer attempt, and the authors' own math score of
        those where it was recorded (``details.authors_value``).
    """
    none: list[int] = []
    authors: dict[int, float] = {}
    for sid, record in zip(session_ids, data, strict=True):
        details = _payload(record).get("details")
        if not isinstance(details, dict):
            continue
        if details.get("no_attempt"):
            none.append(int(sid))
        if isinstance(details.get("authors_value"), int | float):
            authors[int(sid)] = float(details["authors_value"])
    return none, authors


def with_score_flags(conversations: pd.DataFrame, flags: tuple[list[int], dict[int, float]]) -> pd.DataFrame:
    """The conversations with ``no_attempt`` and ``score_authors`` (NaN where the lab's score is the authors')."""
    none, authors = flags
    conversations["no_attempt"] = conversations["id"].isin(none)
    conversations["score_authors"] = conversations["id"].map(authors).astype("float64")
    return conversations


def event_score_flags(events: pd.DataFrame | None) -> tuple[list[int], dict[int, float]]:
    """:func:`score_flags` from an ``event`` frame with ``id``, ``session_id``, ``kind`` and ``data``."""
    if events is None or events.empty or not {"kind", "data", "session_id", "id"} <= set(events.columns):
        return [], {}
    scores = events[events["kind"] == "task_score"].sort_values("id").drop_duplicates("session_id", keep="last")
    return score_flags(scores["session_id"], scores["data"])


def _score_flags(engine: Engine, ids_sql: str) -> tuple[list[int], dict[int, float]]:
    """:func:`score_flags` read from the database (the newest ``task_score`` event of each conversation)."""
    rows = _fetch(
        engine,
        "SELECT e.session_id, CAST(e.data AS TEXT) FROM event e WHERE e.id IN (SELECT MAX(x.id) FROM event x "
        f"JOIN session s ON s.id = x.session_id WHERE x.kind = 'task_score' AND s.study_id IN ({ids_sql}) "
        "GROUP BY x.session_id)",
    )
    return score_flags(rows[0], rows[1]) if len(rows) else ([], {})


def _probe_score(probe: Any) -> float:
    """The knowledge probe's score (1 correct, 0 wrong), NaN when it was not scored."""
    p = _payload(probe)
    value = p.get("score")
    if isinstance(value, dict):
        value = value.get("value")
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(p.get("correct"), bool):
        return float(p["correct"])
    return float("nan")


def _unwrap(value: Any) -> Any:
    """A response's answer without its ``{"value": …}`` envelope."""
    v = _payload(value) if isinstance(value, str) else value
    if isinstance(v, dict) and "value" in v:
        return v["value"]
    return v


# --- Label sources -----------------------------------------------------------------


def annotator_class(annotator: pd.Series) -> pd.Series:
    """``gold``, ``auto`` or ``human`` per label, classified once per distinct annotator."""

    def kind(a: object) -> str:
        return GOLD_ANNOTATOR if a == GOLD_ANNOTATOR else "auto" if str(a).startswith(AUTO_PREFIX) else "human"

    if isinstance(annotator.dtype, pd.CategoricalDtype):
        # One classification per category, spread by the integer codes.
        per_category = np.array([kind(a) for a in annotator.cat.categories] + [None], dtype=object)
        return pd.Series(per_category[annotator.cat.codes.to_numpy()], index=annotator.index, dtype=object)
    classes = {a: kind(a) for a in pd.Series(annotator.unique()).dropna()}
    return annotator.map(classes).astype(object)


def is_human_annotator(annotator: pd.Series) -> np.ndarray:
    """True for a person's account (neither ``gold`` nor ``auto:…``)."""
    return (annotator_class(annotator) == "human").to_numpy(dtype=bool)


def resolve_labels(data: AnalysisData, source: str = "best", layers: Iterable[str] | None = None) -> pd.DataFrame:
    """The one code per turn and layer a figure uses, and where it came from.

    Abstentions (``UNSURE``) are dropped first, so they never count as findings.

    Args:
        data: The study's frames.
        source: ``gold`` (adjudicated labels only), ``majority`` (the code most human
            annotators gave; ties give no code), ``auto`` (the automatic judge with most
            labels), ``auto:<judge>`` (that judge), or ``best`` (per turn and layer: gold,
            else human majority, else the automatic judge).
        layers: Restrict to these layers (``S``, ``P``, ``G``, ``R``).

    Returns:
        Columns turn_id, layer, code, label_source (``gold``, ``majority``, or the judge's
        annotator name with its version, ``auto:rules@rules-1``).

    Raises:
        AnalysisError: An unknown source.
    """
    labels = data.labels
    if layers is not None:
        labels = labels[labels["layer"].isin(list(layers))]
    abstain = [c for c in labels["code"].unique() if str(c).upper() in ABSTAIN_CODES]
    if abstain:
        labels = labels[~labels["code"].isin(abstain)]
    if source not in LABEL_SOURCES and not source.startswith(AUTO_PREFIX):
        raise AnalysisError(f"unknown label source '{source}': use one of {', '.join(LABEL_SOURCES)} or auto:<judge>")
    parts: list[pd.DataFrame] = []
    cls = annotator_class(labels["annotator"]).to_numpy()
    if source in ("best", "gold"):
        parts.append(_tagged(labels[cls == GOLD_ANNOTATOR], "gold"))
    if source in ("best", "majority"):
        parts.append(_majority(labels[cls == "human"]))
    if source == "best" or source.startswith("auto"):
        auto = labels[cls == "auto"]
        judge = source if source.startswith(AUTO_PREFIX) else _main_judge(auto)
        chosen = auto[auto["annotator"] == judge]
        # Each layer names the version that wrote its labels, not the judge's newest on any layer.
        for layer, rows in chosen.groupby(chosen["layer"].astype(str), sort=True):
            version = data.judge_versions.get((str(judge), layer))
            parts.append(_tagged(rows, f"{judge}@{version}" if version else str(judge)))
    frames = [p for p in parts if len(p)]
    if not frames:
        return pd.DataFrame(
            {
                "turn_id": pd.Series(dtype="int64"),
                "layer": pd.Series(dtype="string"),
                "code": pd.Series(dtype="string"),
                "label_source": pd.Series(dtype="string"),
            }
        )
    out = pd.concat(frames, ignore_index=True)
    # Parts are in priority order, so the first row per turn and layer is the preferred source.
    out = out.drop_duplicates(["turn_id", "layer"], keep="first")
    return out.reset_index(drop=True)


def _tagged(labels: pd.DataFrame, name: str) -> pd.DataFrame:
    """turn_id, layer, code (kept categorical: no per-row strings) and the source's name."""
    out = labels[["turn_id", "layer", "code"]].reset_index(drop=True)
    out["label_source"] = name
    return out


def _main_judge(auto: pd.DataFrame) -> str | None:
    """The automatic annotator with most labels (ties: the alphabetically first)."""
    if auto.empty:
        return None
    counts = auto["annotator"].astype(str).value_counts()
    top = counts[counts == counts.max()].index
    return str(sorted(top)[0])


def _majority(human: pd.DataFrame) -> pd.DataFrame:
    """The code more human annotators gave than any other, per turn and layer; ties dropped."""
    if human.empty:
        return _tagged(human, "majority")
    counts = human.groupby(["turn_id", "layer", "code"], observed=True).size().rename("n").reset_index()
    top = counts.groupby(["turn_id", "layer"], observed=True)["n"].transform("max")
    winners = counts[counts["n"] == top]
    unique = winners.groupby(["turn_id", "layer"], observed=True)["code"].transform("size") == 1
    return _tagged(winners[unique], "majority")
