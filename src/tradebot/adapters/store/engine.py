"""Database URLs and async engines of the event store (asyncpg for PostgreSQL, aiosqlite for SQLite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tradebot.errors import ConfigError, DataError

#: A SQLite file in the working directory: the URL used when none is given below the app (the app's
#: default is ``tradebot.db`` in the data directory, ``tradebot.app.settings.default_database_url``).
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///tradebot.db"

#: How long a SQLite writer waits for a lock before failing, ms.
SQLITE_BUSY_TIMEOUT_MS = 5_000

_ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}


def parse_database_url(url: str | URL) -> URL:
    """Return ``url`` as a SQLAlchemy URL with its async driver.

    ``sqlite:///x.db`` becomes ``sqlite+aiosqlite:///x.db``; ``postgresql://…`` and
    ``postgres://…`` become ``postgresql+asyncpg://…``.

    Raises
    ------
    ConfigError
        If the URL cannot be parsed, names a backend other than SQLite or PostgreSQL, or a
        driver other than aiosqlite / asyncpg. The message hides any password.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise ConfigError(f"database url is not a valid SQLAlchemy URL, was {_safe(url)!r}") from e
    name, _, given = parsed.drivername.partition("+")  # string parsing: loads no dialect
    backend = "postgresql" if name == "postgres" else name
    driver = _ASYNC_DRIVERS.get(backend)
    if driver is None:
        raise ConfigError(
            f"database url must be sqlite+aiosqlite:// or postgresql+asyncpg://, was {_safe(parsed)!r}"
        )
    if given and given != driver:
        raise ConfigError(f"database url must use the async driver {backend}+{driver}, was {_safe(parsed)!r}")
    return parsed.set(drivername=f"{backend}+{driver}")


def sqlite_file(url: str | URL) -> Path | None:
    """Return the file of a SQLite ``url``, or ``None`` for PostgreSQL and in-memory SQLite.

    Raises
    ------
    ConfigError
        As :func:`parse_database_url`.
    """
    parsed = parse_database_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def require_existing(url: str | URL) -> None:
    """Refuse to read a SQLite database that does not exist (opening it would create an empty file).

    Raises
    ------
    DataError
        Naming the missing file and how to create or select one.
    """
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        raise DataError(
            f"no database at {str(path)!r}: run `tradebot demo`, `tradebot backtest` or `tradebot db upgrade` "
            "first, or pass --db / TRADEBOT_DATABASE_URL of an existing one"
        )


def _safe(url: str | URL) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable url>"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def create_engine(url: str | URL, *, sqlite_pragmas: bool = True, **kwargs: Any) -> AsyncEngine:
    """Return an async engine for ``url`` (see :func:`parse_database_url`).

    On SQLite every new connection gets WAL journaling, a busy timeout of
    :data:`SQLITE_BUSY_TIMEOUT_MS` and enforced foreign keys (``synchronous`` stays FULL, so a
    committed batch survives a power loss), unless ``sqlite_pragmas`` is False (migrations run
    without them: batch table rebuilds must not cascade).

    Raises
    ------
    ConfigError
        As :func:`parse_database_url`.
    """
    parsed = parse_database_url(url)
    path = sqlite_file(parsed)
    if path is not None and not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)  # e.g. the data directory on a first run
    engine = create_async_engine(parsed, **kwargs)
    if sqlite_pragmas and parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def daemon_engine_options(url: str | URL, *, statement_timeout_s: float) -> dict[str, Any]:
    """Engine options of a long-running writer (the daemon's store) for ``url``.

    PostgreSQL: a pooled connection is pinged before use (``pool_pre_ping``: one left dead by a server
    restart is replaced instead of failing the next write), and asyncpg gives up on a connect or a
    statement after ``statement_timeout_s`` seconds (``timeout``, ``command_timeout``): a connection
    that hangs — a network path that drops packets without a reset — ends in a ``TimeoutError``,
    which the resilient store retries like any outage, instead of holding the engine task forever.
    SQLite: none (its waits are bounded by :data:`SQLITE_BUSY_TIMEOUT_MS`).

    Raises
    ------
    ConfigError
        As :func:`parse_database_url`.
    ValueError
        If ``statement_timeout_s`` is not > 0.
    """
    if not statement_timeout_s > 0:
        raise ValueError(f"statement_timeout_s must be > 0, was {statement_timeout_s!r}")
    if parse_database_url(url).get_backend_name() != "postgresql":
        return {}
    timeouts = {"timeout": statement_timeout_s, "command_timeout": statement_timeout_s}
    return {"pool_pre_ping": True, "connect_args": timeouts}
