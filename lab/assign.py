"""Assignment: which items, under which conditions, in which order each participant does.

Cells are (condition, item) pairs the condition applies to. Plans fill every cell evenly:

- **least-filled** (the default): a new participant takes the least-filled cells first,
  one item at most once, and among equally filled cells a condition they have met least.
  After every arrival the fill of any two cells differs by at most one.
- **latin-square**: when every participant does every item (within subjects), items are
  grouped by the conditions that apply to them and each group is a Latin square: in row
  ``r`` the group's ``j``-th item runs under condition ``(j + r) mod k``. A new participant
  takes the row with the fewest live participants, so each block of ``k`` arrivals fills
  every cell of the group once and each participant meets every condition equally often.
  Where a Latin square does not apply (a subset of items per participant, or a
  between-subjects design) cells are filled least-filled first and :func:`method` says why.
- **random**: cells drawn at random, for studies that want no balancing.

A between-subjects design gives each participant one condition: the condition with the
fewest live participants, then its least-filled items.

Order is counterbalanced (``order: random``): when all plans share one item set, the
items follow the least-used row of a Williams design (a balanced Latin square: every item
appears at every position, and after every other item, equally often); otherwise the
plan's steps are placed so that each condition, then each item, goes where it has been
least (an exact assignment over steps and positions). ``order: fixed``
keeps the spec's item order.

Every tie is broken by a generator seeded from the study seed and the arrival number, so
the same arrivals give the same plans. Plans are made while holding a write lock on the
study row, so two participants arriving at the same instant never both take the last place
in a cell. Participants who time out (inactive longer than the spec's ``timeout_minutes``),
withdraw or decline release their cells; stale participants are timed out under the same
lock before each new plan is made.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from .schema import ChatSession, Event, Participant, Study, Turn, utcnow
from .spec import StudyDefinition
from .studies import definition

RELEASED = ("timed_out", "withdrawn", "declined")
"""Statuses whose planned cells count as free again."""
EXPIRABLE = ("invited", "consented", "active")
"""Statuses of participants who can be timed out (when they hold a plan)."""
WILLIAMS_MAX = 30
"""Longest plan ordered by a Williams design; longer plans balance positions step by step."""


@dataclass(frozen=True)
class Assignment:
    """One step of a plan."""

    item: str
    condition: str


@dataclass(frozen=True)
class Method:
    """How a study's plans are made."""

    balance: str
    """latin-square, least-filled or random: the method actually used."""
    order: str
    """williams, positions (conditions balanced over positions), or fixed."""
    note: str | None = None
    """Why the spec's balance could not be used as written."""


@dataclass
class Fill:
    """What the live plans of a study already hold."""

    cells: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Live plans holding each (condition, item) cell."""
    positions: Counter[tuple[str, int]] = field(default_factory=Counter)
    """Live plans with a condition at a position."""
    item_positions: Counter[tuple[str, int]] = field(default_factory=Counter)
    """Live plans with an item at a position."""
    orders: Counter[tuple[str, ...]] = field(default_factory=Counter)
    """Live plans with each item sequence."""
    conditions: Counter[str] = field(default_factory=Counter)
    """Live plans meeting each condition."""
    plans: int = 0

    def add(self, plan: Sequence[Assignment]) -> None:
        """Count one more live plan."""
        self.plans += 1
        for position, step in enumerate(plan):
            self.cells[(step.condition, step.item)] += 1
            self.positions[(step.condition, position)] += 1
            self.item_positions[(step.item, position)] += 1
        self.orders[tuple(step.item for step in plan)] += 1
        for condition in {step.condition for step in plan}:
            self.conditions[condition] += 1

    @classmethod
    def of(cls, plans: Iterable[Sequence[Assignment]]) -> Fill:
        """The fill of some plans."""
        fill = cls()
        for plan in plans:
            fill.add(plan)
        return fill


def steps_of(plan: Sequence[Mapping[str, Any]] | None) -> list[Assignment]:
    """A stored plan (``[{"item": …, "condition": …}]``) as assignments."""
    return [Assignment(item=str(step["item"]), condition=str(step["condition"])) for step in plan or []]


def cells(d: StudyDefinition) -> list[tuple[str, str]]:
    """Every (condition, item) pair that can run now, in spec order."""
    active = d.active_conditions()
    return [(c, it.id) for c, cond in active.items() for it in d.items if cond.applies_to(it)]


def latin_groups(d: StudyDefinition) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Items grouped by the conditions that apply to them: ``(conditions, items)`` in spec order."""
    active = d.active_conditions()
    groups: dict[tuple[str, ...], list[str]] = {}
    for it in d.items:
        conds = tuple(c for c, cond in active.items() if cond.applies_to(it))
        if conds:
            groups.setdefault(conds, []).append(it.id)
    return [(conds, tuple(items)) for conds, items in groups.items()]


def _runnable_items(d: StudyDefinition) -> list[str]:
    return list(dict.fromkeys(i for _, i in cells(d)))


def plan_length(d: StudyDefinition) -> int:
    """Steps in a within-subjects plan (between-subjects plans may be shorter for small conditions)."""
    n = len(_runnable_items(d))
    return min(d.spec.plan.items_per_participant or n, n)


def method(d: StudyDefinition) -> Method:
    """How plans are made for a study, and why when it differs from the spec's wish."""
    plan = d.spec.plan
    n_items = len(_runnable_items(d))
    whole = plan.items_per_participant is None or plan.items_per_participant >= n_items
    note = None
    if plan.balance == "random":
        balance = "random"
    elif plan.balance == "latin-square" and plan.design == "between":
        balance = "least-filled"
        note = (
            "A Latin square crosses items with conditions within participants; in a between-subjects design "
            "each participant meets one condition, so conditions and cells are filled least-filled first."
        )
    elif plan.balance == "latin-square" and not whole:
        balance = "least-filled"
        note = (
            f"A Latin square needs every participant to do every item; each participant does {plan_length(d)} of "
            f"{n_items} items, so cells are filled least-filled first (which keeps every cell within one of the others)."
        )
    else:
        balance = plan.balance
    if plan.order == "fixed":
        order = "fixed"
    elif whole and balance != "random" and n_items <= WILLIAMS_MAX:
        order = "williams"
    else:
        order = "positions"
    return Method(balance, order, note)


def williams(n: int) -> list[list[int]]:
    """Rows of a Williams design for ``n`` items (``n`` rows when even, ``2n`` when odd).

    Every item appears at every position equally often, and every item directly follows
    every other item equally often.
    """
    if n <= 0:
        return []
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        if len(first) % 2:
            first.append(lo)
            lo += 1
        else:
            first.append(hi)
            hi -= 1
    rows = [[(x + r) % n for x in first] for r in range(n)]
    if n % 2 and n > 1:
        rows += [list(reversed(row)) for row in rows]
    return rows


def _least_filled_within(d: StudyDefinition, fill: Fill, rng: random.Random) -> list[Assignment]:
    available = cells(d)
    order = {cell: rng.random() for cell in available}
    k = plan_length(d)
    steps: list[Assignment] = []
    used_items: set[str] = set()
    met: Counter[str] = Counter()
    for _ in range(k):
        # Least-filled cell first; among equals, a condition this participant has met least.
        best = min(
            (cell for cell in available if cell[1] not in used_items),
            key=lambda cell: (fill.cells[cell], met[cell[0]], order[cell]),
        )
        steps.append(Assignment(item=best[1], condition=best[0]))
        used_items.add(best[1])
        met[best[0]] += 1
    return steps


def _latin_within(d: StudyDefinition, fill: Fill, rng: random.Random) -> list[Assignment]:
    steps = []
    for conds, items in latin_groups(d):
        k = len(conds)
        # Row r gives the group's first item condition r, so that cell's fill counts row r's participants.
        rows = {r: rng.random() for r in range(k)}
        row = min(rows, key=lambda r: (fill.cells[(conds[r], items[0])], rows[r]))
        steps += [Assignment(item=item, condition=conds[(j + row) % k]) for j, item in enumerate(items)]
    return steps


def _random_within(d: StudyDefinition, rng: random.Random) -> list[Assignment]:
    by_item: dict[str, list[str]] = {}
    for c, i in cells(d):
        by_item.setdefault(i, []).append(c)
    items = rng.sample(list(by_item), plan_length(d))
    return [Assignment(item=i, condition=rng.choice(by_item[i])) for i in items]


def _between(d: StudyDefinition, fill: Fill, rng: random.Random, balance: str) -> list[Assignment]:
    available = cells(d)
    conditions = list(dict.fromkeys(c for c, _ in available))
    if balance == "random":
        chosen = rng.choice(conditions)
        candidates = [cell for cell in available if cell[0] == chosen]
        rng.shuffle(candidates)
    else:
        tie = {c: rng.random() for c in conditions}
        chosen = min(conditions, key=lambda c: (fill.conditions[c], tie[c]))
        order = {cell: rng.random() for cell in available if cell[0] == chosen}
        candidates = sorted(order, key=lambda cell: (fill.cells[cell], order[cell]))
    k = d.spec.plan.items_per_participant or len(candidates)
    return [Assignment(item=i, condition=c) for c, i in candidates[:k]]


def _ordered(d: StudyDefinition, steps: list[Assignment], fill: Fill, rng: random.Random, how: str) -> list[Assignment]:
    spec_index = {it.id: n for n, it in enumerate(d.items)}
    steps = sorted(steps, key=lambda a: spec_index[a.item])
    if how == "fixed" or len(steps) < 2:
        return steps
    if how == "williams" and len(steps) <= WILLIAMS_MAX:
        sequences = [tuple(steps[x] for x in row) for row in williams(len(steps))]
        tie = [rng.random() for _ in sequences]
        best = min(range(len(sequences)), key=lambda n: (fill.orders[tuple(a.item for a in sequences[n])], tie[n]))
        return list(sequences[best])
    # Put each step at a position so that conditions, then items, sit where they have sat least:
    # an assignment problem over the plan's steps and positions, solved exactly.
    k = len(steps)
    weight = k * (fill.plans + 1)
    cost = [
        [fill.positions[(a.condition, p)] * weight + fill.item_positions[(a.item, p)] + rng.random() * 0.5 / k for p in range(k)]
        for a in steps
    ]
    slots = assignment(cost)
    out: list[Assignment] = [steps[0]] * k
    for n, p in enumerate(slots):
        out[p] = steps[n]
    return out


def assignment(cost: list[list[float]]) -> list[int]:
    """The cheapest one-to-one assignment of rows to columns of a square cost matrix (Hungarian method).

    Returns:
        For each row, its column.
    """
    n = len(cost)
    inf = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (n + 1)
    match, way = [0] * (n + 1), [0] * (n + 1)  # match[column] = row, 1-based
    for row in range(1, n + 1):
        match[0] = row
        col0 = 0
        minv = [inf] * (n + 1)
        used = [False] * (n + 1)
        while True:
            used[col0] = True
            r0, delta, col1 = match[col0], inf, 0
            for col in range(1, n + 1):
                if not used[col]:
                    cur = cost[r0 - 1][col - 1] - u[r0] - v[col]
                    if cur < minv[col]:
                        minv[col], way[col] = cur, col0
                    if minv[col] < delta:
                        delta, col1 = minv[col], col
            for col in range(n + 1):
                if used[col]:
                    u[match[col]] += delta
                    v[col] -= delta
                else:
                    minv[col] -= delta
            col0 = col1
            if match[col0] == 0:
                break
        while col0:
            col1 = way[col0]
            match[col0] = match[col1]
            col0 = col1
    out = [0] * n
    for col in range(1, n + 1):
        out[match[col] - 1] = col - 1
    return out


def make_plan(d: StudyDefinition, fill: Fill | Counter[tuple[str, str]], rng: random.Random) -> list[Assignment]:
    """Pick a plan from the current fill (pure; see :func:`assign`).

    Args:
        d: The study.
        fill: What live plans hold; bare cell counts are accepted (no order history).
        rng: Tie-breaker, seeded for reproducible plans.

    Returns:
        The steps in the order the participant does them.
    """
    if not isinstance(fill, Fill):
        fill = Fill(cells=Counter(fill))
    if not cells(d):
        return []
    how = method(d)
    if d.spec.plan.design == "between":
        steps = _between(d, fill, rng, how.balance)
    elif how.balance == "latin-square":
        steps = _latin_within(d, fill, rng)
    elif how.balance == "random":
        steps = _random_within(d, rng)
    else:
        steps = _least_filled_within(d, fill, rng)
    if how.balance == "random" and how.order != "fixed":
        rng.shuffle(steps)
        return steps
    return _ordered(d, steps, fill, rng, how.order)


# --- in the database -----------------------------------------------------------------------


def current_fill(s: Session, study: Study) -> Fill:
    """What the study's live plans (not released) hold."""
    rows = s.scalars(
        select(Participant.plan).where(
            Participant.study_id == study.id, Participant.status.not_in(RELEASED), Participant.plan.is_not(None)
        )
    )
    return Fill.of(steps_of(plan) for plan in rows if plan)


def cell_counts(s: Session, study: Study) -> Counter[tuple[str, str]]:
    """How many live plans hold each cell."""
    return current_fill(s, study).cells


def _lock_study(s: Session, study: Study) -> None:
    # A write first: SQLite takes its write lock and Postgres locks the row until commit,
    # so the counts read below already include every plan committed before ours.
    s.execute(update(Study).where(Study.id == study.id).values(updated_at=utcnow()))


def release(s: Session, participant: Participant, status: str = "timed_out", *, by: str = "timeout") -> bool:
    """End a participant's part: their cells are free again and open conversations are abandoned.

    Args:
        s: Open session (the caller commits).
        participant: Who leaves.
        status: timed_out, withdrawn or declined.
        by: Who or what ended it (``timeout`` or a staff username), for the event log.

    Returns:
        False when the participant had already finished or left.
    """
    if status not in RELEASED:
        raise ValueError(f"status must be one of {', '.join(RELEASED)}")
    if participant.status not in EXPIRABLE:
        return False
    now = utcnow()
    previous = participant.status
    participant.status = status
    s.execute(
        update(ChatSession)
        .where(ChatSession.participant_id == participant.id, ChatSession.status.in_(("pending", "active")))
        .values(status="abandoned", outcome="abandoned", ended_at=now)
    )
    s.add(Event(participant_id=participant.id, kind=status, data={"by": by, "was": previous}))
    return True


def stale_participants(s: Session, study: Study, now: datetime | None = None) -> list[Participant]:
    """Participants holding a plan with no activity for longer than the spec's ``timeout_minutes``."""
    minutes = int((study.spec.get("plan") or {}).get("timeout_minutes") or 90)
    cutoff = (now or utcnow()) - timedelta(minutes=minutes)
    recent_event = exists().where(Event.participant_id == Participant.id, Event.created_at >= cutoff)
    recent_turn = exists(
        select(Turn.id)
        .join(ChatSession, Turn.session_id == ChatSession.id)
        .where(ChatSession.participant_id == Participant.id, Turn.sent_at >= cutoff)
    )
    q = select(Participant).where(
        Participant.study_id == study.id,
        Participant.status.in_(EXPIRABLE),
        Participant.plan.is_not(None),
        Participant.updated_at < cutoff,
        ~recent_event,
        ~recent_turn,
    )
    return [p for p in s.scalars(q) if p.plan]


def expire_stale(s: Session, study: Study, now: datetime | None = None) -> list[int]:
    """Time out stale participants so their cells are free again (the caller commits).

    Returns:
        The ids of the participants timed out.
    """
    out = []
    for p in stale_participants(s, study, now):
        if release(s, p, "timed_out", by="timeout"):
            out.append(p.id)
    return out


def assign(s: Session, participant: Participant, *, now: datetime | None = None) -> list[Assignment]:
    """Give a participant their plan (once; the caller commits).

    Args:
        s: Open session.
        participant: Who arrives.
        now: The time stale participants are measured against (default: now).

    Returns:
        The plan, stored on the participant as ``[{"item": …, "condition": …}]``.
    """
    if participant.plan:
        return steps_of(participant.plan)
    study = s.get(Study, participant.study_id)
    assert study is not None
    _lock_study(s, study)
    expire_stale(s, study, now)
    d = definition(study)
    arrival = (
        s.scalar(
            select(func.count())
            .select_from(Participant)
            .where(Participant.study_id == study.id, Participant.plan.is_not(None), Participant.id != participant.id)
        )
        or 0
    )
    rng = random.Random(f"{study.seed}:{arrival}")
    steps = make_plan(d, current_fill(s, study), rng)
    participant.plan = [{"item": a.item, "condition": a.condition} for a in steps]
    return steps
