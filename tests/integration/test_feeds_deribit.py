"""Deribit chart feed against the local exchange simulator, one test per fault.

Each test asserts that the closed 1m candles delivered per instrument equal the simulator's history
for the interval (no gap, no duplicate, in order).

Timing (CI may run on a busy 2-core machine): lateness is judged in simulated time, the watchdog of
the tests that do not exercise it is 40 simulated minutes, and the simulator closes a connection
whose heartbeat stays unanswered for one more interval (0.5–1 s here): a catch-up that holds the
read loop on a slow machine must not cost the connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import pytest

from tradebot.adapters.feeds.backfill import BackfillConfig, CcxtHistory, make_deribit
from tradebot.adapters.feeds.deribit_ws import DeribitChartFeed, DeribitFeedConfig
from tradebot.core.domain import Candle, FeedStatus, to_decimal
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.deribit_ws import tape_symbol
from tradebot.exchange_sim.faults import MALFORMED_KINDS, VenueFaults
from tradebot.exchange_sim.recorder import FeedRecorder, expected_history

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "ohlcv"
START_MS = 1679529600000 + 60 * 60_000  # 2023-03-23 01:00 UTC
MIN = 60_000
FAST_RETRY = BackfillConfig(retry_initial_s=0.01, retry_max_wait_s=0.05, retry_jitter_s=0.01, rate_limit=50)
MINUTE_WALL_S = 0.05
FEED_CFG = DeribitFeedConfig(
    heartbeat_interval_s=0.5,
    final_grace_s=0.4,
    stale_after_s=2.0,  # no false watchdog reconnect when a loaded machine pauses the loop
    backoff_initial_s=0.05,
    backoff_max_s=0.3,
    banned_backoff_s=0.3,
    idle_check_s=0.1,
    ping_interval_s=0.2,
    ping_timeout_s=1.0,
    open_timeout_s=2.0,
    max_lag_ms=MIN,
)

#: For the tests of the watchdog itself: 10 simulated minutes without a chart update.
WATCHDOG_CFG = dataclasses.replace(FEED_CFG, stale_after_s=0.5)
STALL_S = 10 * (WATCHDOG_CFG.stale_after_s + WATCHDOG_CFG.backoff_max_s)  # ≫ watchdog + backoff

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSim]:
    config = SimConfig(data_dir=DATA, start_ms=START_MS, minute_wall_s=MINUTE_WALL_S, ping_interval_s=0.1)
    async with ExchangeSim(config) as s:
        yield s


async def run_feed(
    sim: ExchangeSim,
    *,
    minutes: int,
    fault: Callable[[VenueFaults], None] | None = None,
    config: DeribitFeedConfig = FEED_CFG,
) -> tuple[FeedRecorder, DeribitChartFeed, int, dict[str, str]]:
    exchange = make_deribit(sim.deribit_rest_url)
    queue: asyncio.Queue = asyncio.Queue()
    start = sim.market.now_ms
    first = start - 10 * MIN
    cfg = dataclasses.replace(config, ws_url=sim.deribit_ws_url)
    symbols = {u: tape_symbol(i) for i, u in cfg.wire_symbols().items()}
    feed = DeribitChartFeed(
        config=cfg,
        history=CcxtHistory(exchange, FAST_RETRY),
        queue=queue,
        last_open_ms=dict.fromkeys(symbols, first - MIN),
        rng=random.Random(3),
        now_ms=lambda: sim.market.now_ms,
    )
    recorder = FeedRecorder(sim.market, queue, dict.fromkeys(symbols, start + minutes * MIN))
    try:
        async with asyncio.TaskGroup() as tg:
            feed_task = tg.create_task(feed.run())
            rec_task = tg.create_task(recorder.run())
            if fault is not None:
                await sim.market.wait_until(start + 3 * MIN, timeout_s=20)
                fault(sim.faults.deribit)
            await asyncio.wait_for(recorder.done.wait(), timeout=40)
            feed_task.cancel()
            rec_task.cancel()
    finally:
        await exchange.close()
    return recorder, feed, first, symbols


def assert_equals_history(
    sim: ExchangeSim, recorder: FeedRecorder, first: int, symbols: dict[str, str]
) -> None:
    until = next(iter(recorder.until_open_ms.values()))
    for symbol, expected in expected_history(sim.market, symbols, first, until).items():
        got = recorder.candles(symbol)
        assert got[: len(expected)] == expected, symbol
        opens = [c.open_time_ms for c in got]
        assert opens == sorted(set(opens)), f"{symbol}: duplicate or out-of-order delivery"


async def test_no_fault_usdc_linear_perpetuals(sim: ExchangeSim) -> None:
    minutes = 20
    assert minutes * MINUTE_WALL_S >= 2 * FEED_CFG.heartbeat_interval_s  # the clock never runs faster
    recorder, feed, first, symbols = await run_feed(sim, minutes=minutes)
    assert set(symbols) == {"BTC/USDC:USDC", "ETH/USDC:USDC", "SOL/USDC:USDC"}
    assert_equals_history(sim, recorder, first, symbols)
    assert feed.stats.connects == 1  # heartbeats answered over at least two intervals: kept
    assert feed.stats.watchdog_reconnects == 0
    assert recorder.late_fresh_candles(max_lag_ms=5 * MIN) == []


async def test_inverse_perpetuals(sim: ExchangeSim) -> None:
    config = dataclasses.replace(FEED_CFG, instruments=("BTC-PERPETUAL", "ETH-PERPETUAL"))
    recorder, _feed, first, symbols = await run_feed(sim, minutes=8, config=config)
    assert set(symbols) == {"BTC/USD:BTC", "ETH/USD:ETH"}
    assert_equals_history(sim, recorder, first, symbols)


@pytest.mark.parametrize(
    "name",
    [
        "drop",
        "stall",
        "pings_only",
        "duplicate",
        "out_of_order",
        "gap",
        "session_limit",
        "refuse",
        "http_429",
        "http_503",
    ],
)
async def test_fault(sim: ExchangeSim, name: str) -> None:
    faults: dict[str, Callable[[VenueFaults], None]] = {
        "drop": lambda f: f.drop(),
        "stall": lambda f: f.stall(STALL_S),
        "pings_only": lambda f: f.pings_only(),
        "duplicate": lambda f: f.duplicate(),
        "out_of_order": lambda f: f.out_of_order(),
        "gap": lambda f: f.gap(3),
        "session_limit": lambda f: setattr(f, "session_limit_s", 0.3),
        "refuse": lambda f: (f.refuse(1.0), f.drop()),
        "http_429": lambda f: (f.http_errors(429, 2), f.drop()),
        "http_503": lambda f: (f.http_errors(503, 2), f.drop()),
    }
    watchdog = name in ("stall", "pings_only")
    recorder, feed, first, symbols = await run_feed(
        sim,
        minutes=20 if watchdog or name == "refuse" else 12,
        fault=faults[name],
        config=WATCHDOG_CFG if watchdog else FEED_CFG,
    )
    assert_equals_history(sim, recorder, first, symbols)
    assert recorder.late_fresh_candles(max_lag_ms=5 * MIN) == []
    if watchdog:  # the stalled / silenced connection was replaced long before the stall ended
        assert feed.stats.watchdog_reconnects >= 1
    if name == "out_of_order":
        assert feed.stats.out_of_order_dropped >= 3


def inject_all_malformed(f: VenueFaults) -> None:
    for kind in MALFORMED_KINDS:  # bad JSON, missing field, negative price, high < low
        f.malformed(kind)


async def test_malformed_frames_are_skipped(sim: ExchangeSim) -> None:
    recorder, feed, first, symbols = await run_feed(sim, minutes=10, fault=inject_all_malformed)
    assert_equals_history(sim, recorder, first, symbols)
    assert feed.stats.frames_rejected >= len(MALFORMED_KINDS)
    assert feed.stats.connects == 1


HALT_START_MS = 1679661600000  # 2023-03-24 12:40 UTC: the real halt, no trade until 14:00


async def test_grace_period_confirms_the_last_candle_over_rest() -> None:
    """The real halt: 12:39's final tick arrives, then no tick at all for 80 minutes. No later tick
    can close 12:39, so after ``final_grace_s`` the feed must confirm it over REST (a backfill on
    the same connection, before the watchdog), and the confirmed candle equals the simulator's."""
    start = HALT_START_MS - 10 * MIN
    config = SimConfig(data_dir=DATA, start_ms=start, minute_wall_s=MINUTE_WALL_S, ping_interval_s=0.1)
    # the halt lasts 4 s of wall time; the grace (0.3 s) ends long before the watchdog (3 s) fires
    cfg = dataclasses.replace(FEED_CFG, final_grace_s=0.3, stale_after_s=3.0)
    async with ExchangeSim(config) as sim:
        sim.market.pause()  # until the feed is connected and caught up: a deterministic timeline
        exchange = make_deribit(sim.deribit_rest_url)
        queue: asyncio.Queue = asyncio.Queue()
        cfg = dataclasses.replace(cfg, ws_url=sim.deribit_ws_url)
        symbols = {u: tape_symbol(i) for i, u in cfg.wire_symbols().items()}
        feed = DeribitChartFeed(
            config=cfg,
            history=CcxtHistory(exchange, FAST_RETRY),
            queue=queue,
            last_open_ms=dict.fromkeys(symbols, start - 2 * MIN),
            rng=random.Random(5),
            now_ms=lambda: sim.market.now_ms,
        )
        last_before_halt = HALT_START_MS - MIN
        got: dict[str, list[Candle]] = {s: [] for s in symbols}
        stats_at_confirm = []
        try:
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(feed.run())
                async with asyncio.timeout(30):
                    fresh: set[str] = set()
                    while len(fresh) < len(symbols):  # the catch-up's last candle is fresh
                        event = await queue.get()
                        assert isinstance(event, FeedStatus | Candle)
                        if isinstance(event, FeedStatus) and not event.stale:
                            fresh.add(event.symbol)
                        elif isinstance(event, Candle):
                            got[event.symbol].append(event)
                    sim.market.resume()
                    while any(not c or c[-1].open_time_ms < last_before_halt for c in got.values()):
                        event = await queue.get()
                        if isinstance(event, Candle):
                            got[event.symbol].append(event)
                            if event.open_time_ms == last_before_halt:
                                stats_at_confirm.append(dataclasses.replace(feed.stats))
                task.cancel()
        finally:
            await exchange.close()
    expected = expected_history(sim.market, symbols, start - MIN, last_before_halt)
    for symbol, candles in got.items():
        assert candles == expected[symbol], symbol
        bar = sim.market.tape.bar(symbols[symbol], last_before_halt)
        assert bar is not None
        assert to_decimal(candles[-1].close) == Decimal(bar.close)
    # on the first connection (no reconnect, no watchdog): 12:29 from the catch-up at connect,
    # 12:30 … 12:38 closed by a later tick, 12:39 confirmed over REST
    last = stats_at_confirm[-1]
    assert (last.connects, last.watchdog_reconnects, last.disconnects) == (1, 0, 0)
    assert last.backfilled_candles == 2 * len(symbols)
    assert last.live_candles == 9 * len(symbols)
    assert last.duplicates_dropped == 0
