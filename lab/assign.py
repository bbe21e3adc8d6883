"""Assignment: which items, under which conditions, each participant does.

Cells are (condition, item) pairs the condition applies to. A new participant's plan takes
the least-filled cells first, so every cell fills evenly; ties are broken by a generator
seeded from the study seed and the participant's arrival number, so the same arrivals give
the same plans. Plans are made while holding a write lock on the study row, so two
participants arriving at the same instant never both take the last place in a cell.
Participants who time out, withdraw or decline release their cells.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .schema import Participant, Study, utcnow
from .spec import StudyDefinition, study_from_normalized

RELEASED = ("timed_out", "withdrawn", "declined")
"""Statuses whose planned cells count as free again."""


@dataclass(frozen=True)
class Assignment:
    """One step of a plan."""

    item: str
    condition: str


def cells(d: StudyDefinition) -> list[tuple[str, str]]:
    """Every (condition, item) pair that can run now, in spec order."""
    active = d.active_conditions()
    return [(c, it.id) for c, cond in active.items() for it in d.items if cond.applies_to(it)]


def cell_counts(s: Session, study: Study) -> Counter[tuple[str, str]]:
    """How many live plans hold each cell."""
    counts: Counter[tuple[str, str]] = Counter()
    rows = s.scalars(select(Participant.plan).where(Participant.study_id == study.id, Participant.status.not_in(RELEASED), Participant.plan.is_not(None)))
    for plan in rows:
        for step in plan or []:
            counts[(step["condition"], step["item"])] += 1
    return counts


def _lock_study(s: Session, study: Study) -> None:
    # A write first: SQLite takes its write lock and Postgres locks the row until commit,
    # so the counts read below already include every plan committed before ours.
    s.execute(update(Study).where(Study.id == study.id).values(updated_at=utcnow()))


def make_plan(d: StudyDefinition, counts: Counter[tuple[str, str]], rng: random.Random) -> list[Assignment]:
    """Pick a plan from the current fill (pure; see :func:`assign`)."""
    available = cells(d)
    if not available:
        return []
    plan_spec = d.spec.plan
    order = {cell: rng.random() for cell in available}

    def fill(cell: tuple[str, str]) -> tuple[int, float]:
        return counts[cell], order[cell]

    if plan_spec.design == "between":
        by_condition: Counter[str] = Counter()
        for (c, _), n in counts.items():
            by_condition[c] += n
        conditions = sorted({c for c, _ in available}, key=lambda c: (by_condition[c], rng.random()))
        chosen = conditions[0]
        candidates = sorted((cell for cell in available if cell[0] == chosen), key=fill)
        k = plan_spec.items_per_participant or len(candidates)
        steps = [Assignment(item=i, condition=c) for c, i in candidates[:k]]
    else:
        items = list(dict.fromkeys(i for _, i in available))
        k = min(plan_spec.items_per_participant or len(items), len(items))
        steps = []
        used_items: set[str] = set()
        met: Counter[str] = Counter()
        for _ in range(k):
            # Least-filled cell first; among equals, a condition this participant has met least.
            best = min(
                (cell for cell in available if cell[1] not in used_items),
                key=lambda cell: (counts[cell], met[cell[0]], order[cell]),
            )
            steps.append(Assignment(item=best[1], condition=best[0]))
            used_items.add(best[1])
            met[best[0]] += 1
    if plan_spec.order == "random":
        rng.shuffle(steps)
    return steps


def assign(s: Session, participant: Participant) -> list[Assignment]:
    """Give a participant their plan (once; the caller commits).

    Returns:
        The plan, stored on the participant as ``[{"item": …, "condition": …}]``.
    """
    if participant.plan is not None:
        return [Assignment(**step) for step in participant.plan]
    study = s.get(Study, participant.study_id)
    assert study is not None
    _lock_study(s, study)
    d = study_from_normalized(study.spec)
    arrival = s.scalar(select(func.count()).select_from(Participant).where(Participant.study_id == study.id, Participant.id < participant.id)) or 0
    rng = random.Random(f"{study.seed}:{arrival}")
    steps = make_plan(d, cell_counts(s, study), rng)
    participant.plan = [{"item": a.item, "condition": a.condition} for a in steps]
    return steps
