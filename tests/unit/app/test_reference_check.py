"""The second reference's pure rules: when a decision is large, which marks disagree with the venue,
and when the decision is refused (see :mod:`tradebot.app.daemon.reference_check`)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebot.app.daemon.reference_check import ReferenceConfig, describe, disagreements, is_large, refusal
from tradebot.core.domain import ClientOrderId, PlaceOrder, Side, Symbol

BTC, ETH = Symbol("BTC/USDT"), Symbol("ETH/USDT")
CONFIG = ReferenceConfig()  # large at 10 % of equity, band 5 %


def order(symbol: Symbol, qty: str, price: str, side: Side = Side.SELL) -> PlaceOrder:
    return PlaceOrder(client_order_id=ClientOrderId(f"r-1-{qty}"), symbol=symbol, side=side, qty=D(qty),
                      ref_price=D(price), reason="t", intent_id="i", created_ms=0)  # fmt: skip


def test_a_decision_is_large_from_the_fraction_of_equity_on() -> None:
    # 0.04 BTC × 25,000 = 1,000 quote: exactly 10 % of 10,000
    assert is_large([order(BTC, "0.04", "25000")], D("10000"), CONFIG)
    assert not is_large([order(BTC, "0.0399", "25000")], D("10000"), CONFIG)
    # the step's orders count together: 600 + 500 quote
    assert is_large([order(BTC, "0.024", "25000"), order(ETH, "0.3", "1666.67")], D("10000"), CONFIG)
    assert is_large([order(BTC, "0.001", "25000")], D("0"), CONFIG)  # no equity: any order is large


def test_the_half_price_mark_disagrees_and_names_the_prices() -> None:
    marks = {"BTC/USDT": D("13814"), "ETH/USDT": D("1700")}
    found = disagreements(marks, {BTC: D("27610"), ETH: D("1701")}, CONFIG)
    assert [(d.symbol, d.mark, d.reference) for d in found] == [(BTC, D("13814"), D("27610"))]
    assert abs(found[0].deviation - D("0.4997")) < D("0.0001")
    text = describe(found, CONFIG)
    assert text == "BTC/USDT mark 13814 vs venue 27610 (50.0% off, band 5.0%)"
    assert refusal(found, None, increases=False, config=CONFIG) == f"second reference disagrees: {text}"


def test_within_the_band_nothing_disagrees() -> None:
    # 4.99 % off: inside the 5 % band; a missing mark is a disagreement
    assert disagreements({"BTC/USDT": D("26247.65")}, {BTC: D("25000")}, CONFIG) == []
    (missing,) = disagreements({}, {BTC: D("25000")}, CONFIG)
    assert missing.deviation == 1


def test_an_unreadable_price_refuses_only_what_increases() -> None:
    assert refusal([], "BTC/USDT: VenueUnavailable: 503", increases=False, config=CONFIG) is None
    reason = refusal([], "BTC/USDT: VenueUnavailable: 503", increases=True, config=CONFIG)
    assert reason is not None and "no second reference" in reason and "503" in reason
    assert refusal([], None, increases=True, config=CONFIG) is None


@pytest.mark.parametrize(
    ("field", "value"), [("large_decision_fraction", 0.0), ("max_deviation_fraction", 1.0),
                         ("max_deviation_fraction", -0.1)]
)  # fmt: skip
def test_bad_config_names_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        ReferenceConfig(**{field: value})  # type: ignore[arg-type]


@given(
    mark=st.decimals(min_value=D("0.01"), max_value=D("1e7"), places=2),
    ref=st.decimals(min_value=D("0.01"), max_value=D("1e7"), places=2),
)
def test_disagreement_is_exactly_the_band_rule(mark: D, ref: D) -> None:
    found = disagreements({"BTC/USDT": mark}, {BTC: ref}, CONFIG)
    assert bool(found) == (abs(mark / ref - 1) > D("0.05"))
