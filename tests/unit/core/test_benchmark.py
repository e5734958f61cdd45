"""Buy-and-hold benchmark (tradebot.core.metrics.benchmark) and the marks the engine keeps for it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradebot.core.engine.stats import EngineStats
from tradebot.core.metrics import DAY_MS, buy_and_hold_curve, buy_and_hold_quantities, compute_metrics

D = Decimal
FEE = D("0.001")
# 2002 USDT over two assets = 1001 each; 1001 / (100 × 1.001) = 10 BTC, 1001 / (20 × 1.001) = 50 ETH.
ENTRY = {"BTC/USDT": D("100"), "ETH/USDT": D("20")}
MARKS = [
    (DAY_MS, {"BTC/USDT": D("110"), "ETH/USDT": D("21")}),  # 1100 + 1050 = 2150
    (2 * DAY_MS, {"BTC/USDT": D("90")}),  # ETH not marked: last mark 21 → 900 + 1050 = 1950
    (3 * DAY_MS, {"BTC/USDT": D("120"), "ETH/USDT": D("18"), "SOL/USDT": D("5")}),  # 1200 + 900 = 2100
]


def test_quantities_spend_the_cash_on_notional_plus_taker_fee() -> None:
    qty = buy_and_hold_quantities(entry_prices=ENTRY, initial_cash=D("2002"), taker_fee=FEE)
    assert qty == {"BTC/USDT": D("10"), "ETH/USDT": D("50")}
    notional = sum(q * ENTRY[s] for s, q in qty.items())
    assert notional + notional * FEE == D("2002")


def test_curve_is_the_holdings_marked_at_each_sample_time() -> None:
    curve = buy_and_hold_curve(entry_prices=ENTRY, marks=MARKS, initial_cash=D("2002"), taker_fee=FEE)
    assert curve == [(DAY_MS, D("2150")), (2 * DAY_MS, D("1950")), (3 * DAY_MS, D("2100"))]


def test_entry_ms_starts_the_curve_at_the_initial_cash() -> None:
    curve = buy_and_hold_curve(
        entry_prices=ENTRY, marks=MARKS, initial_cash=D("2002"), taker_fee=FEE, entry_ms=DAY_MS - 60_000
    )
    assert curve[0] == (DAY_MS - 60_000, D("2002"))
    assert curve[1:] == [(DAY_MS, D("2150")), (2 * DAY_MS, D("1950")), (3 * DAY_MS, D("2100"))]
    m = compute_metrics(
        equity_curve=curve, trades=[], fees_paid=D("2"), traded_notional=D("2000"), n_orders=2
    )
    assert m.final_equity == D("2100")
    assert m.total_return == pytest.approx(2100 / 2002 - 1, rel=1e-12)
    assert m.max_drawdown == pytest.approx(1 - 1950 / 2150, rel=1e-12)
    assert m.annualized_return is None  # 3 days < 90 days
    assert m.trades.n_trades == 0 and m.trades.win_rate is None


def test_fee_per_symbol_and_missing_first_mark_valued_at_entry() -> None:
    fees = {"BTC/USDT": D("0.25"), "ETH/USDT": D("0")}
    # 1000 each: 1000 / 125 = 8 BTC, 1000 / 20 = 50 ETH; the first sample has no ETH mark yet.
    curve = buy_and_hold_curve(
        entry_prices=ENTRY, marks=[(5, {"BTC/USDT": D("100")})], initial_cash=D("2000"), taker_fee=fees
    )
    assert curve == [(5, D("800") + D("1000"))]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"entry_prices": {}}, "entry_prices must name at least one asset"),
        ({"entry_prices": {"BTC/USDT": D("0")}}, "entry_prices['BTC/USDT'] must be a finite Decimal > 0"),
        ({"initial_cash": D("-1")}, "initial_cash must be a finite Decimal > 0, was Decimal('-1')"),
        ({"taker_fee": D("1")}, "taker_fee of BTC/USDT must be a finite Decimal in [0, 1)"),
        (
            {"taker_fee": {"BTC/USDT": FEE}},
            "taker_fee of ETH/USDT must be a finite Decimal in [0, 1), was None",
        ),
        ({"entry_ms": DAY_MS}, "entry_ms must be before the first mark"),
        ({"marks": [MARKS[1], MARKS[0]]}, "marks[1] time_ms must be strictly increasing"),
    ],
)
def test_invalid_inputs_are_refused_naming_the_field(kwargs: dict, message: str) -> None:
    args = {"entry_prices": ENTRY, "marks": MARKS, "initial_cash": D("2002"), "taker_fee": FEE} | kwargs
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        buy_and_hold_curve(**args)


def test_engine_stats_keep_the_marks_of_each_equity_sample_and_snapshot_them() -> None:
    stats = EngineStats(["BTC/USDT"], ["BTC:1h"])
    stats.on_equity(1, D("100"), False, {"BTC/USDT": D("10")})
    stats.on_equity(2, D("101"), True, {"BTC/USDT": D("11")})
    stats.on_equity(2, D("102"), True, {"BTC/USDT": D("12")})  # same time: replaces
    assert stats.mark_curve == [(1, {"BTC/USDT": D("10")}), (2, {"BTC/USDT": D("12")})]
    assert [t for t, _ in stats.mark_curve] == [t for t, _ in stats.equity_curve]
    twin = EngineStats(["BTC/USDT"], ["BTC:1h"])
    twin.restore(stats.state())
    assert twin.mark_curve == stats.mark_curve and twin.state() == stats.state()


def test_engine_stats_restore_an_older_snapshot_without_marks() -> None:
    stats = EngineStats(["BTC/USDT"], ["BTC:1h"])
    stats.on_equity(1, D("100"), False, {"BTC/USDT": D("10")})
    old = stats.state()
    del old["mark_curve"]
    twin = EngineStats(["BTC/USDT"], ["BTC:1h"])
    twin.restore(old)
    assert twin.equity_curve == [(1, D("100"))]
    assert twin.mark_curve == [(1, {})]
