"""The fast path: tables read as Arrow batches through ADBC and shaped column by column.

Reading rows into Python objects costs more than everything else an export does; ADBC
drivers (SQLite and Postgres) hand over Arrow record batches instead, and the shaping —
pseudonyms, secret scrubbing, label sources — works on each batch's distinct values
(``dictionary_encode``), not on every row. The result is the same bundle as the row path
(:class:`~lab.export._rows.RowShaper`), which stays for other databases and for
installations without the ADBC drivers.

SQLite's ADBC driver infers a column's type from the first batch, so a column that starts
with NULLs would be typed wrongly: on SQLite every column is read as ``COALESCE(value,
default)`` plus an ``IS NULL`` flag, and the NULLs are put back in Arrow.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type information
import pyarrow.compute as pc  # type: ignore[import-untyped]  # pyarrow ships no type information
from sqlalchemy import Boolean, DateTime, Engine, Float, Integer, Select, func

from ._dictionary import TABLES_BY_NAME
from ._rows import RowShaper, codebook_version, item_tasks

# SQLite is read through the plain driver: the ADBC SQLite driver was seen missing rows still in
# the write-ahead log, and removing the -wal/-shm files of a live database on close.
_DRIVERS = {"postgresql": "adbc_driver_postgresql"}


def available(engine: Engine) -> bool:
    """True when the database has an ADBC driver installed (and is not an in-memory SQLite)."""
    module = _DRIVERS.get(engine.dialect.name)
    if module is None or importlib.util.find_spec(module) is None:
        return False
    return engine.dialect.name != "sqlite" or engine.url.database not in (None, "", ":memory:")


def _kind(col: Any) -> str:
    t = col.type
    if isinstance(t, Boolean):
        return "boolean"
    if isinstance(t, Integer):
        return "integer"
    if isinstance(t, Float):
        return "number"
    if isinstance(t, DateTime):
        return "datetime"
    return "string"


_DEFAULTS = {"boolean": 0, "integer": 0, "number": 0.0, "datetime": "", "string": ""}


def render(engine: Engine, query: Select[Any]) -> tuple[str, list[str]]:
    """The query as SQL with its values inline, and the kind of each selected column."""
    columns = list(query.selected_columns)
    kinds = [_kind(c) for c in columns]
    if engine.dialect.name == "sqlite":
        wrapped = []
        for i, (c, k) in enumerate(zip(columns, kinds, strict=True)):
            wrapped.append(func.coalesce(c, _DEFAULTS[k]).label(f"v{i}"))
            wrapped.append(c.is_(None).label(f"n{i}"))
        query = query.with_only_columns(*wrapped, maintain_column_froms=True)
    sql = str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    return sql, kinds


def _connect(engine: Engine) -> Any:
    if engine.dialect.name == "sqlite":
        import adbc_driver_sqlite.dbapi as driver  # type: ignore[import-not-found]  # optional ADBC driver, absent here

        return driver.connect(engine.url.database)
    import adbc_driver_postgresql.dbapi as driver  # type: ignore[import-untyped]  # adbc ships no type information

    return driver.connect(engine.url.set(drivername="postgresql").render_as_string(hide_password=False))


_ARROW = {
    "boolean": pa.bool_(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "datetime": pa.timestamp("us", tz="UTC"),
    "string": pa.string(),
}


def _typed(values: pa.Array, kind: str) -> pa.Array:
    target = _ARROW[kind]
    if values.type == target:
        return values
    if kind == "boolean" and pa.types.is_integer(values.type):
        return pc.not_equal(values, 0)
    if kind == "datetime" and pa.types.is_string(values.type):
        # SQLite keeps UTC as naive ISO text.
        return values.cast(pa.timestamp("us")).cast(target)
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), type=target)
    return values.cast(target)


def batches(engine: Engine, query: Select[Any], size: int) -> Iterator[list[pa.Array]]:
    """The query's rows as lists of typed Arrow columns, one list per batch."""
    sql, kinds = render(engine, query)
    sqlite = engine.dialect.name == "sqlite"
    with _connect(engine) as conn, conn.cursor() as cur:
        if sqlite:
            cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(size)})
        cur.execute(sql)
        for batch in cur.fetch_record_batch():
            if batch.num_rows == 0:
                continue
            out = []
            for i, kind in enumerate(kinds):
                if sqlite:
                    values, is_null = batch.column(2 * i), batch.column(2 * i + 1)
                    if pc.any(pc.not_equal(is_null, 0)).as_py():
                        values = pc.if_else(pc.not_equal(is_null, 0), pa.nulls(len(values), type=values.type), values)
                else:
                    values = batch.column(i)
                out.append(_typed(values, kind))
            yield out


_STRING = pa.string()


def map_distinct(values: pa.Array, fn: Callable[[Any], Any], type_: pa.DataType = _STRING) -> pa.Array:
    """``fn`` applied once per distinct value (nulls stay null)."""
    if len(values) == 0:
        return pa.array([], type=type_)
    encoded = values.dictionary_encode()
    mapped = pa.array([None if v is None else fn(v) for v in encoded.dictionary.to_pylist()], type=type_)
    return mapped.take(encoded.indices)


class ArrowShaper:
    """Shapes Arrow batches into one bundle table's columns (the column-wise twin of RowShaper)."""

    def __init__(self, name: str, names: Any, scrub: Any, sel: Any) -> None:
        """Prepare for table ``name``."""
        self.table = TABLES_BY_NAME[name]
        self.names = names
        self.scrub = scrub
        self.sel = sel
        self._ids: pa.Array | None = None

    def _participant(self, values: pa.Array) -> pa.Array:
        if self._ids is None or len(self._ids) != len(self.names.participants):
            # Pseudonyms follow database id order, so a participant's is its rank + 1.
            self._ids = pa.array(list(self.names.participants), type=pa.int64())
        return pc.add(pc.index_in(values, value_set=self._ids), 1).cast(pa.int64())

    def _json(self, values: pa.Array) -> pa.Array:
        return map_distinct(values, self.scrub.json_text)

    def shape(self, cols: list[pa.Array]) -> tuple[dict[str, pa.Array], int]:
        """Column name → values for one batch, and its row count after filtering."""
        name = self.table.name
        if name == "events":
            cols = self._keep_events(cols)
        out: dict[str, Any] = {}
        if name == "labels":
            ids, turn_ids, annotators, layers, codes, conf, target, s0, s1, metas, supersedes, created = cols
            src = map_distinct(
                annotators,
                lambda a: "auto" if a.startswith("auto:") else "gold" if a == "gold" or a.startswith("gold:") else "human",
            )
            gold = map_distinct(metas, lambda m: (json.loads(m) or {}).get("gold") is True, pa.bool_())
            out = {
                "id": ids,
                "turn_id": turn_ids,
                "annotator": map_distinct(annotators, self.names.annotator),
                "source": pc.if_else(pc.fill_null(gold, False), pa.scalar("gold"), src),
                "codebook_version": map_distinct(metas, _codebook_version),
                "layer": layers,
                "code": codes,
                "confidence": conf,
                "target_turn_id": target,
                "span_start": s0,
                "span_end": s1,
                "meta": self._json(metas),
                "supersedes_id": supersedes,
                "created_at": created,
            }
            return out, len(ids)
        if name == "items":
            out = dict(zip(self.table.names[:-1], cols, strict=True))
            out["task"] = pa.array(item_tasks(cols[4].to_pylist(), cols[2].to_pylist()), type=pa.string())
            return out, len(cols[0])
        out = dict(zip(self.table.names, cols, strict=True))
        if name == "participants":
            for db_id in cols[0].to_pylist():
                self.names.participants[db_id] = len(self.names.participants) + 1
            out["id"] = self._participant(cols[0])
            out["simulator"] = self._json(out["simulator"])
        elif name == "conversations":
            out["participant_id"] = self._participant(out["participant_id"])
            out["model_params"] = self._json(out["model_params"])
            out["probe"] = self._json(out["probe"])
        elif name == "turns":
            out["params"] = self._json(out["params"])
            out["client"] = self._json(out["client"])
            if out["error"].null_count < len(out["error"]):
                out["error"] = map_distinct(out["error"], self.scrub.text)
        elif name == "repair_sequences":
            out["annotator"] = map_distinct(out["annotator"], self.names.annotator)
        elif name == "responses":
            out["participant_id"] = self._participant(out["participant_id"])
            out["value"] = self._json(out["value"])
        elif name == "events":
            out["participant_id"] = self._participant(out["participant_id"])
            out["data"] = self._json(out["data"])
        return out, len(cols[0])

    def _keep_events(self, cols: list[pa.Array]) -> list[pa.Array]:
        orphan = pc.and_(pc.is_null(cols[1]), pc.is_null(cols[2]))
        if not pc.any(orphan).as_py():
            return cols
        row_shaper = RowShaper(self.table, self.names, self.scrub, self.sel)
        rows = zip(*(c.to_pylist() for c in cols), strict=True)
        keep = pa.array([row_shaper.keep_event(r) for r in rows], type=pa.bool_())
        return [c.filter(keep) for c in cols]


def _codebook_version(meta: str) -> str | None:
    return codebook_version(json.loads(meta) if meta else None)
