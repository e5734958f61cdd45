"""OrderExecutor.apply_pushed: the reports of the Binance user-data stream (a real
:class:`BinanceUserStream` against the simulator) go through the executor like lookups — every fill
once whichever path brings it first, stale or repeated reports change nothing and write nothing,
orders the executor does not track are left to reconciliation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal as D
from typing import Any

import pytest
from exec_rig import DATA, FAST_EXEC, FAST_VENUE, START_MS, _fresh_logging  # noqa: F401 (the fixture)

from tradebot.adapters.store import SqlEventStore
from tradebot.adapters.venues.binance_user_stream import BinanceUserStream
from tradebot.adapters.venues.ccxt_venue import CcxtVenue, binance_exchange
from tradebot.adapters.venues.user_stream import UserStreamStatus
from tradebot.app.daemon.execution import OrderExecutor
from tradebot.core.domain import (
    ClientOrderId,
    Fill,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PlaceOrder,
    Side,
    Symbol,
)
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.binance_private import API_KEY, API_SECRET
from tradebot.ports import OrderReport

RUN = "pushed-test"
BTC = Symbol("BTC/USDT")
pytestmark = pytest.mark.timeout(30)


class CountingStore:
    """The store, counting the executor's writes."""

    def __init__(self, store: SqlEventStore) -> None:
        self.store, self.writes = store, 0

    async def write(self, records: Sequence[object]) -> None:
        self.writes += 1
        await self.store.write(records)


@dataclass
class Pushed:
    sim: ExchangeSim
    venue: CcxtVenue
    store: CountingStore
    executor: OrderExecutor
    queue: asyncio.Queue[Any]

    async def report(self, status: OrderStatus | None = None) -> OrderReport:
        """The next order report of the stream (optionally: the next with ``status``)."""
        while True:
            item = await asyncio.wait_for(self.queue.get(), 5)
            if isinstance(item, OrderReport) and (status is None or item.status is status):
                return item


@pytest.fixture
async def pushed(db_url: str) -> AsyncIterator[Pushed]:
    config = SimConfig(data_dir=DATA, start_ms=START_MS, minute_wall_s=3600.0, ping_interval_s=None)
    async with ExchangeSim(config) as sim, SqlEventStore(db_url) as store:
        await store.start_run(run_id=RUN, mode="testnet", config={}, version="t", started_ms=START_MS)
        venue = CcxtVenue(binance_exchange(sim.binance_rest_url, api_key=API_KEY, secret=API_SECRET, timeout_ms=400),
                          config=FAST_VENUE)  # fmt: skip
        instruments = await venue.load_instruments(["BTC/USDT"])
        counting = CountingStore(store)
        executor = OrderExecutor(
            venue, counting, instruments, now_ms=lambda: sim.market.now_ms, config=FAST_EXEC
        )
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stream = BinanceUserStream(api_key=API_KEY, secret=API_SECRET, markets=venue.markets_by_wire(),
                                   client_order_id=venue.own_client_order_id, url=sim.binance_ws_api_url,
                                   queue=queue)  # fmt: skip
        task = asyncio.create_task(stream.run())
        assert isinstance(await asyncio.wait_for(queue.get(), 5), UserStreamStatus)
        try:
            yield Pushed(sim, venue, counting, executor, queue)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await venue.close()


def resting_buy(cid: str, price: D) -> PlaceOrder:
    # a client order id longer than Binance's 36 characters: it is hashed on the wire
    return PlaceOrder(client_order_id=ClientOrderId(cid), symbol=BTC, side=Side.BUY, qty=D("0.01"),
                      ref_price=price, reason="test", intent_id="t", created_ms=START_MS,
                      order_type=OrderType.LIMIT, limit_price=price)  # fmt: skip


async def test_a_pushed_fill_is_applied_once_and_stale_reports_change_nothing(pushed: Pushed) -> None:
    sim, ex = pushed.sim, pushed.executor
    bar = sim.tape.bar("BTCUSDT", sim.market.now_ms)
    assert bar is not None
    cid = f"{RUN}-2023-03-23T01:00-BTC/USDT-rebalance-00001-1"
    submitted = await ex.submit(resting_buy(cid, D(bar.low)))
    assert [type(e) for e in submitted] == [OrderUpdate] and submitted[0].status is OrderStatus.ACCEPTED
    new = await pushed.report()
    assert new.client_order_id == cid  # mapped back from the hashed wire id
    writes = pushed.store.writes
    assert await ex.apply_pushed(new) == [] and pushed.store.writes == writes  # the submit answer said it
    sim.market.step()  # the bar closes through the limit: filled at the simulator
    filled = await pushed.report(OrderStatus.FILLED)
    (trade,) = sim.binance_orders.trades
    events = await ex.apply_pushed(filled)
    assert [(type(e), getattr(e, "trade_id", None)) for e in events] == [(Fill, str(trade.trade_id))]
    assert ex.open_orders() == 0
    writes = pushed.store.writes
    assert await ex.apply_pushed(filled) == []  # pushed twice
    assert await ex.apply_pushed(new) == []  # late: ACCEPTED after FILLED
    assert await ex.poll() == []  # nothing left to look up, the fill is not returned again
    assert ex.open_orders() == 0 and pushed.store.writes == writes
    untracked = replace(filled, client_order_id=ClientOrderId("web_manual"))
    assert await ex.apply_pushed(untracked) == []


async def test_a_fill_pushed_before_its_predecessor_brings_both_once(pushed: Pushed) -> None:
    sim, ex, orders = pushed.sim, pushed.executor, pushed.sim.binance_orders
    orders.limit_volume_fraction = D("0.00012")  # about half of the order per bar
    bar = sim.tape.bar("BTCUSDT", sim.market.now_ms)
    assert bar is not None
    await ex.submit(resting_buy(f"{RUN}-ladder-1", (D(bar.open) * D("1.01")).quantize(D("0.01"))))
    await pushed.report()
    reports = []
    while not reports or reports[-1].status is not OrderStatus.FILLED:
        sim.market.step()
        reports.append(await pushed.report())
    assert len(reports) >= 2 and all(len(r.fills) == 1 for r in reports)
    last, *earlier = reversed(reports)
    # the FILLED report first: its cumulative quantity says fills are missing, the trades are listed
    events = await ex.apply_pushed(last)
    assert sorted(e.trade_id for e in events if isinstance(e, Fill)) == sorted(
        str(t.trade_id) for t in orders.trades
    )
    assert ex.open_orders() == 0
    for stale in earlier:  # then the older ones: their fills are known and their status is behind
        assert await ex.apply_pushed(stale) == []
    assert ex.open_orders() == 0
