"""Reconciliation against the exchange simulator: orders left PENDING_SUBMIT by a crash are resolved,
unknown venue orders adopted, missing fills applied once, and unexplained balance differences refuse
trading with a position event and a message naming the asset and amounts."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal as D
from pathlib import Path

import pytest
import structlog

from tradebot.adapters.store import SqlEventStore
from tradebot.adapters.venues.ccxt_venue import CcxtVenue, VenueConfig, binance_exchange
from tradebot.app.daemon.execution import ExecutionConfig, OrderExecutor
from tradebot.app.daemon.reconcile import ReconcileConfig, SequencedEvents, reconcile
from tradebot.core.domain import (
    ClientOrderId,
    Fill,
    OrderRecord,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PlaceOrder,
    PositionEventType,
    Side,
    Symbol,
    TradeId,
)
from tradebot.core.portfolio.ledger import Ledger
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.binance_private import API_KEY, API_SECRET

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "ohlcv"
START_MS = 1679529600000 + 60 * 60_000
BTC = Symbol("BTC/USDT")
RUN = "rec-test"

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _fresh_logging() -> None:
    # an earlier in-process CLI test may leave structlog writing to its closed capture stream
    structlog.reset_defaults()


@dataclass
class Rig:
    sim: ExchangeSim
    store: SqlEventStore
    executor: OrderExecutor
    ledger: Ledger

    async def reconcile(self, *, startup: bool = True, applied: list[Fill] | None = None,  # type: ignore[no-untyped-def]
                        balance_changes: str = "cash_flow"):  # fmt: skip
        report = await reconcile(
            self.executor, db_orders=await self.store.orders(RUN),
            applied=await self.store.fills(RUN) if applied is None else applied,
            ledger_positions=self.ledger.positions(), ledger_cash=self.ledger.cash, quote="USDT",
            since_ms=START_MS, now_ms=self.sim.market.now_ms, events=SequencedEvents(RUN, 1_000_001),
            config=ReconcileConfig(resolve_timeout_s=3.0, balance_changes=balance_changes), startup=startup,
        )  # fmt: skip
        for ev in report.events:
            if isinstance(ev, Fill):
                assert self.ledger.apply(ev), f"fill {ev.trade_id} returned twice"
        return report

    def assert_ledger_equals_venue(self) -> None:
        balances = self.sim.binance_orders.balances()
        assert self.ledger.position("BTC/USDT") == balances.get("BTC", D(0))
        assert self.ledger.cash == balances["USDT"]


@pytest.fixture
async def rig(db_template: Path, tmp_path: Path) -> AsyncIterator[Rig]:
    shutil.copy(db_template, tmp_path / "r.db")
    config = SimConfig(data_dir=DATA, start_ms=START_MS, minute_wall_s=3600.0, ping_interval_s=None)
    async with ExchangeSim(config) as sim, SqlEventStore(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}") as store:
        await store.start_run(run_id=RUN, mode="testnet", config={}, version="t", started_ms=START_MS)
        venue = CcxtVenue(binance_exchange(sim.binance_rest_url, api_key=API_KEY, secret=API_SECRET, timeout_ms=400),
                          config=VenueConfig(read_initial_s=0.01, read_max_wait_s=0.05, read_jitter_s=0.01))  # fmt: skip
        instruments = await venue.load_instruments(["BTC/USDT"])
        executor = OrderExecutor(venue, store, instruments, now_ms=lambda: sim.market.now_ms,
                                 config=ExecutionConfig(lookup_initial_s=0.01, lookup_max_s=0.05,
                                                        not_placed_after_s=0.3, min_lookups=3))  # fmt: skip
        try:
            yield Rig(sim, store, executor, Ledger("USDT", D("10000"), ["BTC/USDT"], {}, run_id=RUN))
        finally:
            await venue.close()


def pending_row(cid: str, qty: str = "0.01") -> OrderRecord:
    return OrderRecord(client_order_id=ClientOrderId(cid), symbol=BTC, side=Side.BUY, order_type=OrderType.MARKET,
                       qty=D(qty), status=OrderStatus.PENDING_SUBMIT, filled_qty=D(0), avg_fill_price=D(0),
                       fees_quote=D(0), reason="rebalance", intent_id=cid.rsplit("-", 1)[0], created_ms=START_MS,
                       updated_ms=START_MS, ref_price=D("27322.27"))  # fmt: skip


@pytest.mark.parametrize("buy_fee_in_base", [False, True], ids=["quote_fee", "base_fee"])
async def test_crash_after_venue_accept_is_resolved_without_resending(
    rig: Rig, buy_fee_in_base: bool
) -> None:
    # the process committed PENDING_SUBMIT, the venue executed the order, the process died; with
    # Binance's base-asset buy commission the missing fill moves BTC by qty − fee and USDT by −notional
    rig.sim.binance_orders.buy_fee_in_base = buy_fee_in_base
    await rig.store.write([pending_row(f"{RUN}-1-1")])
    rig.sim.binance_orders.place(symbol="BTCUSDT", side="BUY", type="MARKET", qty=D("0.01"), price=None,
                                 client_order_id=f"{RUN}-1-1")  # fmt: skip
    report = await rig.reconcile()
    assert report.ok, report.message
    assert [type(e).__name__ for e in report.events] == ["OrderUpdate", "Fill"]
    assert rig.sim.binance_orders.placements == [f"{RUN}-1-1"]  # nothing re-sent
    (row,) = await rig.store.orders(RUN)
    assert (row.status, row.filled_qty) == (OrderStatus.FILLED, D("0.01"))
    rig.assert_ledger_equals_venue()
    assert [e.event_type for e in report.position_events] == [PositionEventType.RECONCILE_ADJUSTMENT] * 2


async def test_crash_before_send_is_concluded_never_placed(rig: Rig) -> None:
    await rig.store.write([pending_row(f"{RUN}-1-1")])
    report = await rig.reconcile()
    assert report.ok, report.message
    assert [(e.status, e.reason[:12]) for e in report.events if isinstance(e, OrderUpdate)] == [
        (OrderStatus.REJECTED, "never placed")
    ]
    assert rig.sim.binance_orders.placements == []
    (row,) = await rig.store.orders(RUN)
    assert row.status is OrderStatus.REJECTED
    assert report.position_events == []
    rig.assert_ledger_equals_venue()


async def test_unknown_open_order_at_the_venue_is_adopted(rig: Rig) -> None:
    rig.sim.binance_orders.place(symbol="BTCUSDT", side="BUY", type="LIMIT", qty=D("0.01"), price=D("20000.00"),
                                 client_order_id="manual-1")  # fmt: skip
    report = await rig.reconcile()
    assert report.ok, report.message
    assert report.adopted == ["manual-1"]
    rows = {r.client_order_id: r for r in await rig.store.orders(RUN)}
    assert rows["manual-1"].status is OrderStatus.ACCEPTED and rows["manual-1"].intent_id == "adopted"
    assert rig.executor.open_orders() == 1  # tracked from now on
    rig.assert_ledger_equals_venue()  # open order funds are locked, not spent


async def test_missing_fills_are_applied_once_as_an_adjustment(rig: Rig) -> None:
    rig.sim.binance_orders.faults.accept_then_500 = 1
    cmd = PlaceOrder(client_order_id=ClientOrderId(f"{RUN}-1-1"), symbol=BTC, side=Side.BUY, qty=D("0.01"),
                     ref_price=D("27322.27"), reason="t", intent_id=f"{RUN}-1", created_ms=START_MS)  # fmt: skip
    events = await rig.executor.submit(cmd)  # the ledger never sees these: a crash before the engine ran
    assert any(isinstance(e, Fill) for e in events)
    report = await rig.reconcile(applied=[])  # the restarted ledger is empty
    assert report.ok, report.message
    assert [f.trade_id for f in report.events if isinstance(f, Fill)] == ["1"]
    rig.assert_ledger_equals_venue()
    again = await rig.reconcile(startup=False)  # periodic: nothing new, balances agree
    assert (again.ok, again.events, again.position_events) == (True, [], [])


async def test_unexplained_balance_difference_refuses_new_entries_when_so_configured(rig: Rig) -> None:
    rig.sim.binance_orders.free["BTC"] = D("0.5")  # a deposit or a manual trade the bot cannot explain
    report = await rig.reconcile(balance_changes="refuse")
    assert not report.ok
    assert report.message == (
        "refusing to trade: BTC: ledger 0 + missing fills 0 vs venue 0.50000000 (difference 0.50000000, dust 0.00001)"
    )
    (event,) = report.position_events
    assert (event.event_type, event.symbol, event.size_before) == (
        PositionEventType.RECONCILE_MISMATCH,
        BTC,
        D(0),
    )
    assert "exits and reductions go on" in event.action_taken
    # not written here: the daemon stores them with the checkpoint of the sequence that numbered them
    assert await rig.store.position_events(RUN) == []


async def test_unexplained_balance_differences_are_cash_flows_by_default(rig: Rig) -> None:
    rig.sim.binance_orders.free["BTC"] = D("0.5")  # a BTC deposit
    rig.sim.binance_orders.free["USDT"] -= D("250")  # a USDT withdrawal
    report = await rig.reconcile()
    assert (report.ok, report.position_events) == (True, [])  # the engine records them as cash_flow
    assert [(c.asset, c.gap - c.missing_fills) for c in report.flows] == [
        ("BTC", D("0.5")),
        ("USDT", D("-250")),
    ]


async def test_periodic_run_goes_on_with_a_manual_order_resting_and_adopts_its_true_side(rig: Rig) -> None:
    # before, any open order switched periodic reconciliation off, and an adopted SELL was stored as a buy
    rig.sim.binance_orders.free["BTC"] = D("0.02")
    rig.ledger.apply(Fill(venue="binance", symbol=BTC, trade_id=TradeId("dep"), client_order_id=ClientOrderId("dep"),
                          side=Side.BUY, qty=D("0.02"), price=D(1), fee_quote=D(0), ts_ms=START_MS))  # fmt: skip
    rig.ledger._cash = rig.sim.binance_orders.free["USDT"]
    rig.sim.binance_orders.place(symbol="BTCUSDT", side="SELL", type="LIMIT", qty=D("0.01"), price=D("90000.00"),
                                 client_order_id="manual-2")  # fmt: skip
    first = await rig.reconcile(startup=False)
    assert first.adopted == ["manual-2"] and first.ok, first.message
    rows = {r.client_order_id: r for r in await rig.store.orders(RUN)}
    assert rows["manual-2"].side is Side.SELL
    rig.sim.binance_orders.free["USDT"] -= D("100")  # a withdrawal while the manual order rests
    report = await rig.reconcile(startup=False)
    assert report.ok and rig.executor.open_orders() == 1
    assert [(c.asset, c.gap - c.missing_fills) for c in report.flows] == [("USDT", D("-100"))]
