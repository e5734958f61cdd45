"""A daemon-like execution runner for the crash test (run as a subprocess, killed with SIGKILL).

Each start: open the store and the venue, reconcile (ledger = fold of the stored fills), print one
JSON line ``{"reconciled": …}`` with the ledger and the venue balances, then submit the children
``<run>-<i>-1`` (i = 1..orders) not yet in the database, one after another, and print ``DONE``.

``--kill-before-write K`` makes the process SIGKILL itself just before its K-th database write
(a crash between a venue answer and the database).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from collections.abc import Sequence
from decimal import Decimal

from tradebot.adapters.store import SqlEventStore
from tradebot.adapters.venues.ccxt_venue import CcxtVenue, VenueConfig, binance_exchange
from tradebot.app.daemon.execution import ExecutionConfig, OrderExecutor, signed_qty
from tradebot.app.daemon.reconcile import ReconcileConfig, SequencedEvents, reconcile
from tradebot.core.domain import ClientOrderId, Fill, PlaceOrder, Side, Symbol
from tradebot.exchange_sim.binance_private import API_KEY, API_SECRET

BTC = Symbol("BTC/USDT")
INITIAL_CASH = Decimal("10000")


class KillingStore:
    """Forwards writes to the store; SIGKILLs the process before write number ``kill_at``."""

    def __init__(self, store: SqlEventStore, kill_at: int | None) -> None:
        self.store, self.kill_at, self.writes = store, kill_at, 0

    async def write(self, records: Sequence[object]) -> None:
        self.writes += 1
        if self.writes == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        await self.store.write(records)


def ledger(fills: Sequence[Fill]) -> tuple[Decimal, Decimal]:
    """(BTC position, USDT cash) from the stored fills."""
    cash = INITIAL_CASH - sum((f.qty * f.price * (1 if f.side is Side.BUY else -1) + f.fee_quote for f in fills),
                              Decimal(0))  # fmt: skip
    return signed_qty(fills), cash


async def next_seq(store: SqlEventStore, run: str) -> int:
    """The next free position-event sequence number of ``run``."""
    return max((e.seq for e in await store.position_events(run)), default=0) + 1


def child(run: str, i: int, start_ms: int) -> PlaceOrder:
    side, qty = (Side.BUY, "0.01") if i % 2 else (Side.SELL, "0.005")
    return PlaceOrder(client_order_id=ClientOrderId(f"{run}-{i}-1"), symbol=BTC, side=side, qty=Decimal(qty),
                      ref_price=Decimal("27322.27"), reason="rebalance", intent_id=f"{run}-{i}",
                      created_ms=start_ms)  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    async with SqlEventStore(args.db) as store:
        store.bind_run(args.run)
        sink = KillingStore(store, args.kill_before_write)
        venue = CcxtVenue(binance_exchange(args.rest_url, api_key=API_KEY, secret=API_SECRET, timeout_ms=1000),
                          config=VenueConfig(read_initial_s=0.01, read_max_wait_s=0.05, read_jitter_s=0.01))  # fmt: skip
        try:
            instruments = await venue.load_instruments(["BTC/USDT"])
            executor = OrderExecutor(venue, sink, instruments, now_ms=lambda: args.start_ms,
                                     config=ExecutionConfig(lookup_initial_s=0.02, lookup_max_s=0.1,
                                                            not_placed_after_s=0.3, min_lookups=3))  # fmt: skip
            fills = await store.fills(args.run)
            qty, cash = ledger(fills)
            report = await reconcile(executor, db_orders=await store.orders(args.run), applied=fills,
                                     ledger_positions={BTC: qty}, ledger_cash=cash, quote="USDT",
                                     since_ms=args.start_ms, now_ms=args.start_ms,
                                     events=SequencedEvents(args.run, await next_seq(store, args.run)),
                                     config=ReconcileConfig(resolve_timeout_s=10.0))  # fmt: skip
            qty, cash = ledger(await store.fills(args.run))
            balances = await venue.fetch_balances()
            print(json.dumps({"reconciled": {"ok": report.ok, "message": report.message, "qty": str(qty),
                                             "cash": str(cash), "venue": {k: str(v) for k, v in balances.items()}}}),
                  flush=True)  # fmt: skip
            if not report.ok:
                raise SystemExit(3)
            known = {r.client_order_id for r in await store.orders(args.run)}
            for i in range(1, args.orders + 1):
                cmd = child(args.run, i, args.start_ms)
                if cmd.client_order_id not in known:
                    await executor.submit(cmd)
            await executor.drive(timeout_s=10)
            print("DONE", flush=True)
        finally:
            await venue.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rest-url", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--orders", type=int, required=True)
    parser.add_argument("--start-ms", type=int, required=True)
    parser.add_argument("--kill-before-write", type=int, default=None)
    asyncio.run(main(parser.parse_args()))
