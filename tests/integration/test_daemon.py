"""The daemon in paper mode against the local exchange simulator (real websocket feed, ccxt REST backfill,
engine, simulated venue, SQLite store).

* in process (the demo's path): one simulated day of the shipped sample decides exactly like a
  backtest of the same candles and configuration; every fill is stored once; the ledger equals the
  simulated venue's balances;
* as a subprocess (``tradebot run``): JSON log lines carry run id, mode and venue; a status line and
  the health file appear; SIGTERM stops it with exit code 0; a restart resumes the same run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from tradebot.adapters.store import SqlEventStore
from tradebot.app.backtest.backtest import BacktestOptions, run_backtest
from tradebot.app.demo.demo import DemoOptions, run_demo
from tradebot.app.settings import load_settings
from tradebot.core.domain import OrderStatus, PositionEventType, Timeframe
from tradebot.exchange_sim import ExchangeSim, SimConfig

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
FIXTURE = REPO / "tests" / "fixtures" / "binance" / "ohlcv"
FEED_EVENTS = {PositionEventType.FEED_STALE, PositionEventType.FEED_RECOVERED}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def _event_key(e) -> tuple:
    return (e.event_type, e.symbol, e.event_time_ms, e.price, e.size_before, e.size_after, e.action_taken)


def _order_key(o) -> tuple:
    return (o.symbol, o.side, o.qty, o.created_ms, o.status, o.filled_qty, o.avg_fill_price, o.fees_quote)


@pytest.mark.timeout(120)
async def test_paper_daemon_decides_like_a_backtest_of_the_same_candles(tmp_path: Path) -> None:
    settings = load_settings()
    demo_db = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    result = await run_demo(settings, DemoOptions(data_dir=SAMPLE, days=1.0, db_url=demo_db, paper=True))
    daemon = result.daemon
    assert daemon.c is not None
    engine, run_id = daemon.c.engine, daemon.c.run_id
    assert daemon.candles == 3 * 1440

    bt_db = f"sqlite+aiosqlite:///{tmp_path / 'bt.db'}"
    bt = await run_backtest(
        settings,
        BacktestOptions(
            data_dir=SAMPLE,
            timeframe=Timeframe.M1,
            start_ms=result.start_ms,
            end_ms=result.end_ms,
            db_url=bt_db,
        ),
    )
    bt_run = bt.summary["run"]["run_id"]
    async with SqlEventStore(demo_db) as store:
        orders, fills = await store.orders(run_id), await store.fills(run_id)
        events = await store.position_events(run_id)
        run = await store.get_run(run_id)
    async with SqlEventStore(bt_db) as store:
        bt_orders, bt_events = await store.orders(bt_run), await store.position_events(bt_run)

    assert len(orders) >= 3
    assert [_order_key(o) for o in orders] == [_order_key(o) for o in bt_orders]
    assert [_event_key(e) for e in events if e.event_type not in FEED_EVENTS] == [
        _event_key(e) for e in bt_events
    ]
    assert result.summary["final_equity"] == bt.summary["final_equity"]
    # every fill stored once, each applied once to the ledger
    assert len({f.trade_id for f in fills}) == len(fills) == engine.stats.n_fills
    # the ledger equals the simulated venue's balances
    balances = daemon.c.router.exchange.balances()
    assert engine.ledger.cash == balances["USDT"]
    for sym in engine.symbols:
        assert engine.ledger.position(sym) == balances.get(sym.split("/")[0], 0)
    assert run is not None and run.status == "completed" and run.mode == "paper"


async def _run_daemon(
    env: dict[str, str], cwd: Path, *, until: int, then_signal: int | None, timeout_s: float = 60
) -> tuple[int, list[dict]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tradebot",
        "run",
        "--migrate",
        env={**base, **env},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    lines: list[dict] = []
    raw: list[str] = []
    sent = False
    assert proc.stderr is not None
    async with asyncio.timeout(timeout_s):
        while line := await proc.stderr.readline():
            text = line.decode().strip()
            raw.append(text)
            if not text.startswith("{"):
                continue
            entry = json.loads(text)
            lines.append(entry)
            if (
                not sent
                and entry["event"] == "status"
                and entry["candles_processed"] >= until
                and then_signal
            ):
                proc.send_signal(then_signal)
                sent = True
        code = await proc.wait()
    assert sent or then_signal is None, "\n".join(raw[-30:])
    return code, lines


@pytest.mark.timeout(180)
async def test_run_logs_json_status_and_stops_on_sigterm_then_resumes(tmp_path: Path) -> None:
    config = SimConfig(
        data_dir=FIXTURE, start_ms=1679529600000 + 3600_000, minute_wall_s=0.05, ping_interval_s=1.0
    )
    async with ExchangeSim(config) as sim:
        env = {
            "TRADEBOT_MODE": "paper",
            "TRADEBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
            "TRADEBOT_FEEDS__BINANCE__WS_URL": sim.binance_ws_url,
            "TRADEBOT_FEEDS__BINANCE__REST_URL": sim.binance_rest_url,
            "TRADEBOT_FEEDS__BINANCE__MAX_LAG_MS": str(10**13),  # wall clock vs 2023 candles
            "TRADEBOT_DAEMON__STATUS_INTERVAL_S": "0.5",
            "TRADEBOT_DAEMON__CHECKPOINT_INTERVAL_S": "0.5",
            "TRADEBOT_DAEMON__HEALTH_FILE": str(tmp_path / "health.json"),
            "TRADEBOT_STREAMS": '[{"timeframe": "1h", "fast": 2, "slow": 3, "atr_period": 2}]',
            "TRADEBOT_RISK": '{"max_position_fraction": 0.5}',
        }
        code, lines = await _run_daemon(env, tmp_path, until=30, then_signal=signal.SIGTERM)
        assert code == 0
        events = [entry["event"] for entry in lines]
        for name in (
            "daemon_starting",
            "database_ready",
            "markets_loaded",
            "reconciled",
            "warmed_up",
            "trading_started",
            "status",
            "shutdown_requested",
            "daemon_stopped",
        ):
            assert name in events, name
        assert events.index("markets_loaded") < events.index("reconciled") < events.index("warmed_up")
        for entry in lines:
            if entry["event"] != "daemon_starting" or "run_id" in entry:
                assert (entry.get("run_id"), entry.get("mode"), entry.get("venue")) == (
                    "paper-binance",
                    "paper",
                    "binance",
                )
        status = next(e for e in lines if e["event"] == "status" and e["candles_processed"] >= 30)
        assert set(status) >= {
            "equity_quote",
            "cash_quote",
            "exposure_quote",
            "streams",
            "open_orders",
            "feed_lag_ms",
            "trading_state",
        }
        stopped = next(e for e in lines if e["event"] == "daemon_stopped")
        assert stopped["reason"] == "SIGTERM"
        health = json.loads((tmp_path / "health.json").read_text())
        assert health["run_id"] == "paper-binance"

        code2, lines2 = await _run_daemon(env, tmp_path, until=6, then_signal=signal.SIGINT)
        assert code2 == 0
        restored = next(e for e in lines2 if e["event"] == "engine_restored")
        assert restored["last_time_ms"] >= stopped["last_time_ms"]
        # bounded restart: the signal book came from the checkpoint, no candle since the start replayed
        assert restored["book_restored"] is True and restored["candles_primed"] == 0
        warmed = next(e for e in lines2 if e["event"] == "warmed_up")
        assert warmed["resumed"] is True
    async with SqlEventStore(env["TRADEBOT_DATABASE_URL"]) as store:
        runs = await store.list_runs()
        assert [r.run_id for r in runs] == ["paper-binance"]
        fills = await store.fills("paper-binance")
        assert len({f.trade_id for f in fills}) == len(fills)


@pytest.mark.timeout(180)
async def test_paper_daemon_with_stops_at_the_venue_decides_like_the_backtest(tmp_path: Path) -> None:
    """The managed overlay with ``stops_at_venue``: the paper daemon places, replaces, cancels and
    fills its protective stops exactly like the backtest of the same candles (orders with their
    types, every position event, final equity)."""
    config = tmp_path / "venue_stops.toml"
    config.write_text(
        "stops_at_venue = true\n" + (REPO / "config" / "managed.toml").read_text(), encoding="utf-8"
    )
    settings = load_settings(config)
    demo_db = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    result = await run_demo(settings, DemoOptions(data_dir=SAMPLE, days=4.0, db_url=demo_db, paper=True))
    daemon = result.daemon
    assert daemon.c is not None
    bt_db = f"sqlite+aiosqlite:///{tmp_path / 'bt.db'}"
    bt = await run_backtest(settings, BacktestOptions(data_dir=SAMPLE, timeframe=Timeframe.M1, start_ms=result.start_ms,
                                                      end_ms=result.end_ms, db_url=bt_db))  # fmt: skip
    async with SqlEventStore(demo_db) as store:
        orders, events = await store.orders(daemon.c.run_id), await store.position_events(daemon.c.run_id)
    async with SqlEventStore(bt_db) as store:
        bt_run = bt.summary["run"]["run_id"]
        bt_orders, bt_events = await store.orders(bt_run), await store.position_events(bt_run)

    def key(o) -> tuple:  # type: ignore[no-untyped-def]
        return (*_order_key(o), o.order_type, o.stop_price)

    stops = [o for o in orders if o.order_type.is_stop]
    assert stops and any(o.status is OrderStatus.FILLED for o in stops), [key(o) for o in orders]
    assert [key(o) for o in orders] == [key(o) for o in bt_orders]
    assert [_event_key(e) for e in events if e.event_type not in FEED_EVENTS] == [
        _event_key(e) for e in bt_events
    ]
    assert result.summary["final_equity"] == bt.summary["final_equity"]
