"""One default database for every command, in the user's data directory, and pure JSON logs.

Before: ``tradebot demo`` wrote ``demo.db`` in the working directory while ``runs`` / ``events``
opened ``tradebot.db`` there, said "run `tradebot db upgrade`" and left an empty file behind (a typo'd
``--db`` did the same); progress lines and Alembic's plain-text lines were mixed into the JSON log.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tradebot.adapters.store.migrate import upgrade
from tradebot.app.logging import configure_logging
from tradebot.app.settings import data_home, default_database_url, load_settings

TRADEBOT = str(Path(sys.executable).parent / "tradebot")


def _env(xdg: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    env["XDG_DATA_HOME"] = str(xdg)
    return env


def _tradebot(cwd: Path, xdg: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TRADEBOT, *argv], cwd=cwd, env=_env(xdg), capture_output=True, text=True, timeout=300, check=False
    )


def test_the_data_directory_follows_xdg_data_home(tmp_path: Path) -> None:
    assert data_home({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "tradebot"
    assert data_home({"XDG_DATA_HOME": ""}) == Path.home() / ".local" / "share" / "tradebot"
    assert data_home({"XDG_DATA_HOME": "relative/dir"}) == Path.home() / ".local" / "share" / "tradebot"
    assert default_database_url({"XDG_DATA_HOME": str(tmp_path)}) == (
        f"sqlite+aiosqlite:///{tmp_path / 'tradebot' / 'tradebot.db'}"
    )


def test_settings_default_to_the_data_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("TRADEBOT_DATABASE_URL", raising=False)
    monkeypatch.delenv("TRADEBOT_DAEMON__HEALTH_FILE", raising=False)
    settings = load_settings()
    assert settings.database_url.get_secret_value() == f"sqlite+aiosqlite:///{tmp_path}/tradebot/tradebot.db"
    assert settings.daemon.health_file == str(tmp_path / "tradebot" / "health.json")
    monkeypatch.setenv("TRADEBOT_DATABASE_URL", "postgresql+asyncpg://bot@db/tradebot")
    assert load_settings().database_url.get_secret_value() == "postgresql+asyncpg://bot@db/tradebot"


def test_a_demo_from_one_folder_is_found_by_runs_and_events_from_another(tmp_path: Path) -> None:
    xdg, here, there = tmp_path / "xdg", tmp_path / "a", tmp_path / "b"
    here.mkdir()
    there.mkdir()
    demo = _tradebot(here, xdg, "demo", "--days", "0.5", "--out", str(here / "out"))
    assert demo.returncode == 0, demo.stderr
    run_id = next((here / "out").iterdir()).name
    assert (xdg / "tradebot" / "tradebot.db").is_file()
    assert not list(here.glob("*.db")), "the demo wrote a database into the working directory"

    # Off a terminal every stderr line is one JSON object (progress went to stdout).
    lines = [line for line in demo.stderr.splitlines() if line.strip()]
    for line in lines:
        assert isinstance(json.loads(line), dict), line
    assert "demo (simulated minutes): 720/720 candles (100%)" in demo.stdout

    runs = _tradebot(there, xdg, "runs")
    assert runs.returncode == 0, runs.stderr
    assert run_id in runs.stdout
    events = _tradebot(there, xdg, "events", "--run", run_id)
    assert events.returncode == 0, events.stderr
    assert f"position events of run {run_id}" in events.stdout.replace("\n", " ")
    assert not list(there.glob("*.db"))


@pytest.mark.parametrize("command", ["runs", "events"])
def test_a_missing_database_is_named_and_not_created(tmp_path: Path, command: str) -> None:
    typo = tmp_path / "tradebto.db"
    done = _tradebot(tmp_path, tmp_path / "xdg", command, "--db", f"sqlite+aiosqlite:///{typo}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"no database at '{typo}'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not typo.exists()
    # the default database is missing too before any run: the same message, with its path
    done = _tradebot(tmp_path, tmp_path / "xdg", command)
    assert done.returncode == 2
    assert f"no database at '{tmp_path / 'xdg' / 'tradebot' / 'tradebot.db'}'" in done.stderr
    assert not (tmp_path / "xdg" / "tradebot" / "tradebot.db").exists()


async def test_alembic_lines_are_json_too(tmp_path: Path) -> None:
    buf = io.StringIO()
    configure_logging(level="info", fmt="json", stream=buf)
    try:
        await upgrade(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    finally:
        configure_logging(level="warning")
        for handler in list(logging.getLogger().handlers):
            if getattr(handler, "_tradebot", False):
                logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    alembic = [line for line in lines if str(line.get("logger", "")).startswith("alembic")]
    assert alembic, buf.getvalue()
    assert any("Running upgrade" in str(line["event"]) for line in alembic)


def test_runs_orders_runs_of_the_same_data_by_creation_and_rounds_equity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two backtests of one window share started_ms (the first candle's time): before revision 0002
    # `runs` could not tell them apart and "the latest run" of `events` was either of them.
    from tradebot.cli import main

    db = f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}"
    window = ["--start", "2023-03-20", "--end", "2023-03-22", "--out", str(tmp_path / "out"), "--db", db]
    assert main(["backtest", *window]) == 0
    assert main(["backtest", *window]) == 0
    first, second = sorted((tmp_path / "out").iterdir(), key=lambda p: p.stat().st_mtime)
    capsys.readouterr()
    assert main(["runs", "--db", db]) == 0
    out = capsys.readouterr().out
    assert out.index(second.name) < out.index(first.name)
    final = json.loads((second / "summary.json").read_text())["final_equity"]
    assert f"{float(final):,.2f}" in out
    assert final not in out or len(final.split(".")[-1]) <= 2
    assert main(["events", "--db", db]) == 0
    assert f"position events of run {second.name}" in capsys.readouterr().out.replace("\n", " ")
