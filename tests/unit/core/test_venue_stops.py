"""The protective stops' pure rules (:mod:`tradebot.core.engine.stops`): which stop a position wants,
how one is replaced (cancel first, the new one on the confirmation), and what a refusal does."""

from __future__ import annotations

from decimal import Decimal as D

from tradebot.core.domain import (
    CancelOrder,
    ClientOrderId,
    Order,
    OrderStatus,
    OrderType,
    PlaceOrder,
    spot_instrument,
)
from tradebot.core.engine.records import RecordBuilder
from tradebot.core.engine.stats import EngineStats
from tradebot.core.engine.stops import STOP_REASON, VenueStops
from tradebot.core.portfolio.ledger import Ledger

BTC = "BTC/USDT"


def stops() -> tuple[VenueStops, dict[ClientOrderId, Order]]:
    orders: dict[ClientOrderId, Order] = {}
    ledger = Ledger("USDT", D(10000), (BTC,), {BTC: ("BTC-1h",)}, run_id="r")
    records = RecordBuilder("r", ledger, EngineStats((BTC,), ["BTC-1h"]), {})
    return VenueStops("r", {BTC: spot_instrument("BTC")}, lambda: orders, records), orders


def test_the_wanted_stop_is_the_position_rounded_down_below_the_mark() -> None:
    vs, _ = stops()
    # 0.123456 BTC → 0.12345 (step 1e-5); stop 25,123.456 → 25,123.45 (tick 0.01, floor)
    assert vs.wanted(BTC, D("0.123456"), 25123.456, 26000.0) == (D("0.12345"), D("25123.45"))
    assert vs.wanted(BTC, D("0.1"), 26000.0, 26000.0) is None  # the mark is at the stop: the overlay exits
    assert vs.wanted(BTC, D("0.0001"), 25000.0, 26000.0) is None  # 2.5 USDT: below the 5 USDT notional
    assert vs.wanted(BTC, D("0"), 25000.0, 26000.0) is None
    assert vs.wanted(BTC, D("0.1"), None, 26000.0) is None


def test_a_new_stop_then_a_replacement_cancels_first_and_places_on_the_confirmation() -> None:
    vs, orders = stops()
    first = vs.sync(BTC, 1_000, (D("0.1"), D("25000")), 26000.0)
    cmd = first[-1]
    assert isinstance(cmd, PlaceOrder) and cmd.client_order_id == "r-s1" and vs.is_stop(cmd.client_order_id)
    assert (cmd.order_type, cmd.stop_price, cmd.qty, cmd.reduce_only, cmd.reason) == (
        OrderType.STOP_MARKET, D("25000"), D("0.1"), True, STOP_REASON)  # fmt: skip
    assert vs.sync(BTC, 2_000, (D("0.1"), D("25000")), 26000.0) == []  # the same stop: nothing
    (cancel,) = vs.sync(BTC, 3_000, (D("0.1"), D("25500")), 26000.0)  # the trail moved
    assert isinstance(cancel, CancelOrder) and cancel.client_order_id == "r-s1"
    assert vs.sync(BTC, 3_500, (D("0.1"), D("25600")), 26000.0) == []  # its cancel is on its way
    orders[ClientOrderId("r-s1")].transition(OrderStatus.ACCEPTED)
    orders[ClientOrderId("r-s1")].transition(OrderStatus.CANCELED)
    vs.on_terminal(orders[ClientOrderId("r-s1")])
    assert vs.live == {} and vs.due_ms == {BTC: 3_000} and BTC in vs.dirty
    new = vs.sync(BTC, vs.due_ms.pop(BTC), (D("0.1"), D("25600")), 26000.0)[-1]
    assert isinstance(new, PlaceOrder) and (new.client_order_id, new.stop_price, new.created_ms) == (
        "r-s2", D("25600"), 3_000)  # fmt: skip
    assert not vs.is_stop("r-12-1") and not vs.is_stop("r-sx")


def test_a_refused_stop_is_not_sent_again_at_that_price() -> None:
    vs, orders = stops()
    vs.sync(BTC, 1_000, (D("0.1"), D("25000")), 26000.0)
    order = orders[ClientOrderId("r-s1")]
    order.transition(OrderStatus.EXPIRED)  # "-2010 Order would trigger immediately."
    vs.on_terminal(order)
    assert vs.wanted(BTC, D("0.1"), 25000.0, 26000.0) is None  # the overlay's own exit takes over
    assert vs.wanted(BTC, D("0.1"), 25100.0, 26000.0) == (D("0.1"), D("25100"))  # a new level is sent
