"""DeribitVenue against the exchange simulator's private endpoints: label = client order id, amounts
converted to the instrument's unit (base coin for USDC perpetuals, USD for inverse ones), exact
fills and balances, refusals, and an UNKNOWN submit resolved through the OrderExecutor."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import pytest
import structlog

from tradebot.adapters.venues.ccxt_deribit import DeribitVenue, deribit_exchange
from tradebot.adapters.venues.ccxt_venue import VenueConfig
from tradebot.app.daemon.execution import ExecutionConfig, OrderExecutor
from tradebot.core.domain import ClientOrderId, Fill, OrderStatus, OrderType, PlaceOrder, Side, Symbol
from tradebot.core.portfolio.ledger import Ledger
from tradebot.errors import InsufficientFunds, OrderRejected
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.deribit_private import CLIENT_ID, CLIENT_SECRET

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "ohlcv"
START_MS = 1679529600000 + 60 * 60_000
ETH = Symbol("ETH/USDC:USDC")
BTC_INVERSE = Symbol("BTC/USD:BTC")

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _fresh_logging() -> None:
    # an earlier in-process CLI test may leave structlog writing to its closed capture stream
    structlog.reset_defaults()


class _Records:
    def __init__(self) -> None:
        self.rows: list[object] = []

    async def write(self, records: list[object]) -> None:
        self.rows.extend(records)


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSim]:
    async with ExchangeSim(
        SimConfig(data_dir=DATA, start_ms=START_MS, minute_wall_s=3600.0, ping_interval_s=None)
    ) as s:
        yield s


@pytest.fixture
async def venue(sim: ExchangeSim) -> AsyncIterator[DeribitVenue]:
    v = DeribitVenue(deribit_exchange(sim.deribit_rest_url, client_id=CLIENT_ID, secret=CLIENT_SECRET, timeout_ms=500),
                     config=VenueConfig(read_initial_s=0.01, read_max_wait_s=0.05, read_jitter_s=0.01))  # fmt: skip
    await v.load_instruments(["ETH/USDC:USDC", "BTC/USD:BTC"])
    yield v
    await v.close()


def cmd(cid: str, qty: str, symbol: Symbol = ETH, ref: str = "1737.4", **kw: object) -> PlaceOrder:
    return PlaceOrder(client_order_id=ClientOrderId(cid), symbol=symbol, side=Side.BUY, qty=D(qty), ref_price=D(ref),
                      reason="t", intent_id=cid.rsplit("-", 1)[0], created_ms=START_MS, **kw)  # type: ignore[arg-type]  # fmt: skip


async def test_instruments_from_load_markets(venue: DeribitVenue) -> None:
    eth, btc = venue.instruments[ETH], venue.instruments[BTC_INVERSE]
    assert (eth.base, eth.quote, eth.tick_size, eth.step_size, eth.min_qty) == (
        "ETH",
        "USDC",
        D("0.1"),
        D("0.01"),
        D("0.01"),
    )
    assert (btc.base, btc.quote, btc.min_notional, btc.contract_size) == ("BTC", "USD", D("10.0"), D("10.0"))


async def test_a_maker_rebate_instrument_loads(venue: DeribitVenue) -> None:
    # SOL-PERPETUAL, recorded with "maker_commission": -0.0002 (a rebate to makers)
    sol = (await venue.load_instruments(["SOL/USD:SOL"]))[Symbol("SOL/USD:SOL")]
    assert (sol.base, sol.quote, sol.taker_fee, sol.maker_fee) == ("SOL", "USD", D("0.0005"), D("-0.0002"))
    assert (sol.min_notional, sol.contract_size) == (D("10.0"), D("10.0"))


async def test_market_buy_round_trip_is_exact(sim: ExchangeSim, venue: DeribitVenue) -> None:
    assert sim.deribit_orders.last_price("ETH_USDC-PERPETUAL") == D("1737.37")
    price = D("1737.4")  # a buy fills at the last price rounded up to the 0.1 tick
    report = await venue.submit(cmd("d-1-1", "0.5", ref=str(price)))
    assert (report.client_order_id, report.status, report.filled_qty, report.avg_price) == (
        "d-1-1", OrderStatus.FILLED, D("0.5"), price)  # fmt: skip
    (fill,) = report.fills
    assert (fill.trade_id, fill.qty, fill.price, fill.fee_currency) == ("USDC-T1", D("0.5"), price, "USDC")
    assert fill.fee_quote == (D("0.5") * price * D("0.0005")).quantize(D("1e-8"))
    (placed,) = sim.deribit_orders.orders_of("d-1-1")  # the label carries our id; amount in ETH
    assert placed.qty == D("0.5")
    assert await venue.fetch_my_trades(ETH) == [fill]
    found = await venue.fetch_order(ETH, ClientOrderId("d-1-1"))
    assert found is not None and (found.status, found.exchange_order_id) == (OrderStatus.FILLED, "USDC-1")
    assert await venue.fetch_order(ETH, ClientOrderId("never-1-1")) is None
    assert await venue.fetch_balances() == {
        "USDC": D("10000") - fill.notional - fill.fee_quote,
        "ETH": D("0.5"),
    }


async def test_inverse_orders_round_trip_in_usd_amounts(sim: ExchangeSim, venue: DeribitVenue) -> None:
    # 0.0123 BTC at 40 000 USD → 490 USD (10-USD contracts, rounded down): the amount sent
    sim.deribit_orders.coin_accounts["BTC"] = D("1")
    price = D("27322.5")  # a buy fills at the last price (27322.27) rounded up to the 0.5 tick
    report = await venue.submit(cmd("d-2-1", "0.0123", symbol=BTC_INVERSE, ref="40000"))
    (placed,) = sim.deribit_orders.orders_of("d-2-1")
    assert placed.qty == D("490")
    (fill,) = report.fills
    fee = (D(490) / price * D("0.0005")).quantize(D("1e-8"))  # in BTC
    assert (report.status, report.exchange_order_id, report.filled_qty, report.avg_price) == (
        OrderStatus.FILLED, "1", (D(490) / price).quantize(D("1e-8")), price)  # fmt: skip
    assert (fill.trade_id, fill.qty, fill.price, fill.fee, fill.fee_currency, fill.fee_quote) == (
        "1", D("0.01793394"), price, fee, "BTC", fee * price)  # fmt: skip
    assert await venue.fetch_my_trades(BTC_INVERSE) == [fill]
    found = await venue.fetch_order(BTC_INVERSE, ClientOrderId("d-2-1"))
    assert found is not None and (found.status, found.filled_qty) == (OrderStatus.FILLED, fill.qty)
    # the coin account (1 BTC − fee) plus the position's size_currency (490 USD / mark) in BTC
    mark = sim.deribit_orders.last_price("BTC-PERPETUAL")
    assert await venue.fetch_balances() == {
        "USDC": D("10000"), "BTC": D(1) - fee + D(repr(float(D(490) / mark)))}  # fmt: skip
    # a reduce-only protective stop rests untriggered for the position's USD amount at its trigger
    sell = cmd("d-2-2", str(fill.qty), symbol=BTC_INVERSE, ref=str(price), order_type=OrderType.STOP_MARKET,
               stop_price=D("26000.0"), reduce_only=True)  # fmt: skip
    stop = await venue.submit(dataclasses.replace(sell, side=Side.SELL))
    (resting,) = sim.deribit_orders.orders_of("d-2-2")
    assert (resting.qty, resting.stop_price, resting.reduce_only) == (D("460"), D("26000.0"), True)
    assert (stop.status, stop.stop_price, stop.qty) == (OrderStatus.ACCEPTED, D("26000"), D("0.01769231"))
    assert (await venue.cancel(BTC_INVERSE, ClientOrderId("d-2-2"))).status is OrderStatus.CANCELED


async def test_refusals(sim: ExchangeSim, venue: DeribitVenue) -> None:
    with pytest.raises(OrderRejected, match="LOT_SIZE"):
        await venue.submit(cmd("d-3-1", "0.005"))  # off the 0.01 contract size: not sent
    with pytest.raises(InsufficientFunds, match="10009 not_enough_funds"):
        await venue.submit(cmd("d-3-2", "100"))
    assert sim.deribit_orders.orders == []


async def test_open_order_cancel_by_label(venue: DeribitVenue) -> None:
    report = await venue.submit(cmd("d-4-1", "0.1", order_type=OrderType.LIMIT, limit_price=D("1000.0")))
    assert report.status is OrderStatus.ACCEPTED
    assert [o.client_order_id for o in await venue.fetch_open_orders(ETH)] == ["d-4-1"]
    assert (await venue.cancel(ETH, ClientOrderId("d-4-1"))).status is OrderStatus.CANCELED
    with pytest.raises(OrderRejected):
        await venue.cancel(ETH, ClientOrderId("d-4-1"))


async def test_a_maker_rebate_reaches_the_ledger_exactly(sim: ExchangeSim, venue: DeribitVenue) -> None:
    # a resting buy below the market fills as the maker at a rebate ("maker_commission": -0.0002)
    sim.deribit_orders.maker_fee_rate = D("-0.0002")
    assert sim.deribit_orders.last_price("ETH_USDC-PERPETUAL") == D("1737.37")
    limit = cmd("d-6-1", "0.5", order_type=OrderType.LIMIT, limit_price=D("1736.0"))
    assert (await venue.submit(limit)).status is OrderStatus.ACCEPTED
    sim.market.step()  # the candle's low 1735.9 trades through the limit
    (fill,) = await venue.fetch_my_trades(ETH)
    rebate = D("-0.1736")  # 0.5 × 1736 × −0.0002
    assert (fill.client_order_id, fill.qty, fill.price) == ("d-6-1", D("0.5"), D("1736"))
    assert (fill.fee, fill.fee_currency, fill.fee_quote) == (rebate, "USDC", rebate)
    ledger = Ledger("USDC", D("10000"), ["ETH/USDC:USDC"], {})
    assert ledger.apply(fill)
    balances = await venue.fetch_balances()
    assert balances == {"USDC": D("10000") - D("868") - rebate, "ETH": D("0.5")}
    assert (ledger.position(ETH), ledger.cash, ledger.fees(ETH)) == (
        balances["ETH"],
        balances["USDC"],
        rebate,
    )


async def test_unknown_submit_resolved_by_label_through_the_executor(
    sim: ExchangeSim, venue: DeribitVenue
) -> None:
    sim.deribit_orders.faults.accept_then_500 = 1
    sim.deribit_orders.faults.lookup_not_found = 2
    executor = OrderExecutor(venue, _Records(), venue.instruments, now_ms=lambda: sim.market.now_ms,
                             config=ExecutionConfig(lookup_initial_s=0.01, lookup_max_s=0.05))  # fmt: skip
    events = await executor.submit(cmd("d-5-1", "0.5"))
    assert [e.status.value if not isinstance(e, Fill) else "fill" for e in events] == [
        "unknown",
        "accepted",
        "fill",
    ]
    assert len(sim.deribit_orders.orders_of("d-5-1")) == 1
    ledger = Ledger("USDC", D("10000"), ["ETH/USDC:USDC"], {})
    for e in events:
        if isinstance(e, Fill):
            assert ledger.apply(e)
    balances = sim.deribit_orders.balances()
    assert (ledger.position(ETH), ledger.cash) == (balances["ETH"], balances["USDC"])


@pytest.mark.parametrize(
    ("client_id", "secret", "refusal"),
    [(CLIENT_ID, "wrong", "13009 unauthorized"), ("nobody", CLIENT_SECRET, "13004 invalid_credentials")],
)
async def test_bad_credentials_are_refused(
    sim: ExchangeSim, venue: DeribitVenue, client_id: str, secret: str, refusal: str
) -> None:
    # the documented codes: a bad signature is 13009 unauthorized, unknown credentials 13004
    bad = DeribitVenue(
        deribit_exchange(sim.deribit_rest_url, client_id=client_id, secret=secret, timeout_ms=500)
    )
    bad.instruments, bad._wire_symbol, bad._raw = venue.instruments, venue._wire_symbol, venue._raw
    try:
        with pytest.raises(OrderRejected, match=refusal):
            await bad.submit(cmd("d-6-1", "0.1"))
    finally:
        await bad.close()
    assert sim.deribit_orders.orders == []


async def test_reference_price_is_the_tickers_mark_price(sim: ExchangeSim, venue: DeribitVenue) -> None:
    """``fetch_reference_price`` reads ``public/ticker``'s ``mark_price`` (the simulator's forming
    candle's open, as a JSON number), for a linear and an inverse perpetual."""
    for symbol, tape in ((ETH, "ETHUSDT"), (BTC_INVERSE, "BTCUSDT")):
        forming = sim.market.tape.bar(tape, sim.market.now_ms)
        assert forming is not None
        assert await venue.fetch_reference_price(symbol) == D(repr(float(forming.open)))
