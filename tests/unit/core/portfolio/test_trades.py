"""Exact-number tests of position lifecycles (trades): ids, averages, R multiple, MAE / MFE."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from portfolio_helpers import BTC, make_fill

from tradebot.core.domain import TradeRecord
from tradebot.core.portfolio.ledger import Ledger


def test_long_lifecycle_record_with_r_multiple_and_excursions(ledger: Ledger) -> None:
    ledger.set_initial_risk(BTC, D("10"))  # set before the entry: applies to the next lifecycle
    r = ledger.apply(make_fill("1", "buy", "1", "100", cid="t-1-1", ts_ms=1000))
    assert r.opened is not None and r.closed is None
    assert r.position_id == r.opened.position_id == "t-BTCUSDT-1"
    ledger.apply(make_fill("2", "buy", "1", "102", cid="t-1-2", ts_ms=2000))  # same intent t-1
    ledger.apply(make_fill("3", "buy", "1", "104", cid="t-2-1", ts_ms=3000))  # a scale-in
    ledger.on_bar(BTC, 120.0, 95.0)
    ledger.on_bar(BTC, 110.0, 99.0)  # inside the extremes: no change
    ledger.apply(make_fill("4", "sell", "1", "110", "0.11", cid="t-3-1", ts_ms=4000))
    assert ledger.closed_trades == ()
    r = ledger.apply(make_fill("5", "sell", "2", "110", "0.22", cid="t-3-1", ts_ms=5000))
    assert r.closed == TradeRecord(
        position_id="t-BTCUSDT-1",
        symbol=BTC,  # type: ignore[arg-type]
        opened_ms=1000,
        closed_ms=5000,
        entry_avg_price=D("102"),
        exit_avg_price=D("110"),
        max_qty=D("3"),
        bought_qty=D("3"),
        sold_qty=D("3"),
        realized_pnl=D("24"),  # (110 − 102) × 3
        fees=D("0.33"),
        net_pnl=D("23.67"),
        initial_risk_per_unit=D("10"),
        r_multiple=1.1835,  # 23.67 / (10 × first entry qty 2)
        mae_pct=-5.0,  # low 95 vs first entry 100
        mfe_pct=20.0,  # high 120 vs 100
        mfe_quote=D("60"),  # (120 − 100) × max qty 3
    )
    assert ledger.closed_trades == (r.closed,)
    assert ledger.open_trade(BTC) is None


def test_short_lifecycle_excursions_are_mirrored(ledger: Ledger) -> None:
    ledger.apply(make_fill("1", "sell", "1", "100", ts_ms=1))
    open_rec = ledger.open_trade(BTC)
    assert open_rec is not None and open_rec.closed_ms is None and open_rec.r_multiple is None
    ledger.on_bar(BTC, 104.0, 90.0)
    r = ledger.apply(make_fill("2", "buy", "1", "95", ts_ms=2))
    assert r.closed is not None
    assert (r.closed.realized_pnl, r.closed.mae_pct, r.closed.mfe_pct) == (D("5"), -4.0, 10.0)
    assert r.closed.mfe_quote == D("10")
    assert (r.closed.entry_avg_price, r.closed.exit_avg_price) == (D("100"), D("95"))


def test_flip_closes_one_lifecycle_and_opens_the_next_with_fee_split(ledger: Ledger) -> None:
    ledger.apply(make_fill("1", "buy", "2", "100", ts_ms=1))
    r = ledger.apply(make_fill("2", "sell", "2", "110", ts_ms=2))  # long → flat
    assert r.closed is not None and r.closed.position_id == "t-BTCUSDT-1"
    assert r.position_id == "t-BTCUSDT-1"
    r = ledger.apply(make_fill("3", "buy", "1", "120", ts_ms=3))  # flat → long
    assert r.opened is not None and r.opened.position_id == "t-BTCUSDT-2"
    r = ledger.apply(make_fill("4", "sell", "3", "130", "0.3", ts_ms=4))  # long → short
    assert r.closed is not None and r.opened is not None
    assert (r.closed.position_id, r.closed.realized_pnl, r.closed.fees) == ("t-BTCUSDT-2", D("10"), D("0.1"))
    assert (r.closed.sold_qty, r.closed.exit_avg_price) == (D("1"), D("130"))
    assert (r.opened.position_id, r.opened.fees, r.opened.max_qty) == ("t-BTCUSDT-3", D("0.2"), D("2"))
    assert (r.opened.sold_qty, r.opened.entry_avg_price) == (D("2"), D("130"))
    assert r.position_id == "t-BTCUSDT-3"
    assert [t.position_id for t in ledger.closed_trades] == ["t-BTCUSDT-1", "t-BTCUSDT-2"]


def test_on_bar_when_flat_is_a_no_op_and_risk_must_be_positive(ledger: Ledger) -> None:
    ledger.on_bar(BTC, 1.0, 0.5)
    assert ledger.open_trade(BTC) is None
    with pytest.raises(
        ValueError, match=r"risk_per_unit of BTC/USDT must be a Decimal > 0, was Decimal\('0'\)"
    ):
        ledger.set_initial_risk(BTC, D("0"))
    ledger.apply(make_fill("1", "buy", "1", "100"))
    ledger.set_initial_risk(BTC, D("4"))  # applies to the open lifecycle
    ledger.apply(make_fill("2", "sell", "1", "98"))
    assert ledger.closed_trades[0].r_multiple == -0.5


def test_portfolio_package_exports() -> None:
    import tradebot.core.portfolio as portfolio

    assert sorted(portfolio.__all__) == [
        "Allocation",
        "AllocationConfig",
        "ApplyResult",
        "Ledger",
        "StreamPnl",
        "StreamView",
        "TradeTracker",
        "compute_targets",
        "unassigned_stream_id",
    ]
