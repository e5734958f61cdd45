"""``tradebot demo``: the offline demo a new user runs first.

Starts the local exchange simulator on 127.0.0.1 replaying the shipped real sample candles
(``data/sample``) at a high speed-up, and the daemon against it through the real websocket feed, ccxt
REST backfill, engine and database code, writing to a local SQLite file. It shows progress and ends
with the same summary tables as a backtest.

By default the daemon runs **testnet-like**: ``TRADEBOT_MODE=testnet`` with throw-away API keys
registered at the simulator, so every order goes through the ccxt execution venue, the order
executor and reconciliation to the simulator's order engine (same fee and slippage as the backtest).
The market advances in lock-step with the daemon: a simulated minute passes only once the daemon
has handled the previous one (and at most one per ``minute_wall_s``), so market orders fill at the
next candle's open exactly as in a backtest. ``paper=True`` (``tradebot demo --paper``) fills orders
in the daemon's own simulated venue instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradebot.app.daemon.bootstrap import DaemonOptions, new_run_id
from tradebot.app.daemon.clock import FollowClock
from tradebot.app.daemon.daemon import Daemon
from tradebot.app.settings import Settings
from tradebot.core.domain import ms_to_datetime
from tradebot.errors import ConfigError, DataError
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.market import Market, Tape

MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    """What the demo replays.

    Attributes
    ----------
    data_dir
        Folder of ``binance_<SYM>USDT_<tf>.csv.gz`` (1m required; 1h/4h/1d for the warm-up).
    days
        Simulated days to trade from the first 1m candle (capped by the data).
    minute_wall_s
        Wall seconds per simulated minute (0.004 = 15,000× speed-up: a day in about 6 s).
    db_url
        SQLAlchemy async URL of the demo database (migrated on start).
    paper
        Fill orders in the daemon's paper venue instead of sending them to the simulator's order
        endpoints (testnet-like, the default).
    run_id
        Run id (default a fresh ``demo-<hex>``).
    """

    data_dir: Path
    days: float = 7.0
    minute_wall_s: float = 0.004
    db_url: str = "sqlite+aiosqlite:///demo.db"
    paper: bool = False
    run_id: str | None = None


@dataclass(slots=True)
class DemoResult:
    """The demo's outcome: the daemon's summary (the backtest's format) and the daemon itself."""

    summary: dict[str, Any]
    daemon: Daemon
    start_ms: int
    end_ms: int


def demo_settings(
    settings: Settings, sim: ExchangeSim, options: DemoOptions, lag_ms: int, keys: tuple[str, str] | None
) -> Settings:
    """Return ``settings`` pointed at the simulator: its URLs, the demo database, and either paper mode
    or testnet mode with ``keys`` (API key, secret registered at the simulator)."""
    feeds = settings.feeds.model_copy(
        update={
            "binance": settings.feeds.binance.model_copy(
                update={
                    "ws_url": sim.binance_ws_url,
                    "rest_url": sim.binance_rest_url,
                    "max_lag_ms": lag_ms,
                    "stale_after_s": 10.0,
                }
            )
        }
    )
    daemon = settings.daemon.model_copy(
        update={
            "status_interval_s": 5.0,
            "checkpoint_interval_s": 2.0,
            "poll_interval_s": 1.0,
            "reconcile_interval_s": 5.0,
            # beside the daemon's own (``tradebot status`` reads both), never over a real daemon's
            "health_file": str(Path(settings.daemon.health_file).with_name("demo-health.json")),
        }
    )
    exchange = settings.exchange.model_copy(
        update={
            "binance": settings.exchange.binance.model_copy(
                update={"rest_url": sim.binance_rest_url, "ws_url": sim.binance_ws_url}
            )
        }
    )
    secret = type(settings.database_url)
    return settings.model_copy(
        update={
            "mode": "paper" if keys is None else "testnet",
            "venue": "binance",
            "feeds": feeds,
            "exchange": exchange,
            "daemon": daemon,
            "database_url": secret(options.db_url),
            "testnet_api_key": None if keys is None else secret(keys[0]),
            "testnet_api_secret": None if keys is None else secret(keys[1]),
            "live_api_key": None,
            "live_api_secret": None,
        }
    )


def open_account(sim: ExchangeSim, settings: Settings) -> tuple[str, str]:
    """Register throw-away API keys at the simulator and fund its account like the backtest's venue
    (initial cash, taker fee, slippage); return (key, secret)."""
    key, secret = f"demo-{secrets.token_hex(8)}", secrets.token_hex(24)
    sim.binance_private.credentials[key] = secret
    orders = sim.binance_orders
    orders.free = {settings.quote: settings.backtest.initial_cash}
    orders.fee_rate = settings.backtest.taker_fee
    orders.slippage_bps = Decimal(repr(settings.backtest.slippage_bps))
    return key, secret


async def run_demo(
    settings: Settings,
    options: DemoOptions,
    progress: Callable[[int, int], None] | None = None,
    prepare: Callable[[ExchangeSim], None] | None = None,
) -> DemoResult:
    """Run the simulator and the daemon until the window ends; return the summary.

    ``prepare`` is called with the running simulator before the daemon starts (tests set faults).

    Raises
    ------
    DataError
        If the data folder lacks the 1m candles of a configured symbol, or covers fewer than
        ``options.days`` days (the message gives the span it has).
    ConfigError
        If ``options.days`` is not > 0.
    """
    wire = tuple(s.replace("/", "") for s in settings.symbols)
    try:
        tape = Tape(options.data_dir, wire, timeframes=("1m",))
    except FileNotFoundError as e:
        raise DataError(str(e)) from None
    start = max(tape.first_open_ms(s) for s in wire)
    start = start - start % MINUTE_MS
    last = min(tape.last_open_ms(s) for s in wire)
    if not options.days > 0:
        raise ConfigError(f"--days must be a positive number of days, was {options.days!r}")
    end = start + int(options.days * 1440) * MINUTE_MS
    if end > last + MINUTE_MS:
        have = (last + MINUTE_MS - start) / 86_400_000
        raise DataError(
            f"--days {options.days:g}: the 1m candles in {str(options.data_dir)!r} cover {have:.2f} days "
            f"({ms_to_datetime(start):%Y-%m-%d %H:%M} → {ms_to_datetime(last + MINUTE_MS):%Y-%m-%d %H:%M} UTC)"
        )
    # The simulator's own clock is held (a minute would take a day): the demo steps the market once the
    # daemon's feed is connected, so trading starts at the first candle without a catch-up.
    config = SimConfig(
        data_dir=options.data_dir,
        symbols=wire,
        start_ms=start,
        end_ms=end,
        minute_wall_s=86_400.0,
        ping_interval_s=5.0,
    )
    # A candle counts as fresh when it arrives within ~1 wall second of its close (in simulated time).
    lag_ms = max(60_000, int(1.0 / options.minute_wall_s) * MINUTE_MS)
    async with ExchangeSim(config) as sim:
        sim.market.pause()
        if prepare is not None:
            prepare(sim)
        keys = None if options.paper else open_account(sim, settings)
        clock = FollowClock(lambda: sim.market.now_ms)
        daemon_options = DaemonOptions(
            migrate=True,
            clock=clock,
            stop_at_open_ms=end - MINUTE_MS,
            run_id=options.run_id or new_run_id("demo"),
            anchor_ms=start,
            finish_run=True,
        )
        handled = asyncio.Event()

        def on_progress(d: Daemon) -> None:
            handled.set()
            if progress is not None:
                done = min(d._last_open.values()) + MINUTE_MS - start
                progress(max(0, done // MINUTE_MS), (end - start) // MINUTE_MS)

        stepper: list[asyncio.Task[None]] = []

        def on_ready(d: Daemon) -> None:
            stepper.append(
                asyncio.get_running_loop().create_task(_step_market(sim, d, options.minute_wall_s, handled))
            )

        daemon = Daemon(
            demo_settings(settings, sim, options, lag_ms, keys),
            daemon_options,
            on_progress=on_progress,
            on_ready=on_ready,
        )
        try:
            await daemon.run()
        finally:
            for task in stepper:
                task.cancel()
    if daemon.summary is None:
        raise RuntimeError(f"the demo stopped before the end of its data ({daemon.stopped_by})")
    return DemoResult(summary=daemon.summary, daemon=daemon, start_ms=start, end_ms=end)


async def _step_market(
    sim: ExchangeSim, daemon: Daemon, minute_wall_s: float, handled: asyncio.Event
) -> None:
    # Once the daemon's feed is connected, advance the simulated market one minute at a time: at most
    # one per ``minute_wall_s``, and only once the daemon has handled the candles that closed at the
    # last step (lock-step, so its orders reach the simulator before the market moves on).
    assert daemon.c is not None
    stats = daemon.c.feed.stats
    while stats.connects == 0:  # noqa: ASYNC110 - the feed exposes counters, not events
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    market, loop = sim.market, asyncio.get_running_loop()
    due = loop.time()
    while market.now_ms < market.end_ms:
        due += minute_wall_s
        await asyncio.sleep(max(0.0, due - loop.time()))
        await wait_handled(market, daemon, handled)
        due = max(due, loop.time() - minute_wall_s)  # a slow minute does not make the next ones rush
        market.step()


async def wait_handled(
    market: Market, daemon: Daemon, handled: asyncio.Event, timeout_s: float = 10.0
) -> None:
    """Wait until the daemon has processed every candle that closed at ``market.now_ms`` (symbols
    without a candle that minute are not waited for); give up after ``timeout_s``."""
    closed = market.now_ms - MINUTE_MS
    wire = {u: u.replace("/", "") for u in daemon._last_open}
    expected = [u for u, w in wire.items() if market.tape.bar(w, closed) is not None]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while any(daemon._last_open[u] < closed for u in expected):
                handled.clear()
                await handled.wait()


__all__ = ["DemoOptions", "DemoResult", "run_demo"]
