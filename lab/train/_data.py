"""The records a training run learns from: the study's own SFT or DPO export, written beside the weights.

A run never reads the database's conversations directly: it exports them with the same
code as ``python -m lab export --format sft|dpo`` (so every exclusion the export makes —
held-out items, unusable replies, branches nobody asked for — holds for training too) into
``<out>/data/``, where the exact file trained on stays for anyone checking the model later.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from ..errors import LabError


class TrainingDataError(LabError):
    """Training records that cannot be used, named with the reason and the way on."""


@dataclass
class TrainingData:
    """What a run trains on, and where it came from."""

    method: str
    """``sft`` or ``dpo``."""
    records: list[dict[str, Any]]
    """In TRL's conversational form: ``messages`` (SFT) or ``prompt``/``chosen``/``rejected`` (DPO)."""
    source: Path
    """The export folder the records were read from."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """The export's ``bundle.json`` with counts added (items, rules, label sources)."""


def export_records(engine: Engine, slug: str, method: str, folder: Path) -> Path:
    """Export the study's training records for ``method`` into ``folder``.

    Args:
        engine: The lab's database.
        slug: The study.
        method: ``sft`` or ``dpo``.
        folder: Where the export goes (replaced if it holds an earlier export).

    Returns:
        ``folder``.
    """
    from ..export import export_training

    export_training(engine, slug, folder, method)
    return folder


def _trl_record(method: str, record: dict[str, Any]) -> dict[str, Any]:
    if method == "sft":
        return {"messages": record["messages"]}
    return {"prompt": record["prompt"], "chosen": record["chosen"], "rejected": record["rejected"]}


def read_records(folder: Path, method: str, *, refused_items: frozenset[str] = frozenset()) -> TrainingData:
    """Read an export folder's records for training.

    Args:
        folder: A folder ``python -m lab export --format sft|dpo`` wrote.
        method: ``sft`` or ``dpo``; the export must be of the same kind.
        refused_items: Items that must never reach the trainer (held out for evaluation); a
            record of one of them is refused rather than dropped, since it means the export
            was made without the split.

    Returns:
        The records in TRL's form with the export's provenance.

    Raises:
        TrainingDataError: No export of that kind there, no records, or a held-out item.
    """
    data = folder / "data" / f"{method}.jsonl"
    if not data.is_file():
        raise TrainingDataError(f"{folder} holds no {method} export (data/{method}.jsonl); export one with --format {method}.")
    raw = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    meta_file = folder / "bundle.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
    if not raw:
        why = meta.get("empty_reason") or "the export wrote no records"
        raise TrainingDataError(f"nothing to train on: {why}.")
    leaked = sorted({r["item"] for r in raw if r.get("item") in refused_items})
    if leaked:
        raise TrainingDataError(
            f"{len(leaked)} held-out item(s) are in the training records ({', '.join(leaked[:5])}): "
            "held-out items are kept for evaluating the tuned model; export the training split again."
        )
    provenance = dict(meta)
    provenance["records"] = len(raw)
    provenance["items"] = len({r.get("item") for r in raw})
    if method == "dpo":
        provenance["by_rule"] = dict(Counter(r.get("rule", "?") for r in raw))
        sources: Counter[str] = Counter()
        for r in raw:
            for side in ("chosen", "rejected"):
                if r.get(f"{side}_source"):
                    sources[r[f"{side}_source"]] += 1
        provenance["label_sources"] = dict(sources)
    return TrainingData(method, [_trl_record(method, r) for r in raw], folder, provenance)


def held_out_items(engine: Engine, slug: str) -> frozenset[str]:
    """The study's items kept out of training (none when no split is stored)."""
    from ..split import item_splits

    return frozenset(k for k, v in item_splits(engine, slug).items() if v == "heldout")


def study_data(engine: Engine, slug: str, method: str, out: Path, *, data: Path | None = None) -> TrainingData:
    """The records a run on study ``slug`` trains on.

    Args:
        engine: The lab's database.
        slug: The study.
        method: ``sft`` or ``dpo``.
        out: The run's output folder; a fresh export goes to ``out/data-export``.
        data: An existing export folder to train on instead of exporting afresh.

    Returns:
        The records, checked against the study's held-out items.
    """
    folder = data if data is not None else export_records(engine, slug, method, out / "data-export")
    return read_records(folder, method, refused_items=held_out_items(engine, slug))
