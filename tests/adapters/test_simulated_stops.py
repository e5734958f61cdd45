"""Stop orders resting at the simulated exchange: trigger at the stop price, gap-through at the open,
no trigger above the stop, refusals of stops the market has already reached, cancel, the lock of the
base units a sell stop sells, stop-limits, buy stops; exact numbers (slippage 5 bps, fee 0.1 %)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from tradebot.adapters.venues.simulated import (
    INSUFFICIENT_BALANCE,
    WOULD_TRIGGER_IMMEDIATELY,
    SimulatedExchange,
    SimulatedVenue,
)
from tradebot.core.domain import (
    Candle,
    ClientOrderId,
    Fill,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PlaceOrder,
    Side,
    Symbol,
    Timeframe,
    spot_instrument,
)
from tradebot.errors import OrderRejected

BTC = Symbol("BTC/USDT")
T0 = 1_700_000_000_000
M = 60_000


def exchange(btc: str = "0.5", usdt: str = "0", **kw: object) -> SimulatedExchange:
    return SimulatedExchange([spot_instrument("BTC")], {"USDT": D(usdt), "BTC": D(btc)}, **kw)  # type: ignore[arg-type]


def stop(cid: str, qty: str = "0.5", stop_price: str = "19900.00", *, side: Side = Side.SELL,
         ref: str = "20000", limit: str | None = None, t: int = T0) -> PlaceOrder:  # fmt: skip
    return PlaceOrder(
        client_order_id=ClientOrderId(cid), symbol=BTC, side=side, qty=D(qty), ref_price=D(ref),
        reason="stop", intent_id=cid.rsplit("-", 1)[0], created_ms=t,
        order_type=OrderType.STOP_LIMIT if limit else OrderType.STOP_MARKET,
        stop_price=D(stop_price), limit_price=D(limit) if limit else None, reduce_only=True,
    )  # fmt: skip


def market(cid: str, side: Side, qty: str, t: int = T0) -> PlaceOrder:
    return PlaceOrder(client_order_id=ClientOrderId(cid), symbol=BTC, side=side, qty=D(qty), ref_price=D("20000"),
                      reason="rebalance", intent_id=cid.rsplit("-", 1)[0], created_ms=t)  # fmt: skip


def bar(n: int, open_: float, high: float, low: float, close: float | None = None) -> Candle:
    return Candle(BTC, Timeframe.M1, T0 + n * M, open_, high, low, open_ if close is None else close, 100.0)


def test_a_sell_stop_triggers_at_its_stop_price_on_a_later_candle() -> None:
    ex = exchange()
    report = ex.submit(stop("s-1-1"), T0)
    assert (report.status, report.order_type, report.stop_price) == (
        OrderStatus.ACCEPTED, OrderType.STOP_MARKET, D("19900.00"))  # fmt: skip
    assert ex.on_candle(bar(0, 20000, 20100, 19950)) == []  # armed: low 19950 > 19900
    assert ex.locked() == {"BTC": D("0.5")}
    assert [o.client_order_id for o in ex.open_orders(BTC)] == ["s-1-1"] and ex.has_queued_orders()
    (fill,) = ex.on_candle(bar(1, 19990, 20000, 19850))
    # 19900 × (1 − 0.0005) = 19890.05; fee 0.5 × 19890.05 × 0.001 = 9.945025
    assert fill == Fill(venue="simulated", symbol=BTC, trade_id="sim-1", client_order_id="s-1-1", side=Side.SELL,
                        qty=D("0.5"), price=D("19890.05"), fee_quote=D("9.94502500"), ts_ms=T0 + 2 * M,
                        exchange_order_id="sim-o1", fee=D("9.94502500"), fee_currency="USDT")  # fmt: skip
    assert ex.balances() == {"USDT": D("9935.07997500"), "BTC": D("0.0")}
    assert ex.locked() == {} and not ex.has_queued_orders()
    final = ex.fetch_order(ClientOrderId("s-1-1"))
    assert final is not None and (final.status, final.avg_price) == (OrderStatus.FILLED, D("19890.05"))


def test_a_candle_that_opens_through_the_stop_fills_at_its_open() -> None:
    ex = exchange()
    ex.submit(stop("s-2-1"), T0)
    ex.on_candle(bar(0, 20000, 20050, 19950, close=19960))
    (fill,) = ex.on_candle(bar(1, 19800, 19820, 19700))  # gapped from 19960 to 19800
    assert isinstance(fill, Fill)
    assert (fill.price, fill.fee_quote) == (D("19790.10"), D("9.89505000"))  # 19800 × 0.9995


def test_no_trigger_while_the_low_stays_above_and_a_touch_triggers() -> None:
    ex = exchange(slippage_bps=0)
    ex.submit(stop("s-3-1"), T0)
    assert ex.on_candle(bar(0, 20000, 20100, 19900.01)) == []
    assert ex.on_candle(bar(1, 19950, 19990, 19900.01)) == []
    (fill,) = ex.on_candle(bar(2, 19950, 19990, 19900.0))  # low exactly at the stop
    assert isinstance(fill, Fill) and fill.price == D("19900.00")


def test_a_stop_the_market_has_reached_is_refused() -> None:
    ex = exchange()
    refused = ex.submit(stop("s-4-1", ref="19900.00"), T0)  # planned at a mark at the stop
    assert (refused.status, refused.reason) == (OrderStatus.REJECTED, WOULD_TRIGGER_IMMEDIATELY)
    buy_stop = ex.submit(stop("s-4-2", side=Side.BUY, stop_price="20000.00"), T0)  # buy stop at the mark
    assert (buy_stop.status, buy_stop.reason) == (
        OrderStatus.REJECTED,
        "-2010 Order would trigger immediately.",
    )
    assert ex.fetch_order(ClientOrderId("s-4-1")) is None
    # accepted at a mark of 20000, but the candle it arrives at opens below the stop
    ex.submit(stop("s-4-3"), T0)
    (expired,) = ex.on_candle(bar(0, 19899.99, 19950, 19800))
    assert expired == OrderUpdate(client_order_id="s-4-3", symbol=BTC, status=OrderStatus.EXPIRED, ts_ms=T0,
                                  exchange_order_id="sim-o1", reason=WOULD_TRIGGER_IMMEDIATELY)  # fmt: skip
    assert ex.balances()["BTC"] == D("0.5") and ex.locked() == {}


async def test_the_venue_raises_the_binance_refusal() -> None:
    venue = SimulatedVenue(exchange())
    with pytest.raises(OrderRejected, match=r"s-5-1: -2010 Order would trigger immediately\."):
        await venue.submit(stop("s-5-1", stop_price="20000.01"))
    with pytest.raises(OrderRejected, match="PRICE_FILTER"):
        await venue.submit(stop("s-5-2", stop_price="19900.005"))  # off the 0.01 tick
    with pytest.raises(OrderRejected, match="NOTIONAL"):  # 0.0002 × 19900 = 3.98 < 5
        await venue.submit(stop("s-5-3", qty="0.0002"))


def test_a_cancelled_stop_frees_its_units_and_never_fills() -> None:
    ex = exchange()
    ex.submit(stop("s-6-1"), T0)
    ex.on_candle(bar(0, 20000, 20100, 19950))
    cancelled = ex.cancel(ClientOrderId("s-6-1"), T0 + M)
    assert (cancelled.status, cancelled.filled_qty, cancelled.stop_price) == (
        OrderStatus.CANCELED, D(0), D("19900.00"))  # fmt: skip
    assert ex.locked() == {} and ex.open_orders() == []
    assert ex.on_candle(bar(1, 19950, 19960, 19000)) == ()
    assert ex.balances() == {"USDT": D(0), "BTC": D("0.5")} and ex.fills_for(BTC) == []
    with pytest.raises(OrderRejected, match="-2011"):
        ex.cancel(ClientOrderId("s-6-1"), T0 + M)


def test_a_resting_sell_stop_locks_the_units_it_sells() -> None:
    ex = exchange()
    ex.submit(stop("s-7-1", qty="0.4"), T0)
    ex.on_candle(bar(0, 20000, 20100, 19950))  # locks 0.4 of 0.5 BTC
    ex.submit(market("m-7-2", Side.SELL, "0.2"), T0 + M)  # only 0.1 is free
    ex.submit(stop("s-7-3", qty="0.2", t=T0 + M), T0 + M)
    events = ex.on_candle(bar(1, 20000, 20050, 19950))
    assert [(e.client_order_id, e.status, e.reason) for e in events if isinstance(e, OrderUpdate)] == [
        ("m-7-2", OrderStatus.EXPIRED, INSUFFICIENT_BALANCE),
        ("s-7-3", OrderStatus.EXPIRED, INSUFFICIENT_BALANCE),
    ]
    ex.submit(market("m-7-4", Side.SELL, "0.1"), T0 + 2 * M)  # the free 0.1 sells
    (sold,) = ex.on_candle(bar(2, 20000, 20050, 19950))
    assert isinstance(sold, Fill) and sold.qty == D("0.1")
    assert ex.balances()["BTC"] == D("0.4") and ex.locked() == {"BTC": D("0.4")}
    ex.cancel(ClientOrderId("s-7-1"), T0 + 3 * M)  # a rebalance frees the stop's units first …
    ex.submit(market("m-7-5", Side.SELL, "0.4", t=T0 + 3 * M), T0 + 3 * M)
    (freed,) = ex.on_candle(bar(3, 20000, 20050, 19950))  # … then sells them
    assert isinstance(freed, Fill) and freed.qty == D("0.4") and ex.balances()["BTC"] == D(0)


def test_a_market_order_fills_at_the_open_before_a_stop_arms_on_the_bought_units() -> None:
    ex = exchange(btc="0", usdt="10000")
    ex.submit(market("m-8-1", Side.BUY, "0.25"), T0)
    ex.submit(stop("s-8-2", qty="0.25"), T0)  # sent in the same step as the entry
    buy, sell = ex.on_candle(bar(0, 20000, 20010, 19850))
    assert isinstance(buy, Fill) and isinstance(sell, Fill)
    assert (buy.price, buy.ts_ms, sell.price, sell.ts_ms) == (D("20010.00"), T0, D("19890.05"), T0 + M)


def test_a_stop_limit_fills_when_marketable_and_rests_at_its_limit_after_a_gap() -> None:
    ex = exchange()
    ex.submit(stop("s-9-1", qty="0.2", limit="19800.00"), T0)
    (fill,) = ex.on_candle(bar(0, 20000, 20010, 19850))  # 19890.05 >= 19800: a taker fill
    assert isinstance(fill, Fill) and (fill.price, fill.fee_quote) == (D("19890.05"), D("3.97801000"))
    ex.submit(stop("s-9-2", qty="0.2", limit="19800.00", t=T0 + M), T0 + M)
    ex.on_candle(bar(1, 20000, 20010, 19950, close=19960))
    assert ex.on_candle(bar(2, 19700, 19750, 19650)) == []  # gapped: 19690.15 < 19800, rests at 19800
    assert ex.locked() == {"BTC": D("0.2")}
    assert ex.on_candle(bar(3, 19700, 19799.99, 19600)) == []
    (rest_fill,) = ex.on_candle(bar(4, 19750, 19850, 19700))  # high 19850 >= 19800
    assert isinstance(rest_fill, Fill) and (rest_fill.price, rest_fill.ts_ms) == (D("19800.00"), T0 + 5 * M)
    assert rest_fill.fee_quote == D("3.96000000")  # maker fee 0.1 % of 3960
    assert ex.balances()["BTC"] == D("0.1") and ex.locked() == {}


def test_a_buy_stop_triggers_on_the_high_above_the_market() -> None:
    ex = exchange(btc="0", usdt="10000")
    ex.submit(stop("s-10-1", qty="0.1", side=Side.BUY, stop_price="20100.00"), T0)
    assert ex.on_candle(bar(0, 20000, 20099.99, 19950)) == []
    assert ex.locked() == {}  # a buy stop locks nothing
    (fill,) = ex.on_candle(bar(1, 20050, 20200, 20000))
    # 20100 × 1.0005 = 20110.05; a later candle opening above the stop fills at its open instead
    assert isinstance(fill, Fill) and (fill.side, fill.price) == (Side.BUY, D("20110.05"))


def test_stop_fields_are_validated_with_the_field_and_value() -> None:
    base = {"client_order_id": ClientOrderId("v-1-1"), "symbol": BTC, "side": Side.SELL, "qty": D("0.1"),
            "ref_price": D("20000"), "reason": "stop", "intent_id": "v-1", "created_ms": T0}  # fmt: skip
    with pytest.raises(ValueError, match=r"v-1-1: a stop_market order needs stop_price > 0, was None"):
        PlaceOrder(**base, order_type=OrderType.STOP_MARKET)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"stop_price > 0, was Decimal\('0'\)"):
        PlaceOrder(**base, order_type=OrderType.STOP_MARKET, stop_price=D(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"a stop_limit order needs limit_price > 0, was None"):
        PlaceOrder(**base, order_type=OrderType.STOP_LIMIT, stop_price=D("19900"))  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"stop_price is only for stop orders, was Decimal\('19900'\) on a market"
    ):
        PlaceOrder(**base, stop_price=D("19900"))  # type: ignore[arg-type]
    plain = PlaceOrder(**base)  # type: ignore[arg-type]
    assert (plain.order_type, plain.stop_price, plain.reduce_only) == (OrderType.MARKET, None, False)
    assert OrderType.STOP_MARKET.is_stop and OrderType.STOP_LIMIT.is_stop and not OrderType.LIMIT.is_stop
