"""Canary secrets: the daemon runs end to end (``tradebot run`` against the simulator, PostgreSQL, a
SIGTERM and a resumed restart, debug logging) with canary API keys and a canary database password; no
log line, no error message and no stored row contains any of them. A refused start whose error names
the database does not print the password either."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import asyncpg
import pytest

from tradebot.exchange_sim import ExchangeSim, SimConfig

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "ohlcv"
CANARIES = {
    "TRADEBOT_TESTNET_API_KEY": "canaryTNkey7f3a9c",
    "TRADEBOT_TESTNET_API_SECRET": "canaryTNsecret41d2e8",
    "TRADEBOT_LIVE_API_KEY": "canaryLIVEkey0b7c55",
    "TRADEBOT_LIVE_API_SECRET": "canaryLIVEsecret9e6f12",
}
DB_PASSWORD = "canaryDBpw3c8e1a"

pytestmark = pytest.mark.postgres


def _with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{password}@{host}"


async def _run(env: dict[str, str], cwd: Path, *, stop_after: int | None) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tradebot",
        "run",
        "--migrate",
        env={**base, **env},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    out: list[str] = []
    async with asyncio.timeout(60):
        while line := await proc.stdout.readline():
            text = line.decode()
            out.append(text)
            if stop_after is not None and text.startswith("{"):
                entry = json.loads(text)
                if entry["event"] == "status" and entry["candles_processed"] >= stop_after:
                    proc.send_signal(signal.SIGTERM)
                    stop_after = None
        code = await proc.wait()
    return code, "".join(out)


def _assert_clean(text: str) -> None:
    for value in [*CANARIES.values(), DB_PASSWORD]:
        assert value not in text


@pytest.mark.timeout(150)
async def test_no_canary_secret_in_logs_errors_or_the_database(pg_url: str, tmp_path: Path) -> None:
    url = _with_password(pg_url, DB_PASSWORD)
    config = SimConfig(
        data_dir=FIXTURE, start_ms=1679529600000 + 3600_000, minute_wall_s=0.05, ping_interval_s=1.0
    )
    async with ExchangeSim(config) as sim:
        env = {
            **CANARIES,
            "TRADEBOT_MODE": "paper",
            "TRADEBOT_LOG_LEVEL": "debug",
            "TRADEBOT_DATABASE_URL": url,
            "POSTGRES_PASSWORD": DB_PASSWORD,
            "TRADEBOT_FEEDS__BINANCE__WS_URL": sim.binance_ws_url,
            "TRADEBOT_FEEDS__BINANCE__REST_URL": sim.binance_rest_url,
            "TRADEBOT_FEEDS__BINANCE__MAX_LAG_MS": str(10**13),
            "TRADEBOT_DAEMON__STATUS_INTERVAL_S": "0.5",
            "TRADEBOT_DAEMON__CHECKPOINT_INTERVAL_S": "0.5",
            "TRADEBOT_DAEMON__HEALTH_FILE": str(tmp_path / "health.json"),
            "TRADEBOT_STREAMS": '[{"timeframe": "1h", "fast": 2, "slow": 3, "atr_period": 2}]',
        }
        code, first = await _run(env, tmp_path, stop_after=200)
        assert code == 0, first[-3000:]
        code, second = await _run(env, tmp_path, stop_after=6)
        assert code == 0, second[-3000:]
        # a start refused at the database: the error names it, never its password
        bad = {
            **env,
            "TRADEBOT_DATABASE_URL": _with_password(
                pg_url.rsplit("/", 1)[0] + "/tradebot_no_such_db", DB_PASSWORD
            ),
        }
        code, refused = await _run(bad, tmp_path, stop_after=None)
        assert code == 2, refused[-2000:]
    assert '"event": "engine_restored"' in second and '"event": "order_submitted"' in first + second
    assert "tradebot_no_such_db is not usable" in refused and "Traceback" not in refused
    for text in (first, second, refused, (tmp_path / "health.json").read_text()):
        _assert_clean(text)
    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        ]
        assert "runs" in tables
        dump = []
        for table in tables:
            dump += [r[0] for r in await conn.fetch(f'SELECT row_to_json(t)::text FROM "{table}" t')]
    finally:
        await conn.close()
    stored = "\n".join(dump)
    assert "**********" in stored  # the run's config keeps the keys' slots, masked
    _assert_clean(stored)
