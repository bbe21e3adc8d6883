"""Assignment: even cell fill (least-filled and Latin square), counterbalanced order, reproducible
plans, no over-filled cell under concurrent arrivals, dropouts releasing their cells."""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab.assign import Assignment, Fill, assign, cell_counts, cells, make_plan, method, release, williams
from lab.participants import create_participant
from lab.schema import Event, Participant, utcnow
from lab.spec import StudyDefinition, load_spec_file, parse_spec
from lab.studies import get_study, load_study


def _load_demo(engine: Engine, path: Path) -> None:
    with Session(engine) as s, s.begin():
        load_study(s, load_spec_file(path))


def _arrive(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as s, s.begin():
        study = get_study(s, "demo")
        p = create_participant(s, study)
        return [(a.condition, a.item) for a in assign(s, p)]


def test_plans_fill_cells_evenly(sqlite_engine: Engine, scripted_demo_path: Path) -> None:
    _load_demo(sqlite_engine, scripted_demo_path)
    d = load_spec_file(scripted_demo_path)
    all_cells = cells(d)
    plans = [_arrive(sqlite_engine) for _ in range(60)]
    for plan in plans:
        assert len(plan) == 4 and len({i for _, i in plan}) == 4  # four different items
    counts = Counter(cell for plan in plans for cell in plan)
    assert set(counts) <= set(all_cells)
    assert max(counts.values()) - min(counts[c] for c in all_cells) <= 1


def test_same_seed_same_plans(tmp_path: Path, scripted_demo_path: Path) -> None:
    from lab.db import make_engine, migrate

    runs = []
    for name in ("a", "b"):
        engine = make_engine(f"sqlite:///{tmp_path / name}.db")
        migrate(engine)
        _load_demo(engine, scripted_demo_path)
        runs.append([_arrive(engine) for _ in range(10)])
    assert runs[0] == runs[1]


def test_concurrent_arrivals_do_not_overfill(engine: Engine, scripted_demo_path: Path) -> None:
    _load_demo(engine, scripted_demo_path)
    errors: list[BaseException] = []

    def arrive() -> None:
        try:
            _arrive(engine)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=arrive) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Session(engine) as s:
        study = get_study(s, "demo")
        counts = cell_counts(s, study)
        n = len(list(s.scalars(select(Participant))))
    all_cells = cells(load_spec_file(scripted_demo_path))
    assert n == 24 and sum(counts.values()) == 96
    assert max(counts.values()) - min(counts[c] for c in all_cells) <= 1


def test_released_cells_are_reused(sqlite_engine: Engine, scripted_demo_path: Path) -> None:
    _load_demo(sqlite_engine, scripted_demo_path)
    _arrive(sqlite_engine)
    with Session(sqlite_engine) as s, s.begin():
        s.scalars(select(Participant)).one().status = "timed_out"
        assert sum(cell_counts(s, get_study(s, "demo")).values()) == 0


# --- balance, order and reproducibility over many arrivals ---------------------------------


Definition = Callable[..., StudyDefinition]
"""Builds the balance study's definition from the options of :func:`study_text`."""


@pytest.fixture
def study_text(study_spec: Callable[..., str]) -> Callable[..., str]:
    """The balance study: ``items`` sharded items under three conditions and two presupposition items under two."""

    def build(
        *,
        slug: str = "bal",
        items: int = 6,
        design: str = "within",
        balance: str = "least-filled",
        per: int | None = None,
        order: str = "random",
        seed: int = 3,
    ) -> str:
        sharded = [
            {
                "id": f"s{n}",
                "kind": "sharded",
                "shards": [{"id": 1, "text": f"part one of task {n}"}, {"id": 2, "text": "part two"}],
            }
            for n in range(items)
        ]
        loaded = [
            {
                "id": f"p{n}",
                "kind": "presupposition",
                "loaded": f"Why is claim {n} true?",
                "control": f"Is claim {n} true?",
                "presupposition": f"claim {n}",
                "correction": ["It is not."],
            }
            for n in range(2)
        ]
        plan: dict[str, object] = {"design": design, "balance": balance, "order": order, "seed": seed}
        if per:
            plan["items_per_participant"] = per
        conditions = {
            "full": {"model": "bot", "reveal": "FULL"},
            "sharded": {"model": "bot", "reveal": "SHARDED"},
            "snowball": {"model": "bot", "reveal": "SNOWBALL"},
            "loaded": {"model": "bot", "presupposition": "loaded"},
            "control": {"model": "bot", "presupposition": "control"},
        }
        return study_spec(slug, title="Balance", conditions=conditions, items=sharded + loaded, plan=plan)

    return build


@pytest.fixture
def definition(study_text: Callable[..., str]) -> Definition:
    """The balance study's definition, from the options of :func:`study_text`."""

    def build(**kw: Any) -> StudyDefinition:
        return parse_spec(study_text(**kw), "bal.yaml")

    return build


def arrivals(d: StudyDefinition, n: int, seed: int = 0) -> list[list[Assignment]]:
    """``n`` arrivals planned in memory, each seeded like :func:`lab.assign.assign` seeds them."""
    fill = Fill()
    plans = []
    for arrival in range(n):
        plan = make_plan(d, fill, random.Random(f"{seed}:{arrival}"))
        fill.add(plan)
        plans.append(plan)
    return plans


def chi_square_p(counts: list[int]) -> float:
    """P-value of Pearson's chi-square test of equal cell counts (upper tail, df = cells - 1)."""
    total, k = sum(counts), len(counts)
    expected = total / k
    stat = sum((c - expected) ** 2 / expected for c in counts)
    a, x = (k - 1) / 2, stat / 2
    if x == 0:
        return 1.0
    # Regularized lower incomplete gamma by its series; the p-value is its complement.
    term = total_sum = 1.0 / a
    n = 1
    while term > 1e-15 * total_sum:
        term *= x / (a + n)
        total_sum += term
        n += 1
    lower = math.exp(a * math.log(x) - x - math.lgamma(a)) * total_sum
    return 1.0 - lower


def test_chi_square_helper_matches_tables() -> None:
    def counts_with(stat: float, expected: float = 20.0) -> list[float]:
        # [E+d, E-d, E+d, E-d, E] has statistic 4 d^2 / E with 4 degrees of freedom.
        d = math.sqrt(stat * expected / 4)
        return [expected + d, expected - d, expected + d, expected - d, expected]

    # Tabulated critical values of chi-square with 4 degrees of freedom.
    assert chi_square_p(counts_with(9.488)) == pytest.approx(0.05, abs=1e-4)
    assert chi_square_p(counts_with(0.297)) == pytest.approx(0.99, abs=1e-4)
    assert chi_square_p(counts_with(13.277)) == pytest.approx(0.01, abs=1e-4)
    # One degree of freedom has a closed form: p = erfc(sqrt(stat / 2)).
    assert chi_square_p([30, 10]) == pytest.approx(math.erfc(math.sqrt(10 / 2)), rel=1e-9)
    assert chi_square_p([100, 100, 100]) == 1.0


@pytest.mark.parametrize(
    "kw",
    [
        {"design": "within", "balance": "least-filled", "per": 4},
        {"design": "within", "balance": "latin-square"},
        {"design": "within", "balance": "least-filled"},
        {"design": "between", "balance": "least-filled", "per": 2},
    ],
    ids=["within-subset", "latin-square", "within-all", "between"],
)
def test_thousand_arrivals_fill_cells_evenly(kw: dict, definition: Definition) -> None:
    d = definition(**kw)
    plans = arrivals(d, 1000)
    counts = Counter((a.condition, a.item) for plan in plans for a in plan)
    all_cells = cells(d)
    assert set(counts) == set(all_cells)
    if kw["design"] == "between":
        # Between subjects, a cell fills with its condition's participants: compare within each condition.
        per_condition = Counter(plan[0].condition for plan in plans)
        assert max(per_condition.values()) - min(per_condition.values()) <= 1
        groups = {c: [counts[cell] for cell in all_cells if cell[0] == c] for c in per_condition}
        for c, group in groups.items():
            assert max(group) - min(group) <= 1, c
        assert all(len({a.condition for a in plan}) == 1 for plan in plans)
    elif kw["balance"] == "latin-square" or kw.get("per") is None:
        # Every participant does every item: within each item group, cells fill evenly.
        for conds, items in [
            (("full", "sharded", "snowball"), [f"s{n}" for n in range(6)]),
            (("loaded", "control"), ["p0", "p1"]),
        ]:
            group = [counts[(c, i)] for c in conds for i in items]
            assert max(group) - min(group) <= 1
            assert chi_square_p(group) > 0.99
    else:
        values = [counts[cell] for cell in all_cells]
        assert max(values) - min(values) <= 1
        assert chi_square_p(values) > 0.99
    for plan in plans:
        assert len({a.item for a in plan}) == len(plan)


def test_random_balance_fails_the_same_evenness_check(definition: Definition) -> None:
    d = definition(balance="random", per=4)
    plans = arrivals(d, 1000)
    counts = Counter((a.condition, a.item) for plan in plans for a in plan)
    values = [counts[cell] for cell in cells(d)]
    assert max(values) - min(values) > 1
    assert chi_square_p(values) < 0.99


def test_latin_square_rows_rotate_and_each_participant_meets_every_condition(definition: Definition) -> None:
    d = definition(balance="latin-square")
    assert method(d).balance == "latin-square" and method(d).note is None
    plans = arrivals(d, 30)
    for block in range(10):
        counts = Counter(
            (a.condition, a.item) for plan in plans[3 * block : 3 * block + 3] for a in plan if a.item.startswith("s")
        )
        assert set(counts.values()) == {1} and len(counts) == 18  # each block of 3 fills every cell once
    for plan in plans:
        met = Counter(a.condition for a in plan if a.item.startswith("s"))
        assert met == {"full": 2, "sharded": 2, "snowball": 2}
        assert Counter(a.condition for a in plan if a.item.startswith("p")) == {"loaded": 1, "control": 1}


def test_latin_square_falls_back_with_a_reason(definition: Definition) -> None:
    m = method(definition(balance="latin-square", per=4))
    assert m.balance == "least-filled" and "every item" in (m.note or "")
    m = method(definition(balance="latin-square", design="between", per=2))
    assert m.balance == "least-filled" and "between-subjects" in (m.note or "")


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8])
def test_williams_design_is_balanced(n: int) -> None:
    rows = williams(n)
    assert len(rows) == (n if n % 2 == 0 or n == 1 else 2 * n)
    for row in rows:
        assert sorted(row) == list(range(n))
    for position in range(n):
        assert len({row[position] for row in rows}) == n  # every item at every position
        assert Counter(row[position] for row in rows) == Counter({i: len(rows) // n for i in range(n)})
    follows = Counter((row[j], row[j + 1]) for row in rows for j in range(n - 1))
    if n > 1:
        assert len(follows) == n * (n - 1) and len(set(follows.values())) == 1  # every ordered pair equally often


def test_order_is_counterbalanced_for_whole_plans(definition: Definition) -> None:
    d = definition(balance="latin-square")
    plans = arrivals(d, 8 * 10)  # 8 items: a Williams design of 8 rows, ten times over
    positions = Counter((a.item, p) for plan in plans for p, a in enumerate(plan))
    assert set(positions.values()) == {10}
    follows = Counter((plan[j].item, plan[j + 1].item) for plan in plans for j in range(len(plan) - 1))
    assert len(follows) == 8 * 7 and set(follows.values()) == {10}


def test_order_balances_conditions_over_positions_for_partial_plans(definition: Definition) -> None:
    d = definition(per=4)
    assert method(d).order == "positions"
    plans = arrivals(d, 1000)
    by_position = Counter((a.condition, p) for plan in plans for p, a in enumerate(plan))
    for condition in ("full", "sharded", "snowball", "loaded", "control"):
        row = [by_position[(condition, p)] for p in range(4)]
        assert max(row) - min(row) <= 2, (condition, row)
    item_positions = Counter((a.item, p) for plan in plans for p, a in enumerate(plan))
    for item in [it.id for it in d.items]:
        row = [item_positions[(item, p)] for p in range(4)]
        assert max(row) - min(row) <= 3, (item, row)


def test_assignment_solver_finds_the_cheapest_matching() -> None:
    import itertools

    from lab.assign import assignment

    rng = random.Random(5)
    for n in range(1, 7):
        for _ in range(20):
            cost = [[rng.choice([0, 1, 2, 5, 9]) + rng.random() for _ in range(n)] for _ in range(n)]
            cols = assignment(cost)
            assert sorted(cols) == list(range(n))
            best = min(sum(cost[r][c] for r, c in enumerate(perm)) for perm in itertools.permutations(range(n)))
            assert sum(cost[r][c] for r, c in enumerate(cols)) == pytest.approx(best)


def test_fixed_order_keeps_the_spec_order(definition: Definition) -> None:
    d = definition(per=4, order="fixed")
    index = {it.id: n for n, it in enumerate(d.items)}
    for plan in arrivals(d, 50):
        assert [index[a.item] for a in plan] == sorted(index[a.item] for a in plan)


@pytest.mark.parametrize(
    "kw", [{"per": 4}, {"balance": "latin-square"}, {"design": "between", "per": 2}, {"balance": "random", "per": 3}]
)
def test_same_seed_same_plans_different_seed_different_plans(kw: dict, definition: Definition) -> None:
    d = definition(**kw)
    assert arrivals(d, 40, seed=1) == arrivals(d, 40, seed=1)
    assert arrivals(d, 40, seed=1) != arrivals(d, 40, seed=2)


def test_db_backed_arrivals_fill_cells_evenly(sqlite_engine: Engine, tmp_path: Path, study_text: Callable[..., str]) -> None:
    spec = tmp_path / "bal.yaml"
    spec.write_text(study_text(per=4))
    with Session(sqlite_engine) as s, s.begin():
        load_study(s, load_spec_file(spec))
    for _ in range(300):
        with Session(sqlite_engine) as s, s.begin():
            p = create_participant(s, get_study(s, "bal"))
            assign(s, p)
    with Session(sqlite_engine) as s:
        counts = cell_counts(s, get_study(s, "bal"))
    values = [counts[c] for c in cells(load_spec_file(spec))]
    assert sum(values) == 1200 and max(values) - min(values) <= 1
    assert chi_square_p(values) > 0.99


def test_concurrent_arrivals_on_a_latin_square(engine: Engine, tmp_path: Path, study_text: Callable[..., str]) -> None:
    spec = tmp_path / "bal.yaml"
    spec.write_text(study_text(balance="latin-square"))
    with Session(engine) as s, s.begin():
        load_study(s, load_spec_file(spec))
    errors: list[BaseException] = []

    def arrive() -> None:
        try:
            with Session(engine) as s, s.begin():
                assign(s, create_participant(s, get_study(s, "bal")))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=arrive) for _ in range(18)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Session(engine) as s:
        counts = cell_counts(s, get_study(s, "bal"))
    sharded = [counts[(c, f"s{n}")] for c in ("full", "sharded", "snowball") for n in range(6)]
    assert set(sharded) == {6}  # 18 participants, 3 rows: every cell exactly 6, none over-filled


@pytest.fixture
def tiny(study_spec: Callable[..., str]) -> str:
    """Four one-shard tasks, two per participant, who time out after 30 minutes."""
    items = [{"id": f"t{n}", "kind": "sharded", "shards": [{"id": 1, "text": f"task {n}"}]} for n in range(4)]
    return study_spec(
        "tiny",
        title="Tiny",
        conditions={"full": {"model": "bot"}},
        items=items,
        plan={"items_per_participant": 2, "timeout_minutes": 30},
    )


def test_stale_participants_time_out_and_release_cells(sqlite_engine: Engine, tiny: str) -> None:
    with Session(sqlite_engine) as s, s.begin():
        load_study(s, parse_spec(tiny, "tiny.yaml"))
    with Session(sqlite_engine) as s, s.begin():
        first = create_participant(s, get_study(s, "tiny"), status="active")
        first_cells = {a.item for a in assign(s, first)}
        second = create_participant(s, get_study(s, "tiny"), status="active")
        second_cells = {a.item for a in assign(s, second)}
        first_id = first.id
    assert first_cells | second_cells == {"t0", "t1", "t2", "t3"}  # every cell now holds one plan
    with Session(sqlite_engine) as s, s.begin():
        # At 29 minutes nobody is stale: the third participant can only double up.
        p = create_participant(s, get_study(s, "tiny"))
        assign(s, p, now=utcnow() + timedelta(minutes=29))
        assert s.get(Participant, first_id).status == "active"
        s.rollback()
    with Session(sqlite_engine) as s, s.begin():
        third = create_participant(s, get_study(s, "tiny"))
        plan = assign(s, third, now=utcnow() + timedelta(minutes=31))
        # Both earlier participants went quiet: both are timed out, once, by the clock.
        assert s.get(Participant, first_id).status == "timed_out"
        events = s.scalars(select(Event).where(Event.participant_id == first_id, Event.kind == "timed_out")).all()
        assert len(events) == 1 and events[0].data["by"] == "timeout"
        counts = cell_counts(s, get_study(s, "tiny"))
    assert sum(counts.values()) == 2 and {a.item for a in plan} <= {"t0", "t1", "t2", "t3"}


def test_released_cells_go_to_the_next_arrival(sqlite_engine: Engine, tiny: str) -> None:
    with Session(sqlite_engine) as s, s.begin():
        load_study(s, parse_spec(tiny, "tiny.yaml"))
    with Session(sqlite_engine) as s, s.begin():
        first = create_participant(s, get_study(s, "tiny"), status="active")
        first_cells = {a.item for a in assign(s, first)}
        second = create_participant(s, get_study(s, "tiny"), status="active")
        assign(s, second)
        release(s, first, "withdrawn", by="participant")
    with Session(sqlite_engine) as s, s.begin():
        third = create_participant(s, get_study(s, "tiny"))
        assert {a.item for a in assign(s, third)} == first_cells


def test_recent_activity_keeps_a_participant(sqlite_engine: Engine, scripted_demo_path: Path) -> None:
    _load_demo(sqlite_engine, scripted_demo_path)
    later = utcnow() + timedelta(minutes=91)
    with Session(sqlite_engine) as s, s.begin():
        first = create_participant(s, get_study(s, "demo"), status="active")
        assign(s, first)
        s.add(Event(participant_id=first.id, kind="reveal", created_at=later - timedelta(minutes=5)))
        first_id = first.id
    with Session(sqlite_engine) as s, s.begin():
        assign(s, create_participant(s, get_study(s, "demo")), now=later)
        assert s.get(Participant, first_id).status == "active"
