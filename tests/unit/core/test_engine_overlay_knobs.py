"""The three searchable overlay knobs through the real Engine: the stops' ATR timeframe, the re-entry
policy after an overlay exit, and the daily-loss action.

Set-up, candles and the fill model are those of ``test_engine_management`` (see its module docstring):
BTC bought at T0+1h, 49.01960 @ 102, 1h ATR 2 → initial stop 99, R 3; the stop is hit on candle 2.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from test_engine_management import (
    ALL_OFF,
    BTC,
    H1,
    HOUR,
    NO_RISK,
    QTY,
    T0,
    Market,
    bar,
    events,
    flips,
    make_engine,
    of_type,
    orders,
)

from tradebot.app.instruments import default_instruments
from tradebot.core.config import EngineConfig
from tradebot.core.domain import (
    Candle,
    PlaceOrder,
    PositionEventType,
    Side,
    StreamState,
    Timeframe,
    TradingState,
)
from tradebot.core.engine import Engine
from tradebot.core.execution.planner import PlannerConfig
from tradebot.core.management import ManagementConfig, RiskLimits
from tradebot.core.portfolio.rebalancer import AllocationConfig
from tradebot.core.signals.stream import StreamConfig
from tradebot.errors import ConfigError

ET = PositionEventType
H4 = Timeframe.H4
WARM_1H = [(100, 101, 99, 100), (100, 102, 100, 101), (101, 103, 101, 102)]


def stop_only(**top: Any) -> ManagementConfig:
    """The managed preset with every rule off but the initial stop, plus top-level keys."""
    return ManagementConfig.from_dict({**{k: dict(v) for k, v in ALL_OFF.items()}, **top})


def warm(engine: Engine, extra: list[Candle] | None = None) -> Market:
    """Warm the 1h stream (ATR 2, ``in``) and buy at T0+1h as in ``test_engine_management._entered``."""
    candles = [bar(BTC, T0 - (3 - i) * HOUR, *c) for i, c in enumerate(WARM_1H)] + (extra or [])
    assert {s.state for s in engine.warm_up(candles)} == {StreamState.IN}
    market = Market(engine)
    assert orders(market.step(bar(BTC, T0, 102, 103, 101, 102))) == [(BTC, Side.BUY, QTY)]
    return market


# ---------------------------------------------------------------- 1. ATR timeframe of the stops


def _two_timeframes(atr_timeframe: str | None) -> Engine:
    # Streams BTC:1h and BTC:4h (EMA 2/3, ATR 2 each); clock 1h. Pooled with both in: the same
    # 5000 target as one stream, so the entry is 49.01960 @ 102 either way.
    mgmt = stop_only() if atr_timeframe is None else stop_only(atr_timeframe=atr_timeframe)
    config = EngineConfig(
        run_id="t",
        quote="USDT",
        assets={BTC: "BTC"},
        base_timeframe=H1,
        streams=(
            StreamConfig(timeframe=H1, fast=2, slow=3, atr_period=2),
            StreamConfig(timeframe=H4, fast=2, slow=3, atr_period=2),
        ),
        initial_cash=Decimal("10000"),
        rebalance_timeframe=H1,
        allocation=AllocationConfig(policy="pooled", invest_fraction=0.5),
        planner=PlannerConfig(band_fraction=Decimal("0.25"), cash_buffer_fraction=Decimal("0")),
        management=mgmt,
        risk=NO_RISK,
    )
    return Engine(config, default_instruments([BTC]))


# Three 4h candles before T0, each of range 6 with the previous close inside it: every true range is
# 6 → 4h ATR(2) = 6; closes 94, 98, 102 rise → the 4h stream is in.
WARM_4H = [
    Candle(BTC, H4, T0 - (3 - i) * 4 * HOUR, o, h, lo, c, 100.0)
    for i, (o, h, lo, c) in enumerate([(90, 96, 90, 94), (94, 100, 94, 98), (98, 104, 98, 102)])
]


@pytest.mark.parametrize(
    ("atr_timeframe", "atr", "stop"),
    [(None, 2.0, 99.0), ("1h", 2.0, 99.0), ("4h", 6.0, 93.0)],
    ids=["default", "1h", "4h"],
)
def test_the_initial_stop_uses_the_atr_of_the_configured_timeframe(
    atr_timeframe: str | None, atr: float, stop: float
) -> None:
    engine = _two_timeframes(atr_timeframe)
    market = warm(engine, WARM_4H)
    # Candle 1 fills the buy at 102: stop = 102 − 1.5 × ATR, i.e. 99 with the 1h ATR 2 and
    # 93 with the 4h ATR 6 (R = 3 or 9).
    [out1] = market.run(BTC, T0 + HOUR, [(102, 103, 101, 102.5)])
    [stop_set] = events(out1, ET.STOP_SET)
    assert f"initial stop = entry 102.0 - 1.5 x ATR {atr:g} = {stop:g}" in stop_set.trigger_reason
    assert stop_set.indicators["atr"] == atr
    pm = engine.overlay.managers[BTC]
    assert (pm.stop, pm.initial_risk) == (stop, 102.0 - stop)
    # Candle 2's low 98.5 is through the 1h stop 99, not through the 4h stop 93.
    [out2] = market.run(BTC, T0 + 2 * HOUR, [(102.5, 103, 98.5, 102.8)])
    assert len(events(out2, ET.STOP_EXIT)) == (0 if atr_timeframe == "4h" else 1)


def test_an_atr_timeframe_without_a_stream_or_the_clock_is_refused_naming_the_key() -> None:
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "management.atr_timeframe must be one of the stream timeframes or the rebalance timeframe "
            "['1h', '4h'], was '1d'"
        ),
    ):
        _two_timeframes("1d")
    with pytest.raises(ConfigError, match=re.escape("['1h'], was '4h'")):
        make_engine([BTC], stop_only(atr_timeframe="4h"))


# ---------------------------------------------------------------- 2. re-entry after an overlay exit

_STOPPED = [
    (102, 103, 101, 102.5),  # 1: entry fill at 102 (stop 99)
    (102.5, 103, 98.5, 102.8),  # 2: low 98.5 <= 99 → stop exit at T0+3h (a clock close)
    (102.8, 104, 102, 103.5),  # 3: the sell fills at 102.8; clock T0+4h: 1 period since the exit
    (103.5, 104, 103, 103.8),  # 4: clock T0+5h: 2 periods
    (103.8, 104, 103, 103.9),  # 5
]


def test_after_periods_two_re_enters_at_the_second_rebalance_close_after_the_stop_exit() -> None:
    engine = make_engine([BTC], stop_only(reentry="after_periods", reentry_periods=2))
    market = warm(engine)
    out = market.run(BTC, T0 + HOUR, _STOPPED)
    assert events(out[1], ET.STOP_EXIT)[0].event_time_ms == T0 + 3 * HOUR
    assert orders(out[1]) == [(BTC, Side.SELL, QTY)]
    assert orders(out[2]) == [] and market.states[3] == (None, 0.0, True)  # still locked at T0+4h
    assert all(flips(o) == [] for o in out)  # the stream stays in all along
    [release] = events(out[3], ET.REENTRY_ALLOWED)
    assert (release.event_time_ms, release.price) == (T0 + 5 * HOUR, Decimal("103.8"))
    assert "2 rebalance-clock closes since the exit" in release.trigger_reason
    # cash = 4995.0008008 + 49.01960 × 102.8 × 0.999 = 10029.17646592, all cash; target 0.5 × that
    # = 5014.58823296 → 5014.58823296 / 103.8 = 48.310098… → 48.31009 (step 0.00001).
    [buy] = of_type(out[3], PlaceOrder)
    assert (buy.side, buy.qty, buy.reason) == (Side.BUY, Decimal("48.31009"), "reentry_allowed")
    assert release.client_order_ids == (buy.client_order_id,)
    assert market.states[4] == (None, 1.0, False)
    [entry] = events(out[4], ET.ENTRY)  # filled at candle 5's open, a new lifecycle
    assert (entry.price, entry.size_after) == (Decimal("103.8"), Decimal("48.31009"))
    # 10029.17646592 − 48.31009 × 103.8 × 1.001 (5019.602049342) = 5009.574536578
    assert engine.ledger.cash == Decimal("5009.574536578")


def test_the_default_policy_stays_flat_while_the_stream_stays_in() -> None:
    engine = make_engine([BTC], stop_only())
    market = warm(engine)
    out = market.run(BTC, T0 + HOUR, _STOPPED)
    assert all(events(o, ET.REENTRY_ALLOWED) == [] for o in out)
    assert orders(out[2] + out[3] + out[4]) == []
    assert engine.ledger.position(BTC) == 0


def test_new_high_re_enters_on_the_first_clock_close_above_the_high_since_the_exit() -> None:
    engine = make_engine([BTC], stop_only(reentry="new_high"))
    market = warm(engine)
    out = market.run(
        BTC,
        T0 + HOUR,
        [
            (102, 103, 101, 102.5),  # 1: entry fill
            (102.5, 103, 98.5, 102.8),  # 2: stop exit at 99; the exit's period: H = max(99, 103) = 103
            (102.8, 104, 102, 102.9),  # 3: close 102.9 <= 103 → H = 104
            (102.9, 103.5, 102.5, 103.8),  # 4: 103.8 <= 104
            (103.8, 104.5, 103.5, 104.2),  # 5: 104.2 > 104 → re-entry
        ],
    )
    assert all(flips(o) == [] for o in out)
    assert orders(out[2] + out[3]) == []
    [release] = events(out[4], ET.REENTRY_ALLOWED)
    assert (release.event_time_ms, release.price) == (T0 + 6 * HOUR, Decimal("104.2"))
    assert release.indicators["high_since_exit"] == 104.0
    # target 5014.58823296 / 104.2 = 48.1246…  → 48.12464.
    assert orders(out[4]) == [(BTC, Side.BUY, Decimal("48.12464"))]


def test_a_snapshot_carries_the_exit_time_of_the_lock() -> None:
    engine = make_engine([BTC], stop_only(reentry="after_periods", reentry_periods=2))
    market = warm(engine)
    market.run(BTC, T0 + HOUR, _STOPPED[:3])
    snap = engine.snapshot()
    assert snap["overlay"]["managers"][BTC]["reentry"] == {"exit_ms": T0 + 3 * HOUR, "high": 99.0}
    twin = make_engine([BTC], stop_only(reentry="after_periods", reentry_periods=2))
    twin.restore(snap)
    assert twin.overlay.managers[BTC].locked
    del snap["overlay"]["managers"][BTC]["reentry"]  # a snapshot written before the option
    older = make_engine([BTC], stop_only(reentry="after_periods", reentry_periods=2))
    older.restore(snap)
    assert older.overlay.managers[BTC].locked


# ---------------------------------------------------------------- 3. daily-loss action


def _halting(action: str | None, **top: Any) -> tuple[Engine, Market]:
    # Invest 0.9: 9000 / 102 = 88.23529 BTC; daily-loss limit 1 %.
    risk = RiskLimits(max_position_fraction=None, daily_loss_limit_fraction=0.01)
    if action is not None:
        risk = RiskLimits(
            max_position_fraction=None, daily_loss_limit_fraction=0.01, daily_loss_action=action
        )
    engine = make_engine([BTC], stop_only(**top), risk=risk, invest_fraction=0.9)
    candles = [bar(BTC, T0 - (3 - i) * HOUR, *c) for i, c in enumerate(WARM_1H)]
    engine.warm_up(candles)
    market = Market(engine)
    assert orders(market.step(bar(BTC, T0, 102, 103, 101, 102))) == [(BTC, Side.BUY, Decimal("88.23529"))]
    return engine, market


# Candle 1 fills the buy at 102 (cash 10000 − 8999.99958 × 1.001 = 991.00042042) and closes at 100.9:
# equity = 991.00042042 + 88.23529 × 100.9 = 9893.94118142 <= 10000 × 0.99 → halt at T0+2h. The close
# stays above 3 × 101.5 − 2 × 101.8333 = 100.8333, so the stream is still in; the low 100.5 is above
# the stop 99. Candle 2's low 98.5 is through the stop; its close 101.3 > 3 × 101.2 − 2 × 101.2111
# = 101.1778 and candle 3's 101.6 keep the stream in.
_HALT_PATH = [(102, 102.5, 100.5, 100.9), (100.9, 101.5, 98.5, 101.3), (101.3, 101.8, 101, 101.6)]


def test_close_all_sells_the_book_at_the_halt() -> None:
    _engine, market = _halting(None)
    out = market.run(BTC, T0 + HOUR, _HALT_PATH[:1])
    [halt] = events(out[0], ET.DAILY_LOSS_HALT)
    assert halt.action_taken == "trading state active -> halted: close all, no entries until next UTC day"
    assert orders(out[0]) == [(BTC, Side.SELL, Decimal("88.23529"))]


def test_block_entries_keeps_the_position_its_stop_still_exits_and_a_re_entry_buy_is_refused() -> None:
    engine, market = _halting("block_entries", reentry="after_periods", reentry_periods=1)
    out = market.run(BTC, T0 + HOUR, _HALT_PATH)
    [halt] = events(out[0], ET.DAILY_LOSS_HALT)
    assert halt.event_time_ms == T0 + 2 * HOUR
    assert halt.trigger_reason == "equity 9893.94118142 <= start-of-day 10000 x (1 - 0.01) = 9900.00"
    assert halt.action_taken == (
        "trading state active -> halted: positions kept, no entries or increases until next UTC day"
    )
    assert engine.trading_state is TradingState.HALTED
    assert orders(out[0]) == []  # nothing sold by the halt
    assert all(flips(o) == [] for o in out)
    # Candle 2: the position's own stop exit still sells all of it.
    [stop_exit] = events(out[1], ET.STOP_EXIT)
    assert (stop_exit.price, stop_exit.size_before) == (Decimal("99.0"), Decimal("88.23529"))
    assert orders(out[1]) == [(BTC, Side.SELL, Decimal("88.23529"))]
    # Candle 3: the sell fills at 101.3; one period later the lock is released, but the halt refuses
    # the re-entry: the target is clipped to the holding, 0, and no order is sent.
    assert engine.ledger.position(BTC) == 0
    [release] = events(out[2], ET.REENTRY_ALLOWED)
    assert release.event_time_ms == T0 + 4 * HOUR
    [block] = events(out[2], ET.RISK_BLOCK)
    assert block.indicators == {"rule": "halted"}
    assert block.trigger_reason == "trading halted (daily_loss): no entry or increase"
    # cash = 991.00042042 + 88.23529 × 101.3 × 0.999 = 9920.297062543, all cash; the rebalancer's
    # 0.9 × that (8928.26735628 to 1e-8) is clipped to the holding 0 (× the mark 101.6).
    assert block.action_taken == "target 8928.26735628 -> 0.000000"
    assert engine.ledger.cash == Decimal("9920.297062543")
    assert orders(out[2]) == []
    assert engine.trading_state is TradingState.HALTED


def test_block_entries_holds_the_position_through_the_halted_day() -> None:
    engine, market = _halting("block_entries")
    # Closes rising by 0.3 from 100.9 keep the stream in (a flat 100.9 would turn it out and the
    # rebalancer would sell, as it may); lows stay above the stop 99; the equity recovers.
    rising = [(c - 0.3, c + 0.2, c - 0.4, c) for c in (101.2 + 0.3 * i for i in range(20))]
    out = market.run(BTC, T0 + HOUR, _HALT_PATH[:1] + rising)
    assert events(out[0], ET.DAILY_LOSS_HALT) != []
    assert all(flips(o) == [] and orders(o) == [] for o in out)
    assert engine.trading_state is TradingState.HALTED  # until the next UTC day, whatever the equity
    assert engine.ledger.position(BTC) == Decimal("88.23529")
    assert [f.side for f in market.fills] == [Side.BUY]
