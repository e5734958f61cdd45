"""Acceptance tests of the engine, driven directly with constructed candles, fills and venue reports.

No I/O and no doubles: the real :class:`Engine` with a small configuration (EMA 2/3 streams, ATR 2, so
warm-up takes three candles), Binance-like default instruments, and :class:`Fill` /
:class:`OrderUpdate` / :class:`FeedStatus` events built by hand. Every expected number is derived in a
comment from the documented formulas (pooled policy, planner rounding down to the step size).

EMA facts used below (TA-Lib seeding, fast = 2 → α = 2/3, slow = 3 → α = 1/2):

* closes 103, 102, 101: fast = 2/3·101 + 1/3·102.5 = 101.5, slow = mean = 102 → ``out``;
  then a close of 110: fast = 2/3·110 + 1/3·101.5 = 107.1667, slow = ½·110 + ½·102 = 106 → ``in``;
  then 110 again: fast = 109.0556, slow = 108 → stays ``in``.
* closes 103, 102, 101 then 101: fast = 101.1667, slow = 101.5 → stays ``out``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

import pytest

from tradebot.app.instruments import default_instruments
from tradebot.core.config import EngineConfig
from tradebot.core.domain import (
    Candle,
    EquitySnapshot,
    FeedStatus,
    Fill,
    OrderRecord,
    OrderStatus,
    OrderUpdate,
    PlaceOrder,
    PositionEvent,
    PositionEventType,
    Side,
    StreamSignal,
    StreamState,
    Timeframe,
    TradeId,
)
from tradebot.core.engine import Engine
from tradebot.core.execution.planner import PlannerConfig
from tradebot.core.management import RiskLimits
from tradebot.core.portfolio.rebalancer import AllocationConfig
from tradebot.core.signals.stream import StreamConfig

H1, H4, D1, M15 = Timeframe.H1, Timeframe.H4, Timeframe.D1, Timeframe.M15
HOUR = 3_600_000
T0 = 1_704_844_800_000  # 2024-01-10 00:00 UTC, a day (and 4h) boundary
BTC, ETH, SOL = "BTC/USDT", "ETH/USDT", "SOL/USDT"
FEE = Decimal("0.001")  # taker fee of default_instruments, charged by the fills built here


def make_engine(
    symbols: Sequence[str],
    timeframes: Sequence[Timeframe] = (H1,),
    *,
    base: Timeframe = H1,
    invest_fraction: float = 0.5,
    band: str = "0.02",
    defer_buys: bool = True,
) -> Engine:
    """An engine with EMA 2/3 streams, pooled allocation, no cash buffer and no risk caps in the way."""
    config = EngineConfig(
        run_id="t",
        quote="USDT",
        assets={s: s.split("/")[0] for s in symbols},
        base_timeframe=base,
        streams=tuple(StreamConfig(timeframe=tf, fast=2, slow=3, atr_period=2) for tf in timeframes),
        initial_cash=Decimal("10000"),
        rebalance_timeframe=H1,
        allocation=AllocationConfig(policy="pooled", invest_fraction=invest_fraction),
        planner=PlannerConfig(
            band_fraction=Decimal(band),
            cash_buffer_fraction=Decimal("0"),
            defer_buys_while_selling=defer_buys,
        ),
        risk=RiskLimits(max_position_fraction=None, daily_loss_limit_fraction=None),
    )
    return Engine(config, default_instruments(symbols))


def candle(symbol: str, tf: Timeframe, open_ms: int, close: float) -> Candle:
    """A flat candle (open = high = low = close), volume 1."""
    return Candle(symbol, tf, open_ms, close, close, close, close, 1.0)


def native(symbol: str, tf: Timeframe, closes: Iterable[float], *, end_ms: int = T0) -> list[Candle]:
    """Warm-up candles of ``tf`` whose last one closes at ``end_ms``."""
    closes = list(closes)
    return [candle(symbol, tf, end_ms - (len(closes) - i) * tf.ms, c) for i, c in enumerate(closes)]


def fill_for(cmd: PlaceOrder, price: str, trade_id: str, ts_ms: int) -> Fill:
    """The full execution of ``cmd`` at ``price`` with a 0.1 % fee in quote currency."""
    p = Decimal(price)
    return Fill(
        venue="test",
        symbol=cmd.symbol,
        trade_id=TradeId(trade_id),
        client_order_id=cmd.client_order_id,
        side=cmd.side,
        qty=cmd.qty,
        price=p,
        fee_quote=cmd.qty * p * FEE,
        ts_ms=ts_ms,
    )


def of_type(out: Iterable[object], kind: type) -> list:
    return [x for x in out if type(x) is kind]


def events(out: Iterable[object], kind: PositionEventType) -> list[PositionEvent]:
    return [x for x in of_type(out, PositionEvent) if x.event_type is kind]


def feed(engine: Engine, candles: Iterable[Candle]) -> list[object]:
    out: list[object] = []
    for c in candles:
        out.extend(engine.handle(c))
    return out


# ---------------------------------------------------------------- warm-up and the first rebalance


def test_warm_up_leaves_a_stream_with_too_little_history_out() -> None:
    engine = make_engine([BTC, ETH])
    signals = engine.warm_up(native(BTC, H1, [100.0, 101.0, 102.0]) + native(ETH, H1, [100.0, 101.0]))

    by_stream = {s.stream: s for s in signals}
    # BTC: fast = 2/3·102 + 1/3·100.5 = 101.5 > slow = 101 → in.
    assert by_stream["BTC:1h"].state is StreamState.IN
    # ETH has 2 of the 3 candles its stream needs (max(slow 3, atr_period 2)): out, confidence 0.
    assert by_stream["ETH:1h"].state is StreamState.OUT
    assert by_stream["ETH:1h"].reason == "warming up: 2/3 candles"
    assert by_stream["ETH:1h"].confidence == 0.0
    assert engine.book.stream(ETH, H1).ready is False

    # First clock (both symbols at 01:00): only BTC is in → BTC target = 10000 × 0.5 × 1/1 = 5000,
    # qty = 5000 / 102 = 49.0196078… rounded down to the 0.00001 step = 49.01960; ETH's third candle
    # (103 after 100, 101) makes it ready *at this clock*: fast 102.1667 > slow 101.3333 → it flips in.
    out = feed(engine, [candle(BTC, H1, T0, 102.0), candle(ETH, H1, T0, 103.0)])
    flips = [s for s in of_type(out, StreamSignal) if s.flipped]
    assert [(s.stream, s.state) for s in flips] == [("ETH:1h", StreamState.IN)]
    orders = of_type(out, PlaceOrder)
    # Both in at the clock: targets 10000 × 0.5 / 2 = 2500 each.
    # BTC 2500 / 102 = 24.5098039… → 24.50980; ETH 2500 / 103 = 24.2718446… → 24.2718 (step 0.0001).
    assert [(o.symbol, o.side, o.qty) for o in orders] == [
        (BTC, Side.BUY, Decimal("24.50980")),
        (ETH, Side.BUY, Decimal("24.2718")),
    ]


def test_flip_in_rebalances_at_the_next_clock_with_qty_rounded_down_to_step() -> None:
    engine = make_engine([BTC, ETH], base=M15)
    warm = engine.warm_up(native(BTC, H1, [103.0, 102.0, 101.0]) + native(ETH, H1, [103.0, 102.0, 101.0]))
    assert [s.state for s in warm] == [StreamState.OUT, StreamState.OUT]

    btc = [104.0, 106.0, 108.0, 110.0]
    per_candle: list[tuple[str, list[object]]] = []
    for i in range(4):  # one hour of 15m candles, interleaved by time as a replay delivers them
        t = T0 + i * M15.ms
        per_candle.append((BTC, list(engine.handle(candle(BTC, M15, t, btc[i])))))
        per_candle.append((ETH, list(engine.handle(candle(ETH, M15, t, 101.0)))))

    # Nothing before the hour closes.
    assert all(out == [] for _, out in per_candle[:6])
    # BTC's last 15m candle closes the 1h candle (close 110): BTC:1h flips in, but ETH is still at
    # 00:45, so the clock waits: a signal, no order.
    sym, out = per_candle[6]
    assert sym == BTC
    [flip] = of_type(out, StreamSignal)
    assert (flip.stream, flip.state, flip.flipped, flip.time_ms) == (
        "BTC:1h",
        StreamState.IN,
        True,
        T0 + HOUR,
    )
    assert of_type(out, PlaceOrder) == []
    # ETH reaches 01:00 → the rebalance runs: equity snapshot, then one BTC buy.
    sym, out = per_candle[7]
    [snap] = of_type(out, EquitySnapshot)
    assert (snap.time_ms, snap.equity, snap.cash) == (T0 + HOUR, Decimal("10000"), Decimal("10000"))
    # Target = 10000 × 0.5 × 1 / 1 = 5000; qty = 5000 / 110 = 45.454545… → 45.45454 (down, not 45.45455).
    [order] = of_type(out, PlaceOrder)
    assert order == PlaceOrder(
        client_order_id="t-1-1",
        symbol=BTC,
        side=Side.BUY,
        qty=Decimal("45.45454"),
        ref_price=Decimal("110.0"),
        reason="rebalance",
        intent_id="t-1",
        created_ms=T0 + HOUR,
    )
    [buy] = events(out, PositionEventType.REBALANCE_BUY)
    assert (buy.symbol, buy.size_before, buy.size_after, buy.client_order_ids) == (
        BTC,
        Decimal("0"),
        Decimal("45.45454"),
        ("t-1-1",),
    )
    assert engine.in_flight == {"t-1-1"}


# ---------------------------------------------------------------- fills and venue reports


def _engine_with_btc_order() -> tuple[Engine, PlaceOrder]:
    # BTC flips in at 01:00 (close 110), ETH stays out: one buy of 45.45454 BTC (see the test above).
    engine = make_engine([BTC, ETH])
    engine.warm_up(native(BTC, H1, [103.0, 102.0, 101.0]) + native(ETH, H1, [103.0, 102.0, 101.0]))
    out = feed(engine, [candle(BTC, H1, T0, 110.0), candle(ETH, H1, T0, 101.0)])
    [order] = of_type(out, PlaceOrder)
    assert order.qty == Decimal("45.45454")
    return engine, order


def test_a_duplicate_fill_changes_nothing() -> None:
    engine, order = _engine_with_btc_order()
    fill = fill_for(order, "110", "x-1", T0 + HOUR + 1)

    out = engine.handle(fill)
    assert of_type(out, Fill) == [fill]
    [record] = of_type(out, OrderRecord)
    assert (record.status, record.filled_qty, record.avg_fill_price) == (
        OrderStatus.FILLED,
        Decimal("45.45454"),
        Decimal("110"),
    )
    [entry] = events(out, PositionEventType.ENTRY)
    assert (entry.size_before, entry.size_after) == (Decimal("0"), Decimal("45.45454"))
    # cash = 10000 − 45.45454 × 110 × 1.001 = 10000 − 4999.9994 − 4.9999994
    assert engine.ledger.cash == Decimal("4995.0006006")
    assert engine.ledger.position(BTC) == Decimal("45.45454")
    assert engine.in_flight == set()

    state = (engine.ledger.cash, engine.ledger.position(BTC), engine.stats.n_fills, engine.stats.fees_quote)
    assert engine.handle(fill) == []
    # The same execution under a new object (e.g. a re-sent websocket message) is still the same trade.
    assert engine.handle(fill_for(order, "110", "x-1", T0 + HOUR + 2)) == []
    assert (
        engine.ledger.cash,
        engine.ledger.position(BTC),
        engine.stats.n_fills,
        engine.stats.fees_quote,
    ) == state
    assert engine.stats.n_fills == 1
    assert engine.orders["t-1-1"].filled_qty == Decimal("45.45454")


def test_a_rejected_order_produces_an_order_rejected_event_and_is_replanned_at_the_next_clock() -> None:
    engine, order = _engine_with_btc_order()
    update = OrderUpdate(
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        status=OrderStatus.REJECTED,
        ts_ms=T0 + HOUR + 5,
        reason="-2010 Account has insufficient balance",
    )
    out = engine.handle(update)

    [record] = of_type(out, OrderRecord)
    assert (record.client_order_id, record.status, record.status_reason, record.filled_qty) == (
        "t-1-1",
        OrderStatus.REJECTED,
        "-2010 Account has insufficient balance",
        Decimal("0"),
    )
    [rejected] = events(out, PositionEventType.ORDER_REJECTED)
    assert rejected.symbol == BTC
    assert rejected.event_time_ms == T0 + HOUR + 5
    assert rejected.client_order_ids == ("t-1-1",)
    assert "-2010 Account has insufficient balance" in rejected.trigger_reason
    assert of_type(out, PlaceOrder) == []  # no immediate retry
    assert engine.in_flight == set()
    assert (engine.ledger.cash, engine.ledger.position(BTC)) == (Decimal("10000"), Decimal("0"))
    # A second report of the same rejection is stale: nothing new.
    assert engine.handle(update) == []

    # Next clock (02:00, prices unchanged): the target is still 5000 → a fresh intent.
    out = feed(engine, [candle(BTC, H1, T0 + HOUR, 110.0), candle(ETH, H1, T0 + HOUR, 101.0)])
    [retry] = of_type(out, PlaceOrder)
    assert (retry.client_order_id, retry.side, retry.qty) == ("t-2-1", Side.BUY, Decimal("45.45454"))


def _engine_with_stale_eth() -> tuple[Engine, list[object]]:
    # BTC and ETH flip in together at 01:00 while ETH's feed is stale.
    engine = make_engine([BTC, ETH])
    engine.warm_up(native(BTC, H1, [103.0, 102.0, 101.0]) + native(ETH, H1, [103.0, 102.0, 101.0]))
    out = engine.handle(FeedStatus(symbol=ETH, stale=True, ts_ms=T0 + 60_000, reason="no kline for 90 s"))
    [stale] = events(out, PositionEventType.FEED_STALE)
    assert (stale.symbol, stale.trigger_reason) == (ETH, "no kline for 90 s")
    assert engine.handle(FeedStatus(symbol=ETH, stale=True, ts_ms=T0 + 120_000)) == []  # no change
    # ETH's candle first: a stale symbol does not hold the clock back, so the clock runs on BTC's.
    out = feed(engine, [candle(ETH, H1, T0, 110.0), candle(BTC, H1, T0, 110.0)])
    return engine, out


def test_a_stale_feed_blocks_increases_on_that_symbol() -> None:
    engine, out = _engine_with_stale_eth()
    assert sorted(s.stream for s in of_type(out, StreamSignal) if s.flipped) == ["BTC:1h", "ETH:1h"]
    # Targets 10000 × 0.5 / 2 = 2500 each; ETH may not increase (held 0 → target 0).
    # BTC: 2500 / 110 = 22.727272… → 22.72727.
    assert [(o.symbol, o.side, o.qty) for o in of_type(out, PlaceOrder)] == [
        (BTC, Side.BUY, Decimal("22.72727"))
    ]
    [block] = events(out, PositionEventType.RISK_BLOCK)
    assert block.symbol == ETH
    assert block.indicators == {"rule": "stale_feed"}
    assert events(out, PositionEventType.REBALANCE_BUY)[0].symbol == BTC

    out = engine.handle(FeedStatus(symbol=ETH, stale=False, ts_ms=T0 + HOUR + 2))
    assert [e.event_type for e in of_type(out, PositionEvent)] == [PositionEventType.FEED_RECOVERED]
    assert of_type(out, PlaceOrder) == []  # recovery alone plans nothing; the next clock does


def test_after_a_stale_feed_recovers_the_next_clock_buys_the_blocked_symbol() -> None:
    # Regression: the clock's "plan only on change or drift" shortcut must count a recovered feed as a change.
    engine, out = _engine_with_stale_eth()
    [btc_order] = of_type(out, PlaceOrder)
    engine.handle(fill_for(btc_order, "110", "b-1", T0 + HOUR + 1))
    engine.handle(FeedStatus(symbol=ETH, stale=False, ts_ms=T0 + HOUR + 2))

    # 02:00, prices unchanged. equity = 10000 − fee 22.72727 × 110 × 0.001 = 9997.5000003;
    # ETH stream = 9997.5000003 × 0.5 / 2 = 2499.37500007 (rounded toward zero to 1e-8);
    # ETH qty = 2499.37500007 / 110 = 22.72159… → 22.7215; BTC is within the band (|−0.62| < 199.95).
    out = feed(engine, [candle(ETH, H1, T0 + HOUR, 110.0), candle(BTC, H1, T0 + HOUR, 110.0)])
    [snap] = of_type(out, EquitySnapshot)
    assert snap.equity == Decimal("9997.5000003")
    assert [(o.symbol, o.side, o.qty) for o in of_type(out, PlaceOrder)] == [
        (ETH, Side.BUY, Decimal("22.7215"))
    ]


def test_unknown_event_type_is_refused() -> None:
    engine = make_engine([BTC])
    with pytest.raises(TypeError, match="cannot handle event of type str"):
        engine.handle("tick")


# ---------------------------------------------------------------- STRATEGY.md §2 through the engine


def test_one_sol_stream_out_sells_sol_to_its_other_streams_and_raises_btc_eth_after_the_sell_fills() -> None:
    """Pooled, 3 assets × (1h, 4h, 1d), invest 0.9: SOL:1h goes out → sells first, buys after its fill."""
    engine = make_engine([BTC, ETH, SOL], (H1, H4, D1), invest_fraction=0.9, band="0.01")
    closes = {BTC: (29000.0, 29500.0, 30000.0), ETH: (1900.0, 1950.0, 2000.0), SOL: (20.0, 21.0, 22.0)}
    warm = [c for sym, cl in closes.items() for tf in (H1, H4, D1) for c in native(sym, tf, cl)]
    signals = engine.warm_up(warm)
    assert len(signals) == 9
    assert all(s.state is StreamState.IN for s in signals)

    # 01:00: 9 streams in → each asset 10000 × 0.9 × 3/9 = 3000.
    out = feed(engine, [candle(BTC, H1, T0, 30000.0), candle(ETH, H1, T0, 2000.0), candle(SOL, H1, T0, 22.0)])
    buys = of_type(out, PlaceOrder)
    # 3000/30000 = 0.1; 3000/2000 = 1.5; 3000/22 = 136.3636… → 136.363 (SOL step 0.001).
    assert [(o.symbol, o.side, o.qty) for o in buys] == [
        (BTC, Side.BUY, Decimal("0.10000")),
        (ETH, Side.BUY, Decimal("1.5000")),
        (SOL, Side.BUY, Decimal("136.363")),
    ]
    prices = {BTC: "30000", ETH: "2000", SOL: "22"}
    for i, o in enumerate(buys):
        engine.handle(fill_for(o, prices[o.symbol], f"f-{i}", T0 + HOUR + 1))
    # cash = 10000 − 1.001 × (3000 + 3000 + 136.363 × 22) = 10000 − 9008.985986
    assert engine.ledger.cash == Decimal("991.014014")

    # 02:00: SOL closes at 18 → SOL:1h fast = 2/3·18 + 1/3·21.8333 = 19.28 < slow = ½·18 + ½·21.5 = 19.75 → out.
    out = feed(
        engine,
        [
            candle(BTC, H1, T0 + HOUR, 30000.0),
            candle(ETH, H1, T0 + HOUR, 2000.0),
            candle(SOL, H1, T0 + HOUR, 18.0),
        ],
    )
    assert [(s.stream, s.state) for s in of_type(out, StreamSignal) if s.flipped] == [
        ("SOL:1h", StreamState.OUT)
    ]
    # equity = 991.014014 + 0.1 × 30000 + 1.5 × 2000 + 136.363 × 18 = 9445.548014; 8 streams in;
    # one stream = 9445.548014 × 0.9 / 8 = 1062.62415157 (toward zero). SOL keeps 2 streams:
    # target 2125.24830314 vs held 136.363 × 18 = 2454.534 → sell 329.28569686 / 18 = 18.2936… → 18.293.
    # BTC and ETH (3 streams each) rise to 3187.87245471 but the buys wait for the sell's proceeds.
    [snap] = of_type(out, EquitySnapshot)
    assert snap.equity == Decimal("9445.548014")
    [sell] = of_type(out, PlaceOrder)
    assert (sell.symbol, sell.side, sell.qty) == (SOL, Side.SELL, Decimal("18.293"))
    [sell_event] = events(out, PositionEventType.REBALANCE_SELL)
    assert (sell_event.size_before, sell_event.size_after) == (Decimal("136.363"), Decimal("118.070"))
    assert events(out, PositionEventType.REBALANCE_BUY) == []

    # 03:00 with the sell still open: the clock plans nothing new.
    out = feed(
        engine,
        [
            candle(BTC, H1, T0 + 2 * HOUR, 30000.0),
            candle(ETH, H1, T0 + 2 * HOUR, 2000.0),
            candle(SOL, H1, T0 + 2 * HOUR, 18.0),
        ],
    )
    assert of_type(out, PlaceOrder) == []

    # The sell fills: cash += 18.293 × 18 × 0.999 = 328.944726 → 1319.958740; the deferred buys are planned
    # now. equity = 9445.548014 − fee 0.329274 = 9445.218740; stream = 9445.21874 × 0.9 / 8 = 1062.58710825;
    # BTC/ETH target 3 × that = 3187.76132475, diff 187.76132475 (> band 94.45):
    # BTC 187.76132475 / 30000 = 0.0062587… → 0.00625; ETH / 2000 = 0.0938806… → 0.0938.
    out = engine.handle(fill_for(sell, "18", "f-sell", T0 + 3 * HOUR - 1))
    assert engine.ledger.cash == Decimal("1319.958740")
    assert engine.ledger.position(SOL) == Decimal("118.070")
    buys = of_type(out, PlaceOrder)
    assert [(o.symbol, o.side, o.qty) for o in buys] == [
        (BTC, Side.BUY, Decimal("0.00625")),
        (ETH, Side.BUY, Decimal("0.0938")),
    ]
    # SOL is left at 118.070 × 18 = 2125.26 ≈ its 2-stream target 2125.17: no further SOL order.
    assert all(o.symbol != SOL for o in buys)


def test_without_deferral_the_same_rebalance_sends_the_sell_before_the_buys() -> None:
    """Same §2 scenario with ``defer_buys_while_selling=False``: one plan, sells first, buys sized on cash."""
    engine = make_engine([BTC, ETH, SOL], (H1, H4, D1), invest_fraction=0.9, band="0.01", defer_buys=False)
    closes = {BTC: (29000.0, 29500.0, 30000.0), ETH: (1900.0, 1950.0, 2000.0), SOL: (20.0, 21.0, 22.0)}
    engine.warm_up([c for sym, cl in closes.items() for tf in (H1, H4, D1) for c in native(sym, tf, cl)])
    out = feed(engine, [candle(BTC, H1, T0, 30000.0), candle(ETH, H1, T0, 2000.0), candle(SOL, H1, T0, 22.0)])
    prices = {BTC: "30000", ETH: "2000", SOL: "22"}
    for i, o in enumerate(of_type(out, PlaceOrder)):
        engine.handle(fill_for(o, prices[o.symbol], f"f-{i}", T0 + HOUR + 1))

    out = feed(
        engine,
        [
            candle(BTC, H1, T0 + HOUR, 30000.0),
            candle(ETH, H1, T0 + HOUR, 2000.0),
            candle(SOL, H1, T0 + HOUR, 18.0),
        ],
    )
    # Targets as in the deferred case (BTC/ETH 3187.87245471, SOL 2125.24830314). Cash 991.014014 covers
    # the buys (2 × 187.87245471 × 1.001 = 376.12065433): BTC 187.87245471 / 30000 = 0.0062624… → 0.00626,
    # ETH / 2000 = 0.0939362… → 0.0939.
    orders = of_type(out, PlaceOrder)
    assert [(o.symbol, o.side, o.qty) for o in orders] == [
        (SOL, Side.SELL, Decimal("18.293")),
        (BTC, Side.BUY, Decimal("0.00626")),
        (ETH, Side.BUY, Decimal("0.0939")),
    ]
    assert [o.client_order_id for o in orders] == ["t-4-1", "t-5-1", "t-6-1"]


def test_an_order_denied_locally_is_a_position_event_and_not_retried_by_itself() -> None:
    # The executor refuses an order before sending it (filters, risk): the engine records ORDER_DENIED
    # naming the order, the order is done (nothing stays in flight), and no new order follows at once.
    engine = make_engine([BTC])
    engine.warm_up(native(BTC, H1, [103, 102, 101]))
    out = engine.handle(candle(BTC, H1, T0, 110))
    [cmd] = of_type(out, PlaceOrder)
    denied = engine.handle(
        OrderUpdate(
            client_order_id=cmd.client_order_id,
            symbol=cmd.symbol,
            status=OrderStatus.DENIED,
            ts_ms=T0 + HOUR,
            reason="NOTIONAL: notional 4.9 is below min notional 5",
        )
    )
    [event] = of_type(denied, PositionEvent)
    assert event.event_type is PositionEventType.ORDER_DENIED
    assert event.trigger_reason == "NOTIONAL: notional 4.9 is below min notional 5"
    assert event.client_order_ids == (cmd.client_order_id,)
    assert of_type(denied, PlaceOrder) == []
    assert [r.status for r in of_type(denied, OrderRecord)] == [OrderStatus.DENIED]
    assert engine.in_flight == set()


# ---------------------------------------------------------------- quiet runs (the backtest's bulk path)


def test_quiet_until_bounds_runs_by_the_next_period_close_and_on_quiet_run_refuses_what_is_not_quiet() -> (
    None
):
    engine = make_engine([BTC], base=M15)
    engine.warm_up(native(BTC, H1, [103, 102, 101]))
    assert engine.quiet_until() == 0  # no candle yet: the first one opens the hour
    assert feed(engine, [candle(BTC, M15, T0, 100.0)]) == []
    q = 15 * 60_000
    # The hour's last 15m candle (open T0+45m) closes the period and the clock: runs stop before it.
    assert engine.quiet_until() == T0 + 3 * q
    assert engine.on_quiet_run(BTC, T0 + q, T0 + 3 * q, 3, 100.0, 120.0, 90.0, 110.0, [1.0] * 3) is False
    assert (
        engine.on_quiet_run(BTC, T0 + 2 * q, T0 + 2 * q, 1, 100.0, 120.0, 90.0, 110.0, [1.0]) is False
    )  # a gap
    assert engine.on_quiet_run(BTC, T0 + q, T0 + 2 * q, 2, 100.0, 120.0, 90.0, 110.0, [1.0, 1.0]) is True
    assert (engine.mark(BTC), engine.last_time_ms) == (110.0, T0 + 3 * q)
    # The hour closes on the next candle as if the run had been fed candle by candle:
    # high 120, low 90, close 111 → EMA2 = 2/3·111 + 1/3·101.5 = 107.83 > EMA3 = ½·111 + ½·102 = 106.5 → in.
    out = feed(engine, [candle(BTC, M15, T0 + 3 * q, 111.0)])
    (signal,) = of_type(out, StreamSignal)
    assert signal.state is StreamState.IN
    assert [type(x) for x in out if type(x) is PlaceOrder] == [PlaceOrder]
    # The next hour may be taken as a run from its first candle (it opens the period).
    assert engine.quiet_until() == T0 + HOUR + 3 * q
