"""How database rows become a bundle table's columns: pseudonyms, label sources, row shaping.

Both writers use it: the row path (:mod:`lab.export._bundle`) shapes every batch here, the
Arrow path (:mod:`lab.export._arrow`) for the few rows it cannot shape column-wise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._dictionary import Table
from ._privacy import Scrubber

if TYPE_CHECKING:
    from ._bundle import Selection


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
        versions = {m: codebook_version(v) for m, v in distinct.items()}
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
        if since is not None and utc(row[5]) < since:
            return False
        data = json.loads(row[4]) if row[4] else {}
        return data.get("study_id") in self.sel.study_ids or (data.get("study") == self.sel.slug and "study_id" not in data)


def item_tasks(payloads: Sequence[Any], keys: Sequence[Any]) -> list[str | None]:
    """The task family of each item (the ``task`` column of ``items``), from its payload."""
    from lab.analysis_data import task_of

    return [task_of(p, str(k)) for p, k in zip(payloads, keys, strict=True)]


def codebook_version(meta: dict[str, Any] | None) -> str | None:
    """The codebook version a label's meta names, or None."""
    if not meta:
        return None
    value = meta.get("codebook_version") or meta.get("codebook")
    return None if value is None else str(value)


def utc(value: datetime) -> datetime:
    """A database time in UTC."""
    # SQLite hands back naive datetimes; the lab stores only UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
