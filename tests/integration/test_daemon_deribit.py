"""Testnet mode on Deribit against the simulator: the Deribit chart websocket feed, the ccxt
:class:`~tradebot.adapters.venues.ccxt_deribit.DeribitVenue` on the simulator's private JSON-RPC
endpoints, the order executor and reconciliation, over the sample's candles replayed as the USDC
linear perpetuals ``BTC_USDC-PERPETUAL`` / ``ETH_USDC-PERPETUAL`` / ``SOL_USDC-PERPETUAL`` (the
simulator replays ``<BASE>USDT`` for ``<BASE>_USDC-PERPETUAL``).

``tradebot run`` starts (start-up reconciliation ok), trades, is stopped with SIGTERM (exit 0) and
restarted (it resumes the run and reconciles cleanly);
every order reached the simulator once, the stored fills are exactly the simulator's trades, and
the ledger folded from them equals the simulator's positions and USDC balance.
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
from tradebot.exchange_sim import ExchangeSim, Market, SimConfig

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
KEY, SECRET = "sim-deribit-key-01", "sim-deribit-secret-02"
RUN = "testnet-deribit"
#: 2023-03-23 01:00 UTC: the 1h fast/slow streams flip "in" within the first simulated hours.
START_MS = 1679529600000 + 3600_000


async def _run(
    env: dict[str, str], cwd: Path, *, stop_when: str, count: int, market: Market
) -> tuple[int, list[dict], str]:
    """Run the daemon until the ``count``-th log line with event ``stop_when``, then SIGTERM it.

    The market clock is paused until the daemon logs ``trading_started`` (warm-up and start-up
    reconciliation happen on a still market, so the run does not depend on the machine's speed).
    """
    market.pause()
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tradebot", "run", "--migrate", env={**base, **env}, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[dict] = []
    raw: list[str] = []
    seen = 0
    try:
        async with asyncio.timeout(60):
            while line := await proc.stdout.readline():
                text = line.decode()
                raw.append(text)
                if not text.startswith("{"):
                    continue
                entry = json.loads(text)
                lines.append(entry)
                if entry["event"] == "trading_started":
                    market.resume()
                if entry["event"] == stop_when:
                    seen += 1
                    if seen == count:
                        proc.send_signal(signal.SIGTERM)
            code = await proc.wait()
    except TimeoutError:
        pytest.fail("daemon still running after 60 s; last output:\n" + "".join(raw[-30:]))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert seen >= count, "".join(raw[-30:])
    return code, lines, "".join(raw)


@pytest.mark.timeout(90)
async def test_testnet_daemon_trades_deribit_perpetuals_against_the_simulator(tmp_path: Path) -> None:
    async with ExchangeSim(SimConfig(data_dir=SAMPLE, start_ms=START_MS, minute_wall_s=0.02)) as sim:
        sim.deribit_private.credentials[KEY] = SECRET
        env = {
            "TRADEBOT_MODE": "testnet",
            "TRADEBOT_VENUE": "deribit",
            "TRADEBOT_QUOTE": "USDC",
            "TRADEBOT_SYMBOLS": '["BTC/USDC:USDC", "ETH/USDC:USDC", "SOL/USDC:USDC"]',
            "TRADEBOT_TESTNET_API_KEY": KEY,
            "TRADEBOT_TESTNET_API_SECRET": SECRET,
            "TRADEBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
            "TRADEBOT_FEEDS__DERIBIT__WS_URL": sim.deribit_ws_url,
            "TRADEBOT_FEEDS__DERIBIT__REST_URL": sim.deribit_rest_url,
            "TRADEBOT_EXCHANGE__DERIBIT__REST_URL": sim.deribit_rest_url,
            "TRADEBOT_EXCHANGE__DERIBIT__WS_URL": sim.deribit_ws_url,
            "TRADEBOT_FEEDS__DERIBIT__MAX_LAG_MS": str(10**13),
            "TRADEBOT_DAEMON__STATUS_INTERVAL_S": "0.5",
            "TRADEBOT_DAEMON__POLL_INTERVAL_S": "0.2",
            # measured: with a periodic reconciliation every 0.5 s the daemon processed about one candle
            # per symbol per 2.5 s wall (the reconciliation's Deribit reads hold the candle loop; the
            # Deribit gate keeps its default 10 requests/s), so the 1h streams often saw no closed hour
            # within the test's time; every 5 s the candles keep up
            "TRADEBOT_DAEMON__RECONCILE_INTERVAL_S": "5",
            "TRADEBOT_STREAMS": '[{"timeframe": "1h", "fast": 2, "slow": 3, "atr_period": 2}]',
        }
        code, lines, text = await _run(env, tmp_path, stop_when="order_filled", count=3, market=sim.market)
        assert code == 0, text[-3000:]
        events = [e["event"] for e in lines]
        assert events.index("markets_loaded") < events.index("reconciled") < events.index("trading_started")
        assert next(e for e in lines if e["event"] == "reconciled")["ok"] is True
        code, second, text = await _run(env, tmp_path, stop_when="status", count=2, market=sim.market)
        assert code == 0, text[-3000:]
        restored = next(e for e in second if e["event"] == "reconciled")
        assert restored["ok"] is True and restored["startup"] is True
        assert any(e["event"] == "engine_restored" for e in second)
        orders = sim.deribit_orders
        placements, trades, balances = list(orders.placements), list(orders.trades), orders.balances()
    assert len(placements) >= 3 and len(set(placements)) == len(placements)  # no order sent twice
    async with SqlEventStore(env["TRADEBOT_DATABASE_URL"]) as store:
        fills = await store.fills(RUN)
        rows = await store.orders(RUN)
    assert sorted((f.trade_id, f.qty, f.price, f.fee_quote) for f in fills) == sorted(
        (f"USDC-T{t.trade_id}", t.qty, t.price, t.fee) for t in trades
    )
    assert {r.client_order_id for r in rows} == set(placements)
    cash = Decimal(10000) - sum(
        ((f.qty * f.price) if f.side is Side.BUY else -(f.qty * f.price)) + f.fee_quote for f in fills
    )
    assert cash == balances["USDC"]
    for base in ("BTC", "ETH", "SOL"):
        held = sum(((f.qty if f.side is Side.BUY else -f.qty) for f in fills if f.symbol == f"{base}/USDC:USDC"),
                   Decimal(0))  # fmt: skip
        assert held == balances.get(base, Decimal(0))
