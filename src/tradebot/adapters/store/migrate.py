"""Run the Alembic migrations of the event store from code (``tradebot db upgrade``, backtests).

Migrations are explicit: the daemon never changes a schema by itself; ``tradebot db upgrade`` (or
:func:`ensure_schema`, used by backtests on their own SQLite file) does. Alembic runs inside
``AsyncConnection.run_sync`` (the Alembic asyncio recipe), so the same async drivers are used.
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool
from sqlalchemy.engine import URL, Connection

from tradebot.adapters.store.engine import create_engine
from tradebot.errors import ConfigError

#: Environment variable naming the alembic script directory explicitly.
ALEMBIC_DIR_ENV = "TRADEBOT_ALEMBIC_DIR"

# src/tradebot/adapters/store/migrate.py → parents[4] is the repository root (src layout).
_REPO_ROOT = Path(__file__).resolve().parents[4]


def _is_script_dir(path: Path) -> bool:
    return (path / "env.py").is_file() and (path / "versions").is_dir()


def alembic_dir() -> Path:
    """Return the alembic script directory.

    Looked up, in order: ``$TRADEBOT_ALEMBIC_DIR``; ``<cwd>/alembic``; ``<repo root>/alembic``
    found relative to this package (src layout). A candidate counts when it holds ``env.py``
    and ``versions/``.

    Raises
    ------
    ConfigError
        If ``$TRADEBOT_ALEMBIC_DIR`` is set but is not a script directory, or no candidate is.
    """
    explicit = os.environ.get(ALEMBIC_DIR_ENV)
    if explicit:
        path = Path(explicit).expanduser().resolve()
        if not _is_script_dir(path):
            raise ConfigError(
                f"{ALEMBIC_DIR_ENV} must name an alembic directory with env.py and versions/, was {explicit!r}"
            )
        return path
    candidates = [Path.cwd() / "alembic", _REPO_ROOT / "alembic"]
    for path in candidates:
        if _is_script_dir(path):
            return path.resolve()
    raise ConfigError(
        "alembic migrations not found: set "
        f"{ALEMBIC_DIR_ENV} to the directory holding env.py and versions/ (looked in "
        f"{', '.join(str(p) for p in candidates)})"
    )


def alembic_config() -> Config:
    """Return an Alembic config pointing at :func:`alembic_dir` (no ini file, no logging setup)."""
    config = Config()
    config.set_main_option("script_location", str(alembic_dir()))
    config.set_main_option("path_separator", "os")
    return config


def head_revision() -> str:
    """Return the head revision id of the migration scripts.

    Raises
    ------
    ConfigError
        If the scripts have several heads (a branch that needs a merge revision).
    """
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise ConfigError(f"alembic scripts must have exactly one head, were {heads!r}")
    return heads[0]


async def upgrade(url: str | URL, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (default: the head).

    Parameters
    ----------
    url
        Database URL (``sqlite+aiosqlite:///tradebot.db``, ``postgresql+asyncpg://…``).
    revision
        Target revision id, or ``"head"``.

    Raises
    ------
    ConfigError
        If the URL is invalid or the migration scripts are not found.
    """
    config = alembic_config()

    def _run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    engine = create_engine(url, sqlite_pragmas=False, poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def revision_of(connection: Connection) -> str | None:
    """Return the revision of the database behind a (sync-facade) connection; ``None`` if unmigrated.

    Use from async code as ``await async_connection.run_sync(revision_of)``.
    """
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(url: str | URL) -> str | None:
    """Return the revision the database at ``url`` is at, or ``None`` for an unmigrated database."""
    engine = create_engine(url, sqlite_pragmas=False, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(revision_of)
    finally:
        await engine.dispose()


async def check_current(url: str | URL) -> bool:
    """Return True when the database at ``url`` is at the head revision of the migration scripts."""
    return await current_revision(url) == head_revision()


async def ensure_schema(url: str | URL) -> None:
    """Upgrade the database at ``url`` to head if it is not there yet (backtests on their own file)."""
    if not await check_current(url):
        await upgrade(url)
