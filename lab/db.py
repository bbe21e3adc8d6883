"""Database engine, sessions and migrations.

SQLite gets WAL, a busy timeout and foreign keys on every connection. Migrations are
Alembic's (``migrations/``) and run on SQLite (batch mode) and Postgres alike;
:func:`migrate` takes a lock first so two app processes starting together migrate once.
"""

from __future__ import annotations

import fcntl
import logging
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from .errors import LabError
from .settings import ROOT, load_settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
_PG_MIGRATION_LOCK = 0x7265_7061_6972  # "repair": one advisory lock id for the lab
_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
log = logging.getLogger(__name__)


class DatabaseUnavailable(LabError, RuntimeError):
    """The database could not be reached or written just now; the same request may succeed later.

    Raised in place of the driver's error where a person is waiting (a participant's
    message), so that the page can say so calmly; the driver's error is its ``__cause__``.
    """


class DatabaseNotReady(LabError):
    """The database has no lab tables yet, or older ones: it needs ``python -m lab init`` or ``migrate``."""


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def explain(error: BaseException, engine: Engine | None = None) -> LabError | None:
    """A database error as the refusal a person can act on, or None when it is a bug.

    A table that does not exist means the database was never set up (or is behind the
    lab's schema); a connection that fails means the address in ``DATABASE_URL`` cannot be
    reached. Other errors (a constraint, a wrong statement) are the lab's own and are not
    explained away.

    Args:
        error: What a command raised.
        engine: The database it used (default: the configured one).
    """
    if not isinstance(error, sa_exc.DBAPIError):
        return None
    engine = engine or get_engine()
    cause = str(getattr(error, "orig", error)).strip().splitlines()
    detail = cause[0] if cause else type(error).__name__
    missing_table = "no such table" in detail or ("relation" in detail and "does not exist" in detail)
    if missing_table:
        try:
            revision = current_revision(engine)
        except sa_exc.SQLAlchemyError:
            revision = None
        if revision is None:
            return DatabaseNotReady(
                f"the database at {_where(engine)} has no lab tables yet ({detail}): run `python -m lab init` first"
            )
        if revision != head_revision():
            return DatabaseNotReady(f"the database at {_where(engine)} is behind the lab ({detail}): run `python -m lab migrate`")
        return None
    if out_of_reach(error):
        return DatabaseUnavailable(
            f"cannot use the database at {_where(engine)} ({detail}): check DATABASE_URL and that the database is running"
        )
    return None


def out_of_reach(error: BaseException) -> bool:
    """Whether ``error`` says the database is unreachable or busy, rather than that a statement is wrong.

    That is: SQLite locked past its busy timeout, a Postgres connection refused or lost
    (SQLAlchemy reports both as ``OperationalError``, ``InterfaceError`` or an invalidated
    connection), or no pooled connection free in time.
    """
    if isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)):
        return True
    return isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated


def nothing_written(error: BaseException) -> bool:
    """Whether a failed write certainly wrote nothing, so that doing it again cannot store it twice.

    That is: SQLite locked or busy past its busy timeout (the write never began), or no
    pooled connection free in time. A connection lost during a commit is not: the commit
    may have gone through.
    """
    if isinstance(error, sa_exc.TimeoutError):
        return True
    detail = str(getattr(error, "orig", error)).lower()
    return isinstance(error, sa_exc.OperationalError) and ("database is locked" in detail or "database is busy" in detail)


@contextmanager
def reachable(message: str) -> Iterator[None]:
    """Turn the database being out of reach inside the block into :class:`DatabaseUnavailable`.

    A transaction that fails this way has rolled back, so the block can simply be run
    again later. Any other database error (a constraint, a bug) passes through unchanged.

    Args:
        message: What the person waiting is told (the error's text).
    """
    try:
        yield
    except (sa_exc.DBAPIError, sa_exc.TimeoutError) as e:
        if not out_of_reach(e):
            raise
        log.warning("database out of reach: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise DatabaseUnavailable(message) from e


def _sqlite_pragmas(dbapi_conn: Any, *extra: str) -> None:
    """WAL and the busy timeout on every SQLite connection, then any ``extra`` statements."""
    cur = dbapi_conn.cursor()
    for statement in ("PRAGMA journal_mode=WAL", f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}", *extra):
        cur.execute(statement)
    cur.close()


def make_engine(url: str) -> Engine:
    """Create an engine with the lab's connection settings.

    Args:
        url: SQLAlchemy URL; ``sqlite:///path`` creates the parent folder.

    Returns:
        A new engine.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            _sqlite_pragmas(dbapi_conn, "PRAGMA foreign_keys=ON", "PRAGMA synchronous=NORMAL")

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # psycopg 3 is the driver the lab installs; plain postgresql:// would pick psycopg2.
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True)


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: the configured database)."""
    url = url or load_settings().database_url
    with _engines_lock:
        if url not in _engines:
            _engines[url] = make_engine(url)
        return _engines[url]


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A sessionmaker whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(engine: Engine | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with session_factory(engine or get_engine())() as s, s.begin():
        yield s


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


@contextmanager
def process_lock(engine: Engine, key: int, name: str, *, wait: bool = True) -> Iterator[bool]:
    """Hold a lock shared by every process using ``engine``'s database.

    Postgres: a session advisory lock on ``key``. SQLite: an exclusive ``flock`` on the
    file ``<database>.<name>.lock`` beside the database, left in place (removing it would
    open a race). An in-memory database has no other process to exclude.

    Args:
        engine: The database whose users are excluded.
        key: Advisory lock id (Postgres).
        name: Part of the lock file's name (SQLite).
        wait: Wait for the lock; with False, give up at once when another process holds it.

    Yields:
        Whether the lock is held (always True when ``wait``).
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            if wait:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                held = True
            else:
                held = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            conn.commit()
            try:
                yield held
            finally:
                if held:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield True
        return
    path = Path(database).with_name(f"{Path(database).name}.{name}.lock")
    with path.open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            held = False
        try:
            yield held
        finally:
            if held:
                fcntl.flock(f, fcntl.LOCK_UN)


def _migration_lock(engine: Engine) -> AbstractContextManager[bool]:
    return process_lock(engine, _PG_MIGRATION_LOCK, "migrate")


_migrated: set[str] = set()
_migrated_lock = threading.Lock()


def ready_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: the configured database), migrated once per process.

    The app's first page run and the sign-in routes (which may be a server's very first
    request) both start here, so whichever comes first migrates and the other waits.
    """
    engine = get_engine(url)
    key = engine.url.render_as_string(hide_password=True)
    if key not in _migrated:
        with _migrated_lock:
            if key not in _migrated:
                migrate(engine)
                _migrated.add(key)
    return engine


def migrate(engine: Engine | None = None, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` under a lock.

    Args:
        engine: Database to migrate (default: the configured one).
        revision: Alembic revision to upgrade to.
    """
    from alembic import command

    engine = engine or get_engine()
    cfg = _alembic_config(engine)
    with _migration_lock(engine), _ddl_engine(engine) as ddl, ddl.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


@contextmanager
def _ddl_engine(engine: Engine) -> Iterator[Engine]:
    """An engine whose transactions hold DDL too, so an interrupted migration leaves nothing behind.

    Postgres runs DDL in transactions as it is. pysqlite commits on its own before every
    CREATE or ALTER, so a migration killed halfway would leave tables that make the rerun
    fail; with the driver's transaction handling off and an explicit BEGIN, SQLite rolls
    the whole upgrade back instead (SQLAlchemy's documented recipe for pysqlite).
    """
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        yield engine
        return
    ddl = create_engine(engine.url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, poolclass=NullPool)

    @event.listens_for(ddl, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        _sqlite_pragmas(dbapi_conn)

    @event.listens_for(ddl, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        yield ddl
    finally:
        ddl.dispose()


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade the database to ``revision`` (``base`` removes every table)."""
    from alembic import command

    cfg = _alembic_config(engine)
    with _migration_lock(engine), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    """The database's Alembic revision, or None when it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest migration in ``migrations/versions``."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(_alembic_config(make_engine("sqlite://"))).get_heads()
    if len(heads) != 1:
        # A mistake in migrations/ (two revisions with the same parent), not anything a user did.
        raise RuntimeError(f"migrations have {len(heads)} heads: {heads}")
    return heads[0]
