"""An operator's pause and resume (:class:`TradingControl`, Telegram ``/pause`` / ``/resume``) through
the real Engine: a pause blocks entries and increases and nothing else (stop exits, stream exits and
the daily-loss halt go on); a resume lifts only the pause, never a daily-loss halt; a pause survives a
restart (snapshot / restore).

Set-ups as in ``test_engine_management.py`` (1h candles, EMA 2/3 streams, ATR 2, every order filled in
full at its symbol's next candle open with a 0.1 % fee); the numbers are derived there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pytest

from tradebot.app.instruments import default_instruments
from tradebot.core.config import EngineConfig
from tradebot.core.domain import (
    Candle,
    Fill,
    PlaceOrder,
    PositionEvent,
    PositionEventType,
    Side,
    StreamState,
    Timeframe,
    TradeId,
    TradingControl,
    TradingState,
)
from tradebot.core.engine import Engine
from tradebot.core.execution.planner import PlannerConfig
from tradebot.core.management import ManagementConfig, RiskLimits
from tradebot.core.portfolio.rebalancer import AllocationConfig
from tradebot.core.signals.stream import StreamConfig

ET = PositionEventType
H1 = Timeframe.H1
HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_704_844_800_000  # 2024-01-10 00:00 UTC, a day boundary
BTC, ETH = "BTC/USDT", "ETH/USDT"
FEE = Decimal("0.001")
QTY = Decimal("49.01960")  # the entry of _entered
NO_RISK = RiskLimits(max_position_fraction=None, daily_loss_limit_fraction=None)
RULES_OFF = ("breakeven", "take_profit", "trailing", "proportional", "scale_in", "time_stop", "early_exit")
PAUSE = TradingState.REDUCING
RESUME = TradingState.ACTIVE


def make_engine(
    symbols: list[str], mgmt: ManagementConfig, *, risk: RiskLimits = NO_RISK, invest: float = 0.5
) -> Engine:
    config = EngineConfig(
        run_id="t",
        quote="USDT",
        assets={s: s.split("/")[0] for s in symbols},
        base_timeframe=H1,
        streams=(StreamConfig(timeframe=H1, fast=2, slow=3, atr_period=2),),
        initial_cash=Decimal("10000"),
        rebalance_timeframe=H1,
        allocation=AllocationConfig(policy="pooled", invest_fraction=invest),
        planner=PlannerConfig(band_fraction=Decimal("0.25"), cash_buffer_fraction=Decimal("0")),
        management=mgmt,
        risk=risk,
    )
    return Engine(config, default_instruments(symbols))


def bar(symbol: str, open_ms: int, o: float, h: float, lo: float, c: float) -> Candle:
    return Candle(symbol, H1, open_ms, o, h, lo, c, 100.0)


class Market:
    """Every ``PlaceOrder`` fills in full at the open of its symbol's next candle."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pending: dict[str, list[PlaceOrder]] = {}
        self.n = 0

    def step(self, candle: Candle) -> list[object]:
        out: list[object] = []
        while queue := self.pending.pop(candle.symbol, []):
            for cmd in queue:
                self.n += 1
                price = Decimal(repr(candle.open))
                fill = Fill(venue="test", symbol=cmd.symbol, trade_id=TradeId(f"x-{self.n}"),
                            client_order_id=cmd.client_order_id, side=cmd.side, qty=cmd.qty, price=price,
                            fee_quote=cmd.qty * price * FEE, ts_ms=candle.open_time_ms)  # fmt: skip
                out.extend(self.route(self.engine.handle(fill)))
        out.extend(self.route(self.engine.handle(candle)))
        return out

    def route(self, out: Iterable[Any]) -> list[object]:
        out = list(out)
        for cmd in out:
            if type(cmd) is PlaceOrder:
                self.pending.setdefault(cmd.symbol, []).append(cmd)
        return out

    def control(self, state: TradingState, ts_ms: int, who: str = "chat 42") -> list[object]:
        verb = "/pause" if state is PAUSE else "/resume"
        return self.route(
            self.engine.handle(TradingControl(state=state, reason=f"{verb} by {who}", ts_ms=ts_ms))
        )


def events(out: Iterable[object], kind: PositionEventType) -> list[PositionEvent]:
    return [x for x in out if type(x) is PositionEvent and x.event_type is kind]


def orders(out: Iterable[object]) -> list[tuple[str, Side, Decimal]]:
    return [(o.symbol, o.side, o.qty) for o in out if type(o) is PlaceOrder]


def _entered() -> tuple[Engine, Market]:
    """BTC bought at T0+1h: 49.01960 @ 102, initial stop 99 (test_engine_management's ``_entered``)."""
    mgmt = ManagementConfig.from_dict({name: {"enabled": False} for name in RULES_OFF})
    engine = make_engine([BTC], mgmt)
    warm = [bar(BTC, T0 - 3 * HOUR, 100, 101, 99, 100), bar(BTC, T0 - 2 * HOUR, 100, 102, 100, 101),
            bar(BTC, T0 - HOUR, 101, 103, 101, 102)]  # fmt: skip
    assert [s.state for s in engine.warm_up(warm)] == [StreamState.IN]
    market = Market(engine)
    assert orders(market.step(bar(BTC, T0, 102, 103, 101, 102))) == [(BTC, Side.BUY, QTY)]
    return engine, market


def test_a_pause_lets_the_stop_exit_sell_blocks_the_re_entry_and_a_resume_buys_again() -> None:
    engine, market = _entered()
    market.step(bar(BTC, T0 + HOUR, 102, 103, 101, 102.5))  # the entry fills at 102
    assert engine.ledger.position(BTC) == QTY

    out = market.control(PAUSE, T0 + 2 * HOUR)
    [paused] = events(out, ET.RISK_BLOCK)
    assert (paused.event_time_ms, paused.trigger_reason) == (T0 + 2 * HOUR, "/pause by chat 42")
    assert paused.action_taken == "paused: trading state active -> reducing: no entries or increases"
    assert paused.indicators == {"rule": "pause", "source": "operator"}
    assert (engine.trading_state, engine.paused) == (TradingState.REDUCING, True)
    assert orders(out) == []
    assert market.control(PAUSE, T0 + 2 * HOUR) == []  # already paused: nothing new

    # Paused, the stop still exits: low 98.5 <= stop 99 → STOP_EXIT and the whole position is sold.
    out = market.step(bar(BTC, T0 + 2 * HOUR, 102.5, 103, 98.5, 102.8))
    assert [e.price for e in events(out, ET.STOP_EXIT)] == [Decimal("99.0")]
    assert orders(out) == [(BTC, Side.SELL, QTY)]
    later: list[object] = []
    for i, b in enumerate([(102.8, 104, 102, 103.5), (103.5, 104, 103, 103.8), (103.8, 104, 90, 95),
                           (95, 96, 94, 95), (95, 110, 95, 110)]):  # fmt: skip
        later += market.step(bar(BTC, T0 + (3 + i) * HOUR, *b))
    assert engine.ledger.position(BTC) == 0
    # The stream flipped out and back in (unlocking the re-entry), but the pause keeps the target at 0.
    assert engine.book.stream(BTC, H1).state is StreamState.IN
    assert orders(later) == []
    [block] = [e for e in events(later, ET.RISK_BLOCK) if e.indicators.get("rule") == "reducing"]
    assert block.trigger_reason == "trading state reducing: no increase"

    out = market.control(RESUME, T0 + 8 * HOUR)
    [resumed] = events(out, ET.TRADING_RESUMED)
    assert resumed.action_taken == "pause lifted: trading state reducing -> active"
    assert (engine.trading_state, engine.paused) == (TradingState.ACTIVE, False)
    # The next clock buys what the un-paused engine bought at 110 (test_engine_management: 45.58716).
    out = market.step(bar(BTC, T0 + 8 * HOUR, 110, 111, 109, 110))
    assert orders(out) == [(BTC, Side.BUY, Decimal("45.58716"))]


def _two_assets_in(risk: RiskLimits) -> tuple[Engine, Market]:
    engine = make_engine([BTC, ETH], ManagementConfig.disabled(), risk=risk, invest=0.9)
    warm = [bar(BTC, T0 - (3 - i) * HOUR, c, c, c, c) for i, c in enumerate((80.0, 90.0, 100.0))]
    warm += [bar(ETH, T0 - (3 - i) * HOUR, c, c, c, c) for i, c in enumerate((16.0, 18.0, 20.0))]
    assert [s.state for s in engine.warm_up(warm)] == [StreamState.IN, StreamState.IN]
    return engine, Market(engine)


def _hour(market: Market, i: int, btc: float, eth: float, prev: tuple[float, float]) -> list[object]:
    t = T0 + i * HOUR
    out = market.step(bar(BTC, t, prev[0], max(prev[0], btc), min(prev[0], btc), btc))
    return out + market.step(bar(ETH, t, prev[1], max(prev[1], eth), min(prev[1], eth), eth))


def test_a_pause_before_the_first_rebalance_places_no_buy_until_resumed() -> None:
    engine, market = _two_assets_in(NO_RISK)
    market.control(PAUSE, T0)
    assert engine.trading_state is TradingState.REDUCING
    out = _hour(market, 0, 100.0, 20.0, (100.0, 20.0))
    assert orders(out) == []
    blocks = events(out, ET.RISK_BLOCK)
    assert {(b.symbol, b.indicators["rule"]) for b in blocks} == {(BTC, "reducing"), (ETH, "reducing")}
    market.control(RESUME, T0 + HOUR)
    # As un-paused at T0+1h (test_engine_management): 10000 × 0.9 / 2 = 4500 → 45 BTC @ 100, 225 ETH @ 20.
    out = _hour(market, 1, 100.0, 20.0, (100.0, 20.0))
    assert orders(out) == [(BTC, Side.BUY, Decimal("45.00000")), (ETH, Side.BUY, Decimal("225.0000"))]


@pytest.mark.parametrize("resume_during_halt", [True, False])
def test_the_daily_loss_halt_works_while_paused_and_a_resume_never_lifts_it(resume_during_halt: bool) -> None:
    engine, market = _two_assets_in(RiskLimits(max_position_fraction=None, daily_loss_limit_fraction=0.03))
    assert len(orders(_hour(market, 0, 100.0, 20.0, (100.0, 20.0)))) == 2  # 45 BTC, 225 ETH bought
    market.control(PAUSE, T0 + HOUR + 1)
    # Closes fall 4 %: equity 9631 <= 9700 → the halt closes everything, paused or not.
    out = _hour(market, 1, 96.0, 19.2, (100.0, 20.0))
    assert len(events(out, ET.DAILY_LOSS_HALT)) == 1
    assert engine.trading_state is TradingState.HALTED
    assert orders(out) == [(BTC, Side.SELL, Decimal("45.00000")), (ETH, Side.SELL, Decimal("225.0000"))]

    if resume_during_halt:
        [kept] = events(market.control(RESUME, T0 + 3 * HOUR), ET.RISK_BLOCK)
        assert kept.action_taken == "pause lifted: trading state halted -> halted kept (daily_loss)"
        assert engine.trading_state is TradingState.HALTED and not engine.paused
    later: list[object] = []
    for i in range(2, 23):
        later += _hour(market, i, 96.0, 19.2, (96.0, 19.2))
    assert orders(later) == [] and engine.trading_state is TradingState.HALTED

    # The next UTC day ends the halt: active (and buying) after the resume; still paused otherwise.
    out = _hour(market, 23, 96.0, 19.2, (96.0, 19.2))
    [resumed] = events(out, ET.TRADING_RESUMED)
    if resume_during_halt:
        assert resumed.action_taken == "trading state halted -> active"
        assert [side for _, side, _ in orders(out)] == [Side.BUY, Side.BUY]
    else:
        assert resumed.action_taken == "trading state halted -> reducing (paused)"
        assert engine.trading_state is TradingState.REDUCING
        assert orders(out) == []


def test_a_pause_survives_a_restart_and_a_resume_after_it_buys() -> None:
    engine, market = _two_assets_in(NO_RISK)
    market.control(PAUSE, T0)
    _hour(market, 0, 100.0, 20.0, (100.0, 20.0))
    data = json.loads(json.dumps(engine.snapshot()))
    assert data["overlay"]["risk"]["paused"] is True

    fresh, _ = _two_assets_in(NO_RISK)
    fresh.restore(data)
    assert (fresh.trading_state, fresh.paused) == (TradingState.REDUCING, True)
    again = Market(fresh)
    assert orders(_hour(again, 1, 100.0, 20.0, (100.0, 20.0))) == []
    again.control(RESUME, T0 + 2 * HOUR)
    assert len(orders(_hour(again, 2, 100.0, 20.0, (100.0, 20.0)))) == 2


def test_a_snapshot_from_before_pauses_restores_unpaused() -> None:
    engine, _ = _two_assets_in(NO_RISK)
    data = engine.snapshot()
    del data["overlay"]["risk"]["paused"]
    fresh, _ = _two_assets_in(NO_RISK)
    fresh.restore(data)
    assert (fresh.trading_state, fresh.paused) == (TradingState.ACTIVE, False)


def test_a_control_cannot_halt() -> None:
    with pytest.raises(ValueError, match="pauses \\(reducing\\) or resumes \\(active\\)"):
        TradingControl(state=TradingState.HALTED, reason="x", ts_ms=0)
