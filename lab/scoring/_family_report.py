"""Mean scores per task family, and how many conversations were not scored and why."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from lab.schema import ChatSession, Condition, Turn

from ._dispatch import FAMILIES, family_of
from ._rescore import NO_ATTEMPT, last_attempt, reason_of
from ._store import latest_scores

if TYPE_CHECKING:
    from lab.items import Item

NOT_YET = "not scored yet"
"""Reason for a conversation whose answer attempt has no stored evaluation yet (``python -m lab score SLUG``)."""


@dataclass
class FamilyScores:
    """The scores of one task family in a set of conversations."""

    family: str
    conversations: int = 0
    scored: int = 0
    total: float = 0.0
    not_scored: Counter[str] = field(default_factory=Counter)
    """Conversations without a score, by reason (``needs database``, ``needs judge``…)."""
    evaluators: set[str] = field(default_factory=set)
    """``evaluator@version`` of the scores counted."""
    no_attempt: int = 0
    """Scored conversations without an answer attempt (0, as published)."""

    @property
    def mean(self) -> float | None:
        """Mean score of the scored conversations."""
        return self.total / self.scored if self.scored else None


def family_scores(conn: Connection, chats: Iterable[tuple[int, float | None, Item]]) -> list[FamilyScores]:
    """Per-family scores of conversations, from their stored evaluations.

    Args:
        conn: An open connection.
        chats: (session id, session score, item) of each conversation.

    Returns:
        One entry per family present, in the order of :data:`FAMILIES` (``other`` last).
    """
    chats = list(chats)
    stored = latest_scores(conn, [sid for sid, _, _ in chats])
    unscored = [(sid, item) for sid, score, item in chats if sid not in stored and score is None]
    attempted = _attempted(conn, unscored, _reveals(conn, [sid for sid, _ in unscored]))
    found: dict[str, FamilyScores] = {}
    for sid, score, item in chats:
        family = family_of(item)
        if family is None:
            continue
        entry = found.setdefault(family, FamilyScores(family))
        entry.conversations += 1
        record: dict[str, Any] | None = stored.get(sid)
        if record is not None and record.get("status") == "scored" and record.get("value") is not None:
            entry.scored += 1
            entry.total += float(record["value"])
            entry.evaluators.add(f"{record.get('evaluator')}@{record.get('version')}")
            entry.no_attempt += bool((record.get("details") or {}).get("no_attempt"))
        elif record is not None:
            entry.not_scored[reason_of(record)] += 1
        elif score is not None:
            # Scored in the reply's transaction by the answer rules, before evaluations were stored.
            entry.scored += 1
            entry.total += score
        elif sid in attempted or family not in FAMILIES:
            entry.not_scored[NOT_YET if sid in attempted else NO_ATTEMPT] += 1
        else:
            # No attempt and no evaluation stored yet: the published score is already known.
            entry.scored += 1
            entry.no_attempt += 1
    order = [*FAMILIES, "other"]
    return sorted(found.values(), key=lambda e: order.index(e.family) if e.family in order else len(order))


def _reveals(conn: Connection, session_ids: list[int]) -> dict[int, str]:
    """The reveal mode of each conversation."""
    found: dict[int, str] = {}
    for start in range(0, len(session_ids), 500):
        q = select(ChatSession.id, Condition.reveal).join(Condition, ChatSession.condition_id == Condition.id)
        for sid, reveal in conn.execute(q.where(ChatSession.id.in_(session_ids[start : start + 500]))):
            found[sid] = reveal
    return found


def _attempted(conn: Connection, chats: list[tuple[int, Item]], reveals: dict[int, str]) -> set[int]:
    """Those of the conversations that hold an answer attempt."""
    turns: dict[int, list[Any]] = {sid: [] for sid, _ in chats}
    ids = list(turns)
    for start in range(0, len(ids), 500):
        q = select(Turn.id, Turn.index, Turn.role, Turn.content, Turn.error, Turn.session_id).where(
            Turn.session_id.in_(ids[start : start + 500]), Turn.role == "assistant"
        )
        for row in conn.execute(q.order_by(Turn.session_id, Turn.index)):
            turns[row.session_id].append(row)
    return {sid for sid, item in chats if last_attempt(item, turns[sid], reveal=reveals.get(sid)) is not None}


def format_family_scores(rows: list[FamilyScores]) -> list[str]:
    """Report lines: one per family with its mean, scored count and reasons for the rest."""
    if not rows:
        return []
    lines = ["scores by task family:"]
    for r in rows:
        mean = f"{r.mean:.3f}" if r.mean is not None else "—"
        rest = ", ".join(f"{n} {why}" for why, n in r.not_scored.most_common())
        zeros = f" ({r.no_attempt} {NO_ATTEMPT}: 0)" if r.no_attempt else ""
        lines.append(
            f"  {r.family:<12} mean {mean:>6}  scored {r.scored}/{r.conversations}{zeros}"
            + (f"  not scored: {rest}" if rest else "")
        )
    return lines
