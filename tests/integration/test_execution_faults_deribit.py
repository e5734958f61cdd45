"""OrderExecutor ⇄ DeribitVenue (ccxt) ⇄ the simulator's Deribit private endpoints, one test per
order-path fault switch the Deribit simulator supports (``accept_then_500``, ``unknown_1007`` → HTTP
503 after the order was accepted, ``lookup_not_found``, ``throttle`` → HTTP 429 ``10028``,
``duplicate_trades``) on the USDC linear perpetual ``BTC_USDC-PERPETUAL`` (ccxt ``BTC/USDC:USDC``).

Every test checks the acceptance invariants (:func:`check_invariants`): exactly one exchange order
per child, the ledger (fed the returned fills) equals the simulator's position and USDC balance,
every fill applied exactly once (in the ledger and in the database), nothing left UNKNOWN or
PENDING_SUBMIT.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal as D

import pytest
from exec_rig import DATA, FAST_EXEC, FAST_VENUE, START_MS, Rig, _fresh_logging  # noqa: F401 (the fixture)

from tradebot.adapters.store import SqlEventStore
from tradebot.adapters.venues.ccxt_deribit import DeribitVenue, deribit_exchange
from tradebot.app.daemon.execution import OrderExecutor
from tradebot.core.domain import ClientOrderId, Fill, OrderStatus, OrderUpdate, PlaceOrder, Side, Symbol
from tradebot.core.portfolio.ledger import Ledger
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.deribit_private import CLIENT_ID, CLIENT_SECRET

BTC = Symbol("BTC/USDC:USDC")
RUN = "exec-deribit-test"

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def rig(db_url: str) -> AsyncIterator[Rig]:
    config = SimConfig(data_dir=DATA, start_ms=START_MS, minute_wall_s=3600.0, ping_interval_s=None)
    async with ExchangeSim(config) as sim, SqlEventStore(db_url) as store:
        await store.start_run(run_id=RUN, mode="testnet", config={}, version="t", started_ms=START_MS)
        exchange = deribit_exchange(
            sim.deribit_rest_url, client_id=CLIENT_ID, secret=CLIENT_SECRET, timeout_ms=400
        )
        venue = DeribitVenue(exchange, config=FAST_VENUE)
        instruments = await venue.load_instruments([BTC])
        executor = OrderExecutor(
            venue, store, instruments, now_ms=lambda: sim.market.now_ms, config=FAST_EXEC
        )
        ledger = Ledger("USDC", D("10000"), [BTC], {}, run_id=RUN)
        try:
            yield Rig(sim, venue, store, executor, ledger, [])
        finally:
            await venue.close()


def child(n: int, qty: str = "0.01", side: Side = Side.BUY) -> PlaceOrder:
    return PlaceOrder(client_order_id=ClientOrderId(f"{RUN}-{n}-1"), symbol=BTC, side=side, qty=D(qty),
                      ref_price=D("27322.27"), reason="rebalance", intent_id=f"{RUN}-{n}",
                      created_ms=START_MS)  # fmt: skip


async def check_invariants(rig: Rig, children: dict[str, int]) -> None:
    """children: client order id → expected number of exchange orders (1, or 0 if never processed)."""
    orders = rig.sim.deribit_orders
    for cid, expected in children.items():
        assert len(orders.orders_of(cid)) == expected, cid
    balances = orders.balances()
    assert rig.ledger.position(BTC) == balances.get("BTC", D(0))
    assert rig.ledger.cash == balances["USDC"]
    sim_trades = sorted(f"USDC-T{t.trade_id}" for t in orders.trades)
    returned = sorted(ev.trade_id for ev in rig.events if isinstance(ev, Fill))
    assert returned == sim_trades  # each exactly once
    assert sorted(f.trade_id for f in await rig.store.fills(RUN)) == sim_trades
    rows = {r.client_order_id: r for r in await rig.store.orders(RUN)}
    assert set(rows) == set(children)
    assert not [r for r in rows.values() if r.status in (OrderStatus.UNKNOWN, OrderStatus.PENDING_SUBMIT)]
    assert rig.executor.unresolved() == [] and rig.executor.open_orders() == 0


def statuses(events: list[Fill | OrderUpdate]) -> list[str]:
    return [ev.status.value if isinstance(ev, OrderUpdate) else "fill" for ev in events]


async def test_no_fault_fills_once(rig: Rig) -> None:
    rig.apply(await rig.executor.submit(child(1)))
    assert statuses(rig.events) == ["accepted", "fill"]
    await check_invariants(rig, {f"{RUN}-1-1": 1})
    assert rig.ledger.position(BTC) == D("0.01")


@pytest.mark.parametrize("fault", ["accept_then_500", "unknown_1007"])
async def test_accepted_but_unknown_is_resolved_by_lookup(rig: Rig, fault: str) -> None:
    setattr(rig.sim.deribit_orders.faults, fault, 1)
    rig.apply(await rig.executor.submit(child(1)))
    assert statuses(rig.events) == ["unknown", "accepted", "fill"]
    assert rig.sim.deribit_orders.placements == [f"{RUN}-1-1"]  # sent once
    await check_invariants(rig, {f"{RUN}-1-1": 1})
    (row,) = await rig.store.orders(RUN)
    assert (row.status, row.filled_qty, row.exchange_order_id) == (OrderStatus.FILLED, D("0.01"), "USDC-1")


async def test_lookup_not_found_for_the_first_lookups(rig: Rig) -> None:
    faults = rig.sim.deribit_orders.faults
    faults.accept_then_500, faults.lookup_not_found = 1, 3
    rig.apply(await rig.executor.submit(child(1)))
    assert faults.lookup_not_found < 3  # a "not found" answer was given and not believed
    assert rig.sim.deribit_orders.placements == [f"{RUN}-1-1"]
    await check_invariants(rig, {f"{RUN}-1-1": 1})
    (row,) = await rig.store.orders(RUN)
    assert (row.status, row.filled_qty) == (OrderStatus.FILLED, D("0.01"))


async def test_429_backs_off_then_sends_once(rig: Rig) -> None:
    rig.sim.deribit_orders.faults.throttle.append((429, 1))
    rig.apply(await rig.executor.submit(child(1)))
    assert statuses(rig.events) == ["accepted", "fill"]
    assert rig.sim.deribit_orders.placements == [f"{RUN}-1-1"]
    await check_invariants(rig, {f"{RUN}-1-1": 1})


async def test_duplicate_trade_reports_are_applied_once(rig: Rig) -> None:
    rig.sim.deribit_orders.faults.duplicate_trades = True
    rig.sim.deribit_orders.faults.accept_then_500 = 1  # fills then come from lookups and trade listings
    rig.apply(await rig.executor.submit(child(1)))
    rig.apply(await rig.executor.submit(child(2, side=Side.SELL, qty="0.004")))
    rig.apply(await rig.executor.poll())
    await check_invariants(rig, {f"{RUN}-1-1": 1, f"{RUN}-2-1": 1})
    assert rig.ledger.position(BTC) == D("0.006")
