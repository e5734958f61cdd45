"""SignalBook: routing base candles through aggregators into streams, warm-up, views, lookups."""

from __future__ import annotations

import pytest

from tradebot.core.domain import Candle, StreamState, Timeframe
from tradebot.core.signals import NO_SIGNALS, SignalBook, StreamConfig, StreamView

M1, H1, H4 = Timeframe.M1, Timeframe.H1, Timeframe.H4
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
MIN, HOUR = 60_000, 3_600_000
SYMBOLS = {"BTC/USDT": "BTC", "ETH/USDT": "ETH"}
CONFIGS = [
    StreamConfig(timeframe=H4, fast=1, slow=2, atr_period=1),
    StreamConfig(timeframe=H1, fast=1, slow=3),
]


def c1m(symbol: str, minute: int, price: float = 100.0) -> Candle:
    return Candle(symbol, M1, T0 + minute * MIN, price, price + 1.0, price - 1.0, price, 1.0)


def book() -> SignalBook:
    return SignalBook(SYMBOLS, M1, CONFIGS)


def test_hot_path_returns_shared_empty_and_closes_route_to_streams() -> None:
    b = book()
    for m in range(59):
        assert b.on_candle(c1m("BTC/USDT", m)) is NO_SIGNALS
    sigs = b.on_candle(c1m("BTC/USDT", 59))
    assert [(s.stream, s.time_ms, s.state, s.reason) for s in sigs] == [
        ("BTC:1h", T0 + HOUR, StreamState.OUT, "warming up: 1/14 candles")
    ]
    for m in range(60, 239):
        b.on_candle(c1m("BTC/USDT", m))
    sigs = b.on_candle(c1m("BTC/USDT", 239))
    assert [(s.stream, s.time_ms) for s in sigs] == [("BTC:1h", T0 + 4 * HOUR), ("BTC:4h", T0 + 4 * HOUR)]
    assert b.last_closed("BTC/USDT", "4h") == Candle("BTC/USDT", H4, T0, 100.0, 101.0, 99.0, 100.0, 240.0, 0)
    assert b.last_closed("ETH/USDT", H4) is None
    assert b.atr("BTC/USDT", H4) == 2.0  # ATR(1) = TR of the single 4h candle = 101 - 99


def test_states_views_in_stream_order() -> None:
    b = book()
    views = b.states()
    assert [v.stream_id for v in views] == ["BTC:1h", "BTC:4h", "ETH:1h", "ETH:4h"]
    assert views[0] == StreamView(
        stream_id="BTC:1h",
        symbol="BTC/USDT",
        asset="BTC",
        timeframe=H1,
        state=StreamState.OUT,
        confidence=0.0,
    )


def test_warm_up_routed_by_symbol_and_timeframe_then_live_skips_covered_period() -> None:
    b = book()
    h4 = [
        Candle("ETH/USDT", H4, T0 - (3 - i) * 4 * HOUR, p, p + 1, p - 1, p, 1.0)
        for i, p in enumerate((10.0, 20.0, 30.0))
    ]
    h1 = [
        Candle("ETH/USDT", H1, T0 - (3 - i) * HOUR, p, p + 1, p - 1, p, 1.0)
        for i, p in enumerate((5.0, 6.0, 7.0))
    ]
    last = b.warm_up({"ETH:4h": h4, "ETH:1h": h1})
    assert [(s.stream, s.state) for s in last] == [("ETH:1h", StreamState.OUT), ("ETH:4h", StreamState.IN)]
    assert last[1].reason == "ema1 > ema2 (+20.00%)"  # ema2: seed 15, then 15 + 2/3*(30-15) = 25
    assert b.stream("ETH/USDT", H4).ready
    # live data starts at T0 + 30 min: the 00:00 1h period is emitted with 30 missing and routed
    b2 = book()
    b2.warm_up(h1 + h4)  # a plain iterable works too
    for m in range(30, 59):
        assert b2.on_candle(c1m("ETH/USDT", m)) is NO_SIGNALS
    sigs = b2.on_candle(c1m("ETH/USDT", 59))
    assert [s.stream for s in sigs] == ["ETH:1h"]
    assert b2.last_closed("ETH/USDT", H1).missing == 30  # type: ignore[union-attr]


def test_aggregated_candle_already_covered_by_warm_up_is_skipped() -> None:
    b = book()
    b.warm_up([Candle("BTC/USDT", H1, T0, 1.0, 2.0, 0.5, 1.5, 1.0)])  # the 00:00 hour, native
    for m in range(30, 59):
        b.on_candle(c1m("BTC/USDT", m))
    assert b.on_candle(c1m("BTC/USDT", 59)) is NO_SIGNALS  # the partial 00:00 hour is not fed twice
    assert b.last_closed("BTC/USDT", H1) == Candle("BTC/USDT", H1, T0, 1.0, 2.0, 0.5, 1.5, 1.0)


def test_errors() -> None:
    b = book()
    with pytest.raises(ValueError, match=r"unknown symbol 'SOL/USDT'"):
        b.on_candle(c1m("SOL/USDT", 0))
    with pytest.raises(ValueError, match=r"no stream for symbol 'BTC/USDT' timeframe <Timeframe.M1: '1m'>"):
        b.warm_up([c1m("BTC/USDT", 0)])
    with pytest.raises(KeyError, match=r"no stream or extra timeframe for symbol 'BTC/USDT' timeframe '1d'"):
        b.atr("BTC/USDT", "1d")
    with pytest.raises(ValueError, match=r"configs must have distinct timeframes"):
        SignalBook(SYMBOLS, M1, [StreamConfig(timeframe=H1), StreamConfig(timeframe=H1)])
    with pytest.raises(ValueError, match=r"base timeframe 4h does not divide target timeframe 1h"):
        SignalBook(SYMBOLS, H4, CONFIGS)
    with pytest.raises(ValueError, match=r"symbols must map to distinct assets"):
        SignalBook({"BTC/USDT": "BTC", "BTC/USDC": "BTC"}, M1, CONFIGS)


def test_extra_timeframe_tracks_last_candle_atr_and_volatility() -> None:
    b = SignalBook(SYMBOLS, M1, CONFIGS[:1], extra_timeframes=(H1, H4), extra_atr_period=1)
    assert b.extra_timeframes == (H1,)  # 4h already has a stream
    for m in range(59):
        b.on_candle(c1m("BTC/USDT", m))
    assert b.volatility(H1) == {}
    assert b.on_candle(c1m("BTC/USDT", 59)) is NO_SIGNALS  # an extra timeframe emits no signal
    assert b.last_closed("BTC/USDT", H1) == Candle("BTC/USDT", H1, T0, 100.0, 101.0, 99.0, 100.0, 60.0, 0)
    assert b.atr("BTC/USDT", H1) == 2.0
    assert b.volatility(H1) == {"BTC/USDT": 0.02}  # ATR 2 / close 100; ETH not ready -> absent
    # warm-up candles of an extra timeframe warm its ATR: TR = 30 - 10 = 20, close 25
    b.warm_up([Candle("ETH/USDT", H1, T0 - HOUR, 20.0, 30.0, 10.0, 25.0, 1.0)])
    assert b.volatility("1h") == {"BTC/USDT": 0.02, "ETH/USDT": 0.8}
    with pytest.raises(KeyError, match="no stream or extra timeframe"):
        b.volatility(Timeframe.D1)
