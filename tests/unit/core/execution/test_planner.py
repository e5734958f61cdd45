"""Exact-number tests of the execution planner (band, min notional, rounding, slicing, cash, order)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import pytest

from tradebot.core.domain import Side, Symbol, spot_instrument
from tradebot.core.execution.planner import Denial, PlannerConfig, plan_rebalance
from tradebot.core.execution.slicing import slice_qty

BTC = Symbol("BTC/USDT")
ETH = Symbol("ETH/USDT")
INSTRUMENTS = {
    BTC: spot_instrument("BTC"),  # tick 0.01, step 0.00001, min notional 5, taker fee 0.001
    ETH: spot_instrument("ETH", step_size="0.0001"),
}


def plan(targets, holdings=None, marks=None, cash=D("10000"), equity=D("10000"), config=None, **kw):
    return plan_rebalance(
        targets=targets,
        holdings=holdings or {},
        marks=marks or {BTC: D("50000"), ETH: D("2000")},
        cash=cash,
        equity=equity,
        instruments=INSTRUMENTS,
        config=config or PlannerConfig(),
        run_id="run",
        next_intent_seq=7,
        time_ms=1_700_000_000_000,
        **kw,
    )


def test_difference_below_band_gives_no_order_and_no_denial():
    # band = 0.02 × 10000 = 200; current 0.02 × 50000 = 1000; diff 150 < 200
    p = plan({BTC: D("1150")}, {BTC: D("0.02")}, cash=D("9000"))
    assert p.orders == () and p.intents == () and p.denied == ()
    assert p.next_intent_seq == 7
    assert p.deferred_buys is False


def test_difference_above_band_buys_the_difference():
    p = plan({BTC: D("1250")}, {BTC: D("0.02")}, cash=D("9000"))
    assert [(o.side, o.qty, o.ref_price) for o in p.orders] == [(Side.BUY, D("0.00500"), D("50000"))]
    (intent,) = p.intents
    assert intent.intent_id == "run-7"
    assert p.orders[0].client_order_id == "run-7-1"
    assert p.orders[0].intent_id == "run-7"
    assert p.orders[0].created_ms == 1_700_000_000_000
    assert p.orders[0].reason == "rebalance"
    assert p.next_intent_seq == 8


def test_below_min_notional_above_band_is_denied():
    cfg = PlannerConfig(min_order_notional=D("300"))
    p = plan({BTC: D("1250")}, {BTC: D("0.02")}, cash=D("9000"), config=cfg)
    assert p.orders == ()
    assert p.denied == (
        Denial(BTC, Side.BUY, D("0.00500"), "NOTIONAL: notional 250.00000 is below min notional 300"),
    )


def test_below_min_notional_under_band_is_not_reported():
    # instrument min notional 5; diff 4 with band 0 -> reported; with band 200 -> silent
    p = plan({BTC: D("1004")}, {BTC: D("0.02")}, cash=D("9000"))
    assert p.denied == () and p.orders == ()
    p0 = plan({BTC: D("1004")}, {BTC: D("0.02")}, cash=D("9000"), config=PlannerConfig(band_fraction=0))
    assert p0.denied == (
        Denial(BTC, Side.BUY, D("0.00008"), "NOTIONAL: notional 4.00000 is below min notional 5"),
    )


def test_quantity_is_rounded_down_to_step():
    # 1000 / 30000.5 = 0.0333327777… -> 0.03333
    p = plan({BTC: D("1000")}, marks={BTC: D("30000.5")})
    assert [o.qty for o in p.orders] == [D("0.03333")]


def test_slicing_25000_into_max_10000_gives_three_near_equal_children():
    cfg = PlannerConfig(max_order_notional=D("10000"))
    p = plan({BTC: D("25000")}, cash=D("30000"), equity=D("30000"), config=cfg)
    # 0.5 BTC = 50000 steps; max child 0.2 BTC (20000 steps); n = 3 -> 16667, 16667, 16666 steps
    assert [o.qty for o in p.orders] == [D("0.16667"), D("0.16667"), D("0.16666")]
    assert [o.client_order_id for o in p.orders] == ["run-7-1", "run-7-2", "run-7-3"]
    assert [o.notional for o in p.orders] == [D("8333.50000"), D("8333.50000"), D("8333.00000")]
    (intent,) = p.intents
    assert intent.qty == D("0.50000")
    assert sum(o.qty for o in p.orders) == intent.qty


def test_slice_remainder_that_cannot_be_valid_is_cut_and_denied():
    # max 8 USDT with min 5 USDT: 8.5 USDT (17 steps at 0.5 USDT per step) cannot be two
    # children >= 10 steps; one maximal child of 16 steps is kept, 1 step is cut.
    cfg = PlannerConfig(max_order_notional=D("8"), band_fraction=0)
    children, cut = slice_qty(
        D("0.00017"), D("50000"), INSTRUMENTS[BTC], min_notional=D("5"), max_notional=D("8")
    )
    assert children == [D("0.00016")]
    assert cut == D("0.00001")
    p = plan({BTC: D("8.5")}, config=cfg)
    assert [o.qty for o in p.orders] == [D("0.00016")]
    assert p.denied[0].qty == D("0.00001")
    assert p.denied[0].reason.startswith("NOTIONAL: remainder 0.00001 cannot be sliced")


def test_children_are_sliced_under_the_max_qty_and_an_order_worth_less_than_the_minimum_is_denied():
    capped = replace(INSTRUMENTS[BTC], max_qty=D("0.1"))
    # 0.25 BTC = 25000 steps, at most 10000 steps per child: n = 3 -> 8334, 8333, 8333 steps.
    children, cut = slice_qty(D("0.25"), D("50000"), capped, min_notional=D("5"), max_notional=None)
    assert (children, cut) == ([D("0.08334"), D("0.08333"), D("0.08333")], D("0"))
    assert capped.check_order(D("0.10001"), D("50000")) == "LOT_SIZE: qty 0.10001 is above max qty 0.1"
    assert capped.check_order(D("0.1"), D("50000")) is None
    # At 1e-25 USDT, 90000 SOL (the most one order may carry) is worth 9e-21 USDT < 5 USDT: all cut.
    sol = replace(INSTRUMENTS[BTC], step_size=D("0.001"), min_qty=D("0.001"), max_qty=D("90000"))
    children, cut = slice_qty(D("5E+28"), D("1E-25"), sol, min_notional=D("5"), max_notional=D("25000"))
    assert (children, cut) == ([], D("5E+28"))


def test_max_qty_must_be_positive():
    with pytest.raises(ValueError, match=r"max_qty must be None or a Decimal > 0, was Decimal\('0'\)"):
        replace(INSTRUMENTS[BTC], max_qty=D("0"))


def test_buys_are_scaled_down_to_the_cash_limit():
    # usable = 1000 × (1 − 0.002) = 998; wanted cost = 1200 × 1.001 = 1201.2
    # scale = 998 / 1201.2 = 0.830835830835830835 (floored at 1e-18)
    # BTC: 600 × scale / 50000 = 0.0099700… -> 0.00997; ETH: 600 × scale / 2000 = 0.249250… -> 0.2492
    p = plan({BTC: D("600"), ETH: D("600")}, cash=D("1000"), equity=D("1000"))
    assert [(o.symbol, o.qty) for o in p.orders] == [(BTC, D("0.00997")), (ETH, D("0.2492"))]
    cost = sum(o.notional * D("1.001") for o in p.orders)
    assert cost == D("997.8969")  # (498.5 + 498.4) × 1.001
    assert cost <= D("998")


def test_buys_are_not_scaled_when_cash_suffices():
    p = plan({BTC: D("600"), ETH: D("600")}, cash=D("2000"), equity=D("2000"))
    assert [o.qty for o in p.orders] == [D("0.01200"), D("0.3000")]


def test_sells_before_buys_and_buys_deferred_by_default():
    holdings = {ETH: D("1")}
    p = plan({BTC: D("2000"), ETH: D("0")}, holdings, cash=D("8000"))
    assert [(o.symbol, o.side, o.qty) for o in p.orders] == [(ETH, Side.SELL, D("1.0000"))]
    assert p.deferred_buys is True
    cfg = PlannerConfig(defer_buys_while_selling=False)
    p2 = plan({BTC: D("2000"), ETH: D("0")}, holdings, cash=D("8000"), config=cfg)
    assert [(o.symbol, o.side, o.qty) for o in p2.orders] == [
        (ETH, Side.SELL, D("1.0000")),
        (BTC, Side.BUY, D("0.04000")),
    ]
    assert [i.intent_id for i in p2.intents] == ["run-7", "run-8"]
    assert p2.deferred_buys is False
    assert p2.next_intent_seq == 9


def test_sells_without_buys_do_not_set_deferred():
    p = plan({ETH: D("0")}, {ETH: D("1")})
    assert p.deferred_buys is False


def test_dust_remainder_is_sold_too():
    # 0.10003 BTC (5001.50 USDT) down to 3 USDT: 0.09997 would leave 0.00006 (3 USDT < min 5)
    p = plan({BTC: D("3")}, {BTC: D("0.10003")})
    assert [(o.side, o.qty) for o in p.orders] == [(Side.SELL, D("0.10003"))]


def test_exit_sells_everything_on_step_never_more_than_held():
    p = plan({BTC: D("0")}, {BTC: D("0.100035")})
    assert [(o.side, o.qty) for o in p.orders] == [(Side.SELL, D("0.10003"))]


def test_partial_sell_keeps_the_rest():
    # 0.1 BTC = 5000 USDT -> target 2000: sell 0.06
    p = plan({BTC: D("2000")}, {BTC: D("0.1")})
    assert [(o.side, o.qty) for o in p.orders] == [(Side.SELL, D("0.06000"))]


def test_blocked_increase_skips_buy_without_denial():
    p = plan({BTC: D("2000"), ETH: D("2000")}, blocked_increase=frozenset({BTC}))
    assert [o.symbol for o in p.orders] == [ETH]
    assert p.denied == ()


def test_force_trades_below_the_band():
    # 0.002 BTC = 100 USDT < band 200, forced exit sells it
    p = plan({BTC: D("0")}, {BTC: D("0.002")}, force=frozenset({BTC}), reason="stop_exit")
    assert [(o.side, o.qty, o.reason) for o in p.orders] == [(Side.SELL, D("0.00200"), "stop_exit")]
    assert plan({BTC: D("0")}, {BTC: D("0.002")}).orders == ()


def test_forced_exit_of_dust_is_denied():
    p = plan({BTC: D("0")}, {BTC: D("0.00005")}, force=frozenset({BTC}))
    assert p.orders == ()
    assert p.denied == (
        Denial(BTC, Side.SELL, D("0.00005"), "NOTIONAL: notional 2.50000 is below min notional 5"),
    )


def test_held_symbol_without_target_is_left_alone():
    assert plan({}, {BTC: D("1")}).orders == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"band_fraction": D("1")}, "band_fraction must be in [0, 1), was Decimal('1')"),
        ({"cash_buffer_fraction": D("-0.1")}, "cash_buffer_fraction must be in [0, 1)"),
        ({"min_order_notional": D("-1")}, "min_order_notional must be >= 0"),
        ({"max_order_notional": D("0")}, "max_order_notional must be > 0"),
        ({"max_order_notional": D("15"), "min_order_notional": D("10")}, ">= 2 × min_order_notional"),
    ],
)
def test_config_rejects_out_of_range_values(kwargs, message):
    with pytest.raises(ValueError) as exc:
        PlannerConfig(**kwargs)
    assert message in str(exc.value)


def test_config_converts_floats_exactly():
    assert PlannerConfig(band_fraction=0.03).band_fraction == D("0.03")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"targets": {BTC: D("-1")}}, "target of BTC/USDT must be >= 0, was Decimal('-1')"),
        ({"targets": {BTC: D("1")}, "marks": {ETH: D("1")}}, "mark of BTC/USDT must be > 0, was None"),
        ({"targets": {BTC: D("1")}, "holdings": {BTC: D("-2")}}, "holding of BTC/USDT must be >= 0"),
        ({"targets": {Symbol("XRP/USDT"): D("1")}}, "no instrument for 'XRP/USDT'"),
        ({"targets": {}, "cash": D("-1")}, "cash must be >= 0"),
    ],
)
def test_bad_inputs_raise(kwargs, message):
    with pytest.raises(ValueError) as exc:
        plan(**kwargs)
    assert message in str(exc.value)


def test_package_exports():
    import tradebot.core.execution as execution

    assert execution.__all__ == ["Denial", "Plan", "PlannerConfig", "plan_rebalance", "slice_qty"]
    assert execution.plan_rebalance is plan_rebalance
