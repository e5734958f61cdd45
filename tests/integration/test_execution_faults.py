"""OrderExecutor ⇄ CcxtVenue ⇄ exchange simulator, one test per order-path fault switch.

Every test checks the four acceptance invariants (:func:`check_invariants`): exactly one exchange
order per intent child (zero for a child the venue never processed), the ledger (the engine's
``Ledger`` fed the returned fills) equals the simulator's balances, every fill applied exactly once
(in the ledger and in the database), and no order left UNKNOWN or PENDING_SUBMIT.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal as D

import pytest
from exec_rig import DATA, FAST_EXEC, FAST_VENUE, START_MS, Rig, _fresh_logging  # noqa: F401 (the fixture)

from tradebot.adapters.store import SqlEventStore
from tradebot.adapters.venues.ccxt_venue import CcxtVenue, binance_exchange
from tradebot.app.daemon.execution import OrderExecutor
from tradebot.core.domain import (
    CancelOrder,
    ClientOrderId,
    Fill,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PlaceOrder,
    Side,
    Symbol,
)
from tradebot.core.portfolio.ledger import Ledger
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.binance_private import API_KEY, API_SECRET

BTC = Symbol("BTC/USDT")
RUN = "exec-test"

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def rig(db_url: str) -> AsyncIterator[Rig]:
    config = SimConfig(data_dir=DATA, start_ms=START_MS, minute_wall_s=3600.0, ping_interval_s=None)
    async with ExchangeSim(config) as sim, SqlEventStore(db_url) as store:
        await store.start_run(run_id=RUN, mode="testnet", config={}, version="t", started_ms=START_MS)
        venue = CcxtVenue(binance_exchange(sim.binance_rest_url, api_key=API_KEY, secret=API_SECRET, timeout_ms=400),
                          config=FAST_VENUE)  # fmt: skip
        instruments = await venue.load_instruments(["BTC/USDT"])
        executor = OrderExecutor(
            venue, store, instruments, now_ms=lambda: sim.market.now_ms, config=FAST_EXEC
        )
        ledger = Ledger("USDT", D("10000"), ["BTC/USDT"], {}, run_id=RUN)
        try:
            yield Rig(sim, venue, store, executor, ledger, [])
        finally:
            await venue.close()


def child(n: int, qty: str = "0.01", side: Side = Side.BUY, **kw: object) -> PlaceOrder:
    return PlaceOrder(client_order_id=ClientOrderId(f"{RUN}-{n}-1"), symbol=BTC, side=side, qty=D(qty),
                      ref_price=D("27322.27"), reason="rebalance", intent_id=f"{RUN}-{n}",
                      created_ms=START_MS, **kw)  # type: ignore[arg-type]  # fmt: skip


async def check_invariants(rig: Rig, children: dict[str, int]) -> None:
    """children: client order id → expected number of exchange orders (1, or 0 if never processed)."""
    for cid, expected in children.items():
        assert len(rig.sim.binance_orders.orders_of(cid)) == expected, cid
    balances = rig.sim.binance_orders.balances()
    assert rig.ledger.position("BTC/USDT") == balances.get("BTC", D(0))
    assert rig.ledger.cash == balances["USDT"]
    sim_trades = sorted(str(t.trade_id) for t in rig.sim.binance_orders.trades)
    returned = sorted(ev.trade_id for ev in rig.events if isinstance(ev, Fill))
    assert returned == sim_trades  # each exactly once
    assert sorted(f.trade_id for f in await rig.store.fills(RUN)) == sim_trades
    rows = {r.client_order_id: r for r in await rig.store.orders(RUN)}
    assert set(rows) == set(children)
    assert not [r for r in rows.values() if r.status in (OrderStatus.UNKNOWN, OrderStatus.PENDING_SUBMIT)]
    assert rig.executor.unresolved() == [] and rig.executor.open_orders() == 0


def statuses(events: list[Fill | OrderUpdate]) -> list[str]:
    return [ev.status.value if isinstance(ev, OrderUpdate) else "fill" for ev in events]


@pytest.mark.parametrize("fault", ["accept_then_500", "accept_then_hang", "unknown_1007"])
async def test_accepted_but_unknown_is_resolved_by_lookup(rig: Rig, fault: str) -> None:
    setattr(rig.sim.binance_orders.faults, fault, 1)
    rig.sim.binance_orders.faults.hang_s = 0.8  # > the 0.4 s client timeout
    rig.apply(await rig.executor.submit(child(1)))
    assert statuses(rig.events) == ["unknown", "accepted", "fill"]
    assert rig.sim.binance_orders.placements == [f"{RUN}-1-1"]  # sent once
    await check_invariants(rig, {f"{RUN}-1-1": 1})
    (row,) = await rig.store.orders(RUN)
    assert (row.status, row.filled_qty, row.exchange_order_id) == (OrderStatus.FILLED, D("0.01"), "1")


async def test_lookup_not_found_for_the_first_lookups(rig: Rig) -> None:
    faults = rig.sim.binance_orders.faults
    faults.accept_then_500, faults.lookup_not_found = 1, 3
    rig.apply(await rig.executor.submit(child(1)))
    assert faults.lookup_not_found == 0  # the three "not found" answers were consumed, none was believed
    assert rig.sim.binance_orders.placements == [f"{RUN}-1-1"]
    await check_invariants(rig, {f"{RUN}-1-1": 1})


async def test_partial_fill_then_expire_is_accounted_exactly(rig: Rig) -> None:
    rig.sim.binance_orders.faults.partial_then_expire = D("0.4")
    rig.apply(await rig.executor.submit(child(1, qty="0.01")))
    assert statuses(rig.events) == ["accepted", "fill", "expired"]
    fill = rig.events[1]
    assert isinstance(fill, Fill) and fill.qty == D("0.004")
    await check_invariants(rig, {f"{RUN}-1-1": 1})
    (row,) = await rig.store.orders(RUN)
    assert (row.status, row.filled_qty) == (OrderStatus.EXPIRED, D("0.004"))
    assert rig.ledger.position("BTC/USDT") == D("0.004")


async def test_429_with_retry_after_backs_off_then_sends_once(rig: Rig) -> None:
    rig.sim.binance_orders.faults.throttle.append((429, 1))
    t0 = asyncio.get_running_loop().time()
    rig.apply(await rig.executor.submit(child(1)))
    assert asyncio.get_running_loop().time() - t0 >= 0.9  # honoured Retry-After
    assert statuses(rig.events) == ["accepted", "fill"]
    await check_invariants(rig, {f"{RUN}-1-1": 1})


async def test_418_halts_the_venue_and_nothing_is_placed(rig: Rig) -> None:
    rig.sim.binance_orders.faults.throttle.append((418, 60))
    rig.apply(await rig.executor.submit(child(1)))
    assert statuses(rig.events) == ["rejected"]
    assert rig.venue.gate.banned
    sent = len(rig.sim.binance_private.requests)
    rig.apply(await rig.executor.submit(child(2)))  # refused locally while banned
    assert len(rig.sim.binance_private.requests) == sent
    assert statuses(rig.events) == ["rejected", "rejected"]
    await check_invariants(rig, {f"{RUN}-1-1": 0, f"{RUN}-2-1": 0})


async def test_clock_skew_is_resent_after_resync(rig: Rig) -> None:
    rig.sim.binance_orders.faults.clock_skew = 1
    rig.apply(await rig.executor.submit(child(1)))
    assert statuses(rig.events) == ["accepted", "fill"]
    await check_invariants(rig, {f"{RUN}-1-1": 1})


async def test_duplicate_trade_reports_are_applied_once(rig: Rig) -> None:
    rig.sim.binance_orders.faults.duplicate_trades = True
    rig.sim.binance_orders.faults.accept_then_500 = 1  # fills then come from lookups and trade listings
    rig.apply(await rig.executor.submit(child(1)))
    rig.apply(await rig.executor.submit(child(2, side=Side.SELL, qty="0.004")))
    rig.apply(await rig.executor.poll())
    await check_invariants(rig, {f"{RUN}-1-1": 1, f"{RUN}-2-1": 1})
    assert rig.ledger.position("BTC/USDT") == D("0.006")


async def test_fill_after_cancel_is_applied(rig: Rig) -> None:
    orders = rig.sim.binance_orders
    orders.limit_volume_fraction = D("0.0001")  # the resting order fills in small parts
    cmd = child(1, qty="0.3", order_type=OrderType.LIMIT, limit_price=D("27400.00"))
    rig.apply(await rig.executor.submit(cmd))
    assert statuses(rig.events) == ["accepted"]
    rig.sim.market.step()  # a candle trades through the limit: a partial fill the executor has not seen
    assert orders.orders[0].status == "PARTIALLY_FILLED"
    rig.apply(
        await rig.executor.cancel(CancelOrder(client_order_id=cmd.client_order_id, symbol=BTC, reason="t"))
    )
    assert statuses(rig.events) == ["accepted", "fill", "canceled"]
    await check_invariants(rig, {f"{RUN}-1-1": 1})
    (row,) = await rig.store.orders(RUN)
    assert row.status is OrderStatus.CANCELED and row.filled_qty == orders.orders[0].filled > 0


async def test_buy_commission_in_the_base_asset_runs_through_the_ledger(rig: Rig) -> None:
    # Binance charges a buy's commission in the asset bought: 0.01 BTC bought, 0.00001 BTC paid
    rig.sim.binance_orders.buy_fee_in_base = True
    rig.apply(await rig.executor.submit(child(1)))
    rig.apply(await rig.executor.submit(child(2, side=Side.SELL, qty="0.004")))
    buy, sell = (ev for ev in rig.events if isinstance(ev, Fill))
    assert (buy.fee, buy.fee_currency, buy.fee_quote) == (D("0.00001"), "BTC", D("0.00001") * buy.price)
    assert (sell.fee_currency, sell.fee) == (
        "USDT",
        (D("0.004") * sell.price * D("0.001")).quantize(D("1e-8")),
    )
    await check_invariants(rig, {f"{RUN}-1-1": 1, f"{RUN}-2-1": 1})  # the ledger holds what the venue holds
    assert rig.ledger.position("BTC/USDT") == D("0.01") - D("0.00001") - D("0.004")
    assert rig.ledger.fees("BTC/USDT") == buy.fee_quote + sell.fee_quote


async def test_denied_locally_is_never_sent_nor_retried(rig: Rig) -> None:
    for _ in range(3):
        rig.apply(await rig.executor.submit(child(1, qty="0.0001")))  # 2.73 USDT < min notional 5 (NOTIONAL)
    rig.apply(await rig.executor.submit(child(2, qty="0.000015")))  # off the 0.00001 step
    assert statuses(rig.events) == ["denied", "denied"]  # the repeats of child 1 return nothing
    assert [ev.reason for ev in rig.events if isinstance(ev, OrderUpdate)] == [
        "NOTIONAL: notional 2.732227 is below min notional 5",
        "LOT_SIZE: qty 0.000015 is not a multiple of step size 0.00001",
    ]
    assert rig.sim.binance_private.requests == []  # nothing reached the venue
    await check_invariants(rig, {f"{RUN}-1-1": 0, f"{RUN}-2-1": 0})


async def test_never_sent_order_is_concluded_not_placed_only_after_repeated_lookups(rig: Rig) -> None:
    cmd = child(1)
    rig.executor.adopt(cmd, OrderStatus.PENDING_SUBMIT)  # a row found after a crash before the send
    await rig.store.write([rig.executor._record(rig.executor.orders[cmd.client_order_id])])
    rig.apply(await rig.executor.poll())
    assert rig.events == [] and rig.executor.unresolved() == [
        cmd.client_order_id
    ]  # one "not found" is not enough
    rig.apply(await rig.executor.drive(timeout_s=5))
    assert statuses(rig.events) == ["rejected"]
    assert rig.executor.orders[cmd.client_order_id].misses >= FAST_EXEC.min_lookups
    await check_invariants(rig, {f"{RUN}-1-1": 0})


async def test_pending_row_not_committed_means_nothing_is_sent(rig: Rig) -> None:
    class FailingStore:
        async def write(self, records: object) -> None:
            raise OSError("database is locked")

    executor = OrderExecutor(
        rig.venue, FailingStore(), rig.venue.instruments, now_ms=lambda: START_MS, config=FAST_EXEC
    )
    with pytest.raises(OSError, match="database is locked"):
        await executor.submit(child(1))
    assert rig.sim.binance_private.requests == []
    executor.store = rig.store  # the database is back: the same command may now go out, once
    rig.apply(await executor.submit(child(1)))
    assert statuses(rig.events) == ["accepted", "fill"]
    assert rig.sim.binance_orders.placements == [f"{RUN}-1-1"]
