"""Fixtures shared by the integration suites: a migrated SQLite database per test, copied from one
template migrated once per session (migrations take ~1 s; copying a file is instant)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tradebot.adapters.store.migrate import upgrade


@pytest.fixture(scope="session")
def db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head (do not write to it: copy it, see ``db_url``)."""
    path = tmp_path_factory.mktemp("db") / "template.db"
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{path}"))  # a sync fixture: no loop is running here
    return path


@pytest.fixture
def db_url(db_template: Path, tmp_path: Path) -> Iterator[str]:
    """A fresh migrated SQLite database for one test, as an async SQLAlchemy URL."""
    shutil.copy(db_template, tmp_path / "t.db")
    yield f"sqlite+aiosqlite:///{tmp_path / 't.db'}"
