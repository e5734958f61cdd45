"""``tradebot run`` as a subprocess against the exchange simulator, for the daemon's fault tests
(rate-limit storms, external account activity): its JSON log lines are collected while it runs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tradebot.exchange_sim import ExchangeSim

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "ohlcv"
KEY, SECRET = "sim-key-0001", "sim-secret-0002"


class DaemonProcess:
    """``tradebot run`` as a subprocess whose JSON log lines are collected while it runs."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> DaemonProcess:
        base = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tradebot", "run", "--migrate", env={**base, **self.env}, cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None and self._reader is not None
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        await self._reader

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            text = line.decode()
            self.raw.append(text)
            if text.startswith("{"):
                self.lines.append(json.loads(text))

    @property
    def running(self) -> bool:
        assert self.proc is not None
        return self.proc.returncode is None

    def events(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        return [e for e in self.lines[since:] if e["event"] == name]

    def tail(self, n: int = 15) -> str:
        return "".join([r for r in self.raw if '"event": "status"' not in r][-n:])

    async def wait_for(self, pred: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not pred():
            code = self.proc and self.proc.returncode
            assert self.running, f"daemon exited {code} waiting for {what}:\n{self.tail()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.tail()}"
            await asyncio.sleep(0.05)

    def candles(self) -> int:
        status = self.events("status")
        return int(status[-1]["candles_processed"]) if status else 0

    async def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            return await self.proc.wait()


def sim_env(sim: ExchangeSim, tmp_path: Path) -> dict[str, str]:
    return {
        "TRADEBOT_MODE": "testnet",
        "TRADEBOT_TESTNET_API_KEY": KEY,
        "TRADEBOT_TESTNET_API_SECRET": SECRET,
        "TRADEBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        "TRADEBOT_FEEDS__BINANCE__WS_URL": sim.binance_ws_url,
        "TRADEBOT_FEEDS__BINANCE__REST_URL": sim.binance_rest_url,
        "TRADEBOT_EXCHANGE__BINANCE__REST_URL": sim.binance_rest_url,
        "TRADEBOT_EXCHANGE__BINANCE__WS_URL": sim.binance_ws_url,
        "TRADEBOT_FEEDS__BINANCE__MAX_LAG_MS": str(10**13),
        "TRADEBOT_DAEMON__STATUS_INTERVAL_S": "0.3",
        "TRADEBOT_DAEMON__POLL_INTERVAL_S": "0.2",
        "TRADEBOT_DAEMON__RECONCILE_INTERVAL_S": "0.5",
        "TRADEBOT_DAEMON__HEALTH_FILE": str(tmp_path / "health.json"),
        "TRADEBOT_DAEMON__BAN_FILE": str(tmp_path / "venue_bans.json"),
        "TRADEBOT_STREAMS": '[{"timeframe": "1h", "fast": 2, "slow": 3, "atr_period": 2}]',
    }
