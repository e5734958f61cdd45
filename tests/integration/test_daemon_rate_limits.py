"""Rate-limit and clock-skew storms against a running testnet daemon (``tradebot run`` against the
simulator, issue 14 finding 5).

A storm on the private endpoints that periodic reconciliation uses (40 × HTTP 429 with
``Retry-After: 1``, or 20 × ``-1021``) must not end the daemon: it keeps taking candles, the requests
it sends into the limited window are bounded by the per-venue back-off, new entries are paused with
a ``risk_block`` position event after ``TRADEBOT_DAEMON__VENUE_PAUSE_AFTER`` failed rounds, and
trading resumes (``trading_resumed``) once the venue answers again. Before the back-off the
reconciliation exhausted its six retries within seconds and the daemon exited 1 (a crash loop under
a supervisor: each restart sends its start-up requests into the same window).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_proc import FIXTURE, KEY, SECRET, DaemonProcess, sim_env

from tradebot.exchange_sim import ExchangeSim, SimConfig

#: Observation window of a storm, wall seconds.
STORM_S = 12.0


def _venue_events(d: DaemonProcess, kind: str, since: int) -> list[dict[str, Any]]:
    return [
        e
        for e in d.events("position_event", since)
        if e.get("event_type") == kind and "venue binance" in str(e.get("trigger"))
    ]


async def _storm(
    tmp_path: Path, inject: Callable[[ExchangeSim], None], end: Callable[[ExchangeSim], None]
) -> dict[str, int]:
    """Run the daemon, inject a storm once it reconciles periodically, watch it for ``STORM_S``, end
    the storm and check trading resumes; return the numbers of the storm."""
    config = SimConfig(data_dir=FIXTURE, start_ms=1679529600000 + 3600_000, minute_wall_s=0.1)
    async with ExchangeSim(config) as sim:
        sim.binance_private.credentials[KEY] = SECRET
        async with DaemonProcess(sim_env(sim, tmp_path), tmp_path) as d:
            await d.wait_for(
                lambda: any(not e["startup"] for e in d.events("reconciled")), 40, "a periodic reconciliation"
            )
            mark, candles0 = len(d.lines), d.candles()
            private0, public0 = len(sim.binance_private.requests), len(sim.binance_rest.requests)
            inject(sim)
            t0 = time.monotonic()
            try:
                await d.wait_for(lambda: time.monotonic() - t0 >= STORM_S, STORM_S + 5, "the storm window")
            finally:
                private = len(sim.binance_private.requests) - private0
                public = len(sim.binance_rest.requests) - public0
                print(f"storm: {time.monotonic() - t0:.1f} s, requests private {private} public {public}, "
                      f"exit code {d.proc and d.proc.returncode}")  # fmt: skip
            candles = d.candles() - candles0
            paused = _venue_events(d, "risk_block", mark)
            assert paused, f"no pause position event:\n{d.tail()}"
            end(sim)
            resumed_mark = len(d.lines)
            await d.wait_for(lambda: bool(_venue_events(d, "trading_resumed", mark)), 30, "trading resumed")
            await d.wait_for(
                lambda: any(e["ok"] and not e["startup"] for e in d.events("reconciled", resumed_mark)),
                30,
                "a reconciliation after the storm",
            )
            code = await d.stop()
        assert code == 0, d.tail()
    return {"private": private, "public": public, "candles": candles, "pauses": len(paused)}


@pytest.mark.timeout(90)
async def test_429_storm_leaves_the_daemon_running_with_bounded_requests(tmp_path: Path) -> None:
    def inject(sim: ExchangeSim) -> None:
        sim.binance_orders.faults.throttle.extend([(429, 1)] * 40)

    def end(sim: ExchangeSim) -> None:
        sim.binance_orders.faults.throttle.clear()

    numbers = await _storm(tmp_path, inject, end)
    print("429 storm:", numbers)
    # Retry-After 1 s doubled per consecutive 429 (1, 2, 4, 8 s): at most 5 rounds in 12 s
    assert numbers["private"] <= 8, numbers
    assert numbers["candles"] >= 30, numbers  # kept taking candles (3 symbols x 10 per s)
    assert numbers["pauses"] == 1, numbers


@pytest.mark.timeout(90)
async def test_clock_skew_storm_leaves_the_daemon_running_with_bounded_requests(tmp_path: Path) -> None:
    def inject(sim: ExchangeSim) -> None:
        sim.binance_orders.faults.clock_skew = 20

    def end(sim: ExchangeSim) -> None:
        sim.binance_orders.faults.clock_skew = 0

    numbers = await _storm(tmp_path, inject, end)
    print("-1021 storm:", numbers)
    assert numbers["private"] <= 12, numbers
    assert numbers["candles"] >= 30, numbers
    assert numbers["pauses"] == 1, numbers


@pytest.mark.timeout(90)
async def test_a_ban_recorded_before_a_crash_is_honoured_by_the_restart(tmp_path: Path) -> None:
    """A 418 (``Retry-After: 8``) during periodic reconciliation: the daemon keeps running (entries
    paused), records the ban's end; killed (a crash) and restarted within the ban, it sends nothing
    to the venue — no REST request, market data included — until the ban has ended, then starts."""
    config = SimConfig(data_dir=FIXTURE, start_ms=1679529600000 + 3600_000, minute_wall_s=0.1)
    async with ExchangeSim(config) as sim:
        sim.binance_private.credentials[KEY] = SECRET
        env = sim_env(sim, tmp_path)
        async with DaemonProcess(env, tmp_path) as d:
            await d.wait_for(
                lambda: any(not e["startup"] for e in d.events("reconciled")), 40, "a periodic reconciliation"
            )
            sim.binance_orders.faults.throttle.append((418, 8))
            await d.wait_for(lambda: bool(d.events("venue_ban_recorded")), 20, "the ban recorded")
            until_ms = d.events("venue_ban_recorded")[0]["banned_until_ms"]
            await d.wait_for(lambda: bool(d.events("venue_round_failed")), 20, "a failed round")
            assert d.running
            assert d.proc is not None
            d.proc.kill()  # a crash: no shutdown, no checkpoint
            await d.proc.wait()
        assert json.loads((tmp_path / "venue_bans.json").read_text()) == {
            f"binance {sim.binance_rest_url.split('://')[1].rstrip('/')}": {"banned_until_ms": until_ms}
        }
        assert until_ms / 1000 - time.time() > 3, "the ban ended before the restart"
        sent = len(sim.binance_private.requests), len(sim.binance_rest.requests)
        async with DaemonProcess(env, tmp_path) as again:
            await again.wait_for(lambda: bool(again.events("venue_ban_in_force")), 20, "the ban honoured")
            assert again.events("venue_ban_in_force")[0]["banned_until_ms"] == until_ms
            await asyncio.sleep(max(0.0, until_ms / 1000 - time.time() - 0.3))
            assert (len(sim.binance_private.requests), len(sim.binance_rest.requests)) == sent  # nothing sent
            await again.wait_for(lambda: bool(again.events("trading_started")), 40, "the start after the ban")
            first = next(i for i, e in enumerate(again.lines) if e["event"] == "venue_ban_ended")
            assert first < next(i for i, e in enumerate(again.lines) if e["event"] == "trading_started")
            assert await again.stop() == 0, again.tail()
