"""Testnet mode: ``tradebot run`` against the simulator's order endpoints through the ccxt execution venue
(:class:`~tradebot.adapters.venues.ccxt_venue.CcxtVenue`), the order executor and reconciliation.

The daemon trades a free-running simulated market, is stopped with SIGTERM (exit 0) and restarted
(it resumes the run and reconciles cleanly). Afterwards: every client order id reached the simulator
once, the stored fills are exactly the simulator's trades, and the ledger folded from them equals
the simulator's balances.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tradebot.adapters.store import SqlEventStore
from tradebot.core.domain import Side
from tradebot.exchange_sim import ExchangeSim, SimConfig

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "ohlcv"
KEY, SECRET = "sim-key-0001", "sim-secret-0002"


async def _run(env: dict[str, str], cwd: Path, *, stop_when: str, count: int) -> tuple[int, list[dict]]:
    """Run the daemon until the ``count``-th log line with event ``stop_when``, then SIGTERM it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tradebot", "run", "--migrate", env={**base, **env}, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[dict] = []
    raw: list[str] = []
    seen = 0
    async with asyncio.timeout(60):
        while line := await proc.stdout.readline():
            text = line.decode()
            raw.append(text)
            if not text.startswith("{"):
                continue
            entry = json.loads(text)
            lines.append(entry)
            if entry["event"] == stop_when:
                seen += 1
                if seen == count:
                    proc.send_signal(signal.SIGTERM)
        code = await proc.wait()
    assert seen >= count, "".join(raw[-30:])
    return code, lines


@pytest.mark.timeout(90)
async def test_testnet_daemon_trades_against_the_simulator(tmp_path: Path) -> None:
    config = SimConfig(data_dir=FIXTURE, start_ms=1679529600000 + 3600_000, minute_wall_s=0.02)
    async with ExchangeSim(config) as sim:
        sim.binance_private.credentials[KEY] = SECRET
        env = {
            "TRADEBOT_MODE": "testnet",
            "TRADEBOT_TESTNET_API_KEY": KEY,
            "TRADEBOT_TESTNET_API_SECRET": SECRET,
            "TRADEBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
            "TRADEBOT_FEEDS__BINANCE__WS_URL": sim.binance_ws_url,
            "TRADEBOT_FEEDS__BINANCE__REST_URL": sim.binance_rest_url,
            "TRADEBOT_EXCHANGE__BINANCE__REST_URL": sim.binance_rest_url,
            "TRADEBOT_EXCHANGE__BINANCE__WS_URL": sim.binance_ws_url,
            "TRADEBOT_FEEDS__BINANCE__MAX_LAG_MS": str(10**13),
            "TRADEBOT_DAEMON__STATUS_INTERVAL_S": "0.5",
            "TRADEBOT_DAEMON__POLL_INTERVAL_S": "0.2",
            "TRADEBOT_DAEMON__RECONCILE_INTERVAL_S": "0.5",
            "TRADEBOT_STREAMS": '[{"timeframe": "1h", "fast": 2, "slow": 3, "atr_period": 2}]',
        }
        code, first = await _run(env, tmp_path, stop_when="order_filled", count=3)
        assert code == 0
        events = [e["event"] for e in first]
        assert events.index("markets_loaded") < events.index("reconciled") < events.index("trading_started")
        assert next(e for e in first if e["event"] == "reconciled")["ok"] is True
        code, second = await _run(env, tmp_path, stop_when="status", count=2)
        assert code == 0
        restored = next(e for e in second if e["event"] == "reconciled")
        assert restored["ok"] is True and restored["startup"] is True
        assert any(e["event"] == "engine_restored" for e in second)
        orders = sim.binance_orders
        placements, trades, balances = list(orders.placements), list(orders.trades), orders.balances()
    assert len(placements) >= 3 and len(set(placements)) == len(placements)  # no order sent twice
    async with SqlEventStore(env["TRADEBOT_DATABASE_URL"]) as store:
        fills = await store.fills("testnet-binance")
        rows = await store.orders("testnet-binance")
    assert sorted((f.trade_id, f.qty, f.price, f.fee_quote) for f in fills) == sorted(
        (str(t.trade_id), t.qty, t.price, t.fee) for t in trades
    )
    assert {r.client_order_id for r in rows} == set(placements)
    cash = Decimal(10000) - sum(
        ((f.qty * f.price) if f.side is Side.BUY else -(f.qty * f.price)) + f.fee_quote for f in fills
    )
    assert cash == balances["USDT"]
    for base in ("BTC", "ETH", "SOL"):
        held = sum(((f.qty if f.side is Side.BUY else -f.qty) for f in fills if f.symbol == f"{base}/USDT"),
                   Decimal(0))  # fmt: skip
        assert held == balances.get(base, Decimal(0))
