"""Acceptance tests of the position-management overlay and the risk limits, through the real Engine.

Each test drives :class:`Engine` with constructed 1h base candles (base = stream = clock timeframe)
and fills every ``PlaceOrder`` in full at the next candle's open of its symbol (exact ``Decimal``
price, 0.1 % fee in quote). One rule is switched on at a time on top of the initial ATR stop; the
expected actions, quantities and ``PositionEvent`` rows are derived by hand in the comments.

Common set-up of the single-symbol tests (``_entered``):

* one stream BTC:1h, EMA 2/3, Wilder ATR 2; pooled allocation, invest 0.5; planner band 0.25 (so
  only the overlay's forced trades and stream flips move the position, not price drift); no cash
  buffer; no per-symbol cap, no daily-loss limit;
* warm-up 1h candles (o, h, l, c) = (100, 101, 99, 100), (100, 102, 100, 101), (101, 103, 101, 102):
  every true range is 2 → ATR = 2; EMA fast = ⅔·102 + ⅓·100.5 = 101.5 > slow = 101 → ``in``;
* candle 0 (T0, 102, 103, 101, 102): TR 2 (ATR stays 2), fast 101.8333 > slow 101.5 → still ``in``;
  clock T0+1h: target = 10000 × 0.5 = 5000 → buy 5000 / 102 = 49.019607… → 49.01960 (step 0.00001);
* the buy fills at candle 1's open, 102, at T0+1h: cash = 10000 − 4999.99920 × 1.001 = 4995.0008008;
  the initial stop = 102 − 1.5 (normal regime: the 100-period regime average is not ready) × ATR 2
  = 99, R = 3. A candle keeps ATR 2 when its range is 2 and the previous close lies inside it.

EMA fact used to keep the stream ``in`` while the close falls: with fast f and slow s before a close x,
the stream stays ``in`` iff ⅔x + ⅓f > ½x + ½s, i.e. x > 3s − 2f. After candle 0 (f 101.8333, s 101.5)
that is x > 100.8333, so a close of 101 (below the entry) keeps the stream in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import pytest

from tradebot.app.instruments import default_instruments
from tradebot.core.config import EngineConfig
from tradebot.core.domain import (
    Candle,
    EquitySnapshot,
    Fill,
    PlaceOrder,
    PositionEvent,
    PositionEventType,
    Side,
    StreamSignal,
    StreamState,
    Timeframe,
    TradeId,
    TradingState,
)
from tradebot.core.engine import Engine
from tradebot.core.execution.planner import PlannerConfig
from tradebot.core.management import BlackoutWindow, ManagementConfig, RiskLimits
from tradebot.core.portfolio.rebalancer import AllocationConfig
from tradebot.core.signals.stream import StreamConfig

ET = PositionEventType
H1 = Timeframe.H1
HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_704_844_800_000  # 2024-01-10 00:00 UTC, a day boundary
BTC, ETH = "BTC/USDT", "ETH/USDT"
FEE = Decimal("0.001")
QTY = Decimal("49.01960")  # the entry of _entered (see the module docstring)
NO_RISK = RiskLimits(max_position_fraction=None, daily_loss_limit_fraction=None)

#: Every rule family that is on in the managed preset, switched off; the initial stop stays on.
ALL_OFF: dict[str, Any] = {
    name: {"enabled": False}
    for name in (
        "breakeven",
        "take_profit",
        "trailing",
        "proportional",
        "scale_in",
        "time_stop",
        "early_exit",
    )
}


def management(**sections: dict[str, Any]) -> ManagementConfig:
    """The managed preset with every rule off but the initial stop and the sections given (switched on)."""
    data: dict[str, Any] = {k: dict(v) for k, v in ALL_OFF.items()}
    for name, values in sections.items():
        data[name] = values if name == "indicators" else {"enabled": True, **values}
    return ManagementConfig.from_dict(data)


def make_engine(
    symbols: Sequence[str],
    mgmt: ManagementConfig,
    *,
    risk: RiskLimits = NO_RISK,
    invest_fraction: float = 0.5,
    band: str = "0.25",
    predictor: Any = None,
) -> Engine:
    config = EngineConfig(
        run_id="t",
        quote="USDT",
        assets={s: s.split("/")[0] for s in symbols},
        base_timeframe=H1,
        streams=(StreamConfig(timeframe=H1, fast=2, slow=3, atr_period=2),),
        initial_cash=Decimal("10000"),
        rebalance_timeframe=H1,
        allocation=AllocationConfig(policy="pooled", invest_fraction=invest_fraction),
        planner=PlannerConfig(band_fraction=Decimal(band), cash_buffer_fraction=Decimal("0")),
        management=mgmt,
        risk=risk,
    )
    return Engine(config, default_instruments(symbols), predictor)


def bar(symbol: str, open_ms: int, o: float, h: float, lo: float, c: float, v: float = 100.0) -> Candle:
    return Candle(symbol, H1, open_ms, o, h, lo, c, v)


class Market:
    """Drives an engine: every ``PlaceOrder`` fills in full at the open of its symbol's next candle.

    The fill time is that candle's open time; orders the engine sends while fills are applied (e.g.
    buys deferred behind sells) fill at the same open.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pending: dict[str, list[PlaceOrder]] = {}
        self.fills: list[Fill] = []
        #: (stop, multiplier, locked) of the candle's symbol's manager after each candle
        self.states: list[tuple[float | None, float, bool]] = []

    def step(self, candle: Candle) -> list[object]:
        out: list[object] = []
        while queue := self.pending.pop(candle.symbol, []):
            for cmd in queue:
                price = Decimal(repr(candle.open))
                fill = Fill(
                    venue="test",
                    symbol=cmd.symbol,
                    trade_id=TradeId(f"x-{len(self.fills) + 1}"),
                    client_order_id=cmd.client_order_id,
                    side=cmd.side,
                    qty=cmd.qty,
                    price=price,
                    fee_quote=cmd.qty * price * FEE,
                    ts_ms=candle.open_time_ms,
                )
                self.fills.append(fill)
                out.extend(self._route(self.engine.handle(fill)))
        out.extend(self._route(self.engine.handle(candle)))
        pm = self.engine.overlay.managers[candle.symbol]
        self.states.append((pm.stop, pm.multiplier, pm.locked))
        return out

    def _route(self, out: list[object]) -> list[object]:
        for cmd in out:
            if type(cmd) is PlaceOrder:
                self.pending.setdefault(cmd.symbol, []).append(cmd)
        return out

    def run(self, symbol: str, start_ms: int, bars: Iterable[tuple[float, ...]]) -> list[list[object]]:
        """Feed consecutive 1h candles ``(o, h, l, c[, volume])`` from ``start_ms``; output per candle."""
        return [self.step(bar(symbol, start_ms + i * HOUR, *b)) for i, b in enumerate(bars)]


def of_type(out: Iterable[object], kind: type) -> list:
    return [x for x in out if type(x) is kind]


def events(out: Iterable[object], kind: PositionEventType) -> list[PositionEvent]:
    return [x for x in of_type(out, PositionEvent) if x.event_type is kind]


def orders(out: Iterable[object]) -> list[tuple[str, Side, Decimal]]:
    return [(o.symbol, o.side, o.qty) for o in of_type(out, PlaceOrder)]


def flips(out: Iterable[object]) -> list[tuple[str, StreamState]]:
    return [(s.stream, s.state) for s in of_type(out, StreamSignal) if s.flipped]


def _entered(mgmt: ManagementConfig) -> tuple[Engine, Market]:
    """Engine with BTC bought at T0+1h (49.01960 @ 102, stop 99, R 3); see the module docstring."""
    engine = make_engine([BTC], mgmt)
    warm = [bar(BTC, T0 - 3 * HOUR, 100, 101, 99, 100), bar(BTC, T0 - 2 * HOUR, 100, 102, 100, 101),
            bar(BTC, T0 - HOUR, 101, 103, 101, 102)]  # fmt: skip
    assert [s.state for s in engine.warm_up(warm)] == [StreamState.IN]
    market = Market(engine)
    out = market.step(bar(BTC, T0, 102, 103, 101, 102))
    assert orders(out) == [(BTC, Side.BUY, QTY)]
    return engine, market


def _entry_events(out: list[object]) -> PositionEvent:
    # The first candle after _entered applies the entry fill; return its STOP_SET row.
    [entry] = events(out, ET.ENTRY)
    assert (entry.price, entry.size_before, entry.size_after) == (Decimal("102.0"), 0, QTY)
    [stop_set] = events(out, ET.STOP_SET)
    return stop_set


# ---------------------------------------------------------------- 1. initial ATR stop, re-entry lock


def test_initial_stop_exit_sells_everything_then_the_reentry_lock_holds_until_a_flip_out_and_in() -> None:
    engine, market = _entered(management())
    out = market.run(
        BTC,
        T0 + HOUR,
        [
            (102, 103, 101, 102.5),  # 1: entry fill at 102
            (102.5, 103, 98.5, 102.8),  # 2: low 98.5 <= stop 99 → stop exit
            (102.8, 104, 102, 103.5),  # 3: sell fills at 102.8; stream still in
            (103.5, 104, 103, 103.8),  # 4: still in, still locked
            (103.8, 104, 90, 95),  # 5: the stream flips out (unlocks)
            (95, 96, 94, 95),  # 6: out
            (95, 110, 95, 110),  # 7: flips in → buy
        ],
    )
    stop_set = _entry_events(out[0])
    # STOP_SET at the entry: price = entry 102, R multiple 0, size unchanged.
    assert (stop_set.event_time_ms, stop_set.price, stop_set.r_multiple) == (T0 + HOUR, Decimal("102.0"), 0.0)
    assert (stop_set.size_before, stop_set.size_after) == (QTY, QTY)
    assert "initial stop = entry 102.0 - 1.5 x ATR 2 = 99" in stop_set.trigger_reason
    assert market.states[1] == (99.0, 1.0, False)  # [0] is candle 0, before the entry
    assert orders(out[0]) == []

    # Candle 2: the stop exit is recorded at the stop level (99, R = (99 − 102) / 3 = −1) and the
    # whole position is sold on the same candle's clock.
    [stop_exit] = events(out[1], ET.STOP_EXIT)
    assert (stop_exit.event_time_ms, stop_exit.price, stop_exit.r_multiple) == (
        T0 + 3 * HOUR,
        Decimal("99.0"),
        -1.0,
    )
    assert (stop_exit.size_before, stop_exit.size_after) == (QTY, 0)
    assert "low 98.5 <= stop 99 (initial)" in stop_exit.trigger_reason
    assert flips(out[1]) == []  # the exit is the stop's, not a stream's
    assert orders(out[1]) == [(BTC, Side.SELL, QTY)]

    # Candles 3-4: flat, the stream is still in, but the re-entry lock keeps the target at 0.
    [exit_] = events(out[2], ET.EXIT)
    assert (exit_.price, exit_.size_after) == (Decimal("102.8"), 0)
    assert engine.ledger.position(BTC) == 0
    assert engine.book.stream(BTC, H1).state is StreamState.IN
    assert orders(out[2]) == orders(out[3]) == []
    assert market.states[3] == market.states[4] == (None, 0.0, True)

    # Candle 5 flips out (unlock, but out → no buy); candle 7 flips back in → buy.
    assert flips(out[4]) == [("BTC:1h", StreamState.OUT)]
    assert market.states[5] == (None, 1.0, False)
    assert orders(out[4]) == orders(out[5]) == []
    assert flips(out[6]) == [("BTC:1h", StreamState.IN)]
    # cash = 4995.0008008 + 49.01960 × 102.8 × 0.999 (= 5034.17566512) = 10029.17646592, all cash;
    # target = 0.5 × 10029.17646592 = 5014.58823296 → 5014.58823296 / 110 = 45.587165… → 45.58716.
    assert engine.ledger.cash == Decimal("10029.17646592")
    assert orders(out[6]) == [(BTC, Side.BUY, Decimal("45.58716"))]


# ---------------------------------------------------------------- 2. breakeven


def test_breakeven_at_plus_1r_moves_the_stop_to_entry_plus_fees_and_a_pullback_exits_there() -> None:
    engine, market = _entered(management(breakeven={}))
    out = market.run(
        BTC,
        T0 + HOUR,
        [
            (102, 104, 102, 103),  # 1: entry fill
            (103, 105, 103, 104),  # 2: high 105 = 102 + 1 R → breakeven
            (104, 104.5, 102.2, 103.5),  # 3: low 102.2 <= 102.204 → exit at breakeven
            (103.5, 104, 103, 103.8),  # 4: the sell fills
        ],
    )
    _entry_events(out[0])
    # +1 R level = 102 + 3 = 105; new stop = 102 × (1 + 2 × 0.001) = 102.204; R multiple of the level 1.
    [be] = events(out[1], ET.BREAKEVEN)
    assert (be.event_time_ms, be.price, be.r_multiple) == (T0 + 3 * HOUR, Decimal("105.0"), 1.0)
    assert (be.size_before, be.size_after) == (QTY, QTY)
    assert "stop -> 102.204" in be.trigger_reason
    assert market.states[2] == (102 * (1 + 2 * 0.001), 1.0, False)
    assert orders(out[1]) == []  # the stop move trades nothing

    [stop_exit] = events(out[2], ET.STOP_EXIT)
    assert stop_exit.price == Decimal("102.204")
    assert stop_exit.r_multiple == (102 * (1 + 2 * 0.001) - 102.0) / 3.0  # ≈ 0.068 R
    assert "low 102.2 <= stop 102.204 (breakeven)" in stop_exit.trigger_reason
    assert (stop_exit.size_before, stop_exit.size_after) == (QTY, 0)
    assert flips(out[2]) == []
    assert orders(out[2]) == [(BTC, Side.SELL, QTY)]
    assert [(f.side, f.qty, f.price) for f in of_type(out[3], Fill)] == [(Side.SELL, QTY, Decimal("103.5"))]
    assert engine.ledger.position(BTC) == 0


# ---------------------------------------------------------------- 3. partial take-profit

_TP_PATH = [
    (102, 104, 102, 103),  # 1: entry fill
    (103, 105, 103, 104),  # 2
    (104, 106, 104, 105),  # 3
    (105, 106.5, 105, 106),  # 4: high 106.5 = 102 + 1.5 R → take 50 %
    (106, 107, 105, 106),  # 5: the sell fills
]


def test_partial_take_profit_at_plus_1_5r_records_half_and_sells() -> None:
    engine, market = _entered(management(take_profit={}))
    out = market.run(BTC, T0 + HOUR, _TP_PATH)
    _entry_events(out[0])
    assert all(of_type(o, PositionEvent) == [] for o in out[1:3])
    [tp] = events(out[3], ET.PARTIAL_TAKE_PROFIT)
    # Level 102 + 1.5 × 3 = 106.5 (R multiple 1.5); m 1 → 0.5, so the row halves 49.01960.
    assert (tp.event_time_ms, tp.price, tp.r_multiple) == (T0 + 5 * HOUR, Decimal("106.5"), 1.5)
    assert (tp.size_before, tp.size_after) == (QTY, Decimal("24.50980"))
    assert "take-profit level 1 106.5 (+1.5 R), sell 0.5" in tp.trigger_reason
    [(sym, side, _qty)] = orders(out[3])
    assert (sym, side) == (BTC, Side.SELL)
    assert market.states[4] == (99.0, 0.5, False)
    assert 0 < engine.ledger.position(BTC) < QTY  # partial, not an exit
    assert events(out[4], ET.EXIT) == []


def test_partial_take_profit_sells_half_of_the_position_rounded_down_to_step() -> None:
    engine, market = _entered(management(take_profit={}))
    out = market.run(BTC, T0 + HOUR, _TP_PATH)
    # 50 % of 49.01960 = 24.50980 (on step already).
    assert orders(out[3]) == [(BTC, Side.SELL, Decimal("24.50980"))]
    assert engine.ledger.position(BTC) == Decimal("24.50980")


# ---------------------------------------------------------------- 4. trailing stop and proportional scaling

# Candles 1-5 rise by 1 with range 2 (ATR stays 2); candle 5's high 108 = 102 + 2 R starts the trail:
# peak 108, stop = 108 − 1 × ATR 2 = 106. Candle 6 closes at 106.8 = 60 % of the way from the peak
# toward the stop → f = (106.8 − 106) / (108 − 106) = 0.4 (its range 1.95 moves the ATR to 1.975, a
# ratchet of 0.025 < min step 0.25 × ATR: the stop stays 106). Candle 7 recovers to 107.8 → f = 0.9.
# Candle 8's low 105 hits the stop.
_TRAIL_PATH = [
    (102, 104, 102, 103),
    (103, 105, 103, 104),
    (104, 106, 104, 105),
    (105, 107, 105, 106),
    (106, 108, 106, 107),  # 5: trail starts
    (107, 108, 106.05, 106.8),  # 6: scale out to f = 0.4
    (106.8, 108, 106.5, 107.8),  # 7: scale back in to f = 0.9
    (107.8, 108, 105, 106),  # 8: trailing stop exit
    (106, 107, 105, 106),  # 9: the exit fills
]


def test_trailing_stop_starts_at_plus_2r_scales_out_and_in_along_it_and_exits_at_it() -> None:
    engine, market = _entered(management(trailing={}, proportional={}))
    out = market.run(BTC, T0 + HOUR, _TRAIL_PATH)
    _entry_events(out[0])
    [trail] = events(out[4], ET.TRAILING_STOP_UPDATE)
    assert (trail.event_time_ms, trail.price, trail.r_multiple) == (T0 + 6 * HOUR, Decimal("108"), 2.0)
    assert "trail started at high 108: stop = peak 108 - 1.0 x ATR 2 = 106" in trail.trigger_reason
    assert orders(out[4]) == []
    assert market.states[5] == (106.0, 1.0, False)

    [scale_out] = events(out[5], ET.TRAILING_SCALE_OUT)
    assert (scale_out.event_time_ms, scale_out.price) == (T0 + 7 * HOUR, Decimal("106.8"))
    assert scale_out.r_multiple == (106.8 - 102.0) / 3.0  # 1.6 R
    assert "(peak 108 - stop) = 0.4;" in scale_out.trigger_reason
    # Held fraction 0.4 of the trailed size: 0.4 × 49.01960 = 19.607840.
    assert (scale_out.size_before, scale_out.size_after) == (QTY, Decimal("19.607840"))
    [(_, side, _)] = orders(out[5])
    assert side is Side.SELL
    assert events(out[5], ET.TRAILING_STOP_UPDATE) == []  # the ATR update moved the stop < min step

    [scale_in] = events(out[6], ET.TRAILING_SCALE_IN)
    assert (scale_in.event_time_ms, scale_in.price) == (T0 + 8 * HOUR, Decimal("107.8"))
    assert "(peak 108 - stop) = 0.9;" in scale_in.trigger_reason
    [(_, side, _)] = orders(out[6])
    assert side is Side.BUY

    [stop_exit] = events(out[7], ET.STOP_EXIT)
    assert (stop_exit.price, stop_exit.r_multiple) == (Decimal("106.0"), 4.0 / 3.0)
    assert "low 105 <= stop 106 (trailing)" in stop_exit.trigger_reason
    # Fills so far: entry buy, scale-out sell, scale-in buy; the exit sells what they left.
    before_exit = market.fills[:3]
    assert [f.side for f in before_exit] == [Side.BUY, Side.SELL, Side.BUY]
    held = sum((f.qty if f.side is Side.BUY else -f.qty for f in before_exit), Decimal(0))
    assert (stop_exit.size_before, stop_exit.size_after) == (held, 0)
    assert orders(out[7]) == [(BTC, Side.SELL, held)]
    assert engine.ledger.position(BTC) == 0  # filled at candle 9's open


def test_proportional_scale_out_holds_fraction_f_of_the_trailed_size_within_one_step() -> None:
    engine, market = _entered(management(trailing={}, proportional={}))
    out = market.run(BTC, T0 + HOUR, _TRAIL_PATH[:7])
    # f = 0.4: hold 0.4 × 49.01960 = 19.607840 → sell 29.41176 (exact on step).
    assert orders(out[5]) == [(BTC, Side.SELL, Decimal("29.41176"))]
    assert abs(engine.ledger.position(BTC) - Decimal("0.4") * QTY) <= Decimal("0.00001")
    # f = 0.9: hold 0.9 × 49.01960 = 44.117640 → buy 24.50980.
    assert orders(out[6]) == [(BTC, Side.BUY, Decimal("24.50980"))]


# ---------------------------------------------------------------- 5. scale-in to winners

_SCALE_IN_MGMT = {"scale_in": {}, "indicators": {"volume_sma_h": 2, "momentum_h": 1}}
# Volume SMA over 2 hours (taken before the current hour), momentum = close / previous close − 1.
_SCALE_IN_PATH = [
    (102, 103, 101, 102, 100),  # 1: entry fill; volumes so far 100, 100
    (102, 104, 102, 103.5, 150),  # 2: close 103.5 = 102 + 0.5 R, 150 > SMA 100, momentum +1.47 % → add
    (103.5, 105, 103.5, 104.5, 200),  # 3: qualifies again, but only once
    (104.5, 105.5, 104, 105, 300),  # 4: idem
]


def test_scale_in_at_plus_half_r_with_volume_and_momentum_adds_once() -> None:
    _, market = _entered(management(**_SCALE_IN_MGMT))
    out = market.run(BTC, T0 + HOUR, _SCALE_IN_PATH)
    _entry_events(out[0])
    assert orders(out[0]) == []
    [add] = events(out[1], ET.SCALE_IN)
    # m 1 → 1.5: the row adds 50 % of the initial size, 49.01960 × 1.5 = 73.529400.
    assert (add.event_time_ms, add.price, add.r_multiple) == (T0 + 3 * HOUR, Decimal("103.5"), 0.5)
    assert (add.size_before, add.size_after) == (QTY, Decimal("73.529400"))
    assert "volume 150 > 1.0 x SMA 100; momentum 0.0147059 > 0.0" in add.trigger_reason
    [(_, side, _)] = orders(out[1])
    assert side is Side.BUY
    assert market.states[2] == (99.0, 1.5, False)
    assert events(out[2] + out[3], ET.SCALE_IN) == []
    assert orders(out[2] + out[3]) == []


def test_scale_in_adds_half_of_the_initial_size() -> None:
    engine, market = _entered(management(**_SCALE_IN_MGMT))
    out = market.run(BTC, T0 + HOUR, _SCALE_IN_PATH)
    assert orders(out[1]) == [(BTC, Side.BUY, Decimal("24.50980"))]
    assert engine.ledger.position(BTC) == Decimal("73.52940")


def test_no_scale_in_while_below_the_entry_even_with_volume_and_momentum() -> None:
    _, market = _entered(management(**_SCALE_IN_MGMT))
    out = market.run(
        BTC,
        T0 + HOUR,
        [
            # 1: close 101 > 3 × 101.5 − 2 × 101.8333 = 100.8333 keeps the stream in (f 101.2778, s 101.25)
            (102, 102.5, 100.5, 101, 100),
            # 2: close 101.5 > 3 × 101.25 − 2 × 101.2778 = 101.1944 → still in; volume 300 > SMA 100,
            #    momentum 101.5 / 101 − 1 = +0.5 % > 0, but the close is below the entry 102 → no add
            (101, 102, 100.5, 101.5, 300),
            # 3: control: close 103.5 = +0.5 R, volume 300 > SMA 200, momentum +2 % → the rule is live
            (101.5, 104, 101.5, 103.5, 300),
        ],
    )
    _entry_events(out[0])
    assert flips(out[0] + out[1]) == []
    assert events(out[0] + out[1], ET.SCALE_IN) == []
    assert orders(out[0] + out[1]) == []
    assert market.states[2][1] == 1.0
    [add] = events(out[2], ET.SCALE_IN)
    assert add.price == Decimal("103.5")


# ---------------------------------------------------------------- 6. time stop


def test_time_stop_exits_a_position_that_did_not_reach_half_r_within_max_hours() -> None:
    engine, market = _entered(management(time_stop={"max_hours": 3}))
    flat = (102, 103, 101, 102)  # highs 103 < the +0.5 R level 103.5
    out = market.run(BTC, T0 + HOUR, [flat] * 5)
    _entry_events(out[0])
    # Opened at T0+1h (the fill); clocks at +2h, +3h held 1 h, 2 h; the clock at T0+4h has held 3 h.
    assert all(events(o, ET.TIME_EXIT) == [] and orders(o) == [] for o in out[:2])
    [exit_] = events(out[2], ET.TIME_EXIT)
    assert (exit_.event_time_ms, exit_.price, exit_.r_multiple) == (T0 + 4 * HOUR, Decimal("102"), 0.0)
    assert (exit_.size_before, exit_.size_after) == (QTY, 0)
    assert "held 3 h >= 3 h without reaching +0.5 R (103.5)" in exit_.trigger_reason
    # Measured against the stop it pre-empts: (102 − 99) × 49.01960 = 147.05880.
    assert exit_.amount_saved_or_gained == Decimal("147.05880000")
    assert orders(out[2]) == [(BTC, Side.SELL, QTY)]
    assert orders(out[3]) + orders(out[4]) == []  # locked while the stream stays in
    assert engine.ledger.position(BTC) == 0


# ---------------------------------------------------------------- 7. early exit


@pytest.mark.parametrize(
    ("early_exit", "indicators", "volume", "reason"),
    [
        # Momentum over 1 h: 101 / 102 − 1 = −0.98 % <= −0.5 %, close below the entry.
        (
            {"momentum_drop_fraction": 0.005, "volume_enabled": False, "time_decay_enabled": False},
            {"volume_sma_h": 1, "momentum_h": 1},
            100.0,
            "momentum reversal: rate of change -0.00980392 <= -0.005",
        ),
        # Volume 40 < 0.5 × SMA 100 for 1 period, close below the entry.
        (
            {"volume_dry_periods": 1, "momentum_enabled": False, "time_decay_enabled": False},
            {"volume_sma_h": 1, "momentum_h": 1},
            40.0,
            "volume drying up: 1 periods < 0.5 x volume SMA",
        ),
    ],
    ids=["momentum", "volume"],
)
def test_early_exit_below_the_entry_records_the_amount_saved_against_the_stop(
    early_exit: dict[str, Any], indicators: dict[str, int], volume: float, reason: str
) -> None:
    engine, market = _entered(management(early_exit=early_exit, indicators=indicators))
    # Close 101 > 100.8333 keeps the stream in, so the sell is the early exit's.
    out = market.run(BTC, T0 + HOUR, [(102, 102.5, 100.5, 101, volume), (101, 102, 100, 101.5)])
    _entry_events(out[0])
    assert flips(out[0]) == []
    [exit_] = events(out[0], ET.EARLY_EXIT)
    assert (exit_.event_time_ms, exit_.price) == (T0 + 2 * HOUR, Decimal("101"))
    assert exit_.r_multiple == (101.0 - 102.0) / 3.0
    assert (exit_.size_before, exit_.size_after) == (QTY, 0)
    assert reason in exit_.trigger_reason
    # (exit price 101 − stop 99) × 49.01960 = 98.03920: what leaving now saves against the stop.
    assert exit_.amount_saved_or_gained == Decimal("98.03920000")
    assert orders(out[0]) == [(BTC, Side.SELL, QTY)]
    assert of_type(out[1], Fill)[0].price == Decimal("101")
    assert engine.ledger.position(BTC) == 0


# ---------------------------------------------------------------- 8. risk limits


def _two_assets_in(risk: RiskLimits) -> tuple[Engine, Market]:
    """BTC and ETH, management off, invest 0.9, streams in after a steep warm-up (wide EMA spread)."""
    engine = make_engine([BTC, ETH], ManagementConfig.disabled(), risk=risk, invest_fraction=0.9)
    warm = [bar(BTC, T0 - (3 - i) * HOUR, c, c, c, c) for i, c in enumerate((80.0, 90.0, 100.0))]
    warm += [bar(ETH, T0 - (3 - i) * HOUR, c, c, c, c) for i, c in enumerate((16.0, 18.0, 20.0))]
    assert [s.state for s in engine.warm_up(warm)] == [StreamState.IN, StreamState.IN]
    return engine, Market(engine)


def _hour(market: Market, i: int, btc: float, eth: float, prev: tuple[float, float]) -> list[object]:
    # One hour of both symbols, each candle opening at the previous close.
    t = T0 + i * HOUR
    out = market.step(bar(BTC, t, prev[0], max(prev[0], btc), min(prev[0], btc), btc))
    return out + market.step(bar(ETH, t, prev[1], max(prev[1], eth), min(prev[1], eth), eth))


def test_daily_loss_halt_closes_everything_blocks_buys_until_the_next_utc_day_then_resumes() -> None:
    engine, market = _two_assets_in(RiskLimits(max_position_fraction=None, daily_loss_limit_fraction=0.03))
    # T0+1h: start-of-day equity 10000; targets 10000 × 0.9 / 2 = 4500 → 45 BTC @ 100, 225 ETH @ 20.
    out = _hour(market, 0, 100.0, 20.0, (100.0, 20.0))
    assert orders(out) == [(BTC, Side.BUY, Decimal("45.00000")), (ETH, Side.BUY, Decimal("225.0000"))]
    # Both fill at 100 / 20 (fees 4.5 each): cash = 10000 − 9000 − 9 = 991. Closes fall 4 %:
    # equity = 991 + 45 × 96 + 225 × 19.2 = 9631 <= 10000 × (1 − 0.03) = 9700 → halt at T0+2h.
    # Streams stay in: BTC fast ⅔·96 + ⅓·98.33 = 96.78 > slow ½·96 + ½·95 = 95.5 (ETH the same / 5).
    out = _hour(market, 1, 96.0, 19.2, (100.0, 20.0))
    assert engine.ledger.cash == Decimal("991.0000")
    assert flips(out) == []
    [snap] = of_type(out, EquitySnapshot)
    assert (snap.time_ms, snap.equity) == (T0 + 2 * HOUR, Decimal("9631.0000"))
    [halt] = events(out, ET.DAILY_LOSS_HALT)
    assert halt.event_time_ms == T0 + 2 * HOUR
    assert "x (1 - 0.03) = 9700" in halt.trigger_reason
    assert Decimal(halt.indicators["equity"]) == 9631
    assert Decimal(halt.indicators["start_of_day_equity"]) == 10000
    assert engine.trading_state is TradingState.HALTED
    assert orders(out) == [(BTC, Side.SELL, Decimal("45.00000")), (ETH, Side.SELL, Decimal("225.0000"))]

    # The sells fill at 96 / 19.2: cash = 991 + 2 × 4320 × 0.999 = 9622.36. Streams in all day, no buy.
    later: list[object] = []
    for i in range(2, 23):
        later += _hour(market, i, 96.0, 19.2, (96.0, 19.2))
    assert engine.ledger.position(BTC) == engine.ledger.position(ETH) == 0
    assert engine.ledger.cash == Decimal("9622.36000000")
    assert orders(later) == []
    assert events(later, ET.TRADING_RESUMED) == []
    assert engine.book.stream(BTC, H1).state is StreamState.IN

    # The candle of 23:00 closes at 00:00 of the next UTC day: resumed, and buys again.
    # targets 9622.36 × 0.9 / 2 = 4330.062 → BTC 4330.062 / 96 = 45.104812… → 45.10481,
    # ETH 4330.062 / 19.2 = 225.5240625 → 225.5240.
    out = _hour(market, 23, 96.0, 19.2, (96.0, 19.2))
    [resumed] = events(out, ET.TRADING_RESUMED)
    assert resumed.event_time_ms == T0 + DAY
    assert engine.trading_state is TradingState.ACTIVE
    assert orders(out) == [(BTC, Side.BUY, Decimal("45.10481")), (ETH, Side.BUY, Decimal("225.5240"))]


def _btc_only(risk: RiskLimits, warm_closes: tuple[float, float, float], band: str) -> tuple[Engine, Market]:
    engine = make_engine([BTC], ManagementConfig.disabled(), risk=risk, invest_fraction=0.9, band=band)
    engine.warm_up([bar(BTC, T0 - (3 - i) * HOUR, c, c, c, c) for i, c in enumerate(warm_closes)])
    return engine, Market(engine)


def _flat(i: int, prev: float, close: float) -> Candle:
    return bar(BTC, T0 + i * HOUR, prev, max(prev, close), min(prev, close), close)


def test_per_symbol_cap_bounds_every_order_by_cap_times_equity() -> None:
    # Warm-up 100, 101, 102 → in. Cap 20 % of equity; the rebalancer wants 10000 × 0.9 = 9000.
    risk = RiskLimits(max_position_fraction=0.2, daily_loss_limit_fraction=None)
    _, market = _btc_only(risk, (100.0, 101.0, 102.0), band="0.02")
    out = market.step(_flat(0, 102.0, 102.0))
    [block] = events(out, ET.RISK_BLOCK)
    assert block.indicators == {"rule": "max_position"}
    assert block.action_taken == "target 9000.00000000 -> 2000.0"
    # cap = 10000 × 0.2 = 2000 → 2000 / 102 = 19.607843… → 19.60784; notional 1999.99968 <= 2000.
    [buy] = of_type(out, PlaceOrder)
    assert (buy.side, buy.qty, buy.ref_price) == (Side.BUY, Decimal("19.60784"), Decimal("102"))
    assert buy.qty * buy.ref_price <= Decimal("0.2") * Decimal("10000")

    # 103: fill at 102 → cash = 10000 − 1999.99968 × 1.001 = 7998.00032032; equity 10017.60784032,
    # cap 2003.521568064; held 2019.60752 is above it by less than the band (200.35): no order.
    out = market.step(_flat(1, 102.0, 103.0))
    assert orders(out) == []
    # 120: equity = 7998.00032032 + 19.60784 × 120 = 10350.94112032; cap 2070.188224064;
    # held 2352.9408 → sell 282.752575936 / 120 = 2.356271… → 2.35627 (the cap holds on drift too).
    out = market.step(_flat(2, 103.0, 120.0))
    [snap] = of_type(out, EquitySnapshot)
    assert snap.equity == Decimal("10350.94112032")
    assert orders(out) == [(BTC, Side.SELL, Decimal("2.35627"))]
    # What is left may exceed the cap by less than one step (the sell is rounded down to step):
    # 17.25157 × 120 = 2070.1884 <= 2070.188224064 + 0.00001 × 120.
    left = (Decimal("19.60784") - Decimal("2.35627")) * 120
    assert left <= Decimal("0.2") * snap.equity + Decimal("0.00001") * 120
    # At 150 the position is even further above its cap: the engine keeps selling, never buys.
    assert all(o.side is Side.SELL for o in of_type(market.step(_flat(3, 120.0, 150.0)), PlaceOrder))


def test_blackout_window_blocks_the_entry_inside_it_and_the_next_clock_after_it_buys() -> None:
    # Warm-up 103, 102, 101 → out. Blackout [T0+1h, T0+3h). Candle 0 closes at 110 → in at T0+1h.
    window = BlackoutWindow.between(T0 + HOUR, T0 + 3 * HOUR)
    risk = RiskLimits(max_position_fraction=None, daily_loss_limit_fraction=None, blackout_windows=(window,))
    _, market = _btc_only(risk, (103.0, 102.0, 101.0), band="0.25")
    out = market.step(_flat(0, 101.0, 110.0))
    assert flips(out) == [("BTC:1h", StreamState.IN)]
    [block] = events(out, ET.RISK_BLOCK)
    assert (block.event_time_ms, block.indicators) == (T0 + HOUR, {"rule": "blackout"})
    assert "blackout window" in block.trigger_reason
    assert orders(out) == []
    out = market.step(_flat(1, 110.0, 110.0))  # clock T0+2h: still inside, nothing changed
    assert orders(out) == []
    assert events(out, ET.RISK_BLOCK) == []  # the same block is not recorded again
    # Clock T0+3h: the window has ended (end exclusive); nothing else changed, so only the engine's
    # blackout-transition re-plan can buy: 10000 × 0.9 = 9000 / 111 = 81.081081… → 81.08108.
    out = market.step(_flat(2, 110.0, 111.0))
    assert flips(out) == []
    assert orders(out) == [(BTC, Side.BUY, Decimal("81.08108"))]
