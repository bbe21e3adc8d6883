"""Import FalseQA minimal pairs (Hu et al. 2023, thunlp/FalseQA).

The source is a CSV file with the header ``question,answer,label``. A label-1 row is a
false-premise question whose ``answer`` is a Python list literal of rebuttals (read with
:func:`ast.literal_eval`, never evaluated as code); a label-0 row is a true-premise
question with a plain answer.

**Pairing.** FalseQA gives no pair ids. In its files the k-th label-1 row and the k-th
label-0 row are twins: in ``dataset/test.csv`` the 687 label-1 rows come first, then the
687 label-0 rows in the same order ("If my brother's amniotic fluid breaks…" / "If my
sister's amniotic fluid breaks…"). Checked on that file: the character similarity of
positional twins averages 0.85 against 0.31 for shuffled pairs, and for 656 of the 687
false-premise questions the most similar true-premise question is the positional twin
(the others are looser rewrites of the same topic). The importer pairs rows this way and
refuses a file whose label-1 and label-0 counts differ.

**Items.** Each pair k gives two :class:`~lab.items.PresuppositionItem` records, so a
study over presupposition items draws loaded questions and their controls alike and the
tag tells them apart:

- ``falseqa-<k>-loaded`` (tag ``loaded``): ``loaded`` is the false-premise question,
  ``control`` its twin, ``correction`` the rebuttals.
- ``falseqa-<k>-control`` (tag ``control``): ``loaded`` holds the true-premise question
  (the question asked; it presupposes nothing false), ``control`` is empty, ``correction``
  is empty, and ``gold["answer"]`` keeps the dataset's answer.

``k`` is the pair's position counted from 1, zero-padded to four digits
(``falseqa-0001-loaded``). ``source.id`` is the row's
record number and ``gold`` holds ``label``, ``pair`` and ``twin`` (the other item's id).
A bad row leaves out its whole pair. Record numbers count data rows from 1 after the
header; blank lines are not counted.
"""

from __future__ import annotations

import ast
import csv
import io
from pathlib import Path

from ._importer import ImportReport, RecordError, build, read_text
from ._item import ItemError, PresuppositionItem, Source

DATASET = "falseqa"
_COLUMNS = ("question", "answer", "label")


def import_falseqa(path: str | Path) -> ImportReport:
    """Import a FalseQA CSV file as loaded questions and their controls.

    Args:
        path: A FalseQA CSV file with the columns ``question``, ``answer``, ``label``.

    Returns:
        Two items per pair (tags ``loaded`` and ``control``); bad rows are listed in
        ``skipped`` as ``record N: field: problem``.

    Raises:
        ItemError: when the file cannot be read, lacks a column, or its false-premise and
            true-premise rows do not pair up one to one.
    """
    path = Path(path)
    rows = _read_rows(path)
    report = ImportReport(dataset="falseqa", source=str(path))

    loaded_rows: list[tuple[int, dict[str, str | None]]] = []
    control_rows: list[tuple[int, dict[str, str | None]]] = []
    for number, row in rows:
        label = (row.get("label") or "").strip()
        if label == "1":
            loaded_rows.append((number, row))
        elif label == "0":
            control_rows.append((number, row))
        else:
            report.skip(number, f"label: expected 0 or 1, got '{label}'")
    if len(loaded_rows) != len(control_rows):
        raise ItemError(
            str(path),
            f"cannot pair questions: {len(loaded_rows)} false-premise rows (label 1) but "
            f"{len(control_rows)} true-premise rows (label 0); the k-th of each must be twins",
        )

    for k, ((ln, lrow), (cn, crow)) in enumerate(zip(loaded_rows, control_rows, strict=True), start=1):
        loaded_id = f"falseqa-{k:04d}-loaded"
        control_id = f"falseqa-{k:04d}-control"
        try:
            loaded_q = _question(lrow, ln)
            rebuttals = _rebuttals(lrow, ln)
            control_q = _question(crow, cn)
            loaded = build(
                PresuppositionItem,
                id=loaded_id,
                title=f"FalseQA pair {k}, false premise",
                source=Source(dataset=DATASET, id=str(ln)),
                gold={"label": 1, "pair": k, "twin": control_id},
                tags=["loaded"],
                loaded=loaded_q,
                control=control_q,
                correction=rebuttals,
            )
            answer = (crow.get("answer") or "").strip()
            control = build(
                PresuppositionItem,
                id=control_id,
                title=f"FalseQA pair {k}, control",
                source=Source(dataset=DATASET, id=str(cn)),
                gold={"label": 0, "pair": k, "twin": loaded_id} | ({"answer": answer} if answer else {}),
                tags=["control"],
                loaded=control_q,
            )
        except RecordError as e:
            record = e.record if isinstance(e, _RowError) else ln
            twin = cn if record == ln else ln
            report.skip(record, f"{e} (pair {k} left out with its twin, record {twin})")
            continue
        report.add(ln, [loaded, control])
    return report.finish()


class _RowError(RecordError):
    """A bad field in one row of a pair."""

    def __init__(self, record: int, field_name: str, problem: str) -> None:
        super().__init__(field_name, problem)
        self.record = record


def _read_rows(path: Path) -> list[tuple[int, dict[str, str | None]]]:
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise ItemError(str(path), "empty file; expected a CSV header question,answer,label")
        names = [h.strip().lower() for h in header]
        missing = [c for c in _COLUMNS if c not in names]
        if missing:
            raise ItemError(
                str(path),
                f"missing CSV column(s) {', '.join(missing)}; the header must name question, answer and label",
            )
        where = {c: names.index(c) for c in _COLUMNS}
        rows: list[tuple[int, dict[str, str | None]]] = []
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            row = {c: (cells[i] if i < len(cells) else None) for c, i in where.items()}
            rows.append((len(rows) + 1, row))
    except csv.Error as e:
        raise ItemError(str(path), f"not a readable CSV file (line {reader.line_num}: {e})") from None
    return rows


def _question(row: dict[str, str | None], record: int) -> str:
    question = (row.get("question") or "").strip()
    if not question:
        raise _RowError(record, "question", "is empty")
    return question


def _rebuttals(row: dict[str, str | None], record: int) -> list[str]:
    raw = (row.get("answer") or "").strip()
    if not raw:
        raise _RowError(record, "answer", "is empty; expected a list of rebuttals")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise _RowError(record, "answer", "is not a Python list literal of rebuttals") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise _RowError(record, "answer", "expected a list of rebuttal texts")
    rebuttals = [v.strip() for v in value if v.strip()]
    if not rebuttals:
        raise _RowError(record, "answer", "the list of rebuttals is empty")
    return rebuttals
