"""Write a study's data as a bundle: eight tables in batches, the spec, the provenance and the docs.

Rows are read in batches (Arrow batches through ADBC where the driver is installed, see
:mod:`lab.export._arrow`; else server-side cursors) and written batch by batch (Parquet row
groups, CSV or JSONL chunks), so memory stays flat however large the study. Participants are
renumbered 1, 2, … in order of arrival (a pseudonym stable within one bundle); staff
usernames become ``annotator-N``; private columns are never selected.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no py.typed marker or stubs
from sqlalchemy import ColumnElement, Engine, Select, Text, and_, cast, literal_column, or_, select

from ..errors import LabError
from ..schema import (
    Account,
    ChatSession,
    Condition,
    Event,
    ItemRow,
    Label,
    Participant,
    RepairSequence,
    Response,
    Study,
    Turn,
    participant_conversation,
    real_participant,
)
from . import _arrow as fast
from ._dictionary import JSON_TYPES, TABLES_BY_NAME, Table
from ._docs import table_file
from ._privacy import Scrubber
from ._rows import Pseudonyms, RowShaper, utc

BundleFormat = Literal["parquet", "csv", "jsonl"]
FORMATS: tuple[str, ...] = ("parquet", "csv", "jsonl")
PARTICIPANT_KINDS: dict[str, tuple[str, ...] | None] = {"human": ("human",), "simulated": ("simulated",), "all": None}
EXTENSIONS = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}
BATCH_ROWS = 65_536
"""Rows per batch (one Parquet row group each): large enough for speed, small enough for memory."""
RUN_EVENT_KINDS = ("simulate_run",)
"""Study-level events (no participant) that belong to a study through their data."""


class ExportError(LabError, ValueError):
    """An export that cannot be made (unknown study, bad option); the message says why."""


@dataclass(frozen=True)
class ExportOptions:
    """Which data a bundle holds and how it is written."""

    format: str = "parquet"
    """parquet, csv or jsonl."""
    participants: str = "all"
    """human, simulated or all."""
    completed_only: bool = False
    """Only participants who completed the study."""
    since: datetime | None = None
    """Only participants who arrived at or after this time (UTC)."""
    include_prolific_ids: bool = False
    """Also write ``private/prolific_ids.csv`` (pseudonym → Prolific ids, completion code)."""
    batch_rows: int = BATCH_ROWS
    """Rows per written batch."""

    def check(self) -> None:
        """Raise :class:`ExportError` naming the first bad option."""
        if self.format not in FORMATS:
            raise ExportError(f"--format must be one of {', '.join(FORMATS)} (got '{self.format}')")
        if self.participants not in PARTICIPANT_KINDS:
            raise ExportError(f"--participants must be one of {', '.join(PARTICIPANT_KINDS)} (got '{self.participants}')")
        if self.batch_rows < 1:
            raise ExportError("batch_rows must be at least 1")

    def describe(self) -> dict[str, Any]:
        """The filters as recorded in ``bundle.json``."""
        return {
            "participants": self.participants,
            "completed_only": self.completed_only,
            "since": self.since.isoformat() if self.since else None,
            "include_prolific_ids": self.include_prolific_ids,
        }


@dataclass
class ExportResult:
    """What an export wrote."""

    out: Path
    """The bundle's folder."""
    rows: dict[str, int] = field(default_factory=dict)
    """Rows written per table."""
    files: list[Path] = field(default_factory=list)
    """Every file written, relative to ``out``."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Time spent on each table."""

    @property
    def bytes(self) -> int:
        """Size of the bundle on disk."""
        return sum((self.out / f).stat().st_size for f in self.files)


def parse_since(value: str) -> datetime:
    """A ``--since`` value (ISO date or date-time; naive means UTC) as an aware datetime."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(value), datetime.min.time())
        except ValueError:
            raise ExportError(f"--since: '{value}' is not a date (use YYYY-MM-DD or an ISO date-time)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- which rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """The study versions and participants a bundle covers."""

    slug: str
    studies: list[Study]
    """Every version of the study, oldest first."""
    options: ExportOptions

    @property
    def study_ids(self) -> list[int]:
        """Database ids of the versions."""
        return [s.id for s in self.studies]

    def participant_filter(self, literal: str | None = None) -> Any:
        """SQL condition on ``participant`` for the chosen participants.

        Args:
            literal: A dialect name when the SQL is rendered with its values inline (the
                Arrow path): the ``--since`` time becomes a literal that dialect compares right.
        """
        p = Participant.__table__.c
        conds: list[ColumnElement[bool]] = [p.study_id.in_(self.study_ids), real_participant(p)]
        kinds = PARTICIPANT_KINDS[self.options.participants]
        if kinds is not None:
            conds.append(p.kind.in_(kinds))
        if self.options.completed_only:
            conds.append(p.status == "completed")
        if self.options.since is not None:
            since = self.options.since.astimezone(UTC)
            if literal == "sqlite":
                # SQLite stores UTC as text in this exact shape, so text order is time order.
                conds.append(p.created_at >= literal_column(f"'{since:%Y-%m-%d %H:%M:%S.%f}'"))
            elif literal is not None:
                conds.append(p.created_at >= literal_column(f"'{since.isoformat()}'::timestamptz"))
            else:
                conds.append(p.created_at >= self.options.since)
        return and_(*conds)

    def participant_ids(self, literal: str | None = None) -> Select[Any]:
        """Subquery of the chosen participants' ids."""
        return select(Participant.__table__.c.id).where(self.participant_filter(literal))

    def session_ids(self, literal: str | None = None) -> Select[Any]:
        """Subquery of the chosen participants' conversations."""
        s = ChatSession.__table__.c
        return select(s.id).where(s.participant_id.in_(self.participant_ids(literal)), participant_conversation(s))


def _json(col: Any) -> Any:
    # JSON travels as its stored text: no parse and re-serialize per row, identical on both databases.
    return cast(col, Text)


def _queries(sel: Selection, literal: str | None = None) -> dict[str, Select[Any]]:
    """The query of every table of the bundle, each limited to the selection."""
    it, st = ItemRow.__table__.c, Study.__table__.c
    rp, ev = Response.__table__.c, Event.__table__.c
    pids, sids = sel.participant_ids(literal), sel.session_ids(literal)
    return {
        "participants": _participants_query(sel, literal),
        "conversations": _conversations_query(pids),
        "turns": _turns_query(sids),
        "labels": _labels_query(sids),
        "repair_sequences": _repairs_query(sids),
        "items": select(it.id, st.version, it.key, it.kind, _json(it.payload), it.source_dataset, it.source_id)
        .join_from(ItemRow, Study, it.study_id == st.id)
        .where(it.study_id.in_(sel.study_ids))
        .order_by(it.id),
        "responses": select(rp.id, rp.participant_id, rp.session_id, rp.question, _json(rp.value), rp.created_at)
        .where(rp.participant_id.in_(pids))
        .order_by(rp.id),
        "events": select(ev.id, ev.participant_id, ev.session_id, ev.kind, _json(ev.data), ev.created_at)
        .where(
            or_(
                ev.participant_id.in_(pids),
                ev.session_id.in_(sids),
                and_(ev.participant_id.is_(None), ev.session_id.is_(None), ev.kind.in_(RUN_EVENT_KINDS)),
            )
        )
        .order_by(ev.id),
    }


def _participants_query(sel: Selection, literal: str | None) -> Select[Any]:
    """The chosen participants with their study version."""
    p, st = Participant.__table__.c, Study.__table__.c
    return (
        select(
            p.id,
            st.version,
            p.kind,
            p.status,
            _json(p.plan),
            p.position,
            _json(p.simulator),
            p.created_at,
            p.updated_at,
            p.consented_at,
            p.completed_at,
        )
        .join_from(Participant, Study, p.study_id == st.id)
        .where(sel.participant_filter(literal))
        .order_by(p.id)
    )


def _conversations_query(pids: Select[Any]) -> Select[Any]:
    """The participants' conversations with their item and condition written out."""
    s, st = ChatSession.__table__.c, Study.__table__.c
    it, co = ItemRow.__table__.c, Condition.__table__.c
    return (
        select(
            s.id,
            s.participant_id,
            st.version,
            s.item_id,
            it.key,
            it.kind,
            s.condition_id,
            co.key,
            co.reveal,
            co.presupposition,
            co.intervention,
            co.model_key,
            s.position,
            s.model,
            _json(s.model_params),
            s.status,
            s.outcome,
            s.score,
            _json(s.probe),
            s.started_at,
            s.ended_at,
        )
        .join_from(ChatSession, Study, s.study_id == st.id)
        .join(ItemRow, s.item_id == it.id)
        .join(Condition, s.condition_id == co.id)
        .where(s.participant_id.in_(pids))
        .order_by(s.id)
    )


def _turns_query(sids: Select[Any]) -> Select[Any]:
    """The conversations' turns in order."""
    t = Turn.__table__.c
    return (
        select(
            t.id,
            t.session_id,
            t.index,
            t.role,
            t.source,
            t.content,
            t.model_content,
            _json(t.shards),
            t.sent_at,
            t.first_token_at,
            t.last_token_at,
            t.model,
            _json(t.params),
            t.tokens_in,
            t.tokens_out,
            t.cost,
            t.latency_ms,
            t.ttft_ms,
            t.finish_reason,
            t.error,
            t.partial,
            _json(t.client),
        )
        .where(t.session_id.in_(sids))
        .order_by(t.session_id, t.index)
    )


def _labels_query(sids: Select[Any]) -> Select[Any]:
    """Every label of the conversations' turns, superseded ones too."""
    t, lb = Turn.__table__.c, Label.__table__.c
    return (
        select(
            lb.id,
            lb.turn_id,
            lb.annotator,
            lb.layer,
            lb.code,
            lb.confidence,
            lb.target_turn_id,
            lb.span_start,
            lb.span_end,
            _json(lb.meta),
            lb.supersedes_id,
            lb.created_at,
        )
        .join_from(Label, Turn, lb.turn_id == t.id)
        .where(t.session_id.in_(sids))
        .order_by(lb.id)
    )


def _repairs_query(sids: Select[Any]) -> Select[Any]:
    """The conversations' repair sequences."""
    rs = RepairSequence.__table__.c
    return (
        select(
            rs.id,
            rs.session_id,
            rs.annotator,
            rs.trouble_turn_id,
            rs.initiation_turn_id,
            rs.repair_turn_id,
            rs.initiation,
            rs.initiator,
            rs.trouble_type,
            rs.outcome,
            rs.turns_to_resolution,
            rs.created_at,
            rs.span_start,
            rs.span_end,
            rs.updated_at,
        )
        .where(rs.session_id.in_(sids))
        .order_by(rs.id)
    )


# --- the scrubber of one bundle ---------------------------------------------------------------------


def bundle_scrubber(engine: Engine, sel: Selection, names: Pseudonyms) -> Scrubber:
    """The scrubber for one bundle: secrets, and every staff username and participant outside id.

    Staff usernames inside JSON values (an adjudication's ``decided_by`` and its codes keyed by
    annotator) become the same ``annotator-N`` as the ``annotator`` columns; Prolific ids and
    completion codes of the study's participants become ``[redacted]``.
    """
    p = Participant.__table__.c
    outside = (p.prolific_pid, p.prolific_study_id, p.prolific_session_id, p.completion_code)
    with engine.connect() as conn:
        staff = list(conn.scalars(select(Account.__table__.c.username)))
        # Labels and sequences keep the username even if its account is later removed.
        labelled = conn.scalars(select(Label.__table__.c.annotator).distinct().where(Label.__table__.c.account_id.is_not(None)))
        staff += [a for a in labelled if Pseudonyms.is_person(a)]
        ids = [v for row in conn.execute(select(*outside).where(p.study_id.in_(sel.study_ids))) for v in row if v]
    return Scrubber(staff=staff, rename=names.annotator, external_ids=ids)


# --- writers ----------------------------------------------------------------------------------------


class TableWriter:
    """Appends batches to one table file in the bundle's format."""

    def __init__(self, path: Path, table: Table, fmt: str) -> None:
        """Open ``path`` for ``table``."""
        self.path = path
        self.table = table
        self.fmt = fmt
        self.schema = table.schema()
        self._json_cols = [c.name for c in table.columns if c.type in JSON_TYPES]
        self._writer: Any = None
        self._file: Any = None
        if fmt == "parquet":
            import pyarrow.parquet as pq  # type: ignore[import-untyped]  # pyarrow ships no type information

            self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        elif fmt == "csv":
            import pyarrow.csv as pcsv  # type: ignore[import-untyped]  # pyarrow ships no type information

            self._writer = pcsv.CSVWriter(path, self.schema)
        else:
            self._file = path.open("w", encoding="utf-8", newline="\n")

    def write(self, columns: dict[str, Any]) -> None:
        """Append one batch (column name → values, as lists or Arrow arrays)."""
        if self.fmt == "jsonl":
            names = self.table.names
            lists = [columns[n].to_pylist() if isinstance(columns[n], pa.Array) else columns[n] for n in names]
            for values in zip(*lists, strict=True):
                row = {}
                for name, v in zip(names, values, strict=True):
                    if name in self._json_cols and v is not None:
                        v = json.loads(v)
                    elif isinstance(v, datetime):
                        v = utc(v).isoformat()
                    row[name] = v
                self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        batch = pa.RecordBatch.from_arrays(
            [_arrow(columns[c.name], c.arrow_type) for c in self.table.columns], schema=self.schema
        )
        if self.fmt == "parquet":
            self._writer.write_batch(batch)
        else:
            self._writer.write_batch(batch)

    def close(self) -> None:
        """Finish the file (an empty table still gets its header or schema)."""
        if self._writer is not None:
            self._writer.close()
        if self._file is not None:
            self._file.close()


def _arrow(values: Any, type_: pa.DataType) -> pa.Array:
    if isinstance(values, pa.Array):
        return values if values.type == type_ else values.cast(type_)
    return pa.array(values, type=type_)


def _batches(engine: Engine, query: Select[Any], size: int) -> Iterator[Sequence[Any]]:
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=size).execute(query)
        for part in result.partitions(size):
            yield part


def write_table(engine: Engine, sel: Selection, name: str, out: Path, names: Pseudonyms, scrub: Scrubber) -> int:
    """Write one table of the bundle; returns its row count."""
    table = TABLES_BY_NAME[name]
    fmt = sel.options.format
    path = out / table_file(name, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = TableWriter(path, table, fmt)
    n = 0
    if fast.available(engine):
        arrow_shaper = fast.ArrowShaper(name, names, scrub, sel)
        try:
            for cols in fast.batches(engine, _queries(sel, engine.dialect.name)[name], sel.options.batch_rows):
                shaped, rows_in = arrow_shaper.shape(cols)
                if rows_in:
                    writer.write(shaped)
                    n += rows_in
        finally:
            writer.close()
        return n
    shaper = RowShaper(table, names, scrub, sel)
    try:
        for rows in _batches(engine, _queries(sel)[name], sel.options.batch_rows):
            if name == "events":
                rows = [r for r in rows if shaper.keep_event(r)]
                if not rows:
                    continue
            writer.write(shaper.columns(rows))
            n += len(rows)
    finally:
        writer.close()
    return n


TABLE_ORDER = ("participants", "conversations", "turns", "labels", "repair_sequences", "responses", "events", "items")
"""Participants first: their pseudonyms are handed out there."""


def select_study(engine: Engine, slug: str, options: ExportOptions) -> Selection:
    """Every version of the study ``slug`` with the export's options."""
    from sqlalchemy.orm import Session

    with Session(engine, expire_on_commit=False) as s:
        studies = list(s.scalars(select(Study).where(Study.slug == slug).order_by(Study.version)))
        for st in studies:
            s.expunge(st)
    if not studies:
        raise ExportError(f"no study '{slug}' (see `python -m lab study list`)")
    return Selection(slug, studies, options)


def prepare_out(out: Path) -> None:
    """Create the bundle folder; an existing folder must be empty or an earlier bundle."""
    if out.exists():
        if not out.is_dir():
            raise ExportError(f"--out: {out} is a file, not a folder")
        entries = list(out.iterdir())
        if entries and not (out / "bundle.json").exists():
            raise ExportError(f"--out: {out} is not empty and holds no bundle; choose a new folder")
        for e in entries:
            shutil.rmtree(e) if e.is_dir() else e.unlink()
    (out / "data").mkdir(parents=True, exist_ok=True)


def spec_text(spec: dict[str, Any]) -> str:
    """The spec as stored, keys in their stored order (conditions keep the spec's order).

    Its ``spec_sha256`` is over the canonical form (sorted keys, no spaces): see
    :func:`lab.spec.spec_hash`.
    """
    return json.dumps(spec, ensure_ascii=False, indent=1)


def write_specs(sel: Selection, out: Path, scrub: Scrubber) -> list[dict[str, Any]]:
    """``spec/v<N>.json`` for every version; returns their ``bundle.json`` entries."""
    (out / "spec").mkdir(exist_ok=True)
    entries = []
    # The spec is the study's design, not its data: only secrets are removed (a staff name
    # matched inside it would most likely be a word of an item or a condition key).
    spec_scrub = Scrubber(scrub.secrets)
    for st in sel.studies:
        cleaned = spec_scrub.value(st.spec)
        text = spec_text(cleaned) + "\n"
        path = out / "spec" / f"v{st.version}.json"
        path.write_bytes(text.encode())
        entries.append(
            {
                "version": st.version,
                "title": st.title,
                "status": st.status,
                "seed": st.seed,
                "created_at": utc(st.created_at).isoformat(),
                "spec_sha256": st.spec_sha256,
                "spec_file": f"spec/v{st.version}.json",
                "spec_file_sha256": hashlib.sha256(text.encode()).hexdigest(),
                "spec_redacted": cleaned != st.spec,
            }
        )
    return entries


def write_prolific_ids(engine: Engine, sel: Selection, out: Path, names: Pseudonyms) -> Path:
    """``private/prolific_ids.csv``: bundle pseudonym → Prolific ids and completion code, for payment."""
    import csv

    p = Participant.__table__.c
    path = out / "private" / "prolific_ids.csv"
    path.parent.mkdir(exist_ok=True)
    query = (
        select(p.id, p.prolific_pid, p.prolific_study_id, p.prolific_session_id, p.completion_code, p.status)
        .where(sel.participant_filter())
        .order_by(p.id)
    )
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["participant_id", "prolific_pid", "prolific_study_id", "prolific_session_id", "completion_code", "status"])
        for rows in _batches(engine, query, 10_000):
            for r in rows:
                w.writerow([names.participants[r[0]], *r[1:]])
    return path
