"""Alembic environment of the tradebot event store (async-capable).

Two ways in:

- programmatic (``tradebot.adapters.store.migrate``): the caller opens an async engine and runs
  alembic inside ``connection.run_sync``, passing the sync connection as
  ``config.attributes["connection"]``; logging is left alone.
- the ``alembic`` CLI: the URL comes from ``-x url=...``, else the ``sqlalchemy.url`` option, else
  ``TRADEBOT_DATABASE_URL``, else tradebot's default (``tradebot.db`` in the data directory, see
  ``tradebot.app.settings.default_database_url``); an async engine is created here.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from tradebot.adapters.store.tables import Base
from tradebot.app.settings import default_database_url

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or os.environ.get("TRADEBOT_DATABASE_URL")
        or default_database_url()
    )


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode recreates tables
        compare_type=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    """Emit the SQL of the migration to stdout (``alembic upgrade head --sql``)."""
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    """Run the migrations on an open (sync-facade) connection."""
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    """Create an async engine for the configured URL and run the migrations through it."""
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
elif (given := config.attributes.get("connection")) is not None:
    do_run_migrations(given)
else:
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    asyncio.run(run_async_migrations())
