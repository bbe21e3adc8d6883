"""Training data from a study: chat transcripts (SFT) and preference pairs (DPO).

Both are validated against a JSON Schema shipped beside them.

SFT: one line per conversation, ``{"messages": [{"role", "content"}, …], …}`` in the
OpenAI / Hugging Face chat convention, turns in order (so the shards keep their reveal
order), each user turn as the model saw it. Error and cut (partial) replies, mediator
rewrites and knowledge probes are left out.

DPO: ``{"prompt", "chosen", "rejected", "rule", …}`` from two assistant replies at the
*same point* of the *same item* — same item, same assistant turn number, same shards
revealed so far — whose labels are opposite under one of :data:`RULES`. The prompt is
the chosen reply's conversation up to that point. Each reply is used at most once per
rule; candidates pair in turn-id order, so a rerun builds the same pairs.

A turn's label is its effective label per layer: a gold label wins, else the people's
current labels when they agree (disagreement leaves the turn out), else the automatic one.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from .. import __version__
from ..db import current_revision
from ..schema import ChatSession, Condition, ItemRow, Label, Participant, RepairSequence, Study, Turn
from ._bundle import ExportError, ExportOptions, Selection, prepare_out, select_study, spec_text
from ._docs import prompt_versions
from ._privacy import Scrubber
from ._rows import label_source

CHAT_ROLES = ("system", "user", "assistant")
"""Turn roles that become chat messages."""

SFT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Repair Lab SFT conversation",
    "type": "object",
    "required": ["messages", "conversation_id", "item", "condition", "outcome", "shard_order", "labels"],
    "properties": {
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {"role": {"enum": list(CHAT_ROLES)}, "content": {"type": "string"}},
                "additionalProperties": False,
            },
        },
        "conversation_id": {"type": "integer"},
        "participant_kind": {"type": "string"},
        "item": {"type": "string"},
        "item_kind": {"type": "string"},
        "condition": {"type": "string"},
        "model": {"type": "string"},
        "outcome": {"type": ["string", "null"]},
        "score": {"type": ["number", "null"]},
        "shard_order": {"type": "array", "items": {"type": "integer"}},
        "labels": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}
"""One SFT line."""

_MESSAGE = SFT_SCHEMA["properties"]["messages"]["items"]
DPO_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Repair Lab DPO preference pair",
    "type": "object",
    "required": ["prompt", "chosen", "rejected", "rule", "item", "point", "chosen_turn_id", "rejected_turn_id"],
    "properties": {
        "prompt": {"type": "array", "minItems": 1, "items": _MESSAGE},
        "chosen": {"type": "array", "minItems": 1, "maxItems": 1, "items": _MESSAGE},
        "rejected": {"type": "array", "minItems": 1, "maxItems": 1, "items": _MESSAGE},
        "rule": {"type": "string"},
        "item": {"type": "string"},
        "point": {
            "type": "object",
            "required": ["assistant_turn", "revealed"],
            "properties": {"assistant_turn": {"type": "integer"}, "revealed": {"type": "array", "items": {"type": "integer"}}},
            "additionalProperties": False,
        },
        "chosen_label": {"type": "string"},
        "rejected_label": {"type": "string"},
        "chosen_turn_id": {"type": "integer"},
        "rejected_turn_id": {"type": "integer"},
        "chosen_conversation_id": {"type": "integer"},
        "rejected_conversation_id": {"type": "integer"},
    },
    "additionalProperties": False,
}
"""One DPO pair."""


@dataclass(frozen=True)
class PairRule:
    """How one kind of preference pair is recognised."""

    name: str
    """Recorded in each pair's ``rule``."""
    description: str
    """For the README."""


RULES: tuple[PairRule, ...] = (
    PairRule(
        "clarify_vs_premature",
        "chosen: a clarifying question (S `clarification` or G `CLARIFY`) while information the item needs is missing; "
        "rejected: an answer attempt (S `answer_attempt` or `hedge`) at the same point (premature).",
    ),
    PairRule(
        "correct_vs_accommodate",
        "chosen: P `REJECT_CORRECT` (denies the false premise and corrects it); rejected: P `ACCOMMODATE` or `AMPLIFY` "
        "(answers inside the false frame) at the same point of the same loaded item.",
    ),
    PairRule(
        "resolved_vs_misrepair",
        "chosen: the assistant repair turn of a repair sequence with outcome `resolved`; rejected: the repair turn of a "
        "`misrepair` sequence at the same point of the same item.",
    ),
)


@dataclass(frozen=True)
class TrainingFilter:
    """Which conversations become training data."""

    outcomes: tuple[str, ...] = ()
    """Keep conversations with one of these outcomes (empty: all)."""
    labels: tuple[str, ...] = ()
    """Keep conversations with a turn carrying one of these codes, or a repair sequence with one of these outcomes."""
    conditions: tuple[str, ...] = ()
    """Keep conversations of these conditions (empty: all)."""


@dataclass
class TrainingResult:
    """What a training export wrote."""

    out: Path
    """The folder."""
    rows: int = 0
    """Lines written (conversations for SFT, pairs for DPO)."""
    by_rule: dict[str, int] = field(default_factory=dict)
    """DPO pairs per rule."""
    files: list[Path] = field(default_factory=list)
    """Files written, relative to ``out``."""


# --- reading the study ---------------------------------------------------------------------------------


@dataclass
class TurnRow:
    """A turn as the training exports need it."""

    id: int
    session_id: int
    index: int
    role: str
    text: str
    """What the model saw (``model_content`` when set, else ``content``)."""
    shards: list[int]
    usable: bool
    """False for error and cut replies."""


def _conversations(engine: Engine, sel: Selection, flt: TrainingFilter) -> dict[int, dict[str, Any]]:
    s, it, co = ChatSession.__table__.c, ItemRow.__table__.c, Condition.__table__.c

    p = Participant.__table__.c
    query = (
        select(s.id, it.id, it.key, it.kind, it.payload, co.key, s.model, s.outcome, s.score, p.kind)
        .join_from(ChatSession, ItemRow, s.item_id == it.id)
        .join(Condition, s.condition_id == co.id)
        .join(Participant, s.participant_id == p.id)
        .where(s.participant_id.in_(sel.participant_ids()))
        .order_by(s.id)
    )
    if flt.outcomes:
        query = query.where(s.outcome.in_(flt.outcomes))
    if flt.conditions:
        query = query.where(co.key.in_(flt.conditions))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    out = {
        r[0]: {
            "item_id": r[1],
            "item": r[2],
            "item_kind": r[3],
            "payload": r[4],
            "condition": r[5],
            "model": r[6],
            "outcome": r[7],
            "score": r[8],
            "participant_kind": r[9],
        }
        for r in rows
    }
    if flt.labels:
        keep = _sessions_with_labels(engine, list(out), flt.labels)
        out = {k: v for k, v in out.items() if k in keep}
    return out


def _sessions_with_labels(engine: Engine, session_ids: list[int], codes: tuple[str, ...]) -> set[int]:
    t, lb, rs = Turn.__table__.c, Label.__table__.c, RepairSequence.__table__.c
    found: set[int] = set()
    with engine.connect() as conn:
        for chunk in _chunks(session_ids):
            found |= set(
                conn.scalars(
                    select(t.session_id)
                    .join_from(Label, Turn, lb.turn_id == t.id)
                    .where(t.session_id.in_(chunk), lb.code.in_(codes))
                )
            )
            found |= set(conn.scalars(select(rs.session_id).where(rs.session_id.in_(chunk), rs.outcome.in_(codes))))
    return found


def _chunks(ids: list[int], size: int = 5000) -> Iterator[list[int]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def _turns(engine: Engine, session_ids: list[int]) -> Iterator[list[TurnRow]]:
    """Each conversation's turns in order, one conversation at a time."""
    t = Turn.__table__.c
    with engine.connect() as conn:
        for chunk in _chunks(session_ids, 2000):
            query = (
                select(t.id, t.session_id, t.index, t.role, t.content, t.model_content, t.shards, t.error, t.partial)
                .where(t.session_id.in_(chunk))
                .order_by(t.session_id, t.index)
            )
            current: list[TurnRow] = []
            for r in conn.execute(query):
                row = TurnRow(r[0], r[1], r[2], r[3], r[5] if r[5] else r[4], list(r[6] or []), not r[7] and not r[8])
                if current and current[-1].session_id != row.session_id:
                    yield current
                    current = []
                current.append(row)
            if current:
                yield current


def effective_labels(engine: Engine, session_ids: list[int]) -> dict[tuple[int, str], tuple[str, str]]:
    """(turn id, layer) → (code, source) under the gold > agreeing people > automatic rule."""
    t, lb = Turn.__table__.c, Label.__table__.c
    by_key: dict[tuple[int, str], list[tuple[int, str, str, str, int | None]]] = defaultdict(list)
    with engine.connect() as conn:
        for chunk in _chunks(session_ids):
            query = (
                select(lb.id, lb.turn_id, lb.layer, lb.code, lb.annotator, lb.meta, lb.supersedes_id)
                .join_from(Label, Turn, lb.turn_id == t.id)
                .where(t.session_id.in_(chunk))
            )
            for r in conn.execute(query):
                by_key[(r[1], r[2])].append((r[0], r[3], r[4], label_source(r[4], r[5]), r[6]))
    out: dict[tuple[int, str], tuple[str, str]] = {}
    for key, rows in by_key.items():
        superseded = {r[4] for r in rows if r[4] is not None}
        current = [r for r in rows if r[0] not in superseded]
        for source in ("gold", "human", "auto"):
            codes = {r[1] for r in current if r[3] == source}
            if len(codes) == 1:
                out[key] = (codes.pop(), source)
                break
            if len(codes) > 1:
                break  # people (or gold labels) disagree: the turn says nothing either way
    return out


def _messages(turns: list[TurnRow]) -> list[dict[str, str]]:
    return [{"role": t.role, "content": t.text} for t in turns if t.role in CHAT_ROLES and (t.usable or t.role != "assistant")]


def _required(conv: dict[str, Any]) -> set[int] | None:
    """Shards the item needs before an answer is in order (None: nothing is ever missing)."""
    payload = conv["payload"] or {}
    if conv["item_kind"] == "sharded":
        return {int(s["id"]) for s in payload.get("shards", [])}
    if conv["item_kind"] == "clarification" and payload.get("needs_clarification"):
        return {int(s["id"]) for s in payload.get("missing", [])} or {-1}
    return None


# --- SFT ----------------------------------------------------------------------------------------------


def sft_records(engine: Engine, sel: Selection, flt: TrainingFilter) -> Iterator[dict[str, Any]]:
    """One chat record per conversation, in conversation order."""
    convs = _conversations(engine, sel, flt)
    labels = effective_labels(engine, list(convs))
    codes_by_turn: dict[int, set[str]] = defaultdict(set)
    for (turn_id, _layer), (code, _src) in labels.items():
        codes_by_turn[turn_id].add(code)
    scrub = Scrubber()
    for turns in _turns(engine, list(convs)):
        conv = convs[turns[0].session_id]
        messages = _messages(turns)
        if not any(m["role"] == "assistant" for m in messages):
            continue
        for m in messages:
            m["content"] = scrub.text(m["content"]) or ""
        yield {
            "messages": messages,
            "conversation_id": turns[0].session_id,
            "participant_kind": conv["participant_kind"],
            "item": conv["item"],
            "item_kind": conv["item_kind"],
            "condition": conv["condition"],
            "model": conv["model"],
            "outcome": conv["outcome"],
            "score": conv["score"],
            "shard_order": [s for t in turns if t.role == "user" for s in t.shards],
            "labels": sorted({c for t in turns for c in codes_by_turn.get(t.id, ())}),
        }


# --- DPO ----------------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """An assistant reply at a point of an item, with its effective labels."""

    turn: TurnRow
    conversation: int
    item: str
    point: tuple[int, tuple[int, ...]]
    """(assistant turn number, shards revealed so far)."""
    premature_possible: bool
    """True when the item still needs information at this point."""
    codes: dict[str, str]
    """Layer → effective code."""
    prompt: list[dict[str, str]]
    """The conversation before this reply."""


def _candidates(engine: Engine, sel: Selection, flt: TrainingFilter) -> list[Candidate]:
    convs = _conversations(engine, sel, flt)
    labels = effective_labels(engine, list(convs))
    out = []
    for turns in _turns(engine, list(convs)):
        conv = convs[turns[0].session_id]
        required = _required(conv)
        revealed: set[int] = set()
        answered = 0
        for i, t in enumerate(turns):
            if t.role == "user":
                revealed |= set(t.shards)
            if t.role != "assistant" or not t.usable:
                continue
            answered += 1
            codes = {layer: labels[(t.id, layer)][0] for layer in ("G", "R", "P", "S") if (t.id, layer) in labels}
            missing = required is not None and (not required <= revealed or (required == {-1} and answered == 1))
            out.append(
                Candidate(
                    t, t.session_id, conv["item"], (answered, tuple(sorted(revealed))), missing, codes, _messages(turns[:i])
                )
            )
    return out


def _repair_outcomes(engine: Engine, session_ids: list[int]) -> dict[int, str]:
    """Repair turn id → outcome of the sequence it repairs (latest sequence wins)."""
    rs = RepairSequence.__table__.c
    out: dict[int, str] = {}
    with engine.connect() as conn:
        for chunk in _chunks(session_ids):
            for turn_id, outcome in conn.execute(
                select(rs.repair_turn_id, rs.outcome)
                .where(rs.session_id.in_(chunk), rs.repair_turn_id.is_not(None))
                .order_by(rs.id)
            ):
                out[turn_id] = outcome
    return out


def _side(c: Candidate, rule: str, repairs: dict[int, str]) -> tuple[str, str] | None:
    """("chosen" | "rejected", the label that decided) for a candidate under a rule, or None."""
    if rule == "clarify_vs_premature":
        if not c.premature_possible:
            return None
        if c.codes.get("S") == "clarification":
            return "chosen", "S:clarification"
        if c.codes.get("G") == "CLARIFY" and c.codes.get("S") not in ("answer_attempt", "hedge"):
            return "chosen", "G:CLARIFY"
        if c.codes.get("S") in ("answer_attempt", "hedge"):
            return "rejected", f"S:{c.codes['S']}"
        return None
    if rule == "correct_vs_accommodate":
        code = c.codes.get("P")
        if code == "REJECT_CORRECT":
            return "chosen", "P:REJECT_CORRECT"
        if code in ("ACCOMMODATE", "AMPLIFY"):
            return "rejected", f"P:{code}"
        return None
    outcome = repairs.get(c.turn.id)
    if outcome == "resolved":
        return "chosen", "repair:resolved"
    if outcome == "misrepair":
        return "rejected", "repair:misrepair"
    return None


def dpo_records(engine: Engine, sel: Selection, flt: TrainingFilter) -> Iterator[dict[str, Any]]:
    """Preference pairs under every rule, rule by rule, point by point."""
    candidates = _candidates(engine, sel, flt)
    repairs = _repair_outcomes(engine, sorted({c.conversation for c in candidates}))
    scrub = Scrubber()
    for rule in RULES:
        groups: dict[tuple[str, tuple[int, tuple[int, ...]]], dict[str, list[tuple[Candidate, str]]]] = defaultdict(
            lambda: {"chosen": [], "rejected": []}
        )
        for c in candidates:
            side = _side(c, rule.name, repairs)
            if side is not None:
                groups[(c.item, c.point)][side[0]].append((c, side[1]))
        for (item, point), sides in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            chosen = sorted(sides["chosen"], key=lambda x: x[0].turn.id)
            rejected = sorted(sides["rejected"], key=lambda x: x[0].turn.id)
            for (good, good_label), (bad, bad_label) in zip(chosen, rejected, strict=False):
                yield {
                    "prompt": [{"role": m["role"], "content": scrub.text(m["content"]) or ""} for m in good.prompt],
                    "chosen": [{"role": "assistant", "content": scrub.text(good.turn.text) or ""}],
                    "rejected": [{"role": "assistant", "content": scrub.text(bad.turn.text) or ""}],
                    "rule": rule.name,
                    "item": item,
                    "point": {"assistant_turn": point[0], "revealed": list(point[1])},
                    "chosen_label": good_label,
                    "rejected_label": bad_label,
                    "chosen_turn_id": good.turn.id,
                    "rejected_turn_id": bad.turn.id,
                    "chosen_conversation_id": good.conversation,
                    "rejected_conversation_id": bad.conversation,
                }


# --- writing ------------------------------------------------------------------------------------------


def validate_records(records: list[dict[str, Any]], schema: dict[str, Any]) -> list[str]:
    """Schema violations, one line each (empty when every record is valid)."""
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # types-jsonschema is not installed

    validator = Draft202012Validator(schema)
    problems = []
    for n, record in enumerate(records, 1):
        for error in validator.iter_errors(record):
            path = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"line {n}: {path or '(record)'}: {error.message}")
    return problems


def _card(kind: str, slug: str, rows: int, flt: TrainingFilter) -> str:
    rules = "\n".join(f"- `{r.name}`: {r.description}" for r in RULES)
    body = {
        "sft": "One line per conversation: `messages` (system/user/assistant, in order; user turns as the model saw them, "
        "so shards keep their reveal order) plus the conversation's item, condition, model, outcome, score, "
        "`shard_order` (shard ids in the order revealed) and `labels` (effective codes on its turns).",
        "dpo": "Preference pairs `{prompt, chosen, rejected}` (conversational format: lists of chat messages) from two "
        "assistant replies at the same point of the same item — same item, same assistant turn number, same shards "
        "revealed so far — with opposite labels. `rule` says which rule built the pair:\n\n" + rules,
    }[kind]
    return f"""---
pretty_name: Repair Lab {kind.upper()} data from study {slug}
configs:
- config_name: {kind}
  data_files: data/{kind}.jsonl
  default: true
---

# Repair Lab {kind.upper()} data: study `{slug}`

{body}

{rows} lines. Filters: outcomes {list(flt.outcomes) or "all"}, labels {list(flt.labels) or "all"},
conditions {list(flt.conditions) or "all"}. Each line validates against `schema/{kind}.schema.json`
(JSON Schema 2020-12). Error and cut replies, mediator rewrites and knowledge probes are left out.
A turn's label is its effective label per layer: a gold label, else the people's current labels
when they agree, else the automatic judge's.

```python
import datasets
ds = datasets.load_dataset("json", data_files="data/{kind}.jsonl")["train"]
```
"""


def filter_choices(s: Session, slug: str) -> tuple[list[str], list[str]]:
    """The conditions and the conversation outcomes of a study (all its versions), to filter training data by."""
    study_ids = list(s.scalars(select(Study.id).where(Study.slug == slug)))
    conditions = sorted(set(s.scalars(select(Condition.key).where(Condition.study_id.in_(study_ids)))))
    outcomes = sorted(o for o in set(s.scalars(select(ChatSession.outcome).where(ChatSession.study_id.in_(study_ids)))) if o)
    return conditions, outcomes


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
    from datetime import UTC, datetime

    if kind not in ("sft", "dpo"):
        raise ExportError(f"training format must be sft or dpo (got '{kind}')")
    options = options or ExportOptions()
    flt = flt or TrainingFilter()
    out = Path(out)
    sel = select_study(engine, slug, options)
    prepare_out(out)
    schema = SFT_SCHEMA if kind == "sft" else DPO_SCHEMA
    records = list(sft_records(engine, sel, flt) if kind == "sft" else dpo_records(engine, sel, flt))
    problems = validate_records(records, schema)
    if problems:
        raise ExportError(f"{kind} records break their schema: {problems[0]}")
    result = TrainingResult(out, rows=len(records))
    with (out / "data" / f"{kind}.jsonl").open("w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            if kind == "dpo":
                result.by_rule[r["rule"]] = result.by_rule.get(r["rule"], 0) + 1
    (out / "schema").mkdir(exist_ok=True)
    (out / "schema" / f"{kind}.schema.json").write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
    meta = {
        "study": slug,
        "format": kind,
        "studies": [{"version": s.version, "spec_sha256": s.spec_sha256} for s in sel.studies],
        "filters": options.describe()
        | {"outcomes": list(flt.outcomes), "labels": list(flt.labels), "conditions": list(flt.conditions)},
        "rows": result.rows,
        "by_rule": result.by_rule,
        "rules": {r.name: r.description for r in RULES} if kind == "dpo" else {},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "lab_version": __version__,
        "migration_revision": current_revision(engine),
        "prompt_versions": prompt_versions(),
    }
    (out / "bundle.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(_card(kind, slug, result.rows, flt), encoding="utf-8")
    (out / "spec").mkdir(exist_ok=True)
    for s in sel.studies:
        (out / "spec" / f"v{s.version}.json").write_text(spec_text(Scrubber().value(s.spec)) + "\n", encoding="utf-8")
    result.files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    return result
