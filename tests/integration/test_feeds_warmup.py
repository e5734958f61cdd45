"""REST warm-up and history (``CcxtHistory``) against the local exchange simulator, Binance and Deribit.

The simulator's clock is held still at 2023-03-24 20:00 UTC (one simulated minute per hour of wall
time), so "now" is fixed and every expected candle comes straight from the simulator's tape. The
1h window contains the real missing 2023-03-24 13:00 candle (Binance spot halt 12:40–13:59): it
must stay a gap. Deribit serves no 4h candles; its 4h warm-up is aggregated from 1h candles and must
equal Binance's native 4h candles (the simulator replays the same trades on both venues).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tradebot.adapters.feeds.backfill import BackfillConfig, CcxtHistory, make_binance, make_deribit
from tradebot.core.domain import Candle, Timeframe, floor_time, to_decimal
from tradebot.errors import RateLimited, VenueBanned, VenueUnavailable
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.market import Bar

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "binance"
START_MS = 1679688000000  # 2023-03-24 20:00 UTC
HALT_H1_MS = 1679662800000  # 2023-03-24 13:00 UTC: no 1h candle (the real halt)
H1, H4, D1, M1 = Timeframe.H1, Timeframe.H4, Timeframe.D1, Timeframe.M1
PAGE = 64
BARS = {H1: 300, H4: 100, D1: 250}  # every count above the page limit: several pages each
RATE, PERIOD_S = 8, 0.25  # at most 8 requests per 0.25 s
SYMBOLS = {
    "binance": {"BTC/USDT": "BTCUSDT", "ETH/USDT": "ETHUSDT", "SOL/USDT": "SOLUSDT"},
    "deribit": {"BTC/USDC:USDC": "BTCUSDT", "ETH/USDC:USDC": "ETHUSDT", "SOL/USDC:USDC": "SOLUSDT"},
}
CONFIG = BackfillConfig(
    page_limit=PAGE,
    rate_limit=RATE,
    rate_period_s=PERIOD_S,
    retry_attempts=4,
    retry_max_delay_s=30.0,
    retry_initial_s=0.01,
    retry_max_wait_s=0.05,
    retry_jitter_s=0.01,
)

pytestmark = pytest.mark.timeout(60)


class TimedRequests(list[str]):
    """The simulator's request log, with the monotonic time of each request."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: str) -> None:
        self.times.append(time.monotonic())
        super().append(item)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ExchangeSim]:
    for src in [*(FIXTURES / "ohlcv").glob("*.csv.gz"), *(FIXTURES / "warmup").glob("*.csv.gz")]:
        (tmp_path / src.name).symlink_to(src)
    config = SimConfig(data_dir=tmp_path, start_ms=START_MS, minute_wall_s=3600.0)  # clock held still
    async with ExchangeSim(config) as s:
        s.binance_rest.requests = TimedRequests()
        s.deribit_rest.requests = TimedRequests()
        yield s


async def history_of(sim: ExchangeSim, venue: str, config: BackfillConfig = CONFIG) -> CcxtHistory:
    """A history with markets loaded (so each later call is one HTTP request) and ccxt's own rate
    limiter off (so any throttling measured is ours)."""
    if venue == "binance":
        exchange = make_binance(sim.binance_rest_url)
    else:
        exchange = make_deribit(sim.deribit_rest_url)
    exchange.enableRateLimit = False
    await exchange.load_markets()
    return CcxtHistory(exchange, config)


def ohlcv_requests(sim: ExchangeSim, venue: str) -> list[tuple[float, dict[str, str]]]:
    """(time, query) of every candle request the simulator served for ``venue``."""
    log: Any = sim.binance_rest.requests if venue == "binance" else sim.deribit_rest.requests
    out = []
    for t, path in zip(log.times, log, strict=True):
        parts = urlsplit(path)
        if parts.path.endswith(("/klines", "/get_tradingview_chart_data")):
            out.append((t, {k: v[0] for k, v in parse_qs(parts.query).items()}))
    return out


def tape_window(sim: ExchangeSim, tape_symbol: str, tf: Timeframe, count: int) -> list[Bar]:
    until = floor_time(sim.market.now_ms, tf)
    return sim.market.tape.bars(tape_symbol, tf.value, until - count * tf.ms, until)


def exact(c: Candle) -> tuple[Decimal, ...]:
    return tuple(to_decimal(x) for x in (c.open, c.high, c.low, c.close))


def bar_exact(b: Bar) -> tuple[Decimal, ...]:
    return tuple(Decimal(x) for x in (b.open, b.high, b.low, b.close))


def assert_window(
    got: list[Candle], bars: list[Bar], symbol: str, tf: Timeframe, now_ms: int, count: int
) -> None:
    """``got`` is the simulator's window exactly: same open times (aligned, increasing, closed, no
    duplicate, only the real gaps), Decimal-equal prices."""
    until = floor_time(now_ms, tf)
    opens = [c.open_time_ms for c in got]
    assert opens == [b.open_time_ms for b in bars], (symbol, tf)
    assert all(o % tf.ms == 0 for o in opens), (symbol, tf)
    assert opens == sorted(set(opens)), (symbol, tf)
    assert opens[0] >= until - count * tf.ms and opens[-1] + tf.ms <= until <= now_ms
    holes = set(range(until - count * tf.ms, until, tf.ms)) - set(opens)
    assert holes == ({HALT_H1_MS} if tf is H1 else set()), (symbol, tf, sorted(holes))
    assert {(c.symbol, c.timeframe) for c in got} == {(symbol, tf)}
    assert [exact(c) for c in got] == [bar_exact(b) for b in bars], (symbol, tf)


def h4_from_h1(sim: ExchangeSim, tape_symbol: str, count: int) -> list[Bar]:
    """The 4h window aggregated by hand (Decimal) from the tape's 1h bars: what Deribit can serve."""
    until = floor_time(sim.market.now_ms, H4)
    out: list[Bar] = []
    for b in sim.market.tape.bars(tape_symbol, "1h", until - count * H4.ms, until):
        start = floor_time(b.open_time_ms, H4)
        if out and out[-1].open_time_ms == start:
            last = out[-1]
            high = max(Decimal(last.high), Decimal(b.high))
            low = min(Decimal(last.low), Decimal(b.low))
            out[-1] = Bar(start, last.open, str(high), str(low), b.close, "0")
        else:
            out.append(Bar(start, b.open, b.high, b.low, b.close, "0"))
    return out


def assert_warmup_equals_tape(
    sim: ExchangeSim, venue: str, result: dict[tuple[str, Timeframe], list[Candle]]
) -> None:
    now = sim.market.now_ms
    halt_period = floor_time(HALT_H1_MS, H4)
    assert set(result) == {(s, tf) for s in SYMBOLS[venue] for tf in BARS}
    for (symbol, tf), got in result.items():
        tape_symbol = SYMBOLS[venue][symbol]
        bars = tape_window(sim, tape_symbol, tf, BARS[tf])
        assert len(bars) == BARS[tf] - (tf is H1)  # the 1h window holds the real 13:00 gap
        if venue == "deribit" and tf is H4:  # no native 4h on Deribit: aggregated from its 1h
            assert_window(got, h4_from_h1(sim, tape_symbol, BARS[tf]), symbol, tf, now, BARS[tf])
            # equal to Binance's native 4h except the halt's period, where Binance's own 4h open
            # differs from its 12:00 1h open in the real data (BTC 28079.99 vs 28080.00)
            native = [(b.open_time_ms, bar_exact(b)) for b in bars if b.open_time_ms != halt_period]
            assert [(c.open_time_ms, exact(c)) for c in got if c.open_time_ms != halt_period] == native
            assert all(
                math.isclose(c.volume, float(b.volume), rel_tol=1e-12) for c, b in zip(got, bars, strict=True)
            )  # float sums of 1h volumes
            assert {c.open_time_ms: c.missing for c in got if c.missing} == {halt_period: 1}
        else:
            assert_window(got, bars, symbol, tf, now, BARS[tf])
            assert [to_decimal(c.volume) for c in got] == [Decimal(b.volume) for b in bars]
            assert all(c.missing == 0 for c in got)


@pytest.mark.parametrize("venue", ["binance", "deribit"])
async def test_warmup_fetches_each_timeframe_natively_paginated_and_throttled(
    sim: ExchangeSim, venue: str
) -> None:
    history = await history_of(sim, venue)
    try:
        started = time.monotonic()
        result = await history.warmup(list(SYMBOLS[venue]), BARS, now_ms=sim.market.now_ms)
        elapsed = time.monotonic() - started
    finally:
        await history.exchange.close()
    assert_warmup_equals_tape(sim, venue, result)

    requests = ohlcv_requests(sim, venue)
    key = "interval" if venue == "binance" else "resolution"
    per_tf: dict[str, int] = {}
    for _, q in requests:
        per_tf[q[key]] = per_tf.get(q[key], 0) + 1
    if venue == "binance":  # native 1h/4h/1d, never 1m; ceil(bars / page) pages per symbol
        assert per_tf == {"1h": 3 * 5, "4h": 3 * 2, "1d": 3 * 4}
        assert all(int(q["limit"]) <= PAGE for _, q in requests)
    else:  # Deribit has no 4h: 4h comes from 100 · 4 = 400 1h candles (7 pages), never from 1m
        assert per_tf == {"60": 3 * (5 + 7), "1D": 3 * 4}
        spans = [
            (int(q["end_timestamp"]) - int(q["start_timestamp"])) // (H1.ms if q[key] == "60" else D1.ms)
            for _, q in requests
        ]
        assert max(spans) <= PAGE
    # the throttle admits at most RATE requests per PERIOD_S: request k + RATE starts ≥ PERIOD_S
    # after request k, so n requests take at least ⌊(n − 1) / RATE⌋ · PERIOD_S (a lower bound: a
    # loaded machine only makes it longer). Unthrottled, these requests take a few ms each.
    assert elapsed >= (len(requests) - 1) // RATE * PERIOD_S


@pytest.mark.parametrize(
    ("venue", "status", "error"),
    [
        ("binance", 503, VenueUnavailable),
        ("binance", 429, RateLimited),
        ("deribit", 503, VenueUnavailable),
        ("deribit", 429, RateLimited),
    ],
)
async def test_warmup_retries_transient_errors_then_gives_up(
    sim: ExchangeSim, venue: str, status: int, error: type[Exception]
) -> None:
    faults = sim.faults.venue(venue)
    history = await history_of(sim, venue, dataclasses.replace(CONFIG, rate_limit=1000))
    try:
        clean = await history.warmup(list(SYMBOLS[venue]), BARS, now_ms=sim.market.now_ms)
        served = len(ohlcv_requests(sim, venue))
        # the first 3 requests fail, the 4th attempt succeeds: the same candles, 3 extra requests
        faults.http_errors(status, CONFIG.retry_attempts - 1)
        retried = await history.warmup(list(SYMBOLS[venue]), BARS, now_ms=sim.market.now_ms)
        assert retried == clean
        assert not faults.rest_statuses
        assert len(ohlcv_requests(sim, venue)) - served == served + CONFIG.retry_attempts - 1
        assert_warmup_equals_tape(sim, venue, retried)
        # more failures than attempts: give up after exactly retry_attempts requests
        served = len(ohlcv_requests(sim, venue))
        faults.http_errors(status, CONFIG.retry_attempts + 3)
        with pytest.raises(error):
            await history.fetch_candles(next(iter(SYMBOLS[venue])), H1, START_MS - 10 * H1.ms, START_MS)
        assert len(ohlcv_requests(sim, venue)) - served == CONFIG.retry_attempts
        assert len(faults.rest_statuses) == 3
    finally:
        await history.exchange.close()


async def test_http_418_is_a_ban_and_not_retried(sim: ExchangeSim) -> None:
    history = await history_of(sim, "binance")
    try:
        sim.faults.binance.http_errors(418, 2)
        with pytest.raises(VenueBanned):
            await history.warmup(["BTC/USDT"], {H1: 10}, now_ms=sim.market.now_ms)
    finally:
        await history.exchange.close()
    assert len(ohlcv_requests(sim, "binance")) == 1
    assert list(sim.faults.binance.rest_statuses) == [418]  # the second answer was never asked for


@pytest.mark.parametrize("venue", ["binance", "deribit"])
async def test_history_pages_across_an_outage_longer_than_a_page(sim: ExchangeSim, venue: str) -> None:
    """1m history over the real 80-minute halt with 30-candle pages: Deribit pages by time window,
    so whole pages come back empty inside the halt; the candles after it must still be fetched."""
    config = dataclasses.replace(CONFIG, page_limit=30, rate_limit=100)
    history = await history_of(sim, venue, config)
    since, until = START_MS - 8 * H1.ms, START_MS  # 12:00 → 20:00, the halt is 12:40–13:59
    symbol, tape_symbol = next(iter(SYMBOLS[venue].items()))
    try:
        got = await history.fetch_candles(symbol, M1, since, until)
    finally:
        await history.exchange.close()
    bars = sim.market.tape.bars(tape_symbol, "1m", since, until)
    assert len(bars) == 8 * 60 - 80
    assert [c.open_time_ms for c in got] == [b.open_time_ms for b in bars]
    assert [exact(c) for c in got] == [bar_exact(b) for b in bars]
