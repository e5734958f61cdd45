"""Fills by websocket (issue 13 item 3): ``tradebot run`` (testnet, PostgreSQL) against the simulator
with the Binance WebSocket API user-data subscription on.

* With the stream up and a long poll interval, a resting limit order's fill reaches the engine
  (its ``order_filled`` line) well before the next poll, without a single REST lookup; with the stream
  dropped (and refused), the next poll catches the fill up; when the stream comes back it subscribes
  again.
* With the simulator pushing every execution report twice and out of order, no fill is applied
  twice: the stored fills are exactly the simulator's trades, each logged once, the engine's cash
  equals the simulator's, and no order is left open by a stale report.

The orders are the account owner's (placed at the simulator before the start, adopted by the start-up
reconciliation), so their fills come when the test moves the market, never with a submit answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import pytest
from daemon_proc import FIXTURE, KEY, SECRET, DaemonProcess, sim_env

from tradebot.adapters.store import SqlEventStore
from tradebot.exchange_sim import ExchangeSim, SimConfig

D = Decimal
START_MS = 1679529600000 + 3600_000
RUN = "testnet-binance"
LOOKUPS = {("GET", "/api/v3/order"), ("GET", "/api/v3/myTrades"), ("GET", "/api/v3/openOrders")}

pytestmark = pytest.mark.postgres


class TimedDaemon(DaemonProcess):
    """A :class:`DaemonProcess` that also notes when each log line arrived (monotonic seconds)."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        super().__init__(env, cwd)
        self.arrived: list[float] = []

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            text = line.decode()
            self.raw.append(text)
            if text.startswith("{"):
                self.lines.append(json.loads(text))
                self.arrived.append(time.monotonic())

    def filled_at(self, trade_id: str) -> float | None:
        for entry, at in zip(self.lines, self.arrived, strict=False):
            if entry["event"] == "order_filled" and entry["trade_id"] == trade_id:
                return at
        return None


def env_for(sim: ExchangeSim, tmp_path: Path, pg_url: str, **extra: str) -> dict[str, str]:
    return {
        **sim_env(sim, tmp_path),  # TRADEBOT_EXCHANGE__BINANCE__WS_URL: the host only, /ws-api/v3 is added
        "TRADEBOT_DATABASE_URL": pg_url,
        "TRADEBOT_DAEMON__RECONCILE_INTERVAL_S": "600",
        "TRADEBOT_FEEDS__BINANCE__BACKOFF_MAX_S": "1",
        **extra,
    }


def new_low_minute(sim: ExchangeSim, symbol: str, *, after: int) -> tuple[int, Decimal]:
    """(k, low): the first bar k >= ``after`` from the forming one (0) whose low is below every earlier
    one's: a resting buy at that low fills exactly when the k-th bar closes."""
    lows = []
    for k in range(200):
        bar = sim.tape.bar(symbol, sim.market.now_ms + k * 60_000)
        assert bar is not None
        low = D(bar.low)
        if k >= after and all(low < earlier for earlier in lows):
            return k, low
        lows.append(low)
    raise AssertionError(f"no new low of {symbol} within 200 minutes")


def health(tmp_path: Path) -> dict[str, object]:
    try:
        report: dict[str, object] = json.loads((tmp_path / "health.json").read_text())
    except (OSError, ValueError):  # not written yet, or being replaced
        return {}
    return report


def lookups(sim: ExchangeSim, since: int) -> int:
    return sum(1 for r in sim.binance_private.requests[since:] if r in LOOKUPS)


@pytest.mark.timeout(150)
async def test_a_pushed_fill_reaches_the_engine_before_the_next_poll_and_polling_catches_up_without_it(
    tmp_path: Path, pg_url: str
) -> None:
    poll_s = 8.0
    config = SimConfig(data_dir=FIXTURE, start_ms=START_MS, minute_wall_s=0.1)
    async with ExchangeSim(config) as sim:
        sim.market.pause()
        sim.binance_private.credentials[KEY] = SECRET
        orders = sim.binance_orders
        _, btc_low = new_low_minute(sim, "BTCUSDT", after=0)  # the forming bar: fills at the next step
        k_eth, eth_low = new_low_minute(sim, "ETHUSDT", after=2)
        orders.place(symbol="BTCUSDT", side="BUY", type="LIMIT", qty=D("0.001"), price=btc_low,
                     client_order_id="web_limit_btc")  # fmt: skip
        orders.place(symbol="ETHUSDT", side="BUY", type="LIMIT", qty=D("0.01"), price=eth_low,
                     client_order_id="web_limit_eth")  # fmt: skip
        env = env_for(sim, tmp_path, pg_url, TRADEBOT_DAEMON__POLL_INTERVAL_S=str(poll_s))
        async with TimedDaemon(env, tmp_path) as d:
            await d.wait_for(lambda: bool(d.events("user_stream_subscribed")), 60, "the user stream")
            await d.wait_for(lambda: bool(d.events("trading_started")), 30, "trading")
            assert {e["client_order_id"] for e in d.events("order_adopted")} == {
                "web_limit_btc",
                "web_limit_eth",
            }
            await asyncio.sleep(1.0)  # the poll right after the subscription is done
            # 1. stream up: the fill of the BTC order (it crosses when the forming bar closes)
            since, t0 = len(sim.binance_private.requests), time.monotonic()
            sim.market.step()
            (btc_trade,) = orders.trades
            await d.wait_for(
                lambda: d.filled_at(str(btc_trade.trade_id)) is not None, poll_s, "the pushed fill"
            )
            stream_latency_s = d.filled_at(str(btc_trade.trade_id)) - t0  # type: ignore[operator]
            assert lookups(sim, since) == 0  # no poll, no trade listing: the stream brought it
            assert stream_latency_s < poll_s / 4, stream_latency_s
            # 2. stream dropped and refused: the fill of the ETH order comes with the next poll
            sim.faults.binance.user.refuse(600)
            sim.faults.binance.user.drop()
            await d.wait_for(lambda: bool(d.events("user_stream_down")), 10, "the stream down")
            await d.wait_for(lambda: health(tmp_path).get("user_stream_up") is False, 5, "the health file")
            since, t0 = len(sim.binance_private.requests), time.monotonic()
            for _ in range(k_eth):
                sim.market.step()
            eth_trade = orders.trades[-1]
            assert eth_trade.symbol == "ETHUSDT" and len(orders.trades) == 2
            await d.wait_for(
                lambda: d.filled_at(str(eth_trade.trade_id)) is not None, poll_s + 5, "the polled fill"
            )
            poll_latency_s = d.filled_at(str(eth_trade.trade_id)) - t0  # type: ignore[operator]
            assert lookups(sim, since) > 0  # the poll looked the order up
            # 3. the stream comes back and subscribes again
            sim.faults.binance.user.refuse_until = 0.0
            await d.wait_for(lambda: len(d.events("user_stream_subscribed")) >= 2, 20, "the stream back")
            await d.wait_for(lambda: health(tmp_path).get("user_stream_up") is True, 5, "the health file")
            assert await d.stop() == 0, d.tail()
        trades = list(orders.trades)
    print(f"fill latency: stream {stream_latency_s * 1000:.0f} ms, poll with the stream down "
          f"{poll_latency_s * 1000:.0f} ms (poll interval {poll_s:.0f} s)")  # fmt: skip
    async with SqlEventStore(pg_url) as store:
        fills = await store.fills(RUN)
    assert sorted((f.trade_id, f.client_order_id, f.qty, f.price) for f in fills) == sorted(
        (str(t.trade_id), cid, t.qty, t.price)
        for t, cid in zip(trades, ("web_limit_btc", "web_limit_eth"), strict=True)
    )


def ladder_fills(sim: ExchangeSim, symbol: str, qty: Decimal) -> int:
    """How many trades the simulator's fill model (``OrderEngine._on_market``) makes of a resting buy
    of ``qty`` that crosses every bar from the forming one: each fills at most
    ``volume × limit_volume_fraction`` (down to the step)."""
    orders = sim.binance_orders
    step, left, n, t = orders.rules[symbol].step, qty, 0, sim.market.now_ms
    while left > 0:
        bar = sim.tape.bar(symbol, t)
        assert bar is not None
        cap = (D(bar.volume) * orders.limit_volume_fraction / step).to_integral_value(ROUND_DOWN) * step
        n, left, t = n + (min(left, cap) > 0), left - min(left, cap), t + 60_000
    return n


def marketable(sim: ExchangeSim, symbol: str, step: Decimal) -> Decimal:
    # a buy limit 1 % above the forming bar's open: crosses every bar from the next one
    bar = sim.tape.bar(symbol, sim.market.now_ms)
    assert bar is not None
    return (D(bar.open) * D("1.01")).quantize(step, rounding=ROUND_DOWN)


@pytest.mark.timeout(150)
async def test_duplicated_and_reordered_execution_reports_apply_every_fill_once(
    tmp_path: Path, pg_url: str
) -> None:
    config = SimConfig(data_dir=FIXTURE, start_ms=START_MS, minute_wall_s=0.15)
    async with ExchangeSim(config) as sim:
        sim.market.pause()
        sim.binance_private.credentials[KEY] = SECRET
        orders, user = sim.binance_orders, sim.faults.binance.user
        # about 0.0005-0.0012 BTC per bar: one order filled in several parts, whose reports are swapped
        # pairwise (a later fill, even the FILLED one, before an earlier) and each pushed twice
        orders.limit_volume_fraction = D("0.00002")
        orders.place(symbol="BTCUSDT", side="BUY", type="LIMIT", qty=D("0.006"),
                     price=marketable(sim, "BTCUSDT", D("0.01")), client_order_id="web_ladder_btc")  # fmt: skip
        env = env_for(sim, tmp_path, pg_url, TRADEBOT_DAEMON__POLL_INTERVAL_S="60")
        async with TimedDaemon(env, tmp_path) as d:
            await d.wait_for(lambda: bool(d.events("user_stream_subscribed")), 60, "the user stream")
            await d.wait_for(lambda: bool(d.events("trading_started")), 30, "trading")
            await asyncio.sleep(1.0)
            # reports are swapped in pairs from the first one pushed with the faults on: start them so
            # that the FILLED report is the second of a pair, and a PARTIALLY_FILLED one comes after it
            if ladder_fills(sim, "BTCUSDT", D("0.006")) % 2:
                sim.market.step()
                await d.wait_for(lambda: bool(d.events("order_filled")), 10, "the first fill")
            user.duplicate(10_000)
            user.out_of_order(10_000)
            sim.market.resume()
            await d.wait_for(lambda: not orders.open_orders(), 60, "the ladder filled at the simulator")
            ids = {str(t.trade_id) for t in orders.trades}
            await d.wait_for(
                lambda: all(d.filled_at(i) is not None for i in ids), 20, "every fill in the engine"
            )
            sim.market.pause()
            mark = len(d.lines)
            await d.wait_for(lambda: len(d.events("status", mark)) >= 2, 10, "a status line after the fills")
            status = d.events("status")[-1]
            logged = Counter(e["trade_id"] for e in d.events("order_filled"))
            assert await d.stop() == 0, d.tail()
        trades, balances = list(orders.trades), orders.balances()
        pushed, duplicated, swapped = user.pushed, user.duplicates_pushed, user.swapped
    print(f"{len(trades)} trades: {pushed} frames pushed, {duplicated} duplicated, {swapped} reordered; "
          f"{sum(logged.values())} fills applied")  # fmt: skip
    # every report pushed with the faults on (all but maybe the first fill's) twice, every pair swapped
    assert len(trades) >= 6 and duplicated >= len(trades) - 1 and swapped >= (len(trades) - 1) // 2
    assert logged == Counter({str(t.trade_id): 1 for t in trades})  # each applied once
    assert status["open_orders"] == 0  # no stale report reopened an order
    assert status["cash_quote"] == f"{balances['USDT']:.2f}"  # the engine's ledger equals the venue
    async with SqlEventStore(pg_url) as store:
        fills = await store.fills(RUN)
    assert sorted((f.trade_id, f.qty, f.price, f.fee_quote) for f in fills) == sorted(
        (str(t.trade_id), t.qty, t.price, t.fee) for t in trades
    )


@pytest.mark.timeout(120)
async def test_deribit_pushes_a_resting_orders_fill_to_the_engine_without_a_lookup(
    tmp_path: Path, pg_url: str
) -> None:
    """The same on Deribit: ``public/auth`` + ``user.orders`` / ``user.trades`` of the instruments."""
    key, secret = "sim-deribit-key-01", "sim-deribit-secret-02"
    config = SimConfig(data_dir=FIXTURE, start_ms=START_MS, minute_wall_s=0.1)
    async with ExchangeSim(config) as sim:
        sim.market.pause()
        sim.deribit_private.credentials[key] = secret
        orders = sim.deribit_orders
        tick = orders.rules["BTC_USDC-PERPETUAL"].tick
        _, low = new_low_minute(sim, "BTCUSDT", after=0)
        price = (low / tick).to_integral_value(rounding="ROUND_CEILING") * tick  # on the tick, >= the low
        orders.place(symbol="BTC_USDC-PERPETUAL", side="BUY", type="LIMIT", qty=D("0.001"), price=price,
                     client_order_id="web_limit_deribit")  # fmt: skip
        env = {
            **env_for(sim, tmp_path, pg_url, TRADEBOT_DAEMON__POLL_INTERVAL_S="30"),
            "TRADEBOT_VENUE": "deribit", "TRADEBOT_QUOTE": "USDC",
            "TRADEBOT_SYMBOLS": '["BTC/USDC:USDC", "ETH/USDC:USDC", "SOL/USDC:USDC"]',
            "TRADEBOT_TESTNET_API_KEY": key, "TRADEBOT_TESTNET_API_SECRET": secret,
            "TRADEBOT_FEEDS__DERIBIT__WS_URL": sim.deribit_ws_url,
            "TRADEBOT_FEEDS__DERIBIT__REST_URL": sim.deribit_rest_url,
            "TRADEBOT_EXCHANGE__DERIBIT__REST_URL": sim.deribit_rest_url,
            "TRADEBOT_EXCHANGE__DERIBIT__WS_URL": sim.deribit_ws_url,
            "TRADEBOT_FEEDS__DERIBIT__MAX_LAG_MS": str(10**13),
        }  # fmt: skip
        async with TimedDaemon(env, tmp_path) as d:
            await d.wait_for(lambda: bool(d.events("user_stream_subscribed")), 60, "the user stream")
            await d.wait_for(lambda: bool(d.events("trading_started")), 30, "trading")
            assert [e["client_order_id"] for e in d.events("order_adopted")] == ["web_limit_deribit"]
            await asyncio.sleep(1.0)
            since, t0 = len(sim.deribit_private.requests), time.monotonic()
            sim.market.step()
            (trade,) = orders.trades
            trade_id = f"USDC-T{trade.trade_id}"
            await d.wait_for(lambda: d.filled_at(trade_id) is not None, 10, "the pushed fill")
            latency_s = d.filled_at(trade_id) - t0  # type: ignore[operator]
            lookups_made = [m for m in sim.deribit_private.requests[since:] if m.startswith("get_")]
            assert await d.stop() == 0, d.tail()
    print(f"deribit fill latency: stream {latency_s * 1000:.0f} ms")
    assert lookups_made == [] and latency_s < 5, (lookups_made, latency_s)
    async with SqlEventStore(pg_url) as store:
        fills = await store.fills("testnet-deribit")
    assert [(f.trade_id, f.client_order_id, f.qty, f.price) for f in fills] == [
        (trade_id, "web_limit_deribit", trade.qty, trade.price)
    ]
