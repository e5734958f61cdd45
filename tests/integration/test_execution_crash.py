"""Crash test: a daemon-like runner (``exec_runner.py``) is SIGKILLed at seeded points between
"simulator accepted" and "database written", restarted, and after every restart's reconciliation
the ledger equals the simulator's balances; at the end no order is duplicated, every fill is stored
exactly once and no order is left UNKNOWN or PENDING_SUBMIT.

Kill points (22, from a fixed seed): ``accept`` — the simulator kills the runner right after it
executed an order, before answering; ``write K`` — the runner kills itself just before its K-th
database write (PENDING_SUBMIT row, the answer's status and fills, reconciliation rows).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from decimal import Decimal as D
from pathlib import Path

import pytest
import structlog

from tradebot.adapters.store import SqlEventStore
from tradebot.adapters.store.migrate import upgrade
from tradebot.core.domain import OrderStatus
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.orders import SimOrder

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "ohlcv"
RUNNER = Path(__file__).with_name("exec_runner.py")
START_MS = 1679529600000 + 60 * 60_000
RUN = "crash"
ORDERS = 40
KILLS = 22
SEED = 20240611

pytestmark = pytest.mark.timeout(170)


@pytest.fixture(autouse=True)
def _fresh_logging() -> None:
    # an earlier in-process CLI test may leave structlog writing to its closed capture stream
    structlog.reset_defaults()


def kill_plan(seed: int, n: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [("accept", 0) if rng.random() < 0.4 else ("write", rng.randint(1, 4)) for _ in range(n)]


async def run_once(sim: ExchangeSim, db: str, kill: tuple[str, int] | None) -> tuple[int, list[str]]:
    args = [sys.executable, str(RUNNER), "--rest-url", sim.binance_rest_url, "--db", db, "--run", RUN,
            "--orders", str(ORDERS), "--start-ms", str(START_MS)]  # fmt: skip
    if kill is not None and kill[0] == "write":
        args += ["--kill-before-write", str(kill[1])]
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)

    def kill_now(order: SimOrder) -> None:
        sim.binance_private.after_accept = None
        os.kill(proc.pid, signal.SIGKILL)

    sim.binance_private.after_accept = kill_now if kill is not None and kill[0] == "accept" else None
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    sim.binance_private.after_accept = None
    return proc.returncode or 0, out.decode().splitlines()


async def test_sigkill_between_accept_and_database_write(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}"
    await upgrade(db)
    async with SqlEventStore(db) as store:
        await store.start_run(run_id=RUN, mode="testnet", config={}, version="t", started_ms=START_MS)
    config = SimConfig(data_dir=DATA, start_ms=START_MS, minute_wall_s=3600.0, ping_interval_s=None)
    async with ExchangeSim(config) as sim:
        engine = sim.binance_orders
        killed = 0
        for kill in [*kill_plan(SEED, KILLS), None]:
            rc, lines = await run_once(sim, db, kill)
            reconciled = [json.loads(x)["reconciled"] for x in lines if x.startswith("{")]
            for r in reconciled:  # after every restart's reconciliation: ledger == venue
                assert r["ok"], r["message"]
                assert D(r["qty"]) == D(r["venue"].get("BTC", "0")) and D(r["cash"]) == D(r["venue"]["USDT"])
            if kill is None:
                assert (rc, lines[-1]) == (0, "DONE")
            elif rc == -signal.SIGKILL:
                killed += 1
            else:
                assert (rc, lines[-1]) == (0, "DONE")  # finished before reaching the kill point
        assert killed >= 20
        async with SqlEventStore(db) as store:
            rows = {r.client_order_id: r for r in await store.orders(RUN)}
            fills = await store.fills(RUN)
    assert sorted(rows) == sorted(f"{RUN}-{i}-1" for i in range(1, ORDERS + 1))
    for cid, row in rows.items():
        assert row.status not in (OrderStatus.UNKNOWN, OrderStatus.PENDING_SUBMIT), (cid, row.status)
        placed = engine.orders_of(cid)
        assert len(placed) <= 1, f"{cid} duplicated at the venue"
        assert len(placed) == (0 if row.status is OrderStatus.REJECTED else 1), (cid, row.status)
        if placed:
            assert row.filled_qty == placed[0].filled
    assert sorted(f.trade_id for f in fills) == sorted(str(t.trade_id) for t in engine.trades)
    balances = engine.balances()
    qty = sum((f.qty if f.side.value == "buy" else -f.qty for f in fills), D(0))
    cash = D("10000") - sum(
        (f.qty * f.price * (1 if f.side.value == "buy" else -1) + f.fee_quote for f in fills), D(0)
    )
    assert (qty, cash) == (balances.get("BTC", D(0)), balances["USDT"])
    assert len(engine.placements) == len(set(engine.placements))  # no client order id was ever sent twice
    assert [r.status for r in rows.values()].count(OrderStatus.FILLED) >= ORDERS // 2
