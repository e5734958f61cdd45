"""Issue 14 acceptance: a restart after 44 simulated days fetches no more than a bounded window and is
ready in under 30 s.

The run's 44 days are made by the daemon itself, in process (the ``Daemon`` that ``tradebot run``
drives, as the demo does): a new paper run anchored at the first candle of the shipped sample
(``data/sample``, 2023-03-16 22:15 UTC) starts against the simulator whose clock is held at the
anchor + 44 days, so its feed catches up the 44 days over REST and the engine trades all 189,840
candles in backtest order (about 15 s; the catch-up is unthrottled and the sequencer waits for the
slowest symbol). It stops, resumable, at the 44th day with its checkpoint in PostgreSQL. The market
then moves on 30 minutes (the downtime), and ``tradebot run`` (a subprocess, default settings but the
simulator's URLs) restarts the run: it must restore the signal book from the checkpoint (no warm-up,
no replay since the run's start), ask the simulator for the downtime's candles only, and have
processed every closed candle within 30 s of its spawn; one more simulated minute then arrives live.

The unbounded restart (a checkpoint without the book, as written before the bounded restart) replays
every 1m candle since the run's start: the 189,840 candles the run processed, 192 REST pages, at
least 38 s at the default backfill rate (5 requests per second) before any catch-up, so it fails
both the candle bound and the 30 s (measured with the book dropped from the seeded checkpoints: 204
klines requests for 191,280 candles, 189,840 primed, ready after 43 s).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import structlog
from daemon_proc import DaemonProcess

from tradebot.adapters.store import SqlEventStore
from tradebot.app.daemon.bootstrap import DaemonOptions
from tradebot.app.daemon.clock import FollowClock
from tradebot.app.daemon.daemon import Daemon
from tradebot.app.settings import BackfillSettings, load_settings
from tradebot.exchange_sim import ExchangeSim, SimConfig, Tape

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
WIRE = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
MINUTE_MS, DAY_MS = 60_000, 86_400_000
DAYS = 44  # run age at the restart, simulated days
DOWNTIME_MIN = 30  # simulated minutes between the stop and the restart
READY_S = 30.0  # spawn → every closed candle processed, wall seconds
MAX_FETCHED = 3 * 1000  # candles the restart may ask for: one REST page per symbol

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]


def _env(sim: ExchangeSim, db_url: str, tmp_path: Path) -> dict[str, str]:
    """Paper mode on the simulator (default strategy and backfill settings)."""
    return {
        "TRADEBOT_MODE": "paper",
        "TRADEBOT_DATABASE_URL": db_url,
        "TRADEBOT_FEEDS__BINANCE__WS_URL": sim.binance_ws_url,
        "TRADEBOT_FEEDS__BINANCE__REST_URL": sim.binance_rest_url,
        "TRADEBOT_FEEDS__BINANCE__MAX_LAG_MS": str(10**13),  # wall clock vs 2023 candles
        "TRADEBOT_DAEMON__STATUS_INTERVAL_S": "0.2",
        "TRADEBOT_DAEMON__HEALTH_FILE": str(tmp_path / "health.json"),
    }


async def _live_for_44_days(
    sim: ExchangeSim, env: dict[str, str], anchor_ms: int, monkeypatch: pytest.MonkeyPatch
) -> Daemon:
    """Run the daemon in process from ``anchor_ms`` to the simulator's clock; return it, stopped."""
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # the 44-day catch-up: unthrottled, and every symbol's candles in open-time order as they were lived
    monkeypatch.setenv("TRADEBOT_FEEDS__BACKFILL__RATE_LIMIT", "1000")
    monkeypatch.setenv("TRADEBOT_DAEMON__SEQUENCER_TIMEOUT_S", "3600")
    options = DaemonOptions(
        migrate=True,
        clock=FollowClock(lambda: sim.market.now_ms),
        stop_at_open_ms=sim.market.now_ms - MINUTE_MS,
        handle_signals=False,
        anchor_ms=anchor_ms,
    )
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        daemon = Daemon(load_settings(), options)
        assert await daemon.run() == 0
    finally:
        structlog.reset_defaults()
    return daemon


def _klines(sim: ExchangeSim) -> list[dict[str, str]]:
    """The query of every ``/api/v3/klines`` request the simulator served."""
    out = []
    for path in sim.binance_rest.requests:
        parts = urlsplit(path)
        if parts.path == "/api/v3/klines":
            out.append({k: v[0] for k, v in parse_qs(parts.query).items()})
    return out


def _health(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # not written yet
        return {}


async def test_restart_after_44_days_fetches_a_bounded_window_and_is_ready_in_30_s(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tape = Tape(SAMPLE, WIRE, timeframes=("1m",))
    anchor = max(tape.first_open_ms(s) for s in WIRE)
    anchor -= anchor % MINUTE_MS
    stop = anchor + DAYS * DAY_MS
    async with ExchangeSim(SimConfig(data_dir=SAMPLE, start_ms=stop, minute_wall_s=86_400.0)) as sim:
        sim.market.pause()  # the test moves the clock
        env = _env(sim, pg_url, tmp_path)
        started = time.monotonic()
        lived = await _live_for_44_days(sim, env, anchor, monkeypatch)
        seed_s = time.monotonic() - started
        run_candles = sum(len(tape.bars(s, "1m", anchor, stop)) for s in WIRE)
        assert lived.candles == run_candles  # 44 days × 1440 × 3, less the real 80-minute halt
        assert lived.c is not None and lived.c.engine.stats.n_fills > 0
        checkpoint_ms = lived.c.engine.last_time_ms

        for _ in range(DOWNTIME_MIN):
            sim.market.step()
        now = sim.market.now_ms
        sim.binance_rest.requests.clear()
        health = tmp_path / "health.json"
        health.unlink(missing_ok=True)
        spawned = time.monotonic()
        async with DaemonProcess(env, tmp_path) as d:
            assert d.proc is not None
            pid = d.proc.pid
            await d.wait_for(lambda: bool(d.events("trading_started")), READY_S, "trading_started")
            started_s = time.monotonic() - spawned

            def caught_up() -> bool:
                report = _health(health)
                return (
                    report.get("pid") == pid
                    and report.get("last_candle_close_ms") == now
                    and report.get("trading_state") == "active"
                    and d.candles() >= 3 * DOWNTIME_MIN
                )

            await d.wait_for(caught_up, READY_S, "every closed candle processed")
            ready_s = time.monotonic() - spawned
            klines = _klines(sim)
            sim.market.step()  # and trading goes on live: the next minute over the websocket
            await d.wait_for(lambda: d.candles() >= 3 * (DOWNTIME_MIN + 1), 20, "a live minute")
            assert await d.stop() == 0, d.tail()

    restored = d.events("engine_restored")
    assert len(restored) == 1, d.tail()
    assert restored[0]["book_restored"] is True and restored[0]["candles_primed"] == 0
    assert restored[0]["last_time_ms"] == checkpoint_ms
    backfilled = sum(e["candles"] for e in d.events("feed_backfilled"))
    assert backfilled == 3 * DOWNTIME_MIN
    # REST: the downtime's 1m candles only, each request from the checkpoint on (no warm-up of the
    # 1h/4h/1d streams, no replay since the run's start)
    assert {q["interval"] for q in klines} == {"1m"}
    assert all(int(q["startTime"]) > checkpoint_ms - MINUTE_MS for q in klines)
    asked = sum(int(q["limit"]) for q in klines)
    assert asked <= MAX_FETCHED
    assert ready_s < READY_S

    async with SqlEventStore(pg_url) as store:
        run = await store.get_run("paper-binance")
    assert run is not None and run.started_ms == anchor and run.status == "running"
    age_days = (now - run.started_ms) / DAY_MS
    assert age_days >= DAYS

    at = {e["event"]: datetime.fromisoformat(e["timestamp"]) for e in reversed(d.lines)}  # the first
    restore_s = (at["trading_started"] - at["daemon_starting"]).total_seconds()
    bf = BackfillSettings()
    replay_pages = sum(math.ceil(len(tape.bars(s, "1m", anchor, stop)) / bf.page_limit) for s in WIRE)
    replay_s = (replay_pages - 1) // bf.rate_limit * bf.rate_period_s
    print(
        f"\nrestart at run age {age_days:.2f} simulated days ({DOWNTIME_MIN} min down; the 44 days lived "
        f"in process in {seed_s:.1f} s: {run_candles:,} candles, {lived.c.engine.stats.n_fills} fills)"
        f"\n  bounded restart: {len(klines)} klines requests, {asked} candles asked, {backfilled} "
        f"delivered (catch-up), 0 primed; trading_started after {started_s:.2f} s, every closed candle "
        f"processed after {ready_s:.2f} s (limit {READY_S:.0f} s; daemon_starting → trading_started "
        f"{restore_s:.2f} s, the rest is the interpreter's start and the imports)"
        f"\n  unbounded (replay since the run's start): {run_candles:,} candles primed "
        f"({run_candles / max(asked, 1):,.0f}× as many), {replay_pages} pages, ≥ {replay_s:.0f} s at "
        f"the default {bf.rate_limit} requests per {bf.rate_period_s:g} s before the catch-up"
    )
