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
from collections.abc import Callable, Iterator, Sequence
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
from ._dictionary import JSON_TYPES, TABLES_BY_NAME, Table
from ._privacy import Scrubber

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
    p, st = Participant.__table__.c, Study.__table__.c
    s, it, co = ChatSession.__table__.c, ItemRow.__table__.c, Condition.__table__.c
    t, lb, rs = Turn.__table__.c, Label.__table__.c, RepairSequence.__table__.c
    rp, ev = Response.__table__.c, Event.__table__.c
    pids, sids = sel.participant_ids(literal), sel.session_ids(literal)
    return {
        "participants": select(
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
        .order_by(p.id),
        "conversations": select(
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
        .order_by(s.id),
        "turns": select(
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
        .order_by(t.session_id, t.index),
        "labels": select(
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
        .order_by(lb.id),
        "repair_sequences": select(
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
        .order_by(rs.id),
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


# --- how rows become columns ----------------------------------------------------------------------


class Pseudonyms:
    """Bundle-local names for participants and annotators."""

    def __init__(self) -> None:
        """Start empty; ids are handed out in order of first sight."""
        self.participants: dict[int, int] = {}
        """Database participant id → bundle id."""
        self.annotators: dict[str, str] = {}
        """Staff username → ``annotator-N``."""

    def participant(self, db_id: int | None) -> int | None:
        """The bundle id of a participant (None stays None; unknown ids are a bug)."""
        return None if db_id is None else self.participants[db_id]

    @staticmethod
    def is_person(name: str) -> bool:
        """Whether an annotator name is a person's (automatic and gold annotators are not)."""
        return not (name == "gold" or name.startswith(("auto:", "gold:")))

    def annotator(self, name: str) -> str:
        """Automatic and gold annotators keep their names; people get ``annotator-N``."""
        if not self.is_person(name):
            return name
        found = self.annotators.get(name)
        if found is None:
            found = self.annotators[name] = f"annotator-{len(self.annotators) + 1}"
        return found


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


def label_source(annotator: str, meta: dict[str, Any] | None) -> str:
    """human, auto or gold, from the annotator's name and the label's meta."""
    if annotator.startswith("auto:"):
        return "auto"
    if annotator == "gold" or annotator.startswith("gold:") or (meta or {}).get("gold") is True:
        return "gold"
    return "human"


Converter = Callable[[Sequence[Any]], list[Any]]


class RowShaper:
    """Turns batches of database rows into column lists for one bundle table."""

    def __init__(self, table: Table, names: Pseudonyms, scrub: Scrubber, sel: Selection) -> None:
        """Prepare the per-column conversions of ``table``."""
        self.table = table
        self.names = names
        self.scrub = scrub
        self.sel = sel

    def columns(self, rows: Sequence[Sequence[Any]]) -> dict[str, Sequence[Any]]:
        """Column name → values for one batch (rows come in the order of :func:`_queries`)."""
        raw = list(zip(*rows, strict=True)) if rows else [()] * self._width()
        handler = getattr(self, f"_shape_{self.table.name}")
        return handler(raw)

    def _width(self) -> int:
        return {"labels": 12, "conversations": 21, "items": 7}.get(self.table.name, len(self.table.columns))

    def _jsons(self, values: Sequence[Any]) -> list[Any]:
        return [self.scrub.json_text(v) for v in values]

    def _shape_participants(self, raw: list[Sequence[Any]]) -> dict[str, Sequence[Any]]:
        ids = raw[0]
        start = len(self.names.participants)
        for n, db_id in enumerate(ids, start + 1):
            self.names.participants[db_id] = n
        out = dict(zip(self.table.names, raw, strict=True))
        out["id"] = [self.names.participants[i] for i in ids]
        out["plan"] = list(raw[4])
        out["simulator"] = self._jsons(raw[6])
        return out

    def _shape_conversations(self, raw: list[Sequence[Any]]) -> dict[str, Sequence[Any]]:
        out = dict(zip(self.table.names, raw, strict=True))
        out["participant_id"] = [self.names.participants[i] for i in raw[1]]
        out["model_params"] = self._jsons(raw[14])
        out["probe"] = self._jsons(raw[18])
        return out

    def _shape_turns(self, raw: list[Sequence[Any]]) -> dict[str, Sequence[Any]]:
        out = dict(zip(self.table.names, raw, strict=True))
        out["params"] = self._jsons(raw[12])
        out["error"] = [self.scrub.text(v) if v else v for v in raw[19]]
        out["client"] = self._jsons(raw[21])
        return out

    def _shape_labels(self, raw: list[Sequence[Any]]) -> dict[str, Sequence[Any]]:
        ids, turn_ids, annotators, layers, codes, conf, target, s0, s1, metas, supersedes, created = raw
        # Labels repeat a few annotators and many identical metas (a judge's rule and version):
        # each distinct value is parsed, scrubbed and named once per batch.
        distinct = {m: (json.loads(m) if m else None) for m in set(metas)}
        parsed = [distinct[m] for m in metas]
        versions = {m: _codebook_version(v) for m, v in distinct.items()}
        scrubbed = dict(zip(distinct, self._jsons(list(distinct)), strict=True))
        names = {a: self.names.annotator(a) for a in dict.fromkeys(annotators)}
        return {
            "id": list(ids),
            "turn_id": list(turn_ids),
            "annotator": [names[a] for a in annotators],
            "source": [label_source(a, m) for a, m in zip(annotators, parsed, strict=True)],
            "codebook_version": [versions[m] for m in metas],
            "layer": list(layers),
            "code": list(codes),
            "confidence": list(conf),
            "target_turn_id": list(target),
            "span_start": list(s0),
            "span_end": list(s1),
            "meta": [scrubbed[m] for m in metas],
            "supersedes_id": list(supersedes),
            "created_at": list(created),
        }

    def _shape_repair_sequences(self, raw: list[Sequence[Any]]) -> dict[str, Sequence[Any]]:
        out = dict(zip(self.table.names, raw, strict=True))
        out["annotator"] = [self.names.annotator(a) for a in raw[2]]
        return out

    def _shape_responses(self, raw: list[Sequence[Any]]) -> dict[str, Sequence[Any]]:
        out = dict(zip(self.table.names, raw, strict=True))
        out["participant_id"] = [self.names.participants[i] for i in raw[1]]
        out["value"] = self._jsons(raw[4])
        return out

    def _shape_items(self, raw: list[Sequence[Any]]) -> dict[str, Sequence[Any]]:
        out = dict(zip(self.table.names[:-1], raw, strict=True))
        out["task"] = item_tasks(raw[4], raw[2])
        return out

    def _shape_events(self, raw: list[Sequence[Any]]) -> dict[str, Sequence[Any]]:
        out = dict(zip(self.table.names, raw, strict=True))
        out["participant_id"] = [self.names.participant(i) for i in raw[1]]
        out["data"] = self._jsons(raw[4])
        return out

    def keep_event(self, row: Sequence[Any]) -> bool:
        """Study-level events belong to the bundle when their data names one of its versions."""
        if row[1] is not None or row[2] is not None:
            return True
        if self.sel.options.participants == "human":
            return False
        since = self.sel.options.since
        if since is not None and _utc(row[5]) < since:
            return False
        data = json.loads(row[4]) if row[4] else {}
        return data.get("study_id") in self.sel.study_ids or (data.get("study") == self.sel.slug and "study_id" not in data)


def item_tasks(payloads: Sequence[Any], keys: Sequence[Any]) -> list[str | None]:
    """The task family of each item (the ``task`` column of ``items``), from its payload."""
    from lab.analysis_data import task_of

    return [task_of(p, str(k)) for p, k in zip(payloads, keys, strict=True)]


def _codebook_version(meta: dict[str, Any] | None) -> str | None:
    if not meta:
        return None
    value = meta.get("codebook_version") or meta.get("codebook")
    return None if value is None else str(value)


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
                        v = _utc(v).isoformat()
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


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; the lab stores only UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _batches(engine: Engine, query: Select[Any], size: int) -> Iterator[Sequence[Any]]:
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=size).execute(query)
        for part in result.partitions(size):
            yield part


def write_table(engine: Engine, sel: Selection, name: str, out: Path, names: Pseudonyms, scrub: Scrubber) -> int:
    """Write one table of the bundle; returns its row count."""
    table = TABLES_BY_NAME[name]
    fmt = sel.options.format
    from ._docs import table_file

    path = out / table_file(name, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = TableWriter(path, table, fmt)
    n = 0
    from . import _arrow as fast

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
                "created_at": _utc(st.created_at).isoformat(),
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
