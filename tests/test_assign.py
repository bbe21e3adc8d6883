"""Assignment: even cell fill, reproducible plans, no over-filled cell under concurrent arrivals."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab.assign import assign, cell_counts, cells
from lab.participants import create_participant
from lab.schema import Participant
from lab.spec import load_spec_file
from lab.studies import get_study, load_study


def _load_demo(engine: Engine, demo_spec_path: Path) -> None:
    with Session(engine) as s, s.begin():
        load_study(s, load_spec_file(demo_spec_path))


def _arrive(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as s, s.begin():
        study = get_study(s, "demo")
        p = create_participant(s, study)
        return [(a.condition, a.item) for a in assign(s, p)]


def test_plans_fill_cells_evenly(sqlite_engine: Engine, demo_spec_path: Path) -> None:
    _load_demo(sqlite_engine, demo_spec_path)
    d = load_spec_file(demo_spec_path)
    all_cells = cells(d)
    plans = [_arrive(sqlite_engine) for _ in range(60)]
    for plan in plans:
        assert len(plan) == 4 and len({i for _, i in plan}) == 4  # four different items
    counts = Counter(cell for plan in plans for cell in plan)
    assert set(counts) <= set(all_cells)
    assert max(counts.values()) - min(counts[c] for c in all_cells) <= 1


def test_same_seed_same_plans(tmp_path: Path, demo_spec_path: Path) -> None:
    from lab.db import make_engine, migrate

    runs = []
    for name in ("a", "b"):
        engine = make_engine(f"sqlite:///{tmp_path / name}.db")
        migrate(engine)
        _load_demo(engine, demo_spec_path)
        runs.append([_arrive(engine) for _ in range(10)])
    assert runs[0] == runs[1]


def test_concurrent_arrivals_do_not_overfill(engine: Engine, demo_spec_path: Path) -> None:
    _load_demo(engine, demo_spec_path)
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
    all_cells = cells(load_spec_file(demo_spec_path))
    assert n == 24 and sum(counts.values()) == 96
    assert max(counts.values()) - min(counts[c] for c in all_cells) <= 1


def test_released_cells_are_reused(sqlite_engine: Engine, demo_spec_path: Path) -> None:
    _load_demo(sqlite_engine, demo_spec_path)
    _arrive(sqlite_engine)
    with Session(sqlite_engine) as s, s.begin():
        s.scalars(select(Participant)).one().status = "timed_out"
        assert sum(cell_counts(s, get_study(s, "demo")).values()) == 0
