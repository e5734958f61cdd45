"""Stop orders through ccxt against the exchange simulator, and the same orders in the backtest's
``SimulatedExchange`` on the same candles: equal fills (price, quantity, fee, time).

The candles are written for the test (a tape of eight 1m BTCUSDT / ETHUSDT candles): a stop reached
by a candle's low, a candle that opens through a stop, and a stop-limit gapped through its limit
that rests and fills later. The daemon places its orders after a candle closes, while the next one
forms (the simulator's last price is its open); the backtest submits them at that close, and the
simulated exchange fills them from the candle that opens then.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import pytest
import structlog

from tradebot.adapters.venues.ccxt_deribit import DeribitVenue, deribit_exchange
from tradebot.adapters.venues.ccxt_schemas import binance_instrument as binance_instrument_of
from tradebot.adapters.venues.ccxt_venue import CcxtVenue, VenueConfig, binance_exchange
from tradebot.adapters.venues.simulated import (
    INSUFFICIENT_BALANCE,
    WOULD_TRIGGER_IMMEDIATELY,
    SimulatedExchange,
)
from tradebot.core.domain import (
    ClientOrderId,
    Fill,
    Instrument,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PlaceOrder,
    Side,
    Symbol,
    Timeframe,
)
from tradebot.errors import ConfigError, InsufficientFunds, OrderRejected
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.binance_private import API_KEY, API_SECRET
from tradebot.exchange_sim.binance_rest import load_exchange_info
from tradebot.exchange_sim.deribit_private import CLIENT_ID, CLIENT_SECRET
from tradebot.exchange_sim.market import Bar

T = 1_700_006_400_000  # a minute boundary
M = 60_000
BTC = Symbol("BTC/USDT")
ETH = Symbol("ETH/USDC:USDC")
FAST = VenueConfig(timeout_ms=2000, read_initial_s=0.01, read_max_wait_s=0.05, read_jitter_s=0.01)

#: open, high, low, close of minute n (volume 10): see each scenario below
BTC_BARS = [
    ("20000.00", "20050.00", "19950.00", "20000.00"),  # 0: buy at the open; stop 19900 (limit 19800) armed
    ("20000.00", "20010.00", "19920.00", "19950.00"),  # 1: low above 19900
    ("19950.00", "19960.00", "19880.00", "19890.00"),  # 2: low 19880 reaches 19900 → fill at 19900
    ("19890.00", "19900.00", "19860.00", "19870.00"),  # 3: buy at 19890; stop 19850 (limit 19000) armed
    ("19700.00", "19720.00", "19650.00", "19700.00"),  # 4: opens through 19850 → fill at the open, 19700
    ("19700.00", "19710.00", "19660.00", "19680.00"),  # 5: buy at 19700; stop 19650 (limit 19640) armed
    ("19600.00", "19630.00", "19590.00", "19620.00"),  # 6: opens at 19600 < limit: triggered, rests at 19640
    ("19620.00", "19645.00", "19610.00", "19640.00"),  # 7: high 19645 reaches the limit → fill at 19640
]
ETH_BARS = [
    ("1700.0", "1702.0", "1695.0", "1700.0"),  # 0: buy 0.5 at the open; stop_market 1690 armed
    ("1700.0", "1701.0", "1691.0", "1693.0"),  # 1: low above 1690
    ("1693.0", "1694.0", "1688.5", "1689.0"),  # 2: fill at 1690
    ("1689.0", "1689.5", "1686.0", "1688.0"),  # 3: buy 0.5 at 1689; stop_market 1685 armed
    ("1680.0", "1681.0", "1676.0", "1678.0"),  # 4: opens through 1685 → fill at 1680
    ("1678.0", "1679.0", "1677.0", "1678.0"),
    ("1678.0", "1679.0", "1677.0", "1678.0"),
    ("1678.0", "1679.0", "1677.0", "1678.0"),
]

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _fresh_logging() -> None:
    # an earlier in-process CLI test may leave structlog writing to its closed capture stream
    structlog.reset_defaults()


def _write_tape(directory: Path, symbol: str, bars: list[tuple[str, str, str, str]]) -> None:
    rows = ["open_time_ms,open,high,low,close,volume"]
    rows += [f"{T + n * M},{o},{h},{lo},{c},10" for n, (o, h, lo, c) in enumerate(bars)]
    with gzip.open(directory / f"binance_{symbol}_1m.csv.gz", "wt") as fh:
        fh.write("\n".join(rows) + "\n")


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ExchangeSim]:
    _write_tape(tmp_path, "BTCUSDT", BTC_BARS)
    _write_tape(tmp_path, "ETHUSDT", ETH_BARS)
    config = SimConfig(data_dir=tmp_path, symbols=("BTCUSDT", "ETHUSDT"), start_ms=T, minute_wall_s=3600.0,
                       ping_interval_s=None)  # fmt: skip
    async with ExchangeSim(config) as s:
        yield s


@pytest.fixture
async def binance(sim: ExchangeSim) -> AsyncIterator[CcxtVenue]:
    venue = CcxtVenue(binance_exchange(sim.binance_rest_url, api_key=API_KEY, secret=API_SECRET, timeout_ms=2000),
                      config=FAST)  # fmt: skip
    await venue.load_instruments(["BTC/USDT"])
    yield venue
    await venue.close()


@pytest.fixture
async def deribit(sim: ExchangeSim) -> AsyncIterator[DeribitVenue]:
    venue = DeribitVenue(deribit_exchange(sim.deribit_rest_url, client_id=CLIENT_ID, secret=CLIENT_SECRET,
                                          timeout_ms=2000), config=FAST)  # fmt: skip
    await venue.load_instruments(["ETH/USDC:USDC"])
    yield venue
    await venue.close()


def cmd(cid: str, symbol: Symbol, side: Side, qty: str, ref: str, t: int, **kw: object) -> PlaceOrder:
    return PlaceOrder(client_order_id=ClientOrderId(cid), symbol=symbol, side=side, qty=D(qty), ref_price=D(ref),
                      reason="stop" if "stop_price" in kw else "entry", intent_id=cid.rsplit("-", 1)[0],
                      created_ms=t, **kw)  # type: ignore[arg-type]  # fmt: skip


def stop_limit(cid: str, qty: str, stop: str, limit: str, ref: str, t: int) -> PlaceOrder:
    return cmd(cid, BTC, Side.SELL, qty, ref, t, order_type=OrderType.STOP_LIMIT, stop_price=D(stop),
               limit_price=D(limit))  # fmt: skip


def stop_market(cid: str, qty: str, stop: str, ref: str, t: int) -> PlaceOrder:
    return cmd(cid, BTC, Side.SELL, qty, ref, t, order_type=OrderType.STOP_MARKET, stop_price=D(stop))


def backtest(instrument: Instrument, balances: dict[str, D], bars: list[tuple[str, str, str, str]],
             orders: dict[int, list[PlaceOrder]]) -> list[Fill | OrderUpdate]:  # fmt: skip
    """The same orders in a SimulatedExchange (no slippage, the venue's fees), submitted at the open
    time of the candle they were placed in, fed the same candles."""
    ex = SimulatedExchange([instrument], balances, slippage_bps=0)
    events: list[Fill | OrderUpdate] = []
    for n, row in enumerate(bars):
        for order in orders.get(n, []):
            assert ex.submit(order, order.created_ms).status is OrderStatus.ACCEPTED
        events.extend(ex.on_candle(Bar(T + n * M, *row, "10").to_candle(instrument.symbol, Timeframe.M1)))
    return events


def key(f: Fill) -> tuple[object, ...]:
    return (f.client_order_id, f.side, f.qty, f.price, f.fee_quote, f.ts_ms)


async def test_binance_stops_fill_like_the_backtest(sim: ExchangeSim, binance: CcxtVenue) -> None:
    # two STOP_MARKET (sent as STOP_LOSS_LIMIT 5 % beyond the stop: the symbol lacks STOP_LOSS) and a
    # STOP_LIMIT; the backtest gets the same commands
    orders = {
        0: [cmd("b-1-1", BTC, Side.BUY, "0.01", "20000.00", T), stop_market("s-1-1", "0.01", "19900.00", "20000.00", T)],
        3: [cmd("b-2-1", BTC, Side.BUY, "0.01", "19890.00", T + 3 * M),
            stop_market("s-2-1", "0.01", "19850.00", "19890.00", T + 3 * M)],
        5: [cmd("b-3-1", BTC, Side.BUY, "0.01", "19700.00", T + 5 * M),
            stop_limit("s-3-1", "0.01", "19650.00", "19640.00", "19700.00", T + 5 * M)],
    }  # fmt: skip
    for n in range(len(BTC_BARS)):
        for order in orders.get(n, []):
            report = await binance.submit(order)
            if order.stop_price is not None:  # the wire type of both is STOP_LOSS_LIMIT
                assert (report.status, report.order_type, report.stop_price) == (
                    OrderStatus.ACCEPTED, OrderType.STOP_LIMIT, order.stop_price)  # fmt: skip
        sim.market.step()
    sent = {o.client_order_id: (o.type, o.stop_price, o.price) for o in sim.binance_orders.orders}
    assert sent["s-1-1"] == ("STOP_LOSS_LIMIT", D("19900.00"), D("18905.00"))  # 19900 × 0.95
    assert sent["s-2-1"] == ("STOP_LOSS_LIMIT", D("19850.00"), D("18857.50"))
    live = await binance.fetch_my_trades(BTC)
    replay = backtest(binance.instruments[BTC], {"USDT": D("10000")}, BTC_BARS, orders)
    assert all(isinstance(e, Fill) for e in replay)
    assert [key(f) for f in live] == [key(f) for f in replay if isinstance(f, Fill)]
    stops = [(f.client_order_id, f.price, f.ts_ms) for f in live if f.side is Side.SELL]
    assert stops == [("s-1-1", D("19900"), T + 3 * M), ("s-2-1", D("19700"), T + 5 * M),
                     ("s-3-1", D("19640"), T + 8 * M)]  # fmt: skip
    assert [f.fee_quote for f in live if f.side is Side.SELL] == [D("0.199"), D("0.197"), D("0.1964")]
    assert await binance.fetch_balances() == {"USDT": D("10000") - sum((f.notional if f.side is Side.BUY
                                              else -f.notional) + f.fee_quote for f in live)}  # fmt: skip
    final = await binance.fetch_order(BTC, ClientOrderId("s-3-1"))
    assert final is not None and (final.status, final.order_type, final.avg_price) == (
        OrderStatus.FILLED, OrderType.STOP_LIMIT, D("19640"))  # fmt: skip


async def test_binance_refusals_locks_and_cancel(sim: ExchangeSim, binance: CcxtVenue) -> None:
    await binance.submit(cmd("b-4-1", BTC, Side.BUY, "0.01", "20000.00", T))
    with pytest.raises(OrderRejected, match=r"-2010 Order would trigger immediately\."):
        await binance.submit(stop_limit("s-4-1", "0.01", "20000.00", "19900.00", "20000.00", T))
    with pytest.raises(OrderRejected, match=r"PRICE_FILTER.*not sent"):
        await binance.submit(stop_limit("s-4-3", "0.01", "19900.005", "19800.00", "20000.00", T))
    assert [o.client_order_id for o in sim.binance_orders.orders] == ["b-4-1"]
    await binance.submit(stop_limit("s-4-4", "0.01", "19900.00", "19800.00", "20000.00", T))
    (listed,) = await binance.fetch_open_orders(BTC)
    assert (listed.client_order_id, listed.status, listed.order_type, listed.stop_price) == (
        "s-4-4", OrderStatus.ACCEPTED, OrderType.STOP_LIMIT, D("19900"))  # fmt: skip
    with pytest.raises(
        InsufficientFunds, match="-2010 Account has insufficient balance"
    ):  # the stop locks them
        await binance.submit(cmd("m-4-5", BTC, Side.SELL, "0.01", "20000.00", T))
    cancelled = await binance.cancel(BTC, ClientOrderId("s-4-4"))
    assert (cancelled.client_order_id, cancelled.status, cancelled.stop_price) == (
        "s-4-4", OrderStatus.CANCELED, D("19900"))  # fmt: skip
    sold = await binance.submit(cmd("m-4-6", BTC, Side.SELL, "0.01", "20000.00", T))  # freed: sells
    assert sold.status is OrderStatus.FILLED


def test_the_backtest_refuses_the_same_orders(binance_instrument: Instrument) -> None:
    """The SimulatedExchange side of the refusals above: a stop at the mark, a sell of locked units."""
    ex = SimulatedExchange([binance_instrument], {"USDT": D("10000")}, slippage_bps=0)
    reached = ex.submit(stop_limit("s-5-1", "0.01", "20000.00", "19900.00", "20000.00", T), T)
    assert (reached.status, reached.reason) == (OrderStatus.REJECTED, WOULD_TRIGGER_IMMEDIATELY)
    ex.submit(cmd("b-5-2", BTC, Side.BUY, "0.01", "20000.00", T), T)
    ex.submit(stop_limit("s-5-3", "0.01", "19900.00", "19800.00", "20000.00", T), T)
    ex.on_candle(Bar(T, *BTC_BARS[0], "10").to_candle(BTC))
    ex.submit(cmd("m-5-4", BTC, Side.SELL, "0.01", "20000.00", T + M), T + M)
    (expired,) = ex.on_candle(Bar(T + M, *BTC_BARS[1], "10").to_candle(BTC))
    assert isinstance(expired, OrderUpdate) and (expired.client_order_id, expired.status, expired.reason) == (
        "m-5-4", OrderStatus.EXPIRED, INSUFFICIENT_BALANCE)  # fmt: skip
    ex.cancel(ClientOrderId("s-5-3"), T + 2 * M)
    ex.submit(cmd("m-5-5", BTC, Side.SELL, "0.01", "20000.00", T + 2 * M), T + 2 * M)
    (sold,) = ex.on_candle(Bar(T + 2 * M, *BTC_BARS[2], "10").to_candle(BTC))
    assert isinstance(sold, Fill) and sold.qty == D("0.01")


@pytest.fixture
def binance_instrument() -> Instrument:
    # the simulator's recorded exchangeInfo, decoded as CcxtVenue.load_instruments does
    (btc,) = [s for s in load_exchange_info()["symbols"] if s["symbol"] == "BTCUSDT"]
    return binance_instrument_of(btc, BTC)


async def test_deribit_stop_markets_fill_like_the_backtest(sim: ExchangeSim, deribit: DeribitVenue) -> None:
    def stop(cid: str, trigger: str, ref: str, t: int) -> PlaceOrder:
        return cmd(cid, ETH, Side.SELL, "0.5", ref, t, order_type=OrderType.STOP_MARKET, stop_price=D(trigger),
                   reduce_only=True)  # fmt: skip

    orders = {
        0: [cmd("b-6-1", ETH, Side.BUY, "0.5", "1700.0", T), stop("s-6-1", "1690.0", "1700.0", T)],
        3: [
            cmd("b-7-1", ETH, Side.BUY, "0.5", "1689.0", T + 3 * M),
            stop("s-7-1", "1685.0", "1689.0", T + 3 * M),
        ],
    }
    for n in range(len(ETH_BARS)):
        for order in orders.get(n, []):
            report = await deribit.submit(order)
            if order.stop_price is not None:
                assert (report.status, report.order_type, report.stop_price) == (
                    OrderStatus.ACCEPTED, OrderType.STOP_MARKET, order.stop_price)  # fmt: skip
                (placed,) = sim.deribit_orders.orders_of(order.client_order_id)
                assert (placed.type, placed.trigger, placed.reduce_only) == ("STOP_LOSS", "last_price", True)
        sim.market.step()
    live = await deribit.fetch_my_trades(ETH)
    replay = backtest(deribit.instruments[ETH], {"USDC": D("10000")}, ETH_BARS, orders)
    assert [key(f) for f in live] == [key(f) for f in replay if isinstance(f, Fill)]
    assert [(f.client_order_id, f.price, f.fee_quote) for f in live if f.side is Side.SELL] == [
        ("s-6-1", D("1690"), D("0.4225")), ("s-7-1", D("1680"), D("0.42"))]  # fmt: skip
    found = await deribit.fetch_order(ETH, ClientOrderId("s-7-1"))
    assert found is not None and (found.status, found.order_type, found.stop_price) == (
        OrderStatus.FILLED, OrderType.STOP_MARKET, D("1685"))  # fmt: skip


async def test_deribit_refuses_a_reached_trigger_and_cancels_an_untriggered_stop(
    sim: ExchangeSim, deribit: DeribitVenue
) -> None:
    await deribit.submit(cmd("b-8-1", ETH, Side.BUY, "0.5", "1700.0", T))

    def stop(cid: str, trigger: str) -> PlaceOrder:
        return cmd(cid, ETH, Side.SELL, "0.5", "1700.0", T, order_type=OrderType.STOP_MARKET,
                   stop_price=D(trigger), reduce_only=True)  # fmt: skip

    with pytest.raises(OrderRejected, match="11036 invalid_trigger_price"):
        await deribit.submit(stop("s-8-1", "1700.0"))  # at the last price
    with pytest.raises(OrderRejected, match=r"trigger_price_wrong_tick.*not sent"):
        await deribit.submit(stop("s-8-2", "1690.05"))  # off the 0.1 tick
    await deribit.submit(stop("s-8-3", "1690.0"))
    (listed,) = await deribit.fetch_open_orders(ETH)
    assert (listed.client_order_id, listed.status, listed.stop_price) == (
        "s-8-3",
        OrderStatus.ACCEPTED,
        D("1690"),
    )
    cancelled = await deribit.cancel(ETH, ClientOrderId("s-8-3"))
    assert (cancelled.status, cancelled.order_type) == (OrderStatus.CANCELED, OrderType.STOP_MARKET)
    assert sim.deribit_orders.locked.get("ETH") == D(0)


def test_the_deribit_stop_trigger_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"stop_trigger must be one of .*was 'close'"):
        DeribitVenue(object(), stop_trigger="close")


async def test_a_symbol_enabling_stop_loss_gets_a_stop_market_as_stop_loss(sim: ExchangeSim) -> None:
    # today's Binance lists STOP_LOSS in orderTypes on many symbols; the recorded BTCUSDT does not
    (info,) = [s for s in sim.binance_rest.exchange_info["symbols"] if s["symbol"] == "BTCUSDT"]
    info["orderTypes"] = [*info["orderTypes"], "STOP_LOSS"]
    sim.binance_orders.rules["BTCUSDT"] = dataclasses.replace(
        sim.binance_orders.rules["BTCUSDT"],
        order_types=frozenset({"MARKET", "LIMIT", "STOP_LOSS", "STOP_LOSS_LIMIT"}),
    )
    venue = CcxtVenue(binance_exchange(sim.binance_rest_url, api_key=API_KEY, secret=API_SECRET, timeout_ms=2000),
                      config=FAST)  # fmt: skip
    try:
        await venue.load_instruments(["BTC/USDT"])
        await venue.submit(cmd("b-9-1", BTC, Side.BUY, "0.01", "20000.00", T))
        report = await venue.submit(stop_market("s-9-1", "0.01", "19900.00", "20000.00", T))
        assert (report.status, report.order_type, report.stop_price) == (
            OrderStatus.ACCEPTED, OrderType.STOP_MARKET, D("19900"))  # fmt: skip
        (placed,) = sim.binance_orders.orders_of("s-9-1")
        assert (placed.type, placed.price) == ("STOP_LOSS", None)
        for _ in range(3):
            sim.market.step()
        sells = [f for f in await venue.fetch_my_trades(BTC) if f.side is Side.SELL]
        assert [(f.client_order_id, f.price, f.ts_ms) for f in sells] == [("s-9-1", D("19900"), T + 3 * M)]
    finally:
        await venue.close()


def test_the_stop_limit_offset_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"stop_limit_offset_fraction must be in \(0, 1\), was 0"):
        VenueConfig(stop_limit_offset_fraction=0)
