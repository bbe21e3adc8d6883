"""Failed sign-ins counted in the database: windows, pauses, shared counts, pruning and the cap (SQLite and Postgres)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from lab.schema import SignInFailure, as_utc
from lab.web import limits as limits_module
from lab.web.limits import KEY_LENGTH, LoginLimits, Pause, SlidingWindow

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rows(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as s:
        return sorted((kind, key) for kind, key in s.execute(select(SignInFailure.kind, SignInFailure.key)))


def test_a_window_pauses_and_forgets(engine: Engine) -> None:
    window = SlidingWindow("address", limit=3, window=60)
    with engine.begin() as conn:
        for t in (0, 10, 20):
            assert window.retry_after(conn, "k", at(t)) == 0
            window.hit(conn, "k", at(t))
        assert window.retry_after(conn, "k", at(30)) == 30  # until the first failure leaves the window
        assert window.retry_after(conn, "other", at(30)) == 0
        assert window.retry_after(conn, "k", at(60)) == 0
        window.reset(conn, "k")
        assert window.retry_after(conn, "k", at(30)) == 0


def test_pause_lasts_until_enough_failures_leave_the_window(engine: Engine) -> None:
    limits = LoginLimits(SlidingWindow("address", 3, 600), SlidingWindow("account", 10, 600), engine)
    assert limits.failed("erin", "a", now=at(0)) is None
    assert limits.failed("erin", "a", now=at(100)) is None
    assert limits.failed("erin", "a", now=at(200)) == Pause("address", 400)
    pause = limits.pause("erin", "a", now=at(250))
    assert pause == Pause("address", 350) and pause.minutes == 6
    assert limits.pause("erin", "a", now=at(600)) is None
    assert limits.pause("erin", "b", now=at(250)) is None
    assert limits.allowed("erin", "b", now=at(250)) and not limits.allowed("erin", "a", now=at(250))


def test_every_process_on_the_database_counts_the_same_failures(engine: Engine) -> None:
    on_a, on_b = LoginLimits.default(engine), LoginLimits.default(engine)
    for n, server in enumerate((on_a, on_b, on_a, on_b)):
        assert server.failed("Erin", "10.0.0.1", now=at(n)) is None
    assert on_b.failed("erin", "10.0.0.1", now=at(4)) == Pause("address", 15 * 60 - 4)
    assert on_a.pause("ERIN", "10.0.0.1", now=at(5)) == Pause("address", 15 * 60 - 5)


def test_the_username_limit_counts_every_address(engine: Engine) -> None:
    limits = LoginLimits.default(engine)
    for n in range(19):
        assert limits.failed("erin", f"10.0.0.{n}", now=at(n)) is None
    assert limits.failed("Erin", "10.0.1.1", now=at(19)) == Pause("username", 15 * 60 - 19)
    assert limits.pause("erin", "10.0.1.2", now=at(20)) == Pause("username", 15 * 60 - 20)


def test_a_success_clears_the_username_count_but_not_the_address(engine: Engine) -> None:
    limits = LoginLimits.default(engine)
    for n in range(5):
        limits.failed("erin", "10.0.0.1", now=at(n))
    limits.succeeded("ERIN")
    assert rows(engine) == [("address", "10.0.0.1")] * 5
    assert limits.pause("erin", "10.0.0.1", now=at(5)) == Pause("address", 15 * 60 - 5)
    assert limits.pause("erin", "10.0.0.2", now=at(5)) is None


def test_a_new_failure_deletes_those_that_left_the_window(engine: Engine) -> None:
    limits = LoginLimits.default(engine)
    limits.failed("erin", "10.0.0.1", now=at(0))
    limits.failed("sam", "10.0.0.2", now=at(100))
    limits.failed("kim", "10.0.0.3", now=at(15 * 60 + 50))
    assert rows(engine) == [("account", "kim"), ("account", "sam"), ("address", "10.0.0.2"), ("address", "10.0.0.3")]


def test_a_flood_of_new_keys_keeps_the_table_to_its_cap(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits_module, "MAX_ROWS", 10)
    limits = LoginLimits.default(engine)
    for n in range(30):
        limits.failed(f"name{n}", f"10.0.0.{n}", now=at(n))
    newest = range(25, 30)  # each failure is two rows: the last five failures fill the ten
    assert rows(engine) == sorted([("account", f"name{n}") for n in newest] + [("address", f"10.0.0.{n}") for n in newest])


def test_failures_are_stored_with_the_wall_clock_in_utc(engine: Engine) -> None:
    before = datetime.now(UTC)
    LoginLimits.default(engine).failed("erin", "10.0.0.1")
    after = datetime.now(UTC)
    with Session(engine) as s:
        stored = s.scalars(select(SignInFailure.failed_at)).all()
    assert len(stored) == 2
    assert all(before <= as_utc(t) <= after for t in stored)


def test_an_overlong_username_is_counted_under_its_first_characters(engine: Engine) -> None:
    limits = LoginLimits.default(engine)
    long_name = "x" * 10_000
    for n in range(20):
        limits.failed(long_name, f"10.0.0.{n}", now=at(n))
    assert limits.pause(long_name, "10.0.1.1", now=at(20)) == Pause("username", 15 * 60 - 20)
    with Session(engine) as s:
        assert s.scalar(select(func.max(func.length(SignInFailure.key)))) == KEY_LENGTH
