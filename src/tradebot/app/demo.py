"""``tradebot demo``: the offline demo a new user runs first.

Starts the local exchange simulator on 127.0.0.1 replaying the shipped real sample candles
(``data/sample``) at a high speed-up, and the daemon against it through the real websocket feed, ccxt
REST backfill, engine and database code, writing to a local SQLite file. It shows progress and ends
with the same summary tables as a backtest.

The daemon runs in ``paper`` mode against the simulator's market data (orders are filled by the
simulated venue at the next candle's open, as in a backtest). Once the ccxt execution venue exists it
can run testnet-like against the simulator's order endpoints instead (see ``app/bootstrap.py``).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradebot.app.bootstrap import DaemonOptions, new_run_id
from tradebot.app.clock import FollowClock
from tradebot.app.daemon import Daemon
from tradebot.app.settings import Settings
from tradebot.errors import DataError
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.market import Tape

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
    """

    data_dir: Path
    days: float = 7.0
    minute_wall_s: float = 0.004
    db_url: str = "sqlite+aiosqlite:///demo.db"


@dataclass(slots=True)
class DemoResult:
    """The demo's outcome: the daemon's summary (the backtest's format) and the daemon itself."""

    summary: dict[str, Any]
    daemon: Daemon
    start_ms: int
    end_ms: int


def demo_settings(settings: Settings, sim: ExchangeSim, options: DemoOptions, lag_ms: int) -> Settings:
    """Return ``settings`` pointed at the simulator: paper mode, its URLs, the demo database."""
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
            "health_file": str(Path(tempfile.gettempdir()) / "tradebot-demo-health.json"),
        }
    )
    return settings.model_copy(
        update={
            "mode": "paper",
            "venue": "binance",
            "feeds": feeds,
            "daemon": daemon,
            "database_url": type(settings.database_url)(options.db_url),
        }
    )


async def run_demo(
    settings: Settings, options: DemoOptions, progress: Callable[[int, int], None] | None = None
) -> DemoResult:
    """Run the simulator and the daemon until the window ends; return the summary.

    Raises
    ------
    DataError
        If the data folder lacks the 1m candles of a configured symbol.
    """
    wire = tuple(s.replace("/", "") for s in settings.symbols)
    try:
        tape = Tape(options.data_dir, wire, timeframes=("1m",))
    except FileNotFoundError as e:
        raise DataError(str(e)) from None
    start = max(tape.first_open_ms(s) for s in wire)
    start = start - start % MINUTE_MS
    last = min(tape.last_open_ms(s) for s in wire)
    end = min(last + MINUTE_MS, start + int(options.days * 1440) * MINUTE_MS)
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
        clock = FollowClock(lambda: sim.market.now_ms)
        daemon_options = DaemonOptions(
            migrate=True,
            clock=clock,
            stop_at_open_ms=end - MINUTE_MS,
            run_id=new_run_id("demo"),
            anchor_ms=start,
            finish_run=True,
        )

        def on_progress(d: Daemon) -> None:
            if progress is not None:
                done = min(d._last_open.values()) + MINUTE_MS - start
                progress(max(0, done // MINUTE_MS), (end - start) // MINUTE_MS)

        stepper: list[asyncio.Task[None]] = []

        def on_ready(d: Daemon) -> None:
            stepper.append(
                asyncio.get_running_loop().create_task(_step_market(sim, d, options.minute_wall_s))
            )

        daemon = Daemon(
            demo_settings(settings, sim, options, lag_ms),
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


async def _step_market(sim: ExchangeSim, daemon: Daemon, minute_wall_s: float) -> None:
    # Once the daemon's feed is connected, advance the simulated market one minute per
    # ``minute_wall_s`` until its end (Market.run's loop).
    assert daemon.c is not None
    stats = daemon.c.feed.stats
    while stats.connects == 0:  # noqa: ASYNC110 - the feed exposes counters, not events
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    market = sim.market
    while market.now_ms < market.end_ms:
        await asyncio.sleep(minute_wall_s)
        market.step()


__all__ = ["DemoOptions", "DemoResult", "run_demo"]
