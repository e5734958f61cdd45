"""Database fixtures of the event-store contract suite: a SQLite file, or a fresh PostgreSQL database.

The PostgreSQL server fixture ``pg_server`` (and its rules: trust auth on 127.0.0.1:5432 or
``TRADEBOT_TEST_PG_ADMIN_URL``, one fresh database per test, skipped when unreachable except under
``CI=true``) lives in ``tests/conftest.py`` so that other suites can use it too.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from tradebot.adapters.store.migrate import upgrade

T = TypeVar("T")


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    # Run a coroutine on a private loop in another thread, away from the test's event loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(fn())).result()  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session; tests get copies."""
    path = tmp_path_factory.mktemp("sqlite_template") / "template.db"
    _run(lambda: upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test: ``sqlite`` or ``postgresql``."""
    return str(request.param)


def _database(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, *, migrated: bool
) -> Iterator[str]:
    if backend == "sqlite":
        path = tmp_path / "events.db"
        if migrated:
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    server = request.getfixturevalue("pg_server")  # tests/conftest.py
    name, url = server.create(migrated=migrated)
    try:
        yield url
    finally:
        server.drop(name)


@pytest.fixture
def empty_db_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database of ``backend`` (no tables)."""
    yield from _database(request, backend, tmp_path, migrated=False)


@pytest.fixture
def db_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh database of ``backend`` migrated to head."""
    yield from _database(request, backend, tmp_path, migrated=True)
