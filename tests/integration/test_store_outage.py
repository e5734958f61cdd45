"""A database blip pauses the daemon instead of stopping it (issue 14, finding 7).

The paper daemon runs against the exchange simulator in lock-step (``events_runner.step_market``:
a minute passes once the daemon handled the last one), on a real store:

* PostgreSQL behind a loopback TCP proxy (:mod:`tcp_proxy`) that is cut for 2 s mid-run — every
  proxied connection reset, new ones refused — then restored;
* SQLite whose ``PRAGMA max_page_count`` (applied on every pool checkout by a test listener) is
  lowered to the file's size mid-run, so writes fail with "database or disk is full", then raised.

Each run must not exit, must log ``store_unavailable`` then ``store_recovered``, and must leave
the same orders, fills, position events, trades, equity curve and final equity as an undisturbed
run of the same candles. A third test keeps PostgreSQL away past a short grace period and
expects ``tradebot run`` to exit 1 with the cause in its JSON log.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from events_runner import step_market
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import Pool
from structlog.testing import capture_logs
from tcp_proxy import TcpProxy

from tradebot.adapters.store import SqlEventStore
from tradebot.adapters.store.migrate import upgrade
from tradebot.app.daemon.bootstrap import DaemonOptions
from tradebot.app.daemon.clock import FollowClock
from tradebot.app.daemon.daemon import Daemon
from tradebot.app.demo.demo import DemoOptions, demo_settings
from tradebot.app.settings import load_settings
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.market import Tape

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
FIXTURE = REPO / "tests" / "fixtures" / "binance" / "ohlcv"
MINUTE_MS = 60_000
MINUTES = 240  # 4 simulated hours: rebalances, their fills, a trade or more
RUN = "outage"
ENV = {"TRADEBOT_STREAMS": '[{"timeframe": "1h", "fast": 2, "slow": 3, "atr_period": 2}]'}

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped sample with its 1m candles cut after the window (faster starts)."""
    out = tmp_path_factory.mktemp("sample")
    for path in SAMPLE.glob("*.csv.gz"):
        if "_1m." not in path.name:
            shutil.copy(path, out / path.name)
            continue
        with gzip.open(path, "rt") as src, gzip.open(out / path.name, "wt") as dst:
            dst.writelines(itertools.islice(src, MINUTES + 61))
    return out


@dataclass
class Outcome:
    code: int
    stopped_by: str
    candles: int
    logs: list[dict[str, Any]]
    wall_s: float


async def run_paper(db: str, data: Path, *, disturb: Callable[[Daemon], Awaitable[None]] | None = None,
                    grace_s: float = 60.0) -> Outcome:  # fmt: skip
    """One paper run of ``MINUTES`` minutes to the end of the window, in this process, with the
    daemon's logs captured; ``disturb(daemon)`` runs beside it once the daemon is ready."""
    settings = load_settings()
    wire = tuple(s.replace("/", "") for s in settings.symbols)
    tape = Tape(data, wire, timeframes=("1m",))
    start = max(tape.first_open_ms(s) for s in wire)
    start -= start % MINUTE_MS
    end = start + MINUTES * MINUTE_MS
    config = SimConfig(data_dir=data, symbols=wire, start_ms=start, end_ms=end,
                       minute_wall_s=86_400.0, ping_interval_s=5.0)  # fmt: skip
    options = DemoOptions(data_dir=data, db_url=db, paper=True, run_id=RUN)
    t0 = time.monotonic()
    with capture_logs() as logs:
        async with ExchangeSim(config) as sim:
            sim.market.pause()
            handled = asyncio.Event()
            tasks: list[asyncio.Task[None]] = []

            def on_ready(d: Daemon) -> None:
                loop = asyncio.get_running_loop()
                tasks.append(loop.create_task(step_market(sim, d, handled)))
                if disturb is not None:
                    tasks.append(loop.create_task(disturb(d)))

            s = demo_settings(settings, sim, options, 10 * MINUTE_MS, None)
            s = s.model_copy(update={"daemon": s.daemon.model_copy(update={"store_outage_grace_s": grace_s})})
            daemon = Daemon(
                s,
                DaemonOptions(migrate=True, clock=FollowClock(lambda: sim.market.now_ms), handle_signals=False,
                              stop_at_open_ms=end - MINUTE_MS, run_id=RUN, anchor_ms=start, finish_run=True),
                on_progress=lambda d: handled.set(),
                on_ready=on_ready,
            )  # fmt: skip
            try:
                code = await daemon.run()
            finally:
                for task in tasks:
                    task.cancel()
    return Outcome(code, daemon.stopped_by, daemon.candles, list(logs), time.monotonic() - t0)


async def stored(db: str) -> dict[str, Any]:
    """Everything the run left in the store, as comparable values."""
    async with SqlEventStore(db) as store:
        run = await store.get_run(RUN)
        assert run is not None and run.summary is not None
        return {
            "orders": await store.orders(RUN),
            "fills": await store.fills(RUN),
            "position_events": await store.position_events(RUN),
            "trades": await store.trades(RUN),
            "equity_curve": await store.equity_curve(RUN),
            "final_equity": run.summary["final_equity"],
            "status": run.status,
        }


def figures(got: dict[str, Any]) -> dict[str, int]:
    return {k: len(v) for k, v in got.items() if isinstance(v, list)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[dict[str, Any]]:
    """What an undisturbed run of the same candles stores (SQLite; the backend decides nothing)."""
    db = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('reference') / 'ref.db'}"

    async def run() -> dict[str, Any]:
        with pytest.MonkeyPatch.context() as mp:
            for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
                mp.delenv(key)
            for key, value in ENV.items():
                mp.setenv(key, value)
            await upgrade(db)
            out = await run_paper(db, data_dir)
        assert (out.code, out.stopped_by) == (0, "end_of_data")
        return await stored(db)

    yield asyncio.run(run())


def _events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e.get("event") == name]


def assert_paused_and_resumed(out: Outcome, got: dict[str, Any], reference: dict[str, Any]) -> str:
    down, up = _events(out.logs, "store_unavailable"), _events(out.logs, "store_recovered")
    retries = _events(out.logs, "store_retry")
    names = [e["event"] for e in out.logs]
    report = (
        f"exit {out.code} ({out.stopped_by}) after {out.wall_s:.1f} s, {out.candles} candles; "
        f"{len(down)} outage(s), {len(retries)} retries, outage_s {[e['outage_s'] for e in up]}, "
        f"first error {down[0]['error'] if down else None!r}; stored {figures(got)} vs {figures(reference)}"
    )
    print(report)
    assert (out.code, out.stopped_by) == (0, "end_of_data"), report  # the daemon did not exit
    assert down and up, report
    assert names.index("store_unavailable") < names.index("store_recovered"), report
    assert not _events(out.logs, "store_outage_exceeded_grace"), report
    for key in ("orders", "fills", "position_events", "trades", "equity_curve", "final_equity", "status"):
        assert got[key] == reference[key], f"{key} differs; {report}"
    return report


@pytest.mark.postgres
async def test_postgres_cut_for_two_seconds_pauses_then_resumes_with_nothing_lost(
    pg_url: str, data_dir: Path, reference: dict[str, Any]
) -> None:
    pg = make_url(pg_url)
    async with TcpProxy(pg.host or "127.0.0.1", pg.port or 5432) as proxy:
        url = pg.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        cut: dict[str, float] = {}

        async def disturb(d: Daemon) -> None:
            while d.candles < 3 * 60:  # noqa: ASYNC110 - an hour in (the daemon exposes counters)
                await asyncio.sleep(0.01)
            cut["at_candles"] = d.candles
            await proxy.cut()
            t = time.monotonic()
            await asyncio.sleep(2.0)
            await proxy.restore()
            cut["down_s"] = time.monotonic() - t

        out = await run_paper(url, data_dir, disturb=disturb)
    got = await stored(pg_url)
    report = assert_paused_and_resumed(out, got, reference)
    assert cut["down_s"] >= 2.0, report
    (recovered,) = _events(out.logs, "store_recovered")
    assert 1.5 <= recovered["outage_s"] <= 15, report  # first failure after the cut → first success


@pytest.mark.postgres
async def test_postgres_hanging_for_three_seconds_times_out_pauses_and_resumes(
    pg_url: str, data_dir: Path, reference: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A network path that drops every byte without a reset: without a statement timeout the write
    in flight waits forever (the engine task with it). With TRADEBOT_DAEMON__STORE_STATEMENT_TIMEOUT_S
    it fails after 1 s, the daemon pauses and retries, and resumes once the path is back."""
    monkeypatch.setenv("TRADEBOT_DAEMON__STORE_STATEMENT_TIMEOUT_S", "1")
    pg = make_url(pg_url)
    async with TcpProxy(pg.host or "127.0.0.1", pg.port or 5432) as proxy:
        url = pg.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        hung: dict[str, float] = {}

        async def disturb(d: Daemon) -> None:
            while d.candles < 3 * 60:  # noqa: ASYNC110 - an hour in (the daemon exposes counters)
                await asyncio.sleep(0.01)
            proxy.stall()
            t = time.monotonic()
            await asyncio.sleep(3.0)
            await proxy.unstall()
            hung["s"] = time.monotonic() - t

        out = await asyncio.wait_for(run_paper(url, data_dir, disturb=disturb), timeout=45)
    got = await stored(pg_url)
    report = assert_paused_and_resumed(out, got, reference)
    assert hung["s"] >= 3.0, report
    (first, *_) = _events(out.logs, "store_unavailable")
    assert "TimeoutError" in first["error"] or "timeout" in first["error"].lower(), report


async def test_sqlite_disk_full_pauses_then_resumes_with_nothing_lost(
    db_url: str, data_dir: Path, reference: dict[str, Any]
) -> None:
    limit: dict[str, int | None] = {"pages": None}

    def apply_limit(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if limit["pages"] is None or "sqlite" not in type(dbapi_connection).__module__:
            return
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA max_page_count = {limit['pages']}")
        finally:
            cursor.close()

    async def disturb(d: Daemon) -> None:
        while d.candles < 3 * 60:  # noqa: ASYNC110 - the daemon exposes counters, not events
            await asyncio.sleep(0.01)
        limit["pages"] = 1  # below the file's size: the limit becomes the current page count
        assert d.c is not None
        while not d.c.store.health.down:  # noqa: ASYNC110 - polled like the counters
            await asyncio.sleep(0.01)
        await asyncio.sleep(2.0)
        limit["pages"] = 1_073_741_823

    event.listen(Pool, "checkout", apply_limit)
    try:
        out = await run_paper(db_url, data_dir, disturb=disturb)
    finally:
        event.remove(Pool, "checkout", apply_limit)
    got = await stored(db_url)
    report = assert_paused_and_resumed(out, got, reference)
    down = _events(out.logs, "store_unavailable")
    assert "database or disk is full" in down[0]["error"], report
    (recovered,) = _events(out.logs, "store_recovered")
    assert recovered["outage_s"] >= 2.0, report


@pytest.mark.postgres
@pytest.mark.timeout(90)
async def test_postgres_down_past_the_grace_period_exits_1_with_the_cause_logged(
    pg_url: str, tmp_path: Path
) -> None:
    pg = make_url(pg_url)
    config = SimConfig(
        data_dir=FIXTURE, start_ms=1679529600000 + 3600_000, minute_wall_s=0.05, ping_interval_s=1.0
    )
    async with ExchangeSim(config) as sim, TcpProxy(pg.host or "127.0.0.1", pg.port or 5432) as proxy:
        url = pg.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")},
            **ENV,
            "TRADEBOT_MODE": "paper",
            "TRADEBOT_LOG_FORMAT": "json",
            "TRADEBOT_DATABASE_URL": url,
            "TRADEBOT_FEEDS__BINANCE__WS_URL": sim.binance_ws_url,
            "TRADEBOT_FEEDS__BINANCE__REST_URL": sim.binance_rest_url,
            "TRADEBOT_FEEDS__BINANCE__MAX_LAG_MS": str(10**13),
            "TRADEBOT_DAEMON__STATUS_INTERVAL_S": "0.5",
            "TRADEBOT_DAEMON__CHECKPOINT_INTERVAL_S": "0.5",
            "TRADEBOT_DAEMON__HEALTH_FILE": str(tmp_path / "health.json"),
            "TRADEBOT_DAEMON__STORE_OUTAGE_GRACE_S": "2",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tradebot", "run", env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        lines: list[dict[str, Any]] = []
        raw: list[str] = []
        cut_at: float | None = None
        health_down: dict[str, Any] | None = None
        assert proc.stderr is not None
        try:
            async with asyncio.timeout(60):
                while line := await proc.stderr.readline():
                    text = line.decode().strip()
                    raw.append(text)
                    if not text.startswith("{"):
                        continue
                    entry = json.loads(text)
                    lines.append(entry)
                    if cut_at is None and entry["event"] == "status" and entry["candles_processed"] >= 6:
                        await proxy.cut()  # and never restored
                        cut_at = time.monotonic()
                    if entry["event"] == "store_unavailable" and health_down is None:
                        await asyncio.sleep(0.3)  # the status task rewrites the health file at once
                        health_down = json.loads((tmp_path / "health.json").read_text())
                code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
    assert cut_at is not None, "\n".join(raw[-30:])
    exited_s = time.monotonic() - cut_at
    tail = "\n".join(raw[-15:])
    names = [e["event"] for e in lines]
    print(f"exit {code} {exited_s:.1f} s after the cut; retries {names.count('store_retry')}")
    assert code == 1, tail
    assert "store_unavailable" in names and "store_outage_exceeded_grace" in names, tail
    assert names.index("store_unavailable") < names.index("store_outage_exceeded_grace"), tail
    gave_up = lines[names.index("store_outage_exceeded_grace")]
    assert gave_up["level"] == "error" and gave_up["outage_s"] >= 2 and gave_up["error"], tail
    failed = lines[names.index("command_failed")]
    assert failed["exit_code"] == 1 and "StoreUnavailable" in failed["error"], tail
    assert "store_recovered" not in names, tail
    assert health_down is not None and health_down["store_unavailable_since_ms"] is not None, tail
    assert health_down["store_error"], tail
    assert exited_s < 30, tail
