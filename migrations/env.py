"""Alembic environment: migrations run on SQLite (batch mode) and Postgres alike."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, engine_from_config, pool

from lab.schema import Base

config = context.config


def _configure(*, connection: Connection | None = None, url: str | None = None, literal_binds: bool = False) -> None:
    where = str(connection.engine.url) if connection is not None else str(url)
    context.configure(
        connection=connection,
        url=url,
        literal_binds=literal_binds,
        target_metadata=Base.metadata,
        compare_type=True,
        render_as_batch=where.startswith("sqlite"),
    )


def run_migrations_offline() -> None:
    """Emit SQL without a database connection (``alembic upgrade --sql``)."""
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through the connection the lab hands in, or one made from alembic.ini."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    if config.config_file_name is not None:
        # Only the alembic command line configures logging; inside the app it is left alone.
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    if not config.get_main_option("sqlalchemy.url"):
        from lab.settings import load_settings

        config.set_main_option("sqlalchemy.url", load_settings().database_url.replace("%", "%%"))
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with connectable.connect() as conn:
        _configure(connection=conn)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
