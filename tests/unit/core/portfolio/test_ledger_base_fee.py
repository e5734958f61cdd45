"""A venue that takes a buy's commission in the base asset (Binance without BNB): the ledger holds what
the venue holds, books the fee in quote, and keeps the stream attribution exact. Also a maker rebate
(a negative quote fee, Deribit)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from portfolio_helpers import BTC, make_fill

from tradebot.core.portfolio import Ledger

STREAMS = {BTC: ["BTC:1h", "BTC:4h"]}


def _ledger() -> Ledger:
    return Ledger("USDT", Decimal("50000"), [BTC], STREAMS, run_id="t")


def _base_fee_buy(trade_id: str, qty: str, price: str, fee_btc: str):
    fill = make_fill(trade_id, "buy", qty, price, str(Decimal(fee_btc) * Decimal(price)))
    return replace(fill, fee=Decimal(fee_btc), fee_currency="BTC")


def test_a_base_asset_fee_leaves_the_position_and_is_booked_in_quote() -> None:
    ledger = _ledger()
    ledger.set_stream_targets(BTC, {"BTC:1h": Decimal("0.5"), "BTC:4h": Decimal("0.5")}, Decimal("40000"))
    result = ledger.apply(_base_fee_buy("b1", "1", "40000", "0.001"))
    # Binance: 1 BTC bought for 40000 USDT, 0.001 BTC commission → the account holds 0.999 BTC, 10000 USDT
    assert result.position_after == Decimal("0.999")
    assert ledger.position(BTC) == Decimal("0.999")
    assert ledger.cash == Decimal("10000")
    assert ledger.fees(BTC) == Decimal("40")  # 0.001 BTC at the fill price
    assert ledger.avg_entry(BTC) == Decimal("40000")
    # the streams that got the fill pay the fee units pro rata: 0.5 − 0.0005 each, Σ = asset qty
    assert ledger.stream_units("BTC:1h") == Decimal("0.4995")
    assert ledger.stream_units("BTC:4h") == Decimal("0.4995")
    # equity at the fill price = cash + held units: the fee is the only cost
    assert ledger.equity({BTC: Decimal("40000")}) == Decimal("49960")
    total = sum((ledger.stream_pnl(s, Decimal("40000")).total for s in STREAMS[BTC]), Decimal(0))
    assert total == ledger.asset_pnl(BTC, Decimal("40000")).total == Decimal("-40")


def test_selling_what_is_held_after_base_fees_closes_the_position_exactly() -> None:
    ledger = _ledger()
    ledger.apply(_base_fee_buy("b1", "1", "40000", "0.001"))
    result = ledger.apply(make_fill("s1", "sell", "0.999", "41000", "40.959"))  # quote fee on the sell
    assert result.position_after == 0
    assert result.closed is not None
    # cash: 10000 + 0.999 × 41000 − 40.959 = 50918.041; realized (41000 − 40000) × 0.999 = 999
    assert ledger.cash == Decimal("50918.041")
    assert ledger.realized(BTC) == Decimal("999")
    assert ledger.fees(BTC) == Decimal("80.959")


def test_a_quote_fee_is_unchanged() -> None:
    ledger = _ledger()
    ledger.apply(make_fill("b1", "buy", "1", "40000", "40"))
    assert ledger.position(BTC) == Decimal("1")
    assert ledger.cash == Decimal("9960")


def test_a_maker_rebate_is_a_negative_fee_that_adds_to_cash() -> None:
    # Deribit pays makers on some perpetuals ("maker_commission": -0.0002): the fill's fee is negative
    ledger = _ledger()
    ledger.apply(make_fill("m1", "buy", "1", "40000", "-8"))
    assert ledger.position(BTC) == Decimal("1")
    assert ledger.cash == Decimal("10008")
    assert ledger.fees(BTC) == Decimal("-8")
    assert ledger.equity({BTC: Decimal("40000")}) == Decimal("50008")
    assert ledger.asset_pnl(BTC, Decimal("40000")).total == Decimal("8")
    result = ledger.apply(make_fill("m2", "sell", "1", "40000", "-8"))
    assert result.closed is not None and ledger.position(BTC) == 0
    assert (ledger.cash, ledger.fees(BTC), ledger.realized(BTC)) == (Decimal("50016"), Decimal("-16"), 0)
