"""Binance kline feed against the local exchange simulator, one test per fault.

Each test asserts that the closed 1m candles delivered per symbol equal the simulator's history for
the interval (no gap, no duplicate, in order). Simulated time runs at 1200× (0.05 s per minute).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tradebot.adapters.feeds.backfill import BackfillConfig, CcxtHistory, make_binance
from tradebot.adapters.feeds.binance_ws import BinanceFeedConfig, BinanceKlineFeed
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.faults import MALFORMED_KINDS, VenueFaults
from tradebot.exchange_sim.recorder import FeedRecorder, expected_history

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "ohlcv"
START_MS = 1679529600000 + 60 * 60_000  # 2023-03-23 01:00 UTC
MIN = 60_000
SYMBOLS = {"BTC/USDT": "BTCUSDT", "ETH/USDT": "ETHUSDT", "SOL/USDT": "SOLUSDT"}
MINUTE_WALL_S = 0.05
FAST_RETRY = BackfillConfig(retry_initial_s=0.01, retry_max_wait_s=0.05, retry_jitter_s=0.01, rate_limit=50)
FEED_CFG = BinanceFeedConfig(
    stale_after_s=0.5,
    backoff_initial_s=0.05,
    backoff_max_s=0.3,
    banned_backoff_s=0.3,
    idle_check_s=0.1,
    ping_interval_s=0.2,
    ping_timeout_s=1.0,
    open_timeout_s=2.0,
    max_lag_ms=MIN,
)

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
    fault_after_min: int = 3,
    config: BinanceFeedConfig = FEED_CFG,
    resume_min_before: int = 10,
) -> tuple[FeedRecorder, BinanceKlineFeed, int]:
    """Run the feed from ``resume_min_before`` minutes of history before now until ``minutes`` after
    start; trigger ``fault`` after ``fault_after_min``; return the recorder, the feed and the first
    expected open time."""
    exchange = make_binance(sim.binance_rest_url)
    history = CcxtHistory(exchange, FAST_RETRY)
    queue: asyncio.Queue = asyncio.Queue()
    start = sim.market.now_ms
    first = start - resume_min_before * MIN
    feed = BinanceKlineFeed(
        config=config.__class__(**{**_fields(config), "ws_url": sim.binance_ws_url}),
        history=history,
        queue=queue,
        last_open_ms=dict.fromkeys(SYMBOLS, first - MIN),
        rng=random.Random(7),
        now_ms=lambda: sim.market.now_ms,
    )
    target = start + minutes * MIN
    recorder = FeedRecorder(sim.market, queue, dict.fromkeys(SYMBOLS, target))
    try:
        async with asyncio.TaskGroup() as tg:
            feed_task = tg.create_task(feed.run())
            rec_task = tg.create_task(recorder.run())
            if fault is not None:
                await sim.market.wait_until(start + fault_after_min * MIN, timeout_s=20)
                fault(sim.faults.binance)
            await asyncio.wait_for(recorder.done.wait(), timeout=40)
            feed_task.cancel()
            rec_task.cancel()
    finally:
        await exchange.close()
    return recorder, feed, first


def _fields(config: BinanceFeedConfig) -> dict:
    return {f: getattr(config, f) for f in config.__dataclass_fields__}


def assert_equals_history(sim: ExchangeSim, recorder: FeedRecorder, first: int) -> None:
    for symbol, expected in expected_history(
        sim.market, SYMBOLS, first, recorder.until_open_ms["BTC/USDT"]
    ).items():
        got = recorder.candles(symbol)
        assert got[: len(expected)] == expected, symbol
        opens = [c.open_time_ms for c in got]
        assert opens == sorted(set(opens)), f"{symbol}: duplicate or out-of-order delivery"


async def test_no_fault_delivers_history_with_catch_up(sim: ExchangeSim) -> None:
    recorder, feed, first = await run_feed(sim, minutes=15)
    assert_equals_history(sim, recorder, first)
    assert feed.stats.backfilled_candles >= 3 * 9  # the 10 minutes before start came from REST
    assert feed.stats.connects == 1
    late = recorder.late_fresh_candles(max_lag_ms=5 * MIN)
    assert late == [], [(r.event.open_time_ms, r.sim_now_ms) for r in late[:5]]
    statuses = recorder.statuses("BTC/USDT")
    assert statuses[0].stale is True
    assert statuses[0].reason == "starting"
    assert statuses[-1].stale is False


async def test_dropped_connection_is_backfilled(sim: ExchangeSim) -> None:
    recorder, feed, first = await run_feed(sim, minutes=14, fault=lambda f: f.drop())
    assert_equals_history(sim, recorder, first)
    assert feed.stats.connects >= 2


async def test_stall_fires_watchdog_and_no_late_candle_is_fresh(sim: ExchangeSim) -> None:
    fault_wall: list[float] = []

    def stall(f: VenueFaults) -> None:
        fault_wall.append(asyncio.get_running_loop().time())
        f.stall(1.5)  # 30 simulated minutes of silence while pings continue

    recorder, feed, first = await run_feed(sim, minutes=24, fault=stall)
    assert_equals_history(sim, recorder, first)
    assert feed.stats.watchdog_reconnects >= 1
    # the watchdog (0.5 s) plus one backoff (≤ 0.3 s) must bring the feed back well before the stall ends
    recovered = [
        r.wall_s
        for r in recorder.received
        if not isinstance(r.event, tuple)
        and getattr(r.event, "stale", None) is False
        and r.wall_s > fault_wall[0]
    ]
    assert recovered and recovered[0] - fault_wall[0] < 2.0
    assert recorder.late_fresh_candles(max_lag_ms=5 * MIN) == []


async def test_pings_only_connection_is_replaced(sim: ExchangeSim) -> None:
    recorder, feed, first = await run_feed(sim, minutes=14, fault=lambda f: f.pings_only())
    assert_equals_history(sim, recorder, first)
    assert feed.stats.watchdog_reconnects >= 1
    assert recorder.late_fresh_candles(max_lag_ms=5 * MIN) == []


def inject_all_malformed(f: VenueFaults) -> None:
    for kind in MALFORMED_KINDS:  # bad JSON, missing field, negative price, high < low
        f.malformed(kind)


async def test_malformed_frames_are_skipped(sim: ExchangeSim) -> None:
    recorder, feed, first = await run_feed(sim, minutes=10, fault=inject_all_malformed)
    assert_equals_history(sim, recorder, first)
    assert feed.stats.frames_rejected >= len(MALFORMED_KINDS)
    assert feed.stats.connects == 1


async def test_duplicate_klines_are_dropped_and_counted(sim: ExchangeSim) -> None:
    recorder, feed, first = await run_feed(sim, minutes=10, fault=lambda f: f.duplicate())
    assert_equals_history(sim, recorder, first)
    assert feed.stats.duplicates_dropped >= 3


async def test_out_of_order_klines_are_backfilled_then_dropped(sim: ExchangeSim) -> None:
    recorder, feed, first = await run_feed(sim, minutes=10, fault=lambda f: f.out_of_order())
    assert_equals_history(sim, recorder, first)
    assert feed.stats.out_of_order_dropped >= 3


async def test_gap_only_rest_can_fill(sim: ExchangeSim) -> None:
    recorder, feed, first = await run_feed(sim, minutes=15, fault=lambda f: f.gap(3))
    assert_equals_history(sim, recorder, first)
    assert feed.stats.connects == 1
    assert feed.stats.backfilled_candles >= 3 * 9 + 3 * 3


async def test_short_session_limit_reconnects(sim: ExchangeSim) -> None:
    recorder, feed, first = await run_feed(
        sim, minutes=16, fault=lambda f: setattr(f, "session_limit_s", 0.3)
    )
    assert_equals_history(sim, recorder, first)
    assert feed.stats.connects >= 2


async def test_proactive_session_rollover(sim: ExchangeSim) -> None:
    config = BinanceFeedConfig(**{**_fields(FEED_CFG), "max_session_s": 0.4})
    recorder, feed, first = await run_feed(sim, minutes=20, config=config)
    assert_equals_history(sim, recorder, first)
    assert feed.stats.connects >= 2
    assert feed.stats.watchdog_reconnects == 0


async def test_server_shutdown_reconnects(sim: ExchangeSim) -> None:
    recorder, feed, first = await run_feed(sim, minutes=15, fault=lambda f: f.server_shutdown())
    assert_equals_history(sim, recorder, first)
    assert feed.stats.connects >= 2


async def test_refused_reconnects_are_retried(sim: ExchangeSim) -> None:
    def refuse_and_drop(f: VenueFaults) -> None:
        f.refuse(1.0)
        f.drop()

    recorder, feed, first = await run_feed(sim, minutes=30, fault=refuse_and_drop)
    assert_equals_history(sim, recorder, first)
    assert feed.stats.disconnects >= 3  # the drop plus refused handshakes


@pytest.mark.parametrize("status", [429, 418, 503])
async def test_rest_errors_during_backfill(sim: ExchangeSim, status: int) -> None:
    def errors_and_drop(f: VenueFaults) -> None:
        f.http_errors(status, 2)
        f.drop()

    recorder, feed, first = await run_feed(sim, minutes=14, fault=errors_and_drop)
    assert_equals_history(sim, recorder, first)
    assert not sim.faults.binance.rest_statuses  # the injected errors were served
    assert feed.stats.connects >= 2
