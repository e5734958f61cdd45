"""CcxtVenue (Binance) against the exchange simulator: submit outcomes per venue answer, throttling
(429 back-off, 418 halt, priorities), wire formats, and that no retry path wraps order creation."""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import pytest
import structlog

from tradebot.adapters.venues import ccxt_venue
from tradebot.adapters.venues.ccxt_venue import CcxtVenue, VenueConfig, binance_exchange, wire_client_order_id
from tradebot.adapters.venues.gate import Priority, VenueGate
from tradebot.core.domain import ClientOrderId, OrderStatus, OrderType, PlaceOrder, Side, Symbol
from tradebot.errors import OrderRejected, RateLimited, VenueBanned, VenueUnavailable
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.binance_private import API_KEY, API_SECRET

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "ohlcv"
START_MS = 1679529600000 + 60 * 60_000
BTC = Symbol("BTC/USDT")
FAST = VenueConfig(timeout_ms=500, read_initial_s=0.01, read_max_wait_s=0.05, read_jitter_s=0.01)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _fresh_logging() -> None:
    # an earlier in-process CLI test may leave structlog writing to its closed capture stream
    structlog.reset_defaults()


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSim]:
    async with ExchangeSim(
        SimConfig(data_dir=DATA, start_ms=START_MS, minute_wall_s=3600.0, ping_interval_s=None)
    ) as s:
        yield s


async def venue_for(sim: ExchangeSim, secret: str = API_SECRET) -> CcxtVenue:
    venue = CcxtVenue(binance_exchange(sim.binance_rest_url, api_key=API_KEY, secret=secret, timeout_ms=500),
                      config=FAST)  # fmt: skip
    await venue.load_instruments(["BTC/USDT"])
    return venue


@pytest.fixture
async def venue(sim: ExchangeSim) -> AsyncIterator[CcxtVenue]:
    v = await venue_for(sim)
    yield v
    await v.close()


def buy(cid: str, qty: str = "0.01") -> PlaceOrder:
    return PlaceOrder(client_order_id=ClientOrderId(cid), symbol=BTC, side=Side.BUY, qty=D(qty), ref_price=D("27322.27"),
                      reason="t", intent_id="x", created_ms=START_MS)  # fmt: skip


def posts(sim: ExchangeSim) -> int:
    return sum(1 for m, p in sim.binance_private.requests if (m, p) == ("POST", "/api/v3/order"))


def test_wire_client_order_id_is_deterministic_and_binance_valid() -> None:
    assert wire_client_order_id("run7-12-3") == "run7-12-3"
    long_id = "backtest-2023-03-23T01:00:00-8f1c2e9a-000123-1"
    wire = wire_client_order_id(long_id)
    assert wire == wire_client_order_id(long_id) and wire != wire_client_order_id(long_id + "0")
    assert re.fullmatch(r"[.A-Z:/a-z0-9_-]{1,36}", wire) and wire.startswith("tb-")


async def test_quantity_is_sent_as_exact_decimal_text(sim: ExchangeSim, venue: CcxtVenue) -> None:
    report = await venue.submit(buy("w-1-1", "0.01230"))
    assert (report.status, report.filled_qty) == (OrderStatus.FILLED, D("0.0123"))
    (order,) = sim.binance_orders.orders_of("w-1-1")
    assert order.qty == D("0.01230") and str(order.qty) == "0.01230"  # "0.01230": the step's 5 decimals


@pytest.mark.parametrize("fault", ["accept_then_500", "unknown_1007", "accept_then_hang"])
async def test_unknown_outcomes_are_reported_never_retried(
    sim: ExchangeSim, venue: CcxtVenue, fault: str
) -> None:
    setattr(sim.binance_orders.faults, fault, 1)
    sim.binance_orders.faults.hang_s = 1.0  # > the 0.5 s client timeout
    report = await venue.submit(buy("u-1-1"))
    assert report.status is OrderStatus.UNKNOWN
    assert posts(sim) == 1  # sent once, not retried
    assert len(sim.binance_orders.orders_of("u-1-1")) == 1  # and the simulator did execute it
    found = await venue.fetch_order(BTC, ClientOrderId("u-1-1"))
    assert found is not None and found.status is OrderStatus.FILLED


def test_no_retry_path_wraps_order_creation() -> None:
    tree = ast.parse(inspect.getsource(ccxt_venue))
    creators = []
    for node in ast.walk(tree):
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
            calls = {
                n.func.attr
                for n in ast.walk(node)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            }
            if "private_post_order" in calls:
                creators.append(node.name)
                assert not calls & {"_read", "AsyncRetrying", "retry"}, node.name
                names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                assert not names & {"AsyncRetrying", "retry", "Retrying"}, node.name
    assert creators == ["submit"]
    # and nothing passes submit itself to a retrying helper
    assert not re.search(r"_read\([^)]*submit", inspect.getsource(ccxt_venue))


async def test_filter_and_balance_rejections_are_definitive(sim: ExchangeSim, venue: CcxtVenue) -> None:
    with pytest.raises(OrderRejected, match="-1013 Filter failure: NOTIONAL"):
        await venue.submit(buy("r-1-1", "0.0001"))
    with pytest.raises(OrderRejected, match="-2010 Account has insufficient balance"):
        await venue.submit(buy("r-1-2", "1"))
    assert sim.binance_orders.orders == []


async def test_bad_signature_is_refused(sim: ExchangeSim) -> None:
    bad = await venue_for(sim, secret="wrong")
    try:
        with pytest.raises(OrderRejected, match="-1022"):
            await bad.submit(buy("a-1-1"))
    finally:
        await bad.close()
    assert sim.binance_orders.orders == []


async def test_429_on_submit_is_not_processed_and_backs_off_the_venue(
    sim: ExchangeSim, venue: CcxtVenue
) -> None:
    sim.binance_orders.faults.throttle.append((429, 1))
    with pytest.raises(RateLimited) as info:
        await venue.submit(buy("t-1-1"))
    assert info.value.retry_after_s == 1.0
    assert sim.binance_orders.orders == []
    t0 = time.monotonic()
    assert await venue.fetch_balances() == {"USDT": D("10000")}  # waits out Retry-After first
    assert time.monotonic() - t0 >= 0.9


async def test_429_on_a_read_is_retried_after_the_pause(sim: ExchangeSim, venue: CcxtVenue) -> None:
    sim.binance_orders.faults.throttle.append((429, 0))
    assert await venue.fetch_order(BTC, ClientOrderId("nope-1-1")) is None
    assert [p for _, p in sim.binance_private.requests].count("/api/v3/order") == 2


async def test_418_halts_new_orders_without_sending(sim: ExchangeSim, venue: CcxtVenue) -> None:
    sim.binance_orders.faults.throttle.append((418, 30))
    with pytest.raises(VenueBanned):
        await venue.fetch_balances()
    assert venue.gate.banned
    sent = len(sim.binance_private.requests)
    with pytest.raises(VenueBanned, match="banned"):
        await venue.submit(buy("b-1-1"))
    assert len(sim.binance_private.requests) == sent  # refused locally
    assert sim.binance_orders.orders == []


async def test_clock_skew_is_not_processed_and_resyncs(sim: ExchangeSim, venue: CcxtVenue) -> None:
    sim.binance_orders.faults.clock_skew = 1
    with pytest.raises(VenueUnavailable, match="-1021"):
        await venue.submit(buy("k-1-1"))
    assert sim.binance_orders.orders == []
    assert (await venue.submit(buy("k-1-1"))).status is OrderStatus.FILLED  # same id, safe: never placed
    assert len(sim.binance_orders.orders_of("k-1-1")) == 1


async def test_partly_filled_then_cancelled_order_keeps_its_trade(sim: ExchangeSim, venue: CcxtVenue) -> None:
    orders = sim.binance_orders
    orders.limit_volume_fraction = D("0.0001")  # the resting order fills in small parts
    limit = PlaceOrder(client_order_id=ClientOrderId("p-1-1"), symbol=BTC, side=Side.BUY, qty=D("0.3"),
                       ref_price=D("27322.27"), reason="t", intent_id="p-1", created_ms=START_MS,
                       order_type=OrderType.LIMIT, limit_price=D("27400.00"))  # fmt: skip
    assert (await venue.submit(limit)).status is OrderStatus.ACCEPTED
    sim.market.step()  # a candle trades through the limit
    (placed,) = orders.orders_of("p-1-1")
    assert placed.status == "PARTIALLY_FILLED" and placed.filled > 0
    cancelled = await venue.cancel(BTC, ClientOrderId("p-1-1"))
    # the wire answer names the order in origClientOrderId and the cancel itself in clientOrderId
    assert (cancelled.client_order_id, cancelled.status, cancelled.filled_qty) == (
        "p-1-1", OrderStatus.CANCELED, placed.filled)  # fmt: skip
    (fill,) = await venue.fetch_my_trades(BTC)
    assert (fill.client_order_id, fill.qty, fill.price) == ("p-1-1", placed.filled, D("27400"))


async def test_timestamps_checked_against_a_wall_clock_server(sim: ExchangeSim, venue: CcxtVenue) -> None:
    sim.binance_private.server_clock_ms = lambda: int(time.time() * 1000)
    # ccxt signs with the wall clock: within the receive window
    assert await venue.fetch_balances() == {"USDT": D("10000")}
    venue.exchange.options["timeDifference"] = -1500  # our clock 1.5 s ahead of the server's
    with pytest.raises(VenueUnavailable, match=r"-1021 .*1000ms ahead"):
        await venue.submit(buy("ts-1-1"))
    assert sim.binance_orders.placements == []  # refused before the order engine: safe to send again


async def test_cancels_and_lookups_overtake_new_orders() -> None:
    gate = VenueGate("test", requests_per_s=100, orders_per_s=100)
    gate.back_off(0.1)
    entered: list[str] = []

    async def go(name: str, priority: Priority) -> None:
        async with gate.slot(priority):
            entered.append(name)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(go("order", Priority.ORDER))
        await asyncio.sleep(0.01)
        tg.create_task(go("cancel", Priority.URGENT))
    assert entered == ["cancel", "order"]


async def test_reference_price_is_the_tickers_last_price(sim: ExchangeSim, venue: CcxtVenue) -> None:
    """``fetch_reference_price`` reads ``GET /api/v3/ticker/price``: the simulator's forming candle's
    open, exactly (the second reference of a large decision)."""
    forming = sim.market.tape.bar("BTCUSDT", sim.market.now_ms)
    assert forming is not None
    assert await venue.fetch_reference_price(BTC) == D(forming.open)
    assert "/api/v3/ticker/price?symbol=BTCUSDT" in sim.binance_rest.requests


async def test_reference_price_errors_are_venue_errors(sim: ExchangeSim, venue: CcxtVenue) -> None:
    sim.faults.binance.http_errors(503, count=10)
    with pytest.raises(VenueUnavailable):
        await venue.fetch_reference_price(BTC)
