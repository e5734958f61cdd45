"""The Venue contract: one suite, run against SimulatedVenue and CcxtVenue on the exchange simulator.

Each implementation provides a harness: the venue, a symbol, the reference price, an order that
stays open, and ``settle()`` (let accepted market orders fill: a candle for the simulated venue;
nothing for the simulator, whose market orders fill at once).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal as D
from pathlib import Path

import pytest
import structlog

from tradebot.adapters.venues.ccxt_venue import CcxtVenue, VenueConfig, binance_exchange
from tradebot.adapters.venues.simulated import SimulatedExchange, SimulatedVenue
from tradebot.core.domain import (
    Candle,
    ClientOrderId,
    OrderStatus,
    OrderType,
    PlaceOrder,
    Side,
    Symbol,
    Timeframe,
    spot_instrument,
)
from tradebot.errors import ConfigError, InsufficientFunds, OrderRejected
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.binance_private import API_KEY, API_SECRET
from tradebot.ports import Venue

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "ohlcv"
START_MS = 1679529600000 + 60 * 60_000
BTC = Symbol("BTC/USDT")

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _fresh_logging() -> None:
    # an earlier in-process CLI test may leave structlog writing to its closed capture stream
    structlog.reset_defaults()


@dataclass
class Harness:
    venue: Venue
    ref_price: D
    settle: Callable[[], Awaitable[None]]
    open_order: Callable[[str], PlaceOrder]
    kind: str


def order(
    cid: str, side: Side = Side.BUY, qty: str = "0.01", ref: D = D("27000"), **kw: object
) -> PlaceOrder:
    return PlaceOrder(client_order_id=ClientOrderId(cid), symbol=BTC, side=side, qty=D(qty), ref_price=ref,
                      reason="contract", intent_id=cid.rsplit("-", 1)[0], created_ms=START_MS, **kw)  # type: ignore[arg-type]  # fmt: skip


async def simulated_harness() -> AsyncIterator[Harness]:
    inst = spot_instrument("BTC", tick_size="0.01", step_size="0.00001", min_notional="10")
    venue = SimulatedVenue(SimulatedExchange([inst], {"USDT": D("10000")}, slippage_bps=0))

    async def settle() -> None:
        venue.on_candle(Candle("BTC/USDT", Timeframe.M1, START_MS, 27000.0, 27100.0, 26900.0, 27050.0, 100.0))

    yield Harness(venue, D("27000"), settle, lambda cid: order(cid), "simulated")


async def ccxt_harness() -> AsyncIterator[Harness]:
    config = SimConfig(data_dir=DATA, start_ms=START_MS, minute_wall_s=3600.0, ping_interval_s=None)
    async with ExchangeSim(config) as sim:
        exchange = binance_exchange(sim.binance_rest_url, api_key=API_KEY, secret=API_SECRET, timeout_ms=2000)
        venue = CcxtVenue(
            exchange, config=VenueConfig(read_initial_s=0.01, read_max_wait_s=0.05, read_jitter_s=0.01)
        )
        ref = sim.binance_orders.last_price("BTCUSDT")

        async def settle() -> None:
            return None

        def open_order(cid: str) -> PlaceOrder:
            return order(cid, ref=ref, order_type=OrderType.LIMIT, limit_price=D("1000.00"))

        try:
            yield Harness(venue, ref, settle, open_order, "ccxt")
        finally:
            await venue.close()


@pytest.fixture(params=["simulated", "ccxt"])
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    factory = simulated_harness if request.param == "simulated" else ccxt_harness
    async for harness in factory():
        await harness.venue.load_instruments(["BTC/USDT"])
        yield harness


async def test_load_instruments_and_unknown_symbol(h: Harness) -> None:
    inst = (await h.venue.load_instruments(["BTC/USDT"]))[BTC]
    assert (inst.base, inst.quote, inst.tick_size, inst.step_size) == ("BTC", "USDT", D("0.01"), D("0.00001"))
    with pytest.raises(ConfigError, match="DOGE/USDT"):
        await h.venue.load_instruments(["DOGE/USDT"])


async def test_market_buy_fills_and_moves_balances_exactly(h: Harness) -> None:
    before = await h.venue.fetch_balances()
    report = await h.venue.submit(order("c-1-1", ref=h.ref_price))
    assert report.client_order_id == "c-1-1"
    assert report.status in (OrderStatus.ACCEPTED, OrderStatus.FILLED)
    await h.settle()
    final = await h.venue.fetch_order(BTC, ClientOrderId("c-1-1"))
    assert final is not None
    assert (final.status, final.qty, final.filled_qty) == (OrderStatus.FILLED, D("0.01"), D("0.01"))
    fills = await h.venue.fetch_my_trades(BTC)
    assert [f.client_order_id for f in fills] == ["c-1-1"]
    (fill,) = fills
    assert (fill.side, fill.qty, fill.price) == (Side.BUY, D("0.01"), h.ref_price)
    assert fill.fee_quote == (fill.qty * fill.price * D("0.001")).quantize(D("1e-8"))
    after = await h.venue.fetch_balances()
    assert after["BTC"] == before.get("BTC", D(0)) + D("0.01")
    assert after["USDT"] == before["USDT"] - fill.notional - fill.fee_quote
    assert await h.venue.fetch_my_trades(BTC, since_ms=fill.ts_ms + 1) == []


async def test_filter_failure_is_a_definitive_rejection(h: Harness) -> None:
    with pytest.raises(OrderRejected, match="NOTIONAL"):
        await h.venue.submit(order("c-2-1", qty="0.0001", ref=h.ref_price))  # 2.7 USDT < 10 or 5
    with pytest.raises(OrderRejected, match="LOT_SIZE"):
        await h.venue.submit(order("c-2-2", qty="0.000015", ref=h.ref_price))  # off the step
    assert await h.venue.fetch_order(BTC, ClientOrderId("c-2-1")) is None


async def test_unknown_order_lookup_and_cancel(h: Harness) -> None:
    assert await h.venue.fetch_order(BTC, ClientOrderId("never-sent-1")) is None
    with pytest.raises(OrderRejected):
        await h.venue.cancel(BTC, ClientOrderId("never-sent-1"))


async def test_open_order_is_listed_then_cancelled(h: Harness) -> None:
    report = await h.venue.submit(h.open_order("c-3-1"))
    assert report.status is OrderStatus.ACCEPTED
    assert [o.client_order_id for o in await h.venue.fetch_open_orders(BTC)] == ["c-3-1"]
    cancelled = await h.venue.cancel(BTC, ClientOrderId("c-3-1"))
    assert (cancelled.status, cancelled.filled_qty) == (OrderStatus.CANCELED, D(0))
    assert await h.venue.fetch_open_orders(BTC) == []
    with pytest.raises(OrderRejected):  # cancelling a closed order is refused
        await h.venue.cancel(BTC, ClientOrderId("c-3-1"))
    await h.settle()
    assert await h.venue.fetch_my_trades(BTC) == []


async def test_selling_more_than_held_never_fills(h: Harness) -> None:
    before = await h.venue.fetch_balances()
    try:
        await h.venue.submit(order("c-4-1", side=Side.SELL, qty="1", ref=h.ref_price))
    except InsufficientFunds:
        assert h.kind == "ccxt"  # Binance refuses at submit (-2010) …
    else:
        await h.settle()  # … the simulated venue expires it at fill time with the same code
        final = await h.venue.fetch_order(BTC, ClientOrderId("c-4-1"))
        assert final is not None and final.status is OrderStatus.EXPIRED and "-2010" in final.reason
    assert await h.venue.fetch_balances() == before
    assert await h.venue.fetch_my_trades(BTC) == []


async def test_a_resting_stop_is_listed_locks_its_units_and_cancels(h: Harness) -> None:
    # a stop-limit (Binance STOP_LOSS_LIMIT: the recorded symbols do not enable STOP_LOSS)
    await h.venue.submit(order("c-5-1", ref=h.ref_price))
    await h.settle()
    stop = (h.ref_price * D("0.9")).quantize(D("0.01"))

    def stop_order(cid: str, stop_price: D) -> PlaceOrder:
        return order(cid, side=Side.SELL, ref=h.ref_price, order_type=OrderType.STOP_LIMIT, stop_price=stop_price,
                     limit_price=stop_price - 100)  # fmt: skip

    with pytest.raises(OrderRejected, match=r"-2010 Order would trigger immediately\."):
        await h.venue.submit(stop_order("c-5-2", h.ref_price))  # the market is at its stop already
    report = await h.venue.submit(stop_order("c-5-3", stop))
    assert (report.status, report.order_type, report.stop_price) == (
        OrderStatus.ACCEPTED, OrderType.STOP_LIMIT, stop)  # fmt: skip
    await h.settle()  # the candle does not reach the stop
    (listed,) = await h.venue.fetch_open_orders(BTC)
    assert (listed.client_order_id, listed.status, listed.stop_price, listed.side) == (
        "c-5-3", OrderStatus.ACCEPTED, stop, Side.SELL)  # fmt: skip
    try:  # the stop holds the 0.01 BTC: selling them again fails, as on Binance
        await h.venue.submit(order("c-5-4", side=Side.SELL, ref=h.ref_price))
    except InsufficientFunds:
        assert h.kind == "ccxt"
    else:
        await h.settle()
        sold = await h.venue.fetch_order(BTC, ClientOrderId("c-5-4"))
        assert sold is not None and sold.status is OrderStatus.EXPIRED and "-2010" in sold.reason
    cancelled = await h.venue.cancel(BTC, ClientOrderId("c-5-3"))
    assert (cancelled.status, cancelled.order_type, cancelled.stop_price) == (
        OrderStatus.CANCELED, OrderType.STOP_LIMIT, stop)  # fmt: skip
    assert await h.venue.fetch_open_orders(BTC) == []
    assert (await h.venue.fetch_balances())["BTC"] == D("0.01")
