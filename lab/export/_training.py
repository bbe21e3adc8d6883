"""Training data from a study: chat transcripts (SFT) and preference pairs (DPO).

Both are validated against a JSON Schema shipped beside them, and both leave out held-out
items (:mod:`lab.split`) and items of datasets published for testing only.

SFT: one line per conversation, ``{"messages": [{"role", "content"}, …], …}`` in the
OpenAI / Hugging Face chat convention, turns in order (so the shards keep their reveal
order), each user turn as the model saw it. Error and cut (partial) replies, mediator
rewrites and knowledge probes are left out.

DPO: ``{"prompt", "chosen", "rejected", "rule", …}`` from two replies at the *same point*
of one conversation: the original reply and the alternatives sampled there by
:mod:`lab.branch`, all generated from the same messages, so ``prompt`` is exactly what both
sides answered (checked against the hash each branch stores). A pair is made under one of
:data:`lab.export._pairs.RULES`, from the replies' effective labels and their rollout outcomes
(:mod:`lab.rollout`), or from people's blind preferences between two replies
(:mod:`lab.preference`, rule ``human_preference``, source ``human``); each reply is used at
most once per rule and point, except under ``human_preference``, where every comparison people
decided is a pair.

A turn's label is its effective label per layer, with its source: a gold label
(``gold``), else the code more than half of the people who labelled it gave
(``majority``; people who split leave the turn out), else the newest automatic one
(``auto:<judge>``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ..schema import ChatSession, Condition, ItemRow, Label, Participant, RepairSequence, Study, Turn
from ._bundle import Selection
from ._privacy import Scrubber
from ._rows import label_source

if TYPE_CHECKING:
    from ._pairs import DpoReport

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


@dataclass(frozen=True)
class TrainingFilter:
    """Which conversations become training data."""

    outcomes: tuple[str, ...] = ()
    """Keep conversations with one of these outcomes (empty: all)."""
    labels: tuple[str, ...] = ()
    """Keep conversations with a turn carrying one of these codes, or a repair sequence with one of these outcomes."""
    conditions: tuple[str, ...] = ()
    """Keep conversations of these conditions (empty: all)."""
    allow_test_items: bool = False
    """Also use items from datasets published for testing only (:data:`lab.split.TEST_ONLY_DATASETS`)."""
    label_source: str = "any"
    """DPO: the labels that may decide a pair: ``human`` (gold or a majority of people), ``gold``, ``any``."""


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
    heldout_items: int = 0
    """Held-out items (see :mod:`lab.split`) whose conversations were left out."""
    test_items: int = 0
    """Items from test-only datasets left out (or, with ``allow_test_items``, used)."""
    warnings: list[str] = field(default_factory=list)
    """What the person exporting must know (test items used, no split made)."""
    empty_reason: str | None = None
    """Why nothing was written, and what to do (None when something was)."""


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


@dataclass(frozen=True)
class ItemGate:
    """Items kept out of training files: held out for evaluation, or from test-only datasets."""

    heldout: frozenset[str] = frozenset()
    test_only: frozenset[str] = frozenset()
    """Left out unless ``allow_test_items``."""
    split_made: bool = False

    def keeps(self, item: str) -> bool:
        """Whether an item's conversations may enter a training file."""
        return item not in self.heldout and item not in self.test_only


def item_gate(engine: Engine, slug: str, flt: TrainingFilter) -> ItemGate:
    """What a training export of study ``slug`` must leave out."""
    from ..split import evaluation_only_items, item_splits

    splits = item_splits(engine, slug)
    test_only = frozenset() if flt.allow_test_items else frozenset(evaluation_only_items(engine, slug))
    return ItemGate(frozenset(k for k, v in splits.items() if v == "heldout"), test_only, bool(splits))


def _filtered(query: Any, sel: Selection, flt: TrainingFilter, gate: ItemGate) -> Any:
    """``query`` (joining session, item and condition) limited to the conversations a training file may use."""
    from ..schema import participant_conversation

    s, it, co = ChatSession.__table__.c, ItemRow.__table__.c, Condition.__table__.c
    query = query.where(s.participant_id.in_(sel.participant_ids()), participant_conversation(s))
    if gate.heldout or gate.test_only:
        query = query.where(it.key.not_in(sorted(gate.heldout | gate.test_only)))
    if flt.outcomes:
        query = query.where(s.outcome.in_(flt.outcomes))
    if flt.conditions:
        query = query.where(co.key.in_(flt.conditions))
    return query


def _conversations(engine: Engine, sel: Selection, flt: TrainingFilter, gate: ItemGate) -> dict[int, dict[str, Any]]:
    s, it, co = ChatSession.__table__.c, ItemRow.__table__.c, Condition.__table__.c

    p = Participant.__table__.c
    query = _filtered(
        select(s.id, it.id, it.key, it.kind, it.payload, co.key, s.model, s.outcome, s.score, p.kind, co.presupposition)
        .join_from(ChatSession, ItemRow, s.item_id == it.id)
        .join(Condition, s.condition_id == co.id)
        .join(Participant, s.participant_id == p.id)
        .order_by(s.id),
        sel,
        flt,
        gate,
    )
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
            "presupposition": r[10],
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


def effective_labels(
    engine: Engine, session_ids: list[int] | None = None, *, turn_ids: list[int] | None = None
) -> dict[tuple[int, str], tuple[str, str]]:
    """(turn id, layer) → (code, source): the turn's effective label per layer, with where it comes from.

    A gold label wins (source ``gold``); else the code most of the people who labelled the
    turn gave, when more than half of them gave it (``majority``; a tie says nothing); else
    the newest automatic label (``auto:<judge>``, the judge's annotator name).

    Args:
        engine: The lab database.
        session_ids: Every turn of these conversations.
        turn_ids: Or: these turns.
    """
    t, lb = Turn.__table__.c, Label.__table__.c
    by_key: dict[tuple[int, str], list[tuple[int, str, str, str, int | None]]] = defaultdict(list)
    query = select(lb.id, lb.turn_id, lb.layer, lb.code, lb.annotator, lb.meta, lb.supersedes_id)
    if turn_ids is not None:
        ids, column = turn_ids, lb.turn_id
    else:
        ids, column = session_ids or [], t.session_id
        query = query.join_from(Label, Turn, lb.turn_id == t.id)
    with engine.connect() as conn:
        for chunk in _chunks(ids):
            for r in conn.execute(query.where(column.in_(chunk))):
                by_key[(r[1], r[2])].append((r[0], r[3], r[4], label_source(r[4], r[5]), r[6]))
    out: dict[tuple[int, str], tuple[str, str]] = {}
    for key, rows in by_key.items():
        superseded = {r[4] for r in rows if r[4] is not None}
        current = [r for r in rows if r[0] not in superseded]
        gold = {r[1] for r in current if r[3] == "gold"}
        if len(gold) == 1:
            out[key] = (gold.pop(), "gold")
            continue
        if gold:
            continue  # gold labels disagree: the turn says nothing either way
        people: dict[str, str] = {}
        for row in sorted(current, key=lambda x: x[0]):
            if row[3] == "human":
                people[row[2]] = row[1]
        if people:
            top, n = Counter(people.values()).most_common(1)[0]
            if n * 2 > len(people):
                out[key] = (top, "majority")
            continue  # people who labelled it outrank any judge, even when they split
        auto = [r for r in current if r[3] == "auto"]
        if auto:
            newest = max(auto, key=lambda r: r[0])
            out[key] = (newest[1], newest[2].split("@", 1)[0])
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


def sft_records(engine: Engine, sel: Selection, flt: TrainingFilter, gate: ItemGate | None = None) -> Iterator[dict[str, Any]]:
    """One chat record per conversation, in conversation order."""
    convs = _conversations(engine, sel, flt, gate or ItemGate())
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


def empty_reason(kind: str, flt: TrainingFilter, gate: ItemGate, report: DpoReport | None, conversations: int) -> str:
    """Why a training file came out empty, and what to do about it."""
    if conversations == 0:
        if gate.heldout or gate.test_only:
            return (
                "no conversation is left once held-out and test-only items are left out "
                f"({len(gate.heldout)} held out, {len(gate.test_only)} test-only): simulate or collect conversations on "
                "training items, or pass --allow-test-items for test-only ones"
            )
        if flt.outcomes or flt.labels or flt.conditions:
            return "no conversation matches the outcome, label and condition filters: loosen them"
        return "the study has no conversations yet: run `python -m lab simulate SLUG --repeats 1` or collect some"
    if kind == "sft":
        return "no selected conversation has a usable assistant reply (errors and cut replies are left out)"
    assert report is not None
    if report.points == 0:
        return "no point has branches: run `python -m lab branch SLUG --k 4` to sample alternative replies"
    if report.mismatched and report.branches == 0:
        return "every branch was sampled from a prompt that differs from its point's now: run `branch` again"
    if report.filtered_by_source:
        return (
            f"{report.filtered_by_source} pair(s) were left out because their labels are automatic "
            f"(--label-source {flt.label_source}): label the branches (annotate, adjudicate) or use --label-source any"
        )
    if not report.rolled_out and not report.labelled:
        return "the replies at the points have no labels and no rollouts: run `branch` with --rollouts, or `judge`"
    return (
        f"no two replies at any of the {report.points} point(s) differ under a rule (no outcome difference whose "
        "interval excludes 0, no question against an answer, no correction against an accommodation): sample more "
        "branches (--k), other models (--models) or a higher --temperature"
    )


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


def _gate_warnings(engine: Engine, slug: str, flt: TrainingFilter, gate: ItemGate) -> list[str]:
    from ..split import TEST_ONLY_DATASETS, evaluation_only_items

    out = []
    if not gate.split_made:
        out.append(
            f"study '{slug}' has no held-out items: every item may be trained on, so none is left to evaluate "
            f"a tuned model on (run `python -m lab split {slug} --heldout 0.3` first)"
        )
    if flt.allow_test_items:
        used = evaluation_only_items(engine, slug)
        if used:
            reasons = "; ".join(f"{d}: {TEST_ONLY_DATASETS[d]}" for d in sorted(set(used.values())))
            out.append(
                f"--allow-test-items: {len(used)} item(s) from test-only datasets are in this file ({reasons}); "
                "a model trained on it must not be evaluated on those benchmarks"
            )
    return out


def _split_note(gate: ItemGate, flt: TrainingFilter) -> str:
    parts = []
    if gate.split_made:
        parts.append(f"{len(gate.heldout)} held-out item(s) are left out (see `bundle.json`, `split`)")
    else:
        parts.append("The study had no held-out split when this file was written: every item may appear")
    if gate.test_only:
        parts.append(f"{len(gate.test_only)} item(s) from datasets published for testing only are left out")
    elif flt.allow_test_items:
        parts.append("items from datasets published for testing only were allowed in (`--allow-test-items`)")
    return "; ".join(parts) + "."


def _source_note(report: DpoReport | None, flt: TrainingFilter) -> str:
    if report is None:
        return ""
    total = sum(report.sources.values())
    if not total:
        return ""
    shares = ", ".join(f"`{k}` {v / total:.0%}" for k, v in sorted(report.sources.items(), key=lambda kv: (-kv[1], kv[0])))
    auto = sum(v for k, v in report.sources.items() if k.startswith("auto:"))
    warning = (
        f"\n\n**{auto / total:.0%} of the deciding labels are automatic judges' guesses, not people's judgements.** "
        "Pairs decided by them teach whatever the judge's rules reward; check them against people's labels "
        "(`--label-source human`) before drawing conclusions."
        if auto
        else ""
    )
    return (
        f"\n\nDeciding labels by source (two per pair; `rollout`: decided by rollout scores; `--label-source "
        f"{flt.label_source}`): {shares}.{warning}"
    )


def filter_choices(s: Session, slug: str) -> tuple[list[str], list[str]]:
    """The conditions and the conversation outcomes of a study (all its versions), to filter training data by."""
    study_ids = list(s.scalars(select(Study.id).where(Study.slug == slug)))
    conditions = sorted(set(s.scalars(select(Condition.key).where(Condition.study_id.in_(study_ids)))))
    outcomes = sorted(o for o in set(s.scalars(select(ChatSession.outcome).where(ChatSession.study_id.in_(study_ids)))) if o)
    return conditions, outcomes
