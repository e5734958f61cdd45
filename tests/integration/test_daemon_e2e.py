"""Acceptance test of the daemon: ``tradebot run`` (a subprocess, testnet mode, PostgreSQL) trades a
simulated week of the shipped real candles (``data/sample``) against the exchange simulator, is
killed with SIGKILL twice and stopped with SIGTERM once at seeded points, and restarted each time.

The simulator's market runs in lock-step with the daemon: its clock is paused and a minute is
stepped only once the daemon reports (debug line ``engine_step``) that it handled every candle
closed so far, so market orders fill at the next candle's open as in an uninterrupted run; while
the daemon is down the market does not move.

Kill points (seeded): SIGKILL inside the simulator's order endpoint right after it executed the
k-th order and before it answers (the daemon never sees the answer); SIGKILL between two steps;
SIGTERM between two steps (graceful, exit 0).

Asserted: every client order id reached the simulator once; the stored fills are unique and are
exactly the simulator's trades; the ledger (final checkpoint) and the fills equal the simulator's
balances; orders, trades and position events (feed and reconciliation events aside) equal those of an
uninterrupted run of the same candles; the engine's decisions (orders, position events, final
equity) equal a backtest of the same candles and configuration; and no canary secret appears in any
output line or stored row.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import logging
import os
import random
import re
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
import structlog

from tradebot.adapters.store import SqlEventStore
from tradebot.adapters.venues.ccxt_schemas import binance_instrument
from tradebot.app.backtest.backtest import BacktestOptions, run_backtest
from tradebot.app.demo.demo import DemoOptions, run_demo
from tradebot.app.settings import load_settings
from tradebot.core.domain import PositionEventType, Side, Symbol, Timeframe
from tradebot.core.portfolio.ledger import Ledger
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.binance_rest import load_exchange_info
from tradebot.exchange_sim.market import MINUTE_MS

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
SEED = 20240611
DAYS = 7
RUN = "testnet-binance"
CANARIES = {
    "TRADEBOT_TESTNET_API_KEY": "canaryE2Ekey5b1d7f",
    "TRADEBOT_TESTNET_API_SECRET": "canaryE2Esecret93c0a4",
}
DB_PASSWORD = "canaryE2Edbpw6e2f80"
WRONG_SECRET = "canaryE2Ewrongsecret0d4b19"
SKIPPED = {
    PositionEventType.FEED_STALE,
    PositionEventType.FEED_RECOVERED,
    PositionEventType.RECONCILE_ADJUSTMENT,
    PositionEventType.RECONCILE_MISMATCH,
}

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    structlog.reset_defaults()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    yield
    structlog.reset_defaults()


def _with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{password}@{host}"


def _plain(text: str) -> str:
    # "buy 0.17104000 @ 24995.14000000" (venue decimals) == "buy 0.17104 @ 24995.14"
    return re.sub(r"(\d+\.\d*?)0+\b", r"\1", text).replace(". ", " ").rstrip(".")


def _event_key(e) -> tuple:  # type: ignore[no-untyped-def]
    return (
        e.event_type,
        e.symbol,
        e.event_time_ms,
        e.price,
        e.size_before,
        e.size_after,
        _plain(e.action_taken),
    )


def _order_key(o) -> tuple:  # type: ignore[no-untyped-def]
    return (o.symbol, o.side, o.qty, o.created_ms, o.status, o.filled_qty, o.avg_fill_price, o.fees_quote)


def _trade_key(t) -> tuple:  # type: ignore[no-untyped-def]
    # MAE/MFE of a trade still open are those of its last stored record (a finished run re-records it)
    closed = t.closed_ms is not None
    return (t.position_id.rsplit("-", 2)[-2:], t.symbol, t.opened_ms, t.closed_ms, t.entry_avg_price,
            t.exit_avg_price, t.max_qty, t.bought_qty, t.sold_qty, t.realized_pnl, t.fees, t.net_pnl,
            t.mae_pct if closed else None, t.mfe_pct if closed else None)  # fmt: skip


def _signal_key(x) -> tuple:  # type: ignore[no-untyped-def]
    return (x.stream, x.symbol, x.time_ms, x.state, round(x.confidence, 12), x.flipped)


@dataclass
class Plan:
    """Seeded kill points: the k-th order placement, the minute of the idle kill and of the SIGTERM."""

    kill_at_placement: int
    kill_at_minute: int
    term_at_minute: int


@dataclass
class Harness:
    """Runs the daemon subprocess in lock-step with the simulator and stops it where planned."""

    sim: ExchangeSim
    env: dict[str, str]
    cwd: Path
    plan: Plan
    bar_opens: list[int]
    output: list[bytes] = field(default_factory=list)
    exits: list[tuple[str, int]] = field(default_factory=list)
    through: int = -1
    proc: asyncio.subprocess.Process | None = None
    order_kill: str = "armed"  # → "fired" (in the order endpoint) → "done"
    _progress: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task] = field(default_factory=list)  # type: ignore[type-arg]

    def expected_through(self) -> int:
        """Open time of the last candle closed at the simulator's current time."""
        i = bisect.bisect_left(self.bar_opens, self.sim.market.now_ms) - 1
        return self.bar_opens[i] if i >= 0 else -1

    def after_accept(self, order: object) -> None:
        # SIGKILL the daemon inside the order endpoint: executed at the venue, answer never received
        if (
            self.order_kill == "armed"
            and len(self.sim.binance_orders.placements) == self.plan.kill_at_placement
        ):
            assert self.proc is not None
            self.order_kill = "fired"
            os.kill(self.proc.pid, signal.SIGKILL)

    async def _pump(self, stream: asyncio.StreamReader, is_log: bool) -> None:
        while line := await stream.readline():
            self.output.append(line)
            if is_log and b'"engine_step"' in line:
                self.through = max(self.through, json.loads(line)["through_open_ms"])
                self._progress.set()

    async def start(self) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
        self.through = -1
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tradebot", "run", env={**base, **self.env}, cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._tasks = [
            asyncio.create_task(self._pump(self.proc.stderr, True)),
            asyncio.create_task(self._pump(self.proc.stdout, False)),
            asyncio.create_task(self.proc.wait()),
        ]

    async def caught_up(self) -> bool:
        """Wait until the daemon handled every candle closed so far; False if it exited meanwhile."""
        target = self.expected_through()
        while self.through < target:
            if self._tasks[2].done():
                return False
            self._progress.clear()
            waiter = asyncio.ensure_future(self._progress.wait())
            done, _ = await asyncio.wait(
                {waiter, self._tasks[2]}, timeout=60, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            assert done, f"daemon stuck before {target}:\n{self.tail()}"
        return True

    async def stop(self, why: str, sig: int | None) -> int:
        assert self.proc is not None
        if sig is not None:
            self.proc.send_signal(sig)
        async with asyncio.timeout(60):
            code = await self.proc.wait()
            await asyncio.gather(*self._tasks)
        self.exits.append((why, code))
        return code

    async def run(self) -> None:
        """Trade until the market's end; restart after each planned stop."""
        market, p = self.sim.market, self.plan
        idle_kill = market.now_ms + p.kill_at_minute * MINUTE_MS
        term = market.now_ms + p.term_at_minute * MINUTE_MS
        await self.start()
        while True:
            if not await self.caught_up():
                assert self.order_kill == "fired", self.tail()
                self.order_kill = "done"
                assert await self.stop("sigkill_in_order", None) == -signal.SIGKILL, self.tail()
                await self.start()
                continue
            if market.now_ms == idle_kill:
                idle_kill = -1
                assert await self.stop("sigkill_idle", signal.SIGKILL) == -signal.SIGKILL
                await self.start()
            elif market.now_ms == term:
                term = -1
                assert await self.stop("sigterm", signal.SIGTERM) == 0, self.tail()
                await self.start()
            elif market.now_ms >= market.end_ms:
                break
            else:
                market.step()
        assert await self.stop("end", signal.SIGTERM) == 0, self.tail()

    def tail(self, n: int = 40) -> str:
        return b"".join(self.output[-n:]).decode(errors="replace")


async def _refused_start(env: dict[str, str], cwd: Path) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tradebot", "run", env={**base, **env}, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def _dump_database(url: str) -> str:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        ]
        rows = []
        for table in tables:
            rows += [r[0] for r in await conn.fetch(f'SELECT row_to_json(t)::text FROM "{table}" t')]
    finally:
        await conn.close()
    return "\n".join(rows)


@pytest.mark.timeout(420)
async def test_daemon_survives_kills_and_trades_like_an_uninterrupted_run(
    pg_url: str, tmp_path: Path
) -> None:
    settings = load_settings()
    first = 1679004900000  # first 1m candle of data/sample
    end = first + DAYS * 1440 * MINUTE_MS
    info = {s["symbol"]: s for s in load_exchange_info()["symbols"]}
    instruments = {
        Symbol(f"{a}/USDT"): binance_instrument(info[f"{a}USDT"], Symbol(f"{a}/USDT"))
        for a in ("BTC", "ETH", "SOL")
    }
    bt_db = f"sqlite+aiosqlite:///{tmp_path / 'bt.db'}"
    bt = await run_backtest(settings, BacktestOptions(data_dir=SAMPLE, timeframe=Timeframe.M1, start_ms=first,
                                                      end_ms=end, db_url=bt_db, instruments=instruments))  # fmt: skip
    bt_run = bt.summary["run"]["run_id"]
    async with SqlEventStore(bt_db) as store:
        bt_orders = await store.orders(bt_run)
        bt_events = await store.position_events(bt_run)
        bt_signals = await store.stream_signals(bt_run)
    # seeded kill points; the in-order kill hits the first order of a decision with several orders
    # (so the restart must find the executed one and send the others, which were never sent)
    # (two orders of the same decision: same time and side; a buy after sells is planned once they fill)
    firsts = [
        i + 1
        for i, (a, b) in enumerate(itertools.pairwise(bt_orders))
        if (a.created_ms, a.side) == (b.created_ms, b.side)
        and (i == 0 or bt_orders[i - 1].created_ms != a.created_ms)
    ]
    rng = random.Random(SEED)
    plan = Plan(kill_at_placement=rng.choice(firsts[1:4]), kill_at_minute=rng.randrange(1500, 4000),
                term_at_minute=rng.randrange(5000, 9000))  # fmt: skip
    config = SimConfig(
        data_dir=SAMPLE, start_ms=first, end_ms=end, minute_wall_s=86_400.0, ping_interval_s=5.0
    )
    async with ExchangeSim(config) as sim:
        sim.market.pause()  # the test steps the market itself, in lock-step with the daemon
        sim.binance_private.credentials[CANARIES["TRADEBOT_TESTNET_API_KEY"]] = CANARIES[
            "TRADEBOT_TESTNET_API_SECRET"
        ]
        sim.binance_orders.slippage_bps = Decimal(repr(settings.backtest.slippage_bps))
        env = {
            **CANARIES,
            "TRADEBOT_MODE": "testnet",
            "TRADEBOT_LOG_LEVEL": "debug",
            "TRADEBOT_LOG_FORMAT": "json",
            "TRADEBOT_DATABASE_URL": _with_password(pg_url, DB_PASSWORD),
            "POSTGRES_PASSWORD": DB_PASSWORD,
            "TRADEBOT_FEEDS__BINANCE__WS_URL": sim.binance_ws_url,
            "TRADEBOT_FEEDS__BINANCE__REST_URL": sim.binance_rest_url,
            "TRADEBOT_EXCHANGE__BINANCE__REST_URL": sim.binance_rest_url,
            "TRADEBOT_EXCHANGE__BINANCE__WS_URL": sim.binance_ws_url,
            "TRADEBOT_FEEDS__BINANCE__MAX_LAG_MS": str(10**13),  # wall clock vs 2023 candles
            "TRADEBOT_DAEMON__STATUS_INTERVAL_S": "2",
            "TRADEBOT_DAEMON__CHECKPOINT_INTERVAL_S": "1",
            "TRADEBOT_DAEMON__POLL_INTERVAL_S": "0.5",
            "TRADEBOT_DAEMON__RECONCILE_INTERVAL_S": "3",
            "TRADEBOT_DAEMON__HEALTH_FILE": str(tmp_path / "health.json"),
        }
        bar_opens = [b.open_time_ms for b in sim.tape.bars("BTCUSDT", "1m", first, end)]
        harness = Harness(sim=sim, env=env, cwd=tmp_path, plan=plan, bar_opens=bar_opens)
        sim.binance_private.after_accept = harness.after_accept
        await harness.run()
        placements = list(sim.binance_orders.placements)
        trades = list(sim.binance_orders.trades)
        balances = sim.binance_orders.balances()
        # a start with a wrong secret is refused by the venue; its error names no secret either
        code, refused = await _refused_start({**env, "TRADEBOT_TESTNET_API_SECRET": WRONG_SECRET}, tmp_path)
        assert code == 1 and "-1022" in refused and "Traceback" not in refused, refused
    output = b"".join(harness.output).decode(errors="replace")
    assert sorted(why for why, _ in harness.exits) == ["end", "sigkill_idle", "sigkill_in_order", "sigterm"]
    assert harness.exits[-1][0] == "end"
    assert output.count('"event": "engine_restored"') == 3
    logs = [json.loads(line) for line in output.splitlines() if line.startswith('{"')]
    starts = [e for e in logs if e["event"] == "reconciled" and e.get("startup")]
    assert len(starts) == 4 and all(e["ok"] for e in starts)
    # after the kill inside the order endpoint the executed order was found by its client order id
    # and the other orders of that decision, never sent, were sent
    assert any(e["events"] > 0 for e in starts[1:]), starts
    assert any(e["event"] == "order_sent_after_restart" for e in logs)

    # -- no duplicate order, every fill once, ledger = venue ---------------------------------------
    assert len(placements) > plan.kill_at_placement and len(set(placements)) == len(placements)
    async with SqlEventStore(pg_url) as store:
        fills = await store.fills(RUN)
        orders = await store.orders(RUN)
        events = await store.position_events(RUN)
        stored_trades = await store.trades(RUN)
        state = await store.load_engine_state(RUN)
    assert state is not None
    assert len({f.trade_id for f in fills}) == len(fills)
    assert sorted((f.trade_id, f.qty, f.price, f.fee_quote) for f in fills) == sorted(
        (str(t.trade_id), t.qty, t.price, t.fee) for t in trades
    )
    assert sorted(o.client_order_id for o in orders) == sorted(placements)
    ledger = Ledger.restore(state["engine"]["ledger"])
    assert ledger.cash == balances["USDT"]
    for sym in instruments:
        assert ledger.position(sym) == balances.get(sym.split("/")[0], Decimal(0))
        held = sum(((f.qty if f.side is Side.BUY else -f.qty) for f in fills if f.symbol == sym), Decimal(0))
        assert held == ledger.position(sym)

    # -- the same as an uninterrupted run of the same candles ---------------------------------------
    reference_db = f"sqlite+aiosqlite:///{tmp_path / 'reference.db'}"
    reference = await run_demo(settings, DemoOptions(data_dir=SAMPLE, days=DAYS, minute_wall_s=1e-4,
                                                     db_url=reference_db, run_id="reference"))  # fmt: skip
    async with SqlEventStore(reference_db) as store:
        ref_orders = await store.orders("reference")
        ref_events = await store.position_events("reference")
        ref_trades = await store.trades("reference")
    assert reference.start_ms == first and reference.end_ms == end
    assert [_order_key(o) for o in orders] == [_order_key(o) for o in ref_orders]
    assert [_event_key(e) for e in events if e.event_type not in SKIPPED] == [
        _event_key(e) for e in ref_events if e.event_type not in SKIPPED
    ]
    closed = [_trade_key(t) for t in stored_trades if t.closed_ms is not None]
    assert len(closed) >= 3
    assert closed == [_trade_key(t) for t in ref_trades if t.closed_ms is not None]
    # the reference closed its books at the end (open trades recorded); the daemon was only stopped
    assert sorted(t.symbol for t in ref_trades if t.closed_ms is None) == sorted(
        s for s in instruments if ledger.position(s) != 0
    )

    # -- decisions = a backtest of the same candles and configuration --------------------------------
    async with SqlEventStore(pg_url) as store:
        signals = await store.stream_signals(RUN)
    # the trend streams see the same candles: identical signals (warm-up and every flip)
    assert [_signal_key(x) for x in signals] == [_signal_key(x) for x in bt_signals]
    assert sum(x.flipped for x in signals) >= 5
    # orders, position events and the final equity: identical to the backtest (one engine, one result)
    assert [_order_key(o) for o in orders] == [_order_key(o) for o in bt_orders]

    def _seq(o) -> tuple:  # type: ignore[no-untyped-def]
        return o.reason, o.intent_id.rsplit("-", 1)[1], o.client_order_id.rsplit("-", 2)[1:]

    assert [_seq(o) for o in orders] == [_seq(o) for o in bt_orders]  # run ids differ, sequences do not
    assert [_event_key(e) for e in events if e.event_type not in SKIPPED] == [
        _event_key(e) for e in bt_events if e.event_type not in SKIPPED
    ]
    assert Decimal(reference.summary["final_equity"]) == Decimal(bt.summary["final_equity"])

    # -- no canary secret anywhere -----------------------------------------------------------------
    stored = await _dump_database(pg_url)
    assert "**********" in stored  # the run's config keeps the key slots, masked
    health = (tmp_path / "health.json").read_text()
    for secret in [*CANARIES.values(), DB_PASSWORD, WRONG_SECRET]:
        assert secret not in output
        assert secret not in refused
        assert secret not in stored
        assert secret not in health
