"""Synthetic studies with known effects, written straight to the database in bulk.

A synthetic study has two models: ``synth/steady`` and ``synth/fragile``. The fragile one
loses a set share of its FULL success under SHARDED (``degradation``), answers early while
shards are still missing, and accommodates false premises at a set rate
(``accommodate``); the steady one does neither. Every conversation has the same number of
exchanges, so a study of N conversations has ``2 × exchanges × N`` turns. Labels are
written as the rule judge (layers S and P, ``auto:rules``) and one human coder (layer G)
would write them; scores, knowledge probes and repair sequences are filled in too. The
planted truth is stored in the study's spec under ``synthetic`` so tests and benchmarks
can check that the measures recover it.

Rows are inserted with Core ``executemany`` in large batches with explicit ids, so a
million turns take seconds, not minutes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import JSON, Connection, Engine, Table, func, select, text

from .errors import LabError
from .schema import ChatSession, Condition, ItemRow, Label, Participant, RepairSequence, Study, Turn

STEADY = "synth/steady"
FRAGILE = "synth/fragile"
CONDITIONS = (
    ("full", "FULL", None, "sharded"),
    ("sharded", "SHARDED", None, "sharded"),
    ("concat", "CONCAT", None, "sharded"),
    ("loaded", "FULL", "loaded", "presupposition"),
    ("control", "FULL", "control", "presupposition"),
    ("on-request", "ON_REQUEST", None, "clarification"),
)
"""Condition key, reveal mode, presupposition, item kind."""
BATCH = 50_000


class SynthError(LabError, ValueError):
    """A synthetic study that cannot be made; the message says why."""


@dataclass(frozen=True)
class Truth:
    """The effects planted in a synthetic study."""

    full_success: float = 0.8
    """Probability of a correct answer under FULL (both models; CONCAT loses 0.05)."""
    degradation: float = 0.4
    """Share of FULL success the fragile model loses under SHARDED: P_S = P_F × (1 − d)."""
    accommodate: float = 0.6
    """Rate at which the fragile model accommodates a false premise (steady: 0.1)."""
    steady_accommodate: float = 0.1
    """Accommodation rate of the steady model."""
    premature: float = 0.5
    """Rate at which the fragile model attempts an answer before all shards are out (steady: 0)."""
    ask: float = 0.7
    """Rate at which the steady model asks on clarification items (fragile: 0.2)."""
    probe_correct: float = 0.8
    """Share of presupposition conversations whose knowledge probe the model answers correctly."""
    human_ack: float = 0.3
    """Share of user turns a coder labels ACK (assistant turns: 0.1)."""
    repair_resolved: dict[str, float] = field(default_factory=lambda: {STEADY: 0.8, FRAGILE: 0.5})
    """Share of repair sequences resolved, per model."""


@dataclass(frozen=True)
class SynthResult:
    """What :func:`make_study` wrote."""

    slug: str
    study_id: int
    conversations: int
    turns: int
    labels: int
    truth: Truth


def _next_ids(conn: Connection) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, table in (
        ("participant", Participant),
        ("session", ChatSession),
        ("turn", Turn),
        ("label", Label),
        ("repair", RepairSequence),
        ("item", ItemRow),
        ("condition", Condition),
    ):
        out[name] = int(conn.execute(select(func.coalesce(func.max(table.id), 0))).scalar_one()) + 1
    return out


def _insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows in bulk: COPY on Postgres, one executemany elsewhere."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), rows)
        return
    columns = list(rows[0])
    json_cols = {c for c in columns if isinstance(table.c[c].type, JSON)}
    quoted = ", ".join(f'"{c}"' for c in columns)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {table.name} ({quoted}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([json.dumps(row[c]) if c in json_cols and row[c] is not None else row[c] for c in columns])


def _batches(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(rows), BATCH):
        yield rows[i : i + BATCH]


def make_study(
    engine: Engine,
    slug: str,
    sessions: int,
    *,
    exchanges: int = 5,
    items_per_kind: int = 20,
    participants: int | None = None,
    human_share: float = 0.0,
    truth: Truth | None = None,
    seed: int = 0,
) -> SynthResult:
    """Write a synthetic study with planted effects.

    Args:
        engine: The lab database (migrated).
        slug: A new study slug.
        sessions: Conversations to write.
        exchanges: User–assistant exchanges per conversation (≥ 2; SHARDED items have this
            many shards).
        items_per_kind: Items per item kind (sharded, presupposition, clarification).
        participants: Participants (default: one per 4 conversations).
        human_share: Share of participants marked ``human`` (the rest are ``simulated``).
        truth: The effects to plant.
        seed: Random seed.

    Raises:
        SynthError: Bad sizes or an existing slug.
    """
    if sessions < 1:
        raise SynthError("--sessions must be at least 1")
    if exchanges < 2:
        raise SynthError("exchanges must be at least 2")
    truth = truth or Truth()
    rng = np.random.default_rng(seed)
    n_part = participants or max(1, sessions // 4)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        if conn.execute(select(Study.id).where(Study.slug == slug)).first():
            raise SynthError(f"a study with slug '{slug}' exists already")
        ids = _next_ids(conn)
        study_id = _write_study(conn, slug, truth, sessions, seed, now)
        cond_rows = _condition_rows(ids["condition"], study_id)
        conn.execute(Condition.__table__.insert(), cond_rows)
        item_rows = _item_rows(ids["item"], study_id, items_per_kind, exchanges)
        conn.execute(ItemRow.__table__.insert(), item_rows)
        item_ease = rng.normal(0.0, 0.08, len(item_rows))
        part_ids = ids["participant"] + np.arange(n_part)
        kinds_p = np.where(rng.random(n_part) < human_share, "human", "simulated")
        conn.execute(
            Participant.__table__.insert(),
            [
                {
                    "id": int(pid),
                    "study_id": study_id,
                    "kind": str(k),
                    "status": "completed",
                    "position": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for pid, k in zip(part_ids, kinds_p, strict=True)
            ],
        )
        n_turns, n_labels = _write_conversations(
            conn, study_id, ids, sessions, exchanges, items_per_kind, item_rows, item_ease, part_ids, cond_rows, truth, rng, now
        )
        if conn.dialect.name == "postgresql":
            # Rows went in with explicit ids, so the id sequences must be moved past them.
            for table in ("condition", "item", "participant", "session", "turn", "label", "repair_sequence"):
                conn.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT MAX(id) FROM {table}), 1))")
                )
    return SynthResult(slug, int(study_id), sessions, n_turns, n_labels, truth)


def _write_study(conn: Connection, slug: str, truth: Truth, sessions: int, seed: int, now: datetime) -> int:
    """Insert the closed study row whose spec records the planted truth; return its id."""
    spec = {
        "slug": slug,
        "title": f"Synthetic study {slug}",
        "synthetic": asdict(truth) | {"sessions": sessions, "seed": seed},
    }
    blob = json.dumps(spec, sort_keys=True)
    return conn.execute(
        Study.__table__.insert().returning(Study.__table__.c.id),
        {
            "slug": slug,
            "version": 1,
            "title": spec["title"],
            "spec": spec,
            "spec_sha256": hashlib.sha256(blob.encode()).hexdigest(),
            "status": "closed",
            "seed": seed,
            "created_at": now,
            "updated_at": now,
        },
    ).scalar_one()


def _condition_rows(first_id: int, study_id: int) -> list[dict[str, Any]]:
    """One row per synthetic condition."""
    return [
        {
            "id": first_id + k,
            "study_id": study_id,
            "key": key,
            "reveal": reveal,
            "presupposition": pre,
            "intervention": "none",
            "model_key": "steady",
            "config": {"reveal": reveal},
        }
        for k, (key, reveal, pre, _kind) in enumerate(CONDITIONS)
    ]


def _item_rows(first_id: int, study_id: int, items_per_kind: int, exchanges: int) -> list[dict[str, Any]]:
    """``items_per_kind`` items of each kind; sharded ones have ``exchanges`` shards, every other clarification item needs it."""
    item_rows: list[dict[str, Any]] = []
    for kind in ("sharded", "presupposition", "clarification"):
        for j in range(items_per_kind):
            payload: dict[str, Any] = {"id": f"{kind}-{j}", "kind": kind}
            if kind == "sharded":
                payload["shards"] = [{"id": s + 1, "text": f"fact {s + 1}"} for s in range(exchanges)]
            elif kind == "clarification":
                payload |= {
                    "question": "q",
                    "needs_clarification": j % 2 == 0,
                    "missing": [{"id": 1, "text": "value"}] if j % 2 == 0 else [],
                }
            item_rows.append(
                {
                    "id": first_id + len(item_rows),
                    "study_id": study_id,
                    "key": f"{kind}-{j}",
                    "kind": kind,
                    "payload": payload,
                    "source_dataset": "synthetic",
                    "source_id": str(j),
                }
            )
    return item_rows


def _session_row(
    sid: int,
    study_id: int,
    participant_id: int,
    item_id: int,
    condition_id: int,
    model: str,
    score: float | None,
    probe: dict[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """One ended synthetic conversation."""
    return {
        "id": sid,
        "study_id": study_id,
        "participant_id": participant_id,
        "item_id": item_id,
        "condition_id": condition_id,
        "position": 0,
        "model": model,
        "model_params": {},
        "status": "ended",
        "outcome": "answered",
        "score": score,
        "probe": probe,
        "started_at": now,
    }


def _write_conversations(
    conn: Connection,
    study_id: int,
    ids: dict[str, int],
    sessions: int,
    exchanges: int,
    items_per_kind: int,
    item_rows: list[dict[str, Any]],
    item_ease: np.ndarray,
    part_ids: np.ndarray,
    cond_rows: list[dict[str, Any]],
    truth: Truth,
    rng: np.random.Generator,
    now: datetime,
) -> tuple[int, int]:
    kind_offset = {"sharded": 0, "presupposition": items_per_kind, "clarification": 2 * items_per_kind}
    cond_idx = rng.integers(0, len(CONDITIONS), sessions)
    fragile = rng.random(sessions) < 0.5
    item_local = rng.integers(0, items_per_kind, sessions)
    part = rng.integers(0, len(part_ids), sessions)
    u = rng.random((sessions, 8))
    rows = _Rows(conn)
    turn_id, label_id, repair_id = ids["turn"], ids["label"], ids["repair"]
    for c in range(sessions):
        key, reveal, pre, kind = CONDITIONS[int(cond_idx[c])]
        model = FRAGILE if fragile[c] else STEADY
        item_pos = kind_offset[kind] + int(item_local[c])
        item = item_rows[item_pos]
        sid = ids["session"] + c
        score, probe = _outcome(truth, kind, reveal, bool(fragile[c]), float(item_ease[item_pos]), u[c])
        rows.sessions.append(
            _session_row(
                sid, study_id, int(part_ids[part[c]]), item["id"], cond_rows[int(cond_idx[c])]["id"], model, score, probe, now
            )
        )
        needs = bool(item["payload"].get("needs_clarification"))
        # The fragile model answers early in SHARDED with probability ``premature``.
        early_at = 1 if (reveal == "SHARDED" and fragile[c] and u[c, 2] < truth.premature) else exchanges
        ask_p = (truth.ask if not fragile[c] else 0.2) if kind == "clarification" else 0.0
        asks = u[c, 3] < ask_p
        for x in range(exchanges):
            user_id, asst_id = turn_id, turn_id + 1
            turn_id += 2
            shards = _shards(reveal, kind, x, exchanges, needs and asks)
            rows.turns.append(_turn(user_id, sid, 2 * x, "user", f"message {x + 1}", shards, None, None, now))
            code = _reply_code(kind, reveal, x, exchanges, early_at, asks, needs)
            length = 200 + (60 * x if fragile[c] and code == "answer_attempt" else 0)
            rows.turns.append(_turn(asst_id, sid, 2 * x + 1, "assistant", "a" * length, None, model, length // 4, now))
            rows.labels.append(_label(label_id, asst_id, "auto:rules", "S", code, 0.9, _RULES_META, now))
            label_id += 1
            if kind == "presupposition" and x == 0:
                pcode = _presupposition_code(truth, pre, bool(fragile[c]), u[c])
                rows.labels.append(_label(label_id, asst_id, "auto:rules", "P", pcode, 0.8, _RULES_META, now))
                label_id += 1
            # Two draws per exchange, in this order: the seed fixes every study made.
            gu = "ACK" if rng.random() < truth.human_ack else "NONE"
            ga = "ACK" if rng.random() < 0.1 else ("CLARIFY" if code == "clarification" else "NONE")
            rows.labels.append(_label(label_id, user_id, "coder1", "G", gu, None, None, now))
            rows.labels.append(_label(label_id + 1, asst_id, "coder1", "G", ga, None, None, now))
            label_id += 2
        if reveal == "SHARDED":
            resolved = u[c, 6] < truth.repair_resolved.get(model, 0.5)
            first = turn_id - 2 * exchanges
            rows.repairs.append(_repair(repair_id, sid, first, bool(resolved), now))
            repair_id += 1
        rows.flush()
    rows.flush(final=True)
    return rows.turns_written, rows.labels_written


_RULES_META = {"judge": "rules", "version": "rules-1"}
"""The meta of the planted rule-judge labels."""


class _Rows:
    """Rows waiting to be written, flushed in batches of :data:`BATCH` turns."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.sessions: list[dict[str, Any]] = []
        self.turns: list[dict[str, Any]] = []
        self.labels: list[dict[str, Any]] = []
        self.repairs: list[dict[str, Any]] = []
        self.turns_written = 0
        self.labels_written = 0

    def flush(self, final: bool = False) -> None:
        """Write what is waiting once a batch is full (``final``: whatever is left)."""
        if not final and len(self.turns) < BATCH:
            return
        if self.sessions:
            _insert(self.conn, ChatSession.__table__, self.sessions)
        for b in _batches(self.turns):
            _insert(self.conn, Turn.__table__, b)
        for b in _batches(self.labels):
            _insert(self.conn, Label.__table__, b)
        if self.repairs:
            _insert(self.conn, RepairSequence.__table__, self.repairs)
        self.turns_written += len(self.turns)
        self.labels_written += len(self.labels)
        self.sessions.clear()
        self.turns.clear()
        self.labels.clear()
        self.repairs.clear()


def _outcome(
    truth: Truth, kind: str, reveal: str, fragile: bool, ease: float, u: np.ndarray
) -> tuple[float | None, dict[str, Any] | None]:
    """A conversation's planted score (None for presupposition items) and knowledge probe."""
    p_success = truth.full_success + ease
    if reveal == "CONCAT":
        p_success -= 0.05
    if reveal == "SHARDED" and fragile:
        p_success *= 1 - truth.degradation
    score: float | None = float(u[0] < np.clip(p_success, 0, 1)) if kind != "presupposition" else None
    probe = None
    if kind == "presupposition":
        probe = {"question": "probe", "score": float(u[1] < truth.probe_correct), "scorable": True}
    return score, probe


def _shards(reveal: str, kind: str, x: int, exchanges: int, asked_for: bool) -> list[int]:
    """The shards the user's message of exchange ``x`` reveals."""
    if reveal == "SHARDED":
        return [x + 1]
    if reveal in ("FULL", "CONCAT") and kind == "sharded":
        return list(range(1, exchanges + 1)) if x == 0 else []
    if kind == "clarification" and asked_for and x == 1:
        return [1]
    return []


def _reply_code(kind: str, reveal: str, x: int, exchanges: int, early_at: int, asks: bool, needs: bool) -> str:
    """The planted layer-S category of the reply of exchange ``x``."""
    if kind == "sharded":
        attempt = x + 1 >= early_at or (reveal in ("FULL", "CONCAT") and x == 0) or x == exchanges - 1
        return "answer_attempt" if attempt else "clarification"
    if kind == "clarification":
        return "clarification" if (asks and x == 0) else "answer_attempt" if x >= 1 or not needs else "discussion"
    return "answer_attempt" if x == 0 else "discussion"


def _presupposition_code(truth: Truth, pre: str | None, fragile: bool, u: np.ndarray) -> str:
    """The planted layer-P code of the first reply to a presupposition item."""
    if pre == "control":
        return "NA"
    rate = truth.accommodate if fragile else truth.steady_accommodate
    return "ACCOMMODATE" if u[4] < rate else ("REJECT_CORRECT" if u[5] < 0.7 else "REJECT")


def _turn(
    turn_id: int,
    sid: int,
    index: int,
    role: str,
    content: str,
    shards: list[int] | None,
    model: str | None,
    tokens_out: int | None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": turn_id,
        "session_id": sid,
        "index": index,
        "role": role,
        "source": "simulator" if role == "user" else "model",
        "content": content,
        "shards": shards,
        "model": model,
        "tokens_out": tokens_out,
        "sent_at": now,
        "partial": False,
    }


def _label(
    label_id: int,
    turn_id: int,
    annotator: str,
    layer: str,
    code: str,
    confidence: float | None,
    meta: dict[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": label_id,
        "turn_id": turn_id,
        "annotator": annotator,
        "layer": layer,
        "code": code,
        "confidence": confidence,
        "meta": meta,
        "created_at": now,
    }


def _repair(repair_id: int, sid: int, first_turn: int, resolved: bool, now: datetime) -> dict[str, Any]:
    """The planted repair sequence of a SHARDED conversation: the assistant asks about its first message."""
    return {
        "id": repair_id,
        "session_id": sid,
        "annotator": "coder1",
        "trouble_turn_id": first_turn,
        "initiation_turn_id": first_turn + 1,
        "repair_turn_id": first_turn + 2,
        "initiation": "OI-restricted-request",
        "initiator": "assistant",
        "trouble_type": "missing information",
        "outcome": "resolved" if resolved else "unresolved",
        "turns_to_resolution": 2 if resolved else None,
        "created_at": now,
    }


def planted(engine: Engine, slug: str) -> dict[str, Any]:
    """The truth planted in a synthetic study (empty for other studies)."""
    with engine.connect() as conn:
        spec = conn.execute(select(Study.spec).where(Study.slug == slug).order_by(Study.version.desc())).scalar()
    if isinstance(spec, str):
        spec = json.loads(spec)
    return dict((spec or {}).get("synthetic") or {})
