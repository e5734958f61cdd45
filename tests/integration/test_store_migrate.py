"""Migrations from any working directory, the alembic CLI entry, and database URL handling (SQLite)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tradebot.adapters.store import SqlEventStore, check_current, ensure_schema, parse_database_url, upgrade
from tradebot.adapters.store.migrate import ALEMBIC_DIR_ENV, alembic_dir
from tradebot.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


async def test_upgrade_works_from_another_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ALEMBIC_DIR_ENV, raising=False)
    assert alembic_dir() == REPO / "alembic"

    await upgrade("sqlite+aiosqlite:///relative.db")

    assert _tables(tmp_path / "relative.db") >= {
        "alembic_version", "runs", "orders", "fills", "trades", "position_events",
        "ml_position_predictions", "equity_snapshots", "stream_signals", "engine_state",
    }  # fmt: skip
    assert await check_current("sqlite+aiosqlite:///relative.db") is True


async def test_alembic_dir_env_must_name_a_script_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALEMBIC_DIR_ENV, str(tmp_path))
    with pytest.raises(
        ConfigError, match=f"{ALEMBIC_DIR_ENV} must name an alembic directory.*was '{tmp_path}'"
    ):
        await upgrade(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")

    monkeypatch.setenv(ALEMBIC_DIR_ENV, str(REPO / "alembic"))
    assert alembic_dir() == REPO / "alembic"


async def test_ensure_schema_is_idempotent_and_the_store_opens_after_it(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bt.db'}"
    await ensure_schema(url)
    await ensure_schema(url)
    async with SqlEventStore(url) as store:
        await store.start_run(run_id="r", mode="backtest", config={}, version="0", started_ms=0)
    with sqlite3.connect(tmp_path / "bt.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # set by the store's connections


def test_alembic_cli_upgrades_with_the_environment_url(tmp_path: Path) -> None:
    env = {**os.environ, "TRADEBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"}
    alembic = Path(sys.executable).with_name("alembic")
    done = subprocess.run(
        [str(alembic), "upgrade", "head"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Running upgrade  -> 0001" in done.stderr
    assert "engine_state" in _tables(tmp_path / "cli.db")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///tradebot.db", "sqlite+aiosqlite:///tradebot.db"),
        ("sqlite+aiosqlite:///tradebot.db", "sqlite+aiosqlite:///tradebot.db"),
        ("postgresql://u@127.0.0.1/db", "postgresql+asyncpg://u@127.0.0.1/db"),
        ("postgres://u@127.0.0.1/db", "postgresql+asyncpg://u@127.0.0.1/db"),
    ],
)
def test_urls_get_their_async_driver(given: str, expected: str) -> None:
    assert parse_database_url(given).render_as_string() == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("not a url", "not a valid SQLAlchemy URL"),
        ("mysql+aiomysql://u:secret@h/db", "was 'mysql\\+aiomysql://u:\\*\\*\\*@h/db'"),
        ("postgresql+psycopg2://u:secret@h/db", "must use the async driver postgresql\\+asyncpg"),
    ],
)
def test_bad_urls_are_config_errors_without_passwords(given: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_database_url(given)
    assert "secret" not in str(info.value)
