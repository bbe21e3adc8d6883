"""Writing a training file: records, schema, ``bundle.json`` and the dataset card, or why it is empty.

Kept apart from the records (:mod:`._training` for SFT and what both formats share,
:mod:`._pairs` for DPO) because it needs both, and the pairs build on the shared part.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, exists, func, select

from .. import __version__
from ..db import current_revision
from ..schema import ChatSession, Condition, ItemRow, Turn
from ._bundle import ExportError, ExportOptions, Selection, prepare_out, select_study, spec_text
from ._docs import prompt_versions
from ._pairs import DPO_SCHEMA, LABEL_SOURCES, RULES, DpoReport, dpo_records
from ._privacy import Scrubber
from ._training import (
    SFT_SCHEMA,
    ItemGate,
    TrainingFilter,
    TrainingResult,
    _conversations,
    _filtered,
    _gate_warnings,
    _source_note,
    _split_note,
    empty_reason,
    item_gate,
    sft_records,
    validate_records,
)


def _card(
    kind: str,
    slug: str,
    rows: int,
    flt: TrainingFilter,
    gate: ItemGate,
    report: DpoReport | None = None,
    empty: str | None = None,
) -> str:
    rules = "\n".join(f"- `{r.name}`: {r.description}" for r in RULES)
    body = {
        "sft": "One line per conversation: `messages` (system/user/assistant, in order; user turns as the model saw them, "
        "so shards keep their reveal order) plus the conversation's item, condition, model, outcome, score, "
        "`shard_order` (shard ids in the order revealed) and `labels` (effective codes on its turns).",
        "dpo": "Preference pairs `{prompt, chosen, rejected}` (conversational format: lists of chat messages) between "
        "two replies at the same point of one conversation: the original reply and the alternatives sampled there "
        "(`python -m lab branch`), all generated from the same messages, so `prompt` is exactly what both sides "
        "answered (`point.prompt_sha256`). Each side carries its labels with their source (`gold`, `majority`, "
        "`auto:<judge>`; `human` for a pair people decided by comparing the two replies) and its rollout outcome "
        "(mean task score of its continuations, 95 % interval). `rule` says which rule built the pair:\n\n"
        + rules
        + _preference_note(report)
        + _source_note(report, flt),
    }[kind]
    empty_note = f"\n\n**This file is empty**: {empty}." if empty else ""
    return f"""---
pretty_name: Repair Lab {kind.upper()} data from study {slug}
configs:
- config_name: {kind}
  data_files: data/{kind}.jsonl
  default: true
---

# Repair Lab {kind.upper()} data: study `{slug}`

{body}{empty_note}

{rows} lines. Filters: outcomes {list(flt.outcomes) or "all"}, labels {list(flt.labels) or "all"},
conditions {list(flt.conditions) or "all"}. Each line validates against `schema/{kind}.schema.json`
(JSON Schema 2020-12). Error and cut replies, mediator rewrites and knowledge probes are left out.
{_split_note(gate, flt)}
A turn's label is its effective label per layer: a gold label, else the code most of the people who
labelled it gave (more than half), else the newest automatic judge's.

```python
import datasets
ds = datasets.load_dataset("json", data_files="data/{kind}.jsonl")["train"]
```
"""


def _preference_note(report: DpoReport | None) -> str:
    """What became of people's preference judgements at the selected points."""
    if report is None or not report.preferences_judged:
        return ""
    pairs = report.preferences_judged - report.preference_ties - report.preference_unresolved
    return (
        f"\n\nPeople's preferences (`human_preference`): {report.preferences_judged} comparison(s) judged at these "
        f"points; {pairs} had a majority for one reply and became candidate pairs, {report.preference_ties} had a "
        f"majority for a tie and give no pair, {report.preference_unresolved} without a majority (people split) "
        "were left out."
    )


def training_notice(
    engine: Engine, slug: str, kind: str, options: ExportOptions | None = None, flt: TrainingFilter | None = None
) -> str | None:
    """Why a training file would come out empty, found cheaply before it is built (None: it may hold lines).

    Looks for the reasons that need no pair-building: no conversation left after the
    filters, the held-out split and test-only items; for DPO, no point with branches. The
    file's own card says why when it is empty for a reason found only while building it.
    """
    options = options or ExportOptions()
    flt = flt or TrainingFilter()
    sel = select_study(engine, slug, options)
    gate = item_gate(engine, slug, flt)
    s, it, co, t = ChatSession.__table__.c, ItemRow.__table__.c, Condition.__table__.c, Turn.__table__.c
    if flt.labels:
        # Label filters need the turns: count the slow way.
        ids: Any = sorted(_conversations(engine, sel, flt, gate))
    else:
        ids = _filtered(
            select(s.id).join_from(ChatSession, ItemRow, s.item_id == it.id).join(Condition, s.condition_id == co.id),
            sel,
            flt,
            gate,
        )
    # Counting (and looking for one branch) reads no payloads, so the page can ask on every run.
    with engine.connect() as conn:
        n = conn.scalar(select(func.count()).select_from(ChatSession).where(s.id.in_(ids))) or 0
        if not n:
            return empty_reason(kind, flt, gate, None, 0)
        if kind == "dpo":
            branch = ChatSession.__table__.alias("branch")
            points = select(t.id).where(t.session_id.in_(ids), t.role == "assistant")
            if not conn.scalar(select(exists().where(branch.c.kind == "branch", branch.c.point_turn_id.in_(points)))):
                return empty_reason(kind, flt, gate, DpoReport(), n)
    return None


def _bundle_meta(
    engine: Engine,
    slug: str,
    kind: str,
    sel: Selection,
    options: ExportOptions,
    flt: TrainingFilter,
    gate: ItemGate,
    report: DpoReport | None,
    result: TrainingResult,
) -> dict[str, Any]:
    """What ``bundle.json`` records of a training file: its study, filters, split, rules and sources."""
    from datetime import UTC, datetime

    return {
        "study": slug,
        "format": kind,
        "studies": [{"version": s.version, "spec_sha256": s.spec_sha256} for s in sel.studies],
        "filters": options.describe()
        | {"outcomes": list(flt.outcomes), "labels": list(flt.labels), "conditions": list(flt.conditions)},
        "rows": result.rows,
        "by_rule": result.by_rule,
        "split": {
            "made": gate.split_made,
            "heldout_items_left_out": sorted(gate.heldout),
            "test_only_items_left_out": sorted(gate.test_only),
            "test_only_items_allowed": flt.allow_test_items,
        },
        "rules": {r.name: r.description for r in RULES} if kind == "dpo" else {},
        "label_source": flt.label_source,
        "sources": report.sources if report is not None else {},
        "human_preference": {
            "judged": report.preferences_judged,
            "ties": report.preference_ties,
            "unresolved": report.preference_unresolved,
        }
        if report is not None
        else {},
        "empty_reason": result.empty_reason,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "lab_version": __version__,
        "migration_revision": current_revision(engine),
        "prompt_versions": prompt_versions(),
    }


def export_training(
    engine: Engine, slug: str, out: str | Path, kind: str, options: ExportOptions | None = None, flt: TrainingFilter | None = None
) -> TrainingResult:
    """Write ``data/<kind>.jsonl``, its JSON Schema, ``bundle.json`` and a dataset card.

    Args:
        engine: The lab's database.
        slug: The study.
        out: Folder to write.
        kind: ``sft`` or ``dpo``.
        options: Participant filters (format is ignored).
        flt: Outcome, label and condition filters.

    Raises:
        ExportError: Unknown study or kind, or a record that breaks the schema (a bug, never shipped).
    """
    if kind not in ("sft", "dpo"):
        raise ExportError(f"training format must be sft or dpo (got '{kind}')")
    options = options or ExportOptions()
    flt = flt or TrainingFilter()
    out = Path(out)
    sel = select_study(engine, slug, options)
    prepare_out(out)
    schema = SFT_SCHEMA if kind == "sft" else DPO_SCHEMA
    gate = item_gate(engine, slug, flt)
    if flt.label_source not in LABEL_SOURCES:
        raise ExportError(f"--label-source must be one of {', '.join(LABEL_SOURCES)} (got '{flt.label_source}')")
    report = DpoReport() if kind == "dpo" else None
    records = list(sft_records(engine, sel, flt, gate) if kind == "sft" else dpo_records(engine, sel, flt, gate, report))
    problems = validate_records(records, schema)
    if problems:
        raise ExportError(f"{kind} records break their schema: {problems[0]}")
    result = TrainingResult(out, rows=len(records), heldout_items=len(gate.heldout), test_items=len(gate.test_only))
    result.warnings = _gate_warnings(engine, slug, flt, gate)
    if not records:
        result.empty_reason = empty_reason(kind, flt, gate, report, len(_conversations(engine, sel, flt, gate)))
    with (out / "data" / f"{kind}.jsonl").open("w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            if kind == "dpo":
                result.by_rule[r["rule"]] = result.by_rule.get(r["rule"], 0) + 1
    (out / "schema").mkdir(exist_ok=True)
    (out / "schema" / f"{kind}.schema.json").write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
    meta = _bundle_meta(engine, slug, kind, sel, options, flt, gate, report, result)
    (out / "bundle.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(_card(kind, slug, result.rows, flt, gate, report, result.empty_reason), encoding="utf-8")
    (out / "spec").mkdir(exist_ok=True)
    for s in sel.studies:
        (out / "spec" / f"v{s.version}.json").write_text(spec_text(Scrubber().value(s.spec)) + "\n", encoding="utf-8")
    result.files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    return result
