"""The simulator's candle endpoints page like the real venues (Binance ``/api/v3/klines``: limit
default 500, at most 1000, -1120 for an unknown interval; Deribit ``get_tradingview_chart_data``:
every documented resolution), and serve intervals the tape does not hold (5m, 15m) aggregated
exactly from its 1m bars, through real ccxt."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tradebot.adapters.feeds.backfill import make_binance, make_deribit
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.market import Bar

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "ohlcv"
NOW_MS = 1679688000000  # 2023-03-24 20:00 UTC
SINCE_MS = 1679616000000  # 2023-03-24 00:00 UTC

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ExchangeSim]:
    for src in FIXTURES.glob("*.csv.gz"):
        (tmp_path / src.name).symlink_to(src)
    async with ExchangeSim(SimConfig(data_dir=tmp_path, start_ms=NOW_MS, minute_wall_s=3600.0)) as s:
        yield s


def by_hand(bars: list[Bar], period_ms: int) -> list[tuple[object, ...]]:
    """Periods built from 1m bars with Decimal: open first, max high, min low, close last, Σ volume."""
    groups: dict[int, list[Bar]] = {}
    for b in bars:
        groups.setdefault(b.open_time_ms - b.open_time_ms % period_ms, []).append(b)
    return [
        (
            t,
            Decimal(g[0].open),
            max(Decimal(b.high) for b in g),
            min(Decimal(b.low) for b in g),
            Decimal(g[-1].close),
            sum((Decimal(b.volume) for b in g), Decimal(0)),
        )
        for t, g in sorted(groups.items())
    ]


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as r:
        return r.status, json.loads(await r.text())


async def test_binance_klines_limits_and_errors_as_documented(sim: ExchangeSim) -> None:
    base = f"{sim.binance_rest_url}/api/v3/klines?symbol=BTCUSDT"
    status, rows = await get(f"{base}&interval=1m&startTime={SINCE_MS - 86_400_000}")
    assert status == 200 and len(rows) == 500
    status, rows = await get(f"{base}&interval=1m&startTime={SINCE_MS - 86_400_000}&limit=5000")
    assert status == 200 and len(rows) == 1000
    assert await get(f"{base}&interval=7m") == (400, {"code": -1120, "msg": "Invalid interval."})
    bad_symbol = f"{sim.binance_rest_url}/api/v3/klines?symbol=DOGEUSDT&interval=1m"
    assert await get(bad_symbol) == (400, {"code": -1121, "msg": "Invalid symbol."})


@pytest.mark.parametrize(("venue", "symbol"), [("binance", "BTC/USDT"), ("deribit", "BTC/USDC:USDC")])
@pytest.mark.parametrize(("timeframe", "period_ms"), [("5m", 300_000), ("15m", 900_000)])
async def test_intervals_the_tape_lacks_are_aggregated_exactly(
    sim: ExchangeSim, venue: str, symbol: str, timeframe: str, period_ms: int
) -> None:
    exchange = (
        make_binance(sim.binance_rest_url) if venue == "binance" else make_deribit(sim.deribit_rest_url)
    )
    try:
        got = await exchange.fetch_ohlcv(symbol, timeframe, since=SINCE_MS, limit=40)
    finally:
        await exchange.close()
    expected = by_hand(sim.market.tape.bars("BTCUSDT", "1m", SINCE_MS, SINCE_MS + 40 * period_ms), period_ms)
    assert len(got) == 40
    assert [(r[0], *(Decimal(repr(x)) for x in r[1:5])) for r in got] == [e[:5] for e in expected]
    for r, e in zip(got, expected, strict=True):  # ccxt's floats of the exact sums
        assert float(r[5]) == float(e[5])
