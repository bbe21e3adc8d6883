"""Export a study: analysis bundles (Parquet, CSV, JSONL) and training data (SFT, DPO).

A bundle is a folder any analyst can open without the lab: ``data/<table>.<format>`` for
the eight tables (participants, conversations, turns, labels, repair_sequences, responses,
events, items), the stored spec, ``bundle.json`` (provenance), ``datapackage.json`` and a README
that is both the data dictionary and a Hugging Face dataset card. Private data never
enters it (see ``_dictionary.WITHHELD`` and ``_privacy``). :mod:`lab.bundle` reads a bundle
back and loads it into an empty database.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from .. import __version__
from ..db import current_revision
from ..withdraw import withdrawals
from ._bundle import (
    FORMATS,
    PARTICIPANT_KINDS,
    TABLE_ORDER,
    ExportError,
    ExportOptions,
    ExportResult,
    bundle_scrubber,
    parse_since,
    prepare_out,
    select_study,
    write_prolific_ids,
    write_specs,
    write_table,
)
from ._dictionary import ELSEWHERE, TABLES, TABLES_BY_NAME, WITHHELD, Column, Table, exported_sources, fate
from ._docs import codebook, dictionary_markdown, prompt_versions, table_file, write_codebook, write_docs
from ._pairs import RULES
from ._privacy import REDACTED, Scrubber
from ._rows import Pseudonyms, label_source
from ._training import TrainingFilter, TrainingResult, filter_choices
from ._training_files import export_training, training_notice

BUNDLE_FORMAT_VERSION = 1
"""Bumped whenever the bundle's layout or columns change incompatibly."""


def export_study(engine: Engine, slug: str, out: str | Path, options: ExportOptions | None = None) -> ExportResult:
    """Write every version of study ``slug`` as a bundle in folder ``out``.

    Args:
        engine: The lab's database.
        slug: The study.
        out: Folder to write (created; an earlier bundle there is replaced).
        options: Format, participant filters, Prolific ids.

    Returns:
        Rows per table and the files written.

    Raises:
        ExportError: Unknown study, bad option, or an ``out`` that holds other files.
    """
    options = options or ExportOptions()
    options.check()
    out = Path(out)
    sel = select_study(engine, slug, options)
    prepare_out(out)
    names = Pseudonyms()
    scrub = bundle_scrubber(engine, sel, names)
    result = ExportResult(out)
    for name in TABLE_ORDER:
        started = time.perf_counter()
        result.rows[name] = write_table(engine, sel, name, out, names, scrub)
        result.seconds[name] = time.perf_counter() - started
    studies = write_specs(sel, out, scrub)
    meta = {
        "bundle_format": BUNDLE_FORMAT_VERSION,
        "study": slug,
        "studies": studies,
        "format": options.format,
        "filters": options.describe(),
        "rows": result.rows,
        "tables": {n: table_file(n, options.format) for n in TABLE_ORDER},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "lab_version": __version__,
        "migration_revision": current_revision(engine),
        "prompt_versions": prompt_versions(),
        "codebook": write_codebook(out),
        "annotators": len(names.annotators),
        "withdrawals": _withdrawals(engine, sel.study_ids),
        "item_split": _item_split(engine, slug),
    }
    extra: list[dict[str, Any]] = []
    if options.include_prolific_ids:
        path = write_prolific_ids(engine, sel, out, names)
        meta["private_files"] = [str(path.relative_to(out))]
    write_docs(out, slug, options.format, meta, extra)
    result.files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    return result


def export_zip(
    engine: Engine, slug: str, fmt: str, options: ExportOptions | None = None, flt: TrainingFilter | None = None
) -> bytes:
    """A bundle (or SFT/DPO set) as one zip archive, built in a temporary folder.

    Args:
        engine: The lab's database.
        slug: The study.
        fmt: parquet, csv, jsonl, sft or dpo.
        options: Participant filters (the format is taken from ``fmt``).
        flt: Outcome, label and condition filters for sft and dpo.

    Returns:
        The zip's bytes; its entries sit under a ``<slug>-<fmt>/`` folder.
    """
    import dataclasses
    import io
    import tempfile
    import zipfile

    options = options or ExportOptions()
    with tempfile.TemporaryDirectory(prefix="lab-export-") as tmp:
        out = Path(tmp) / f"{slug}-{fmt}"
        if fmt in ("sft", "dpo"):
            export_training(engine, slug, out, fmt, options, flt)
        else:
            export_study(engine, slug, out, dataclasses.replace(options, format=fmt, include_prolific_ids=False))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            for path in sorted(p for p in out.rglob("*") if p.is_file()):
                # Parquet is compressed already; deflating it again costs time for nothing.
                kind = zipfile.ZIP_STORED if path.suffix == ".parquet" else zipfile.ZIP_DEFLATED
                z.write(path, str(path.relative_to(out.parent)), compress_type=kind)
        return buffer.getvalue()


def _item_split(engine: Engine, slug: str) -> dict[str, str]:
    """Item id → train or heldout (empty without a split; see :mod:`lab.split`)."""
    from ..split import item_splits

    return dict(sorted(item_splits(engine, slug).items()))


def _withdrawals(engine: Engine, study_ids: list[int]) -> int:
    from sqlalchemy.orm import Session

    with Session(engine) as s:
        return withdrawals(s, study_ids)


__all__ = [
    "BUNDLE_FORMAT_VERSION",
    "ELSEWHERE",
    "FORMATS",
    "PARTICIPANT_KINDS",
    "REDACTED",
    "TABLES",
    "TABLES_BY_NAME",
    "WITHHELD",
    "Column",
    "ExportError",
    "ExportOptions",
    "ExportResult",
    "RULES",
    "TrainingFilter",
    "TrainingResult",
    "Scrubber",
    "Table",
    "codebook",
    "dictionary_markdown",
    "export_study",
    "export_training",
    "export_zip",
    "exported_sources",
    "fate",
    "filter_choices",
    "label_source",
    "parse_since",
    "prompt_versions",
    "training_notice",
]
