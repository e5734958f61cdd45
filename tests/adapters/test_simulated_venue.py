"""Exact-number tests of the simulated exchange (fill price, fees, balances, filters, partial fills)
and of its async Venue wrapper."""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D

import pytest

from tradebot.adapters.venues.simulated import INSUFFICIENT_BALANCE, SimulatedExchange, SimulatedVenue
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
from tradebot.errors import ConfigError, OrderRejected
from tradebot.ports import Venue

BTC = Symbol("BTC/USDT")
ETH = Symbol("ETH/USDT")
T0 = 1_700_000_000_000


def exchange(usdt="10000", btc="0", **kw) -> SimulatedExchange:
    instruments = [spot_instrument("BTC"), spot_instrument("ETH", step_size="0.0001")]
    return SimulatedExchange(instruments, {"USDT": D(usdt), "BTC": D(btc)}, **kw)


def order(cid: str, side: Side, qty: str, ref: str = "20000", symbol: Symbol = BTC) -> PlaceOrder:
    return PlaceOrder(
        client_order_id=ClientOrderId(cid),
        symbol=symbol,
        side=side,
        qty=D(qty),
        ref_price=D(ref),
        reason="rebalance",
        intent_id=cid.rsplit("-", 1)[0],
        created_ms=T0,
    )


def candle(open_: float, t: int = T0 + 60_000, volume: float = 100.0, symbol: str = BTC) -> Candle:
    return Candle(symbol, Timeframe.M1, t, open_, open_ + 100, open_ - 100, open_, volume)


def test_buy_then_sell_fill_prices_fees_and_balances():
    ex = exchange()
    assert ex.submit(order("r-1-1", Side.BUY, "0.1"), T0).status is OrderStatus.ACCEPTED
    (buy,) = ex.on_candle(candle(20000.37))
    # 20000.37 × 1.0005 = 20010.370185 -> up to tick 20010.38; fee 0.1 × 20010.38 × 0.001
    assert buy == Fill(
        venue="simulated",
        symbol=BTC,
        trade_id="sim-1",
        client_order_id="r-1-1",
        side=Side.BUY,
        qty=D("0.1"),
        price=D("20010.38"),
        fee_quote=D("2.00103800"),
        ts_ms=T0 + 60_000,
        exchange_order_id="sim-o1",
        fee=D("2.00103800"),
        fee_currency="USDT",
    )
    assert ex.balances() == {"USDT": D("7996.96096200"), "BTC": D("0.1")}
    ex.submit(order("r-2-1", Side.SELL, "0.05"), T0 + 60_000)
    (sell,) = ex.on_candle(candle(21000.0, T0 + 120_000))
    # 21000 × 0.9995 = 20989.5 -> down to tick 20989.50; fee 1049.475 × 0.001 = 1.049475
    assert (sell.trade_id, sell.price, sell.qty, sell.fee_quote) == (
        "sim-2",
        D("20989.50"),
        D("0.05"),
        D("1.04947500"),
    )
    assert ex.balances() == {"USDT": D("9045.38648700"), "BTC": D("0.05")}
    assert ex.fills_for(BTC) == [buy, sell]
    report = ex.fetch_order(ClientOrderId("r-1-1"))
    assert (report.status, report.filled_qty, report.avg_price) == (
        OrderStatus.FILLED,
        D("0.1"),
        D("20010.38"),
    )


def test_order_never_fills_on_a_candle_that_opened_before_the_submit():
    ex = exchange()
    ex.submit(order("r-1-1", Side.BUY, "0.1"), T0 + 60_000)  # decided at the close of the T0 candle
    assert ex.on_candle(candle(20000.0, T0)) == ()
    (fill,) = ex.on_candle(candle(20100.0, T0 + 60_000))
    assert (fill.price, fill.ts_ms) == (D("20110.05"), T0 + 60_000)


def test_sell_price_rounds_down_to_tick():
    ex = exchange(btc="1")
    ex.submit(order("r-1-1", Side.SELL, "0.1"), T0)
    (fill,) = ex.on_candle(candle(20000.37))
    # 20000.37 × 0.9995 = 19990.369815 -> 19990.36
    assert fill.price == D("19990.36")


def test_zero_slippage_fills_at_open():
    ex = exchange(slippage_bps=0)
    ex.submit(order("r-1-1", Side.BUY, "0.1"), T0)
    assert ex.on_candle(candle(20000.37))[0].price == D("20000.37")


@pytest.mark.parametrize(
    ("qty", "ref", "reason"),
    [
        ("0.000015", "20000", "Filter failure: LOT_SIZE"),  # off step
        ("0", "20000", "Filter failure: LOT_SIZE"),
        ("0.0002", "20000", "Filter failure: NOTIONAL"),  # 4 USDT < 5
    ],
)
def test_filter_rejections(qty, ref, reason):
    ex = exchange()
    report = ex.submit(order("r-1-1", Side.BUY, qty, ref), T0)
    assert (report.status, report.reason, report.filled_qty) == (OrderStatus.REJECTED, reason, D(0))
    assert ex.open_orders() == []
    assert ex.fetch_order(ClientOrderId("r-1-1")) is None


def test_min_qty_and_max_notional_rejections():
    inst = dataclasses.replace(spot_instrument("BTC"), min_qty=D("0.001"), max_notional=D("1000"))
    ex = SimulatedExchange([inst], {"USDT": D("10000")})
    assert ex.submit(order("a-1-1", Side.BUY, "0.0005"), T0).reason == "Filter failure: LOT_SIZE"
    assert ex.submit(order("a-2-1", Side.BUY, "0.06"), T0).reason == "Filter failure: NOTIONAL"  # 1200
    assert ex.submit(order("a-3-1", Side.BUY, "0.04"), T0).status is OrderStatus.ACCEPTED  # 800


def test_unknown_symbol_and_limit_orders_are_rejected():
    ex = exchange()
    assert ex.submit(order("r-1-1", Side.BUY, "1", symbol=Symbol("XRP/USDT")), T0).reason == "Invalid symbol."
    limit = dataclasses.replace(
        order("r-2-1", Side.BUY, "0.1"), order_type=OrderType.LIMIT, limit_price=D("1")
    )
    assert ex.submit(limit, T0).status is OrderStatus.REJECTED


def test_duplicate_client_order_id_while_open_is_rejected():
    ex = exchange()
    assert ex.submit(order("r-1-1", Side.BUY, "0.1"), T0).status is OrderStatus.ACCEPTED
    dup = ex.submit(order("r-1-1", Side.BUY, "0.2"), T0)
    assert (dup.status, dup.reason) == (OrderStatus.REJECTED, "Duplicate order sent.")
    assert [r.qty for r in ex.open_orders()] == [D("0.1")]


def test_sells_fill_before_buys_on_the_same_candle():
    ex = exchange(usdt="0", btc="1")
    ex.submit(order("r-1-1", Side.BUY, "0.1"), T0)  # needs the sell's proceeds
    ex.submit(order("r-2-1", Side.SELL, "0.5"), T0)
    events = ex.on_candle(candle(20000.0))
    assert [(e.trade_id, e.side) for e in events] == [("sim-1", Side.SELL), ("sim-2", Side.BUY)]
    # sell 0.5 at 19990.00: +9995 − 9.995; buy 0.1 at 20010.00: −2001 − 2.001
    assert ex.balances() == {"USDT": D("7982.00400000"), "BTC": D("0.6")}


def test_partial_fill_model_caps_by_candle_volume():
    ex = exchange(max_volume_fraction="0.1")
    ex.submit(order("r-1-1", Side.BUY, "0.2"), T0)
    (first,) = ex.on_candle(candle(20000.0, volume=1.23456))  # budget 0.123456 -> 0.12345
    assert first.qty == D("0.12345")
    report = ex.fetch_order(ClientOrderId("r-1-1"))
    assert (report.status, report.filled_qty) == (OrderStatus.PARTIALLY_FILLED, D("0.12345"))
    assert len(ex.open_orders()) == 1
    (second,) = ex.on_candle(candle(20100.0, T0 + 120_000, volume=10.0))
    assert (second.qty, second.price) == (D("0.07655"), D("20110.05"))
    assert ex.fetch_order(ClientOrderId("r-1-1")).status is OrderStatus.FILLED
    assert ex.open_orders() == []


def test_partial_fill_budget_is_shared_and_zero_volume_fills_nothing():
    ex = exchange(btc="1", max_volume_fraction="0.5")
    ex.submit(order("r-1-1", Side.SELL, "0.3"), T0)
    ex.submit(order("r-2-1", Side.SELL, "0.3"), T0)
    assert list(ex.on_candle(candle(20000.0, volume=0.0))) == []
    events = ex.on_candle(candle(20000.0, T0 + 120_000, volume=1.0))  # budget 0.5
    assert [(e.client_order_id, e.qty) for e in events] == [("r-1-1", D("0.3")), ("r-2-1", D("0.2"))]


def test_insufficient_balance_expires_at_fill_time():
    ex = exchange(usdt="100")
    assert ex.submit(order("r-1-1", Side.BUY, "0.01"), T0).status is OrderStatus.ACCEPTED  # ~200 USDT
    (update,) = ex.on_candle(candle(20000.0))
    assert update == OrderUpdate(
        client_order_id="r-1-1",
        symbol=BTC,
        status=OrderStatus.EXPIRED,
        ts_ms=T0 + 60_000,
        exchange_order_id="sim-o1",
        reason=INSUFFICIENT_BALANCE,
    )
    assert INSUFFICIENT_BALANCE.startswith("-2010 ")
    report = ex.fetch_order(ClientOrderId("r-1-1"))
    assert (report.status, report.reason) == (OrderStatus.EXPIRED, INSUFFICIENT_BALANCE)
    assert ex.balances() == {"USDT": D("100"), "BTC": D("0")}
    assert ex.open_orders() == []


def test_buy_of_exactly_the_balance_including_fee_fills():
    # 0.01 × 20010.00 = 200.1, fee 0.2001 -> needs 200.3001
    ex = exchange(usdt="200.3001")
    ex.submit(order("r-1-1", Side.BUY, "0.01"), T0)
    assert isinstance(ex.on_candle(candle(20000.0))[0], Fill)
    assert ex.balances()["USDT"] == D("0E-8")


def test_sell_more_than_held_expires():
    ex = exchange(btc="0.01")
    ex.submit(order("r-1-1", Side.SELL, "0.02"), T0)
    (update,) = ex.on_candle(candle(20000.0))
    assert update.status is OrderStatus.EXPIRED


def test_nothing_queued_returns_the_shared_empty_result():
    ex = exchange()
    first = ex.on_candle(candle(20000.0))
    assert first == () and ex.on_candle(candle(20000.0, symbol=ETH)) is first
    ex.submit(order("r-1-1", Side.BUY, "0.1"), T0)
    assert len(ex.on_candle(candle(20000.0, symbol=ETH))) == 0  # other symbol: untouched
    assert len(ex.on_candle(candle(20000.0))) == 1
    assert ex.on_candle(candle(20000.0)) is first


def test_cancel_removes_from_queue_and_unknown_cancel_raises():
    ex = exchange()
    ex.submit(order("r-1-1", Side.BUY, "0.1"), T0)
    report = ex.cancel(ClientOrderId("r-1-1"), T0 + 1)
    assert (report.status, report.ts_ms) == (OrderStatus.CANCELED, T0 + 1)
    assert ex.on_candle(candle(20000.0)) == ()
    with pytest.raises(OrderRejected, match="-2011 Unknown order sent"):
        ex.cancel(ClientOrderId("r-1-1"), T0 + 2)


def test_constructor_accepts_a_mapping_of_instruments():
    ex = SimulatedExchange({BTC: spot_instrument("BTC")}, {"USDT": D("1")}, slippage_bps=2.5)
    assert list(ex.instruments) == [BTC]
    assert ex.slippage_bps == D("2.5")


def test_constructor_validates():
    with pytest.raises(ValueError, match="slippage_bps must be >= 0, was -1"):
        exchange(slippage_bps=-1)
    with pytest.raises(ValueError, match="max_volume_fraction must be in"):
        exchange(max_volume_fraction="1.5")


async def test_async_venue_wrapper():
    venue = SimulatedVenue(exchange())
    assert isinstance(venue, Venue)
    assert venue.name == "simulated"
    assert list(await venue.load_instruments(["BTC/USDT"])) == [BTC]
    with pytest.raises(ConfigError, match="XRP/USDT"):
        await venue.load_instruments(["XRP/USDT"])
    with pytest.raises(OrderRejected, match="r-9-1: Filter failure: NOTIONAL"):
        await venue.submit(order("r-9-1", Side.BUY, "0.0001"))
    accepted = await venue.submit(order("r-1-1", Side.BUY, "0.1"))
    assert (accepted.status, accepted.ts_ms) == (OrderStatus.ACCEPTED, T0)
    assert [r.client_order_id for r in await venue.fetch_open_orders(BTC)] == ["r-1-1"]
    assert await venue.fetch_open_orders(ETH) == []
    (fill,) = venue.on_candle(candle(20000.0))
    assert (await venue.fetch_order(BTC, ClientOrderId("r-1-1"))).status is OrderStatus.FILLED
    assert await venue.fetch_order(BTC, ClientOrderId("nope")) is None
    assert await venue.fetch_my_trades(BTC) == [fill]
    assert await venue.fetch_my_trades(BTC, since_ms=T0 + 60_001) == []
    assert (await venue.fetch_balances())["BTC"] == D("0.1")
    await venue.submit(order("r-2-1", Side.SELL, "0.05"))
    canceled = await venue.cancel(BTC, ClientOrderId("r-2-1"))
    assert canceled.status is OrderStatus.CANCELED
    await venue.close()
