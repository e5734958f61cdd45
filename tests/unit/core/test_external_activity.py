"""External activity through the real Engine (issue 14, findings 2–4): deposits and withdrawals are
cash flows (equity moves, PnL does not; the daily-loss limit and the returns are net of them), a
manual trade is adopted with its true side as a ``manual_trade`` event and then respected or
rebalanced, and the operator's and the venue's pauses are separate flags.

Set-ups from ``test_trading_control.py`` (1h candles, EMA 2/3, every order filled at the next open).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from test_trading_control import (
    BTC,
    HOUR,
    PAUSE,
    QTY,
    RESUME,
    RULES_OFF,
    T0,
    Market,
    _entered,
    bar,
    events,
    make_engine,
    orders,
)  # fmt: skip

from tradebot.app.reports.summary import build_run_summary
from tradebot.core.domain import (
    CashFlow,
    ClientOrderId,
    Fill,
    PositionEventType,
    Side,
    Symbol,
    Timeframe,
    TradeId,
    TradingControl,
    TradingState,
)
from tradebot.core.engine import Engine
from tradebot.core.engine.stats import EngineStats
from tradebot.core.management import ManagementConfig, RiskLimits, RiskManager
from tradebot.core.portfolio.ledger import Ledger

ET = PositionEventType
D = Decimal


def _flow(amount: str, asset: str = "USDT", *, price: str = "1", t: int = T0, n: int = 0) -> CashFlow:
    symbol = None if asset == "USDT" else Symbol(f"{asset}/USDT")
    return CashFlow(flow_id=f"flow:{asset}:{t}:{n}", asset=asset, symbol=symbol, amount=D(amount), price=D(price),
                    ts_ms=t, reason="test")  # fmt: skip


def _invariant(ledger: Ledger) -> None:
    lhs = sum((ledger.realized(s) - ledger.fees(s) - ledger.cost_basis(s) for s in ledger.symbols), D(0))
    assert lhs == ledger.cash - ledger.initial_cash - ledger.net_flows


# -- the ledger ---------------------------------------------------------------------------------------
def test_a_quote_deposit_and_withdrawal_move_cash_and_equity_not_pnl() -> None:
    ledger = Ledger("USDT", D("10000"), [BTC], {BTC: ["BTC:1h"]})
    assert ledger.apply_cash_flow(_flow("500")) is None
    assert (ledger.cash, ledger.net_flows, ledger.realized(BTC)) == (D("10500"), D("500"), D(0))
    assert ledger.apply_cash_flow(_flow("500")) is None and ledger.cash == D("10500")  # applied once
    ledger.apply_cash_flow(_flow("-2000", n=1))
    assert (ledger.cash, ledger.net_flows) == (D("8500"), D("-1500"))
    _invariant(ledger)
    again = Ledger.restore(ledger.snapshot())
    assert (again.cash, again.net_flows, again.has_flow("flow:USDT:1704844800000:1")) == (
        D("8500"),
        D("-1500"),
        True,
    )


def test_a_base_withdrawal_leaves_at_the_mark_and_keeps_cash() -> None:
    ledger = Ledger("USDT", D("10000"), [BTC], {BTC: ["BTC:1h"]})
    ledger.apply(Fill(venue="v", symbol=Symbol(BTC), trade_id=TradeId("1"), client_order_id=ClientOrderId("t-1-1"),
                      side=Side.BUY, qty=D("0.1"), price=D("40000"), fee_quote=D("4"), ts_ms=T0))  # fmt: skip
    result = ledger.apply_cash_flow(_flow("-0.04", "BTC", price="50000"))
    assert result is not None and (result.position_before, result.position_after) == (D("0.1"), D("0.06"))
    assert ledger.cash == D("5996")  # untouched by the withdrawal
    assert ledger.realized(BTC) == D("400")  # (50000 − 40000) × 0.04: the gain it was held for
    assert ledger.net_flows == D("-2000")
    _invariant(ledger)
    ledger.apply_cash_flow(_flow("0.5", "BTC", price="50000", n=1))  # a deposit enters at its price
    assert (ledger.position(BTC), ledger.net_flows) == (D("0.56"), D("23000"))
    _invariant(ledger)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["buy", "sell", "deposit", "withdraw", "base_in", "base_out"]),
                          st.integers(1, 5000), st.integers(20_000, 60_000)), max_size=25))  # fmt: skip
def test_the_ledger_identity_holds_net_of_cash_flows(steps: list[tuple[str, int, int]]) -> None:
    # realized − fees − cost_basis == cash − initial_cash − net_flows, exactly, after any mix
    ledger = Ledger("USDT", D("10000"), [BTC], {BTC: ["BTC:1h"]})
    for i, (kind, size, price) in enumerate(steps):
        qty, px = D(size) / D(100_000), D(price)
        held = ledger.position(BTC)
        if kind in ("buy", "sell"):
            if kind == "sell" and held < qty:
                continue
            side = Side.BUY if kind == "buy" else Side.SELL
            ledger.apply(Fill(venue="v", symbol=Symbol(BTC), trade_id=TradeId(str(i)), side=side, qty=qty, price=px,
                              client_order_id=ClientOrderId(f"t-{i}-1"), fee_quote=qty * px / 1000, ts_ms=T0 + i))  # fmt: skip
        elif kind in ("deposit", "withdraw"):
            amount = D(size) if kind == "deposit" else -min(D(size), ledger.cash)
            if amount:
                ledger.apply_cash_flow(_flow(str(amount), n=i))
        else:
            amount = qty if kind == "base_in" else -min(qty, held)
            if amount:
                ledger.apply_cash_flow(_flow(str(amount), "BTC", price=str(px), n=i))
        _invariant(ledger)


# -- risk and returns ------------------------------------------------------------------------------------
def test_the_daily_loss_limit_is_measured_net_of_a_withdrawal() -> None:
    def day(flow: bool) -> list[object]:
        risk = RiskManager(RiskLimits(max_position_fraction=None, daily_loss_limit_fraction=0.05))
        risk.on_equity(T0, D("10000"))
        if flow:
            risk.on_cash_flow(D("-3000"))
        return [e.event_type for e in risk.on_equity(T0 + HOUR, D("6900"))]

    assert day(flow=False) == [ET.DAILY_LOSS_HALT]  # the old behaviour: a withdrawal looked like a loss
    assert day(flow=True) == []  # 7000 → 6900 is −1.4 %
    risk = RiskManager(RiskLimits(max_position_fraction=None, daily_loss_limit_fraction=0.05))
    risk.on_equity(T0, D("10000"))
    risk.on_cash_flow(D("-3000"))
    assert [e.event_type for e in risk.on_equity(T0 + 2 * HOUR, D("6640"))] == [ET.DAILY_LOSS_HALT]  # −5.1 %


def test_returns_are_time_weighted_net_of_flows() -> None:
    stats = EngineStats([BTC], ["BTC:1h"])
    stats.on_equity(T0, D("10000"), False, {})
    stats.on_equity(T0 + HOUR, D("11000"), False, {})  # +10 %
    stats.on_cash_flow(T0 + HOUR, D("11000"), D("11000"))  # deposit doubles the account
    stats.on_equity(T0 + 2 * HOUR, D("22000"), False, {})  # flat after the deposit
    stats.on_equity(T0 + 3 * HOUR, D("19800"), False, {})  # −10 %
    curve = stats.flow_adjusted_curve()
    assert [v for _, v in curve] == [D("10000"), D("11000"), D("11000"), D("9900")]
    assert stats.net_flows == D("11000")
    again = EngineStats([BTC], ["BTC:1h"])
    again.restore(stats.state())
    assert again.flow_adjusted_curve() == curve


# -- the engine --------------------------------------------------------------------------------------------
def test_a_deposit_is_a_cash_flow_event_and_is_invested_at_the_next_rebalance() -> None:
    # unmanaged (the overlay's reference size would keep an open managed position at its entry size)
    engine = make_engine([BTC], ManagementConfig.disabled())
    warm = [bar(BTC, T0 - 3 * HOUR, 100, 101, 99, 100), bar(BTC, T0 - 2 * HOUR, 100, 102, 100, 101),
            bar(BTC, T0 - HOUR, 101, 103, 101, 102)]  # fmt: skip
    engine.warm_up(warm)
    market = Market(engine)
    assert orders(market.step(bar(BTC, T0, 102, 103, 101, 102))) == [(BTC, Side.BUY, QTY)]
    market.step(bar(BTC, T0 + HOUR, 102, 103, 101, 102.5))  # the entry fills at 102
    cash = engine.ledger.cash
    out = engine.handle(_flow("20000", t=T0 + 2 * HOUR))
    (ev,) = events(out, ET.CASH_FLOW)
    assert (ev.indicators["value_quote"], ev.indicators["asset"], ev.indicators["net_flows"]) == (
        "20000",
        "USDT",
        "20000",
    )
    assert engine.ledger.cash == cash + 20000 and engine.ledger.realized(BTC) == 0
    assert engine.stats.event_amounts == {}  # not a management saving
    assert engine.handle(_flow("20000", t=T0 + 2 * HOUR)) == []  # the same flow again: nothing
    (buy,) = orders(market.step(bar(BTC, T0 + 2 * HOUR, 102.5, 104, 102, 103.5)))
    # half of the new equity goes to BTC (invest 0.5): ≈ 15,000 / 103.5 − 49.0196
    assert buy[:2] == (BTC, Side.BUY) and D("95") < buy[2] < D("97")


def _manual_sale(policy: str) -> tuple[Engine, Market, list[object]]:
    engine, market = _entered()
    engine.config = dataclasses.replace(engine.config, manual_trades=policy)
    market.step(bar(BTC, T0 + HOUR, 102, 103, 101, 102.5))
    assert engine.ledger.position(BTC) == QTY
    sale = Fill(venue="test", symbol=Symbol(BTC), trade_id=TradeId("m-1"), client_order_id=ClientOrderId("web_123"),
                side=Side.SELL, qty=D("40"), price=D("103"), fee_quote=D("4.12"), ts_ms=T0 + 2 * HOUR - 1)  # fmt: skip
    return engine, market, list(engine.handle(sale))


def test_a_manual_sale_is_adopted_as_a_sell_and_respected_until_the_streams_change() -> None:
    engine, market, out = _manual_sale("respect")
    (ev,) = events(out, ET.MANUAL_TRADE)
    assert (ev.size_before, ev.size_after, ev.indicators["side"]) == (QTY, QTY - 40, "sell")
    assert "left at its new holding" in ev.action_taken
    later: list[object] = []
    for i, c in enumerate((103.5, 104.5, 105.5)):
        later += market.step(bar(BTC, T0 + (2 + i) * HOUR, c - 0.5, c + 1, c - 1, c))
    assert orders(later) == []  # the coins are not bought back
    engine2 = Engine(engine.config, engine.instruments)
    engine2.restore(engine.snapshot())
    assert engine2._planning.respected == {BTC: "manual sell 40 @ 103"}


def test_with_rebalance_a_manual_sale_is_bought_back() -> None:
    _engine, market, out = _manual_sale("rebalance")
    (ev,) = events(out, ET.MANUAL_TRADE)
    assert "re-planned to its target" in ev.action_taken
    later = market.step(bar(BTC, T0 + 2 * HOUR, 103, 104, 102, 103.5))
    assert [(s, side) for s, side, _ in orders(later)] == [(BTC, Side.BUY)]


def test_a_run_whose_net_fees_are_a_rebate_has_a_summary() -> None:
    # an adopted manual maker buy paid a rebate (a negative fee) and the engine has not traded yet:
    # the run's net fees are negative, which the end-of-run summary must accept
    mgmt = ManagementConfig.from_dict({name: {"enabled": False} for name in RULES_OFF})
    engine = make_engine([BTC], mgmt)
    engine.handle(bar(BTC, T0, 100, 101, 99, 100))
    rebate = Fill(venue="deribit", symbol=Symbol(BTC), trade_id=TradeId("m-1"), client_order_id=ClientOrderId("web_1"),
                  side=Side.BUY, qty=D("1"), price=D("100"), fee_quote=D("-0.02"), ts_ms=T0 + HOUR - 1)  # fmt: skip
    (ev,) = events(list(engine.handle(rebate)), ET.MANUAL_TRADE)
    assert ev.indicators["side"] == "buy"
    engine.handle(bar(BTC, T0 + HOUR, 100, 101, 99, 100))
    engine.finish()
    assert (engine.ledger.fees(BTC), engine.stats.fees_quote) == (D("-0.02"), D("-0.02"))
    summary = build_run_summary(engine=engine, trades=[], n_orders=0, run_id="t", base=Timeframe.H1, n_candles=2,
                                gaps={}, mode="daemon")  # fmt: skip
    assert summary["overall"]["fees_paid"] == D("-0.02")


def test_the_venue_s_resume_keeps_the_operator_s_pause_and_vice_versa() -> None:
    engine, _market = _entered()

    def control(state: TradingState, source: str) -> list[object]:
        return list(engine.handle(TradingControl(state=state, reason=source, ts_ms=T0 + HOUR, source=source)))

    control(PAUSE, "venue")
    control(PAUSE, "operator")
    assert engine.pauses == ("operator", "venue")
    (kept,) = events(control(RESUME, "venue"), ET.RISK_BLOCK)
    assert engine.trading_state is TradingState.REDUCING and "paused by operator" in kept.action_taken
    control(PAUSE, "venue")
    control(RESUME, "operator")
    assert (engine.trading_state, engine.pauses) == (TradingState.REDUCING, ("venue",))
    (resumed,) = events(control(RESUME, "venue"), ET.TRADING_RESUMED)
    assert (engine.trading_state, engine.pauses) == (TradingState.ACTIVE, ())
    assert "(venue)" in resumed.action_taken
