"""Testnet mode against the simulator's order endpoints: the ccxt execution venue
(:class:`~tradebot.adapters.venues.ccxt_venue.CcxtVenue`), the order executor and reconciliation.

* ``tradebot run`` trades a free-running simulated market, is stopped with SIGTERM (exit 0) and
  restarted (it resumes the run and reconciles cleanly); every client order id reached the simulator
  once, the stored fills are exactly the simulator's trades, and the ledger folded from them equals
  the simulator's balances;
* ``tradebot demo`` (testnet-like, market in lock-step) over one day decides exactly like a backtest;
* the simulator's market clock can be paused and resumed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import structlog

from tradebot.adapters.store import SqlEventStore
from tradebot.app.backtest.backtest import BacktestOptions, run_backtest
from tradebot.app.demo.demo import DemoOptions, run_demo
from tradebot.app.settings import load_settings
from tradebot.core.domain import OrderStatus, PositionEventType, Side, Timeframe
from tradebot.exchange_sim import ExchangeSim, Market, SimConfig, Tape

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "ohlcv"
KEY, SECRET = "sim-key-0001", "sim-secret-0002"


async def _run(
    env: dict[str, str], cwd: Path, *, stop_when: str, count: int, raw: list[str] | None = None
) -> tuple[int, list[dict]]:
    """Run the daemon until the ``count``-th log line with event ``stop_when``, then SIGTERM it
    (``count`` 0: until it exits by itself); ``raw`` collects the output lines."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tradebot", "run", "--migrate", env={**base, **env}, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[dict] = []
    raw = [] if raw is None else raw
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
                if seen == count and count:
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


@pytest.mark.timeout(90)
async def test_testnet_daemon_refuses_to_trade_when_the_account_does_not_match(tmp_path: Path) -> None:
    """With ``TRADEBOT_DAEMON__BALANCE_CHANGES=refuse``, a balance the ledger cannot explain (here: 0.5
    BTC appearing at the venue while the daemon was down) makes the start-up reconciliation refuse:
    exit code 2 with the message naming the asset and amounts and how to accept it, a
    ``reconcile_mismatch`` position event, and no order sent. (By default it is a deposit:
    ``test_daemon_external_activity.py``.)"""
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
            "TRADEBOT_FEEDS__BINANCE__MAX_LAG_MS": str(10**13),
            "TRADEBOT_STREAMS": '[{"timeframe": "1h", "fast": 2, "slow": 3, "atr_period": 2}]',
            "TRADEBOT_DAEMON__BALANCE_CHANGES": "refuse",
        }
        code, _ = await _run(env, tmp_path, stop_when="order_filled", count=1)
        assert code == 0
        orders = sim.binance_orders
        orders.free["BTC"] = orders.free.get("BTC", Decimal(0)) + Decimal("0.5")
        sent = len(orders.placements)
        raw: list[str] = []
        code, _ = await _run(env, tmp_path, stop_when="", count=0, raw=raw)
        assert len(orders.placements) == sent
    text = "".join(raw)
    assert code == 2, text[-3000:]
    assert "refusing to trade" in text and "BTC: ledger" in text and "difference 0.5" in text, text[-3000:]
    assert "TRADEBOT_DAEMON__BALANCE_CHANGES=cash_flow" in text
    assert '"event": "trading_started"' not in text
    async with SqlEventStore(env["TRADEBOT_DATABASE_URL"]) as store:
        kinds = [e.event_type for e in await store.position_events("testnet-binance")]
    assert PositionEventType.RECONCILE_MISMATCH in kinds


REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
FEED_EVENTS = {PositionEventType.FEED_STALE, PositionEventType.FEED_RECOVERED}


def _order_key(o) -> tuple:  # type: ignore[no-untyped-def]
    # what a daemon order row and a backtest one must agree on (type and trigger first)
    return (o.order_type, o.stop_price, o.symbol, o.side, o.qty, o.created_ms, o.status, o.filled_qty,
            o.avg_fill_price, o.fees_quote)  # fmt: skip


def _event_key(e) -> tuple:  # type: ignore[no-untyped-def]
    return (
        e.event_type,
        e.symbol,
        e.event_time_ms,
        e.price,
        e.size_before,
        e.size_after,
        _plain(e.action_taken),
    )


def _plain(text: str) -> str:
    # "buy 0.17104000 @ 24995.14000000" (venue decimals) == "buy 0.17104 @ 24995.14"
    return re.sub(r"(\d+\.\d*?)0+\b", r"\1", text).replace(". ", " ")


@pytest.mark.timeout(120)
async def test_testnet_demo_day_decides_exactly_like_a_backtest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tradebot demo`` (testnet-like: orders through ccxt to the simulator's order engine, market in
    lock-step) over the sample's first day equals a backtest of the same candles with the venue's
    filters: every order (quantity, fill price, fee) and every position event."""
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    structlog.reset_defaults()
    settings = load_settings()
    demo_db = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    result = await run_demo(
        settings, DemoOptions(data_dir=SAMPLE, days=1.0, minute_wall_s=1e-4, db_url=demo_db)
    )
    assert result.daemon.c is not None and result.daemon.c.settings.mode == "testnet"
    instruments = result.daemon.c.engine.instruments
    bt_db = f"sqlite+aiosqlite:///{tmp_path / 'bt.db'}"
    bt = await run_backtest(settings, BacktestOptions(data_dir=SAMPLE, timeframe=Timeframe.M1, start_ms=result.start_ms,
                                                      end_ms=result.end_ms, db_url=bt_db, instruments=instruments))  # fmt: skip
    run_id, bt_run = result.daemon.c.run_id, bt.summary["run"]["run_id"]
    async with SqlEventStore(demo_db) as store:
        orders, events, fills = (
            await store.orders(run_id),
            await store.position_events(run_id),
            await store.fills(run_id),
        )
    async with SqlEventStore(bt_db) as store:
        bt_orders, bt_events = await store.orders(bt_run), await store.position_events(bt_run)

    assert len(orders) >= 5 and len(fills) == len(orders)
    assert [_order_key(o) for o in orders] == [_order_key(o) for o in bt_orders]
    assert [_event_key(e) for e in events if e.event_type not in FEED_EVENTS] == [
        _event_key(e) for e in bt_events
    ]
    assert Decimal(result.summary["final_equity"]) == Decimal(bt.summary["final_equity"])


async def test_market_clock_pauses_and_resumes() -> None:
    tape = Tape(FIXTURE, ("BTCUSDT",), timeframes=("1m",))
    start = 1679529600000 + 3600_000
    market = Market(tape, start_ms=start, minute_wall_s=0.01)
    market.pause()
    clock = asyncio.get_running_loop().create_task(market.run())
    try:
        await asyncio.sleep(0.1)
        assert market.paused and market.now_ms == start
        market.step()  # by hand while paused
        assert market.now_ms == start + 60_000
        market.resume()
        await market.wait_until(start + 5 * 60_000, timeout_s=5)
        assert not market.paused
    finally:
        clock.cancel()


@pytest.mark.timeout(240)
async def test_testnet_demo_with_stops_at_the_venue_decides_exactly_like_a_backtest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The managed overlay with its stops resting at the simulator (STOP_LOSS_LIMIT through ccxt; the
    default in testnet mode): ``tradebot demo`` over 4 days of the sample equals a backtest of the same
    candles with ``stops_at_venue`` — every order with its type and trigger price, every position
    event, the final equity. The stop fills reach the engine before the candle that triggered them
    (the daemon looks a reached stop up first), as the backtest's venue has them."""
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    structlog.reset_defaults()
    config = tmp_path / "managed.toml"
    config.write_text((REPO / "config" / "managed.toml").read_text(), encoding="utf-8")
    settings = load_settings(config)
    assert settings.stops_at_venue is None  # the mode decides: on in testnet
    demo_db = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    result = await run_demo(
        settings, DemoOptions(data_dir=SAMPLE, days=4.0, minute_wall_s=1e-4, db_url=demo_db)
    )
    assert result.daemon.c is not None and result.daemon.c.settings.venue_stops is True
    instruments = result.daemon.c.engine.instruments
    bt_settings = settings.model_copy(update={"stops_at_venue": True})
    bt_db = f"sqlite+aiosqlite:///{tmp_path / 'bt.db'}"
    bt = await run_backtest(bt_settings, BacktestOptions(data_dir=SAMPLE, timeframe=Timeframe.M1,
                                                         start_ms=result.start_ms, end_ms=result.end_ms,
                                                         db_url=bt_db, instruments=instruments))  # fmt: skip
    run_id, bt_run = result.daemon.c.run_id, bt.summary["run"]["run_id"]
    async with SqlEventStore(demo_db) as store:
        orders, events = await store.orders(run_id), await store.position_events(run_id)
    async with SqlEventStore(bt_db) as store:
        bt_orders, bt_events = await store.orders(bt_run), await store.position_events(bt_run)

    stops = [o for o in orders if o.order_type.is_stop]
    assert any(o.status is OrderStatus.FILLED for o in stops), [_order_key(o) for o in stops]
    assert [_order_key(o) for o in orders] == [_order_key(o) for o in bt_orders]
    assert [_event_key(e) for e in events if e.event_type not in FEED_EVENTS] == [
        _event_key(e) for e in bt_events
    ]
    assert Decimal(result.summary["final_equity"]) == Decimal(bt.summary["final_equity"])
