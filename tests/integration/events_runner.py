"""A paper daemon against an in-process exchange simulator, for the exactly-once position-event test
(run as a subprocess; it SIGKILLs itself at an aimed point).

Each start opens the run's database; a resumed run (an engine checkpoint exists) restarts the
simulated market at the first minute the checkpoint has not covered, so the market waits for the
daemon as in ``tradebot demo --paper`` (lock-step: a minute passes once the daemon handled the last
one) and the restarted daemon sees the same fresh candles as an uninterrupted run. Prints one JSON
line ``{"done": …}`` when the window ends.

``--kill`` makes the process SIGKILL itself right after the first store transaction that commits
a decision position event (not a feed event) the database did not hold when the process started —
before anything else the daemon does (its checkpoint, when that is a separate transaction). Each
killed start thus aims at the next step that decides. It prints ``{"killed_at_ms": t}`` (that
event's time) first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tradebot.adapters.store import SqlEventStore
from tradebot.app.daemon.bootstrap import DaemonOptions
from tradebot.app.daemon.clock import FollowClock
from tradebot.app.daemon.daemon import Daemon
from tradebot.app.demo.demo import DemoOptions, demo_settings, wait_handled
from tradebot.app.settings import load_settings
from tradebot.core.domain import PositionEvent, PositionEventType
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.market import Tape

MINUTE_MS = 60_000
FEED_EVENTS = {PositionEventType.FEED_STALE, PositionEventType.FEED_RECOVERED}
#: The store methods that commit records (``commit_step`` where the store has one).
COMMITTING = ("write", "commit_step")


def event_key(e: PositionEvent) -> tuple[Any, ...]:
    """What identifies a position event apart from its sequence number (and id)."""
    return (e.event_type, e.symbol, e.event_time_ms, e.price, e.size_before, e.size_after, e.action_taken)


def arm_kill(store: SqlEventStore, stored: set[tuple[Any, ...]]) -> None:
    """Make ``store`` SIGKILL the process right after the first commit of a decision event not in ``stored``."""
    for name in COMMITTING:
        inner = getattr(store, name, None)
        if inner is not None:
            setattr(store, name, _killing(inner, stored))


def _killing(
    inner: Callable[..., Awaitable[None]], stored: set[tuple[Any, ...]]
) -> Callable[..., Awaitable[None]]:
    async def commit(records: Any, *args: Any, **kwargs: Any) -> None:
        await inner(records, *args, **kwargs)
        new = [r for r in records if type(r) is PositionEvent and r.event_type not in FEED_EVENTS
               and event_key(r) not in stored]  # fmt: skip
        if new:
            print(json.dumps({"killed_at_ms": new[-1].event_time_ms}), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    return commit


async def saved(db: str, run_id: str, start_ms: int) -> tuple[int, set[tuple[Any, ...]]]:
    """The open time of the first 1m candle the run's checkpoint has not covered (``start_ms`` if
    none), and the keys of the position events stored."""
    async with SqlEventStore(db) as store:
        state = await store.load_engine_state(run_id)
        stored = {event_key(e) for e in await store.position_events(run_id)}
    if state is None:
        return start_ms, stored
    return min(max(int(v["time"]), start_ms) for v in state["engine"]["symbols"].values()), stored


async def step_market(sim: ExchangeSim, daemon: Daemon, handled: asyncio.Event) -> None:
    assert daemon.c is not None
    while daemon.c.feed.stats.connects == 0:  # noqa: ASYNC110 - the feed exposes counters, not events
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    market = sim.market
    while market.now_ms < market.end_ms:
        await wait_handled(market, daemon, handled)
        market.step()
        await asyncio.sleep(0)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume) the daemon until the window ends or the aimed kill; return the ``done`` line."""
    settings = load_settings()
    wire = tuple(s.replace("/", "") for s in settings.symbols)
    tape = Tape(args.data, wire, timeframes=("1m",))
    start = max(tape.first_open_ms(s) for s in wire)
    start -= start % MINUTE_MS
    end = start + args.minutes * MINUTE_MS
    resume, stored = await saved(args.db, args.run, start)
    config = SimConfig(data_dir=args.data, symbols=wire, start_ms=resume,
                       end_ms=end, minute_wall_s=86_400.0, ping_interval_s=5.0)  # fmt: skip
    options = DemoOptions(data_dir=args.data, db_url=args.db, paper=True, run_id=args.run)
    async with ExchangeSim(config) as sim:
        sim.market.pause()
        handled = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []

        def on_ready(d: Daemon) -> None:
            assert d.c is not None
            if args.kill:
                arm_kill(d.c.store, stored)
            tasks.append(asyncio.get_running_loop().create_task(step_market(sim, d, handled)))

        daemon = Daemon(
            demo_settings(settings, sim, options, 10 * MINUTE_MS, None),
            DaemonOptions(migrate=True, clock=FollowClock(lambda: sim.market.now_ms), handle_signals=False,
                          stop_at_open_ms=end - MINUTE_MS, run_id=args.run, anchor_ms=start, finish_run=True),
            on_progress=lambda d: handled.set(),
            on_ready=on_ready,
        )  # fmt: skip
        try:
            code = await daemon.run()
        finally:
            for task in tasks:
                task.cancel()
    done = {"done": code, "stopped_by": daemon.stopped_by, "candles": daemon.candles}
    print(json.dumps(done), flush=True)
    return done


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (``argv``, default ``sys.argv``)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--minutes", type=int, required=True)
    parser.add_argument("--kill", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(arguments()))
