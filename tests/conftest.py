"""Shared fixtures: a PostgreSQL server for every suite that needs one (contract, golden, …).

PostgreSQL: 127.0.0.1:5432 with trust auth (user ``root`` or ``postgres``), or the admin URL in
``TRADEBOT_TEST_PG_ADMIN_URL`` (``postgresql://user@host:port/postgres``). Each test gets its own
database ``tradebot_test_<random>``, cloned from a template migrated once per session and dropped
after the test. When PostgreSQL is unreachable the ``postgres`` tests are skipped, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import asyncpg
import pytest
from hypothesis import settings

from tradebot.adapters.store.migrate import upgrade

T = TypeVar("T")

# The default database and health file live in the user's data directory: point it at a private
# folder so that no test reads or writes ~/.local/share/tradebot (subprocesses inherit it).
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="tradebot-test-xdg-")

# Property tests explore fresh random examples on a developer's machine; in CI they replay a fixed,
# derandomized set so that CI's verdict does not depend on the luck of one run.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")

_ADMIN_DSNS = (
    "postgresql://root@127.0.0.1:5432/postgres",
    "postgresql://postgres@127.0.0.1:5432/postgres",
    "postgresql://root@127.0.0.1:5432/test",
    "postgresql://postgres@127.0.0.1:5432/test",
)


def run_in_thread(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a private loop in another thread, away from the test's event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(fn())).result()  # type: ignore[arg-type]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required when CI=true: {reason}")
    pytest.skip(f"PostgreSQL unreachable: {reason}")


async def _admin_dsn() -> str:
    explicit = os.environ.get("TRADEBOT_TEST_PG_ADMIN_URL")
    errors = []
    for dsn in (explicit,) if explicit else _ADMIN_DSNS:
        try:
            conn = await asyncpg.connect(dsn, timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError) as e:
            errors.append(f"{dsn}: {e!r}")
            continue
        await conn.close()
        return dsn
    raise ConnectionError("; ".join(errors))


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


def _sqlalchemy_url(admin_dsn: str, database: str) -> str:
    base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{database}"


class PgServer:
    """A reachable PostgreSQL server and a template database migrated to head."""

    def __init__(self, admin_dsn: str, template: str) -> None:
        self.admin_dsn = admin_dsn
        self.template = template

    def create(self, *, migrated: bool) -> tuple[str, str]:
        """Create a fresh database (a clone of the migrated template, or empty); return (name, url)."""
        name = f"tradebot_test_{secrets.token_hex(6)}"
        source = self.template if migrated else "template0"
        run_in_thread(lambda: _admin(self.admin_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{source}"'))
        return name, _sqlalchemy_url(self.admin_dsn, name)

    def drop(self, name: str) -> None:
        """Drop database ``name`` (closing any connection left to it)."""
        run_in_thread(lambda: _admin(self.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The PostgreSQL server with a migrated template database (skips or fails when unreachable)."""
    try:
        dsn = run_in_thread(_admin_dsn)
    except ConnectionError as e:
        _unavailable(str(e))
    template = f"tradebot_test_tpl_{secrets.token_hex(6)}"
    run_in_thread(lambda: _admin(dsn, f'CREATE DATABASE "{template}"'))
    try:
        run_in_thread(lambda: upgrade(_sqlalchemy_url(dsn, template)))
        yield PgServer(dsn, template)
    finally:
        run_in_thread(lambda: _admin(dsn, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """SQLAlchemy URL of a fresh PostgreSQL database migrated to head (dropped after the test)."""
    name, url = pg_server.create(migrated=True)
    try:
        yield url
    finally:
        pg_server.drop(name)
