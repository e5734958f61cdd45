"""VenueHealth (failed periodic venue rounds → back-off, pause, resume) and the ban file."""

from __future__ import annotations

import json
from pathlib import Path

from tradebot.app.daemon.venue_bans import ban_key, banned_until_ms, record_ban, wait_out_ban
from tradebot.app.daemon.venue_health import VenueHealth, VenueHealthConfig
from tradebot.core.domain import TradingState
from tradebot.errors import RateLimited, VenueUnavailable


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_failed_rounds_back_off_doubling_then_pause_once_and_resume_on_success() -> None:
    clock = Clock()
    h = VenueHealth("binance", VenueHealthConfig(pause_after=3, retry_initial_s=1.0, retry_max_s=4.0),
                    monotonic=clock)  # fmt: skip
    skew = VenueUnavailable("binance: HTTP 400 -1021 Timestamp outside of the recvWindow")
    waits, controls = [], []
    for _ in range(5):
        controls.append(h.failed("reconcile", skew, gate_pause_s=0.0, ts_ms=7))
        waits.append(h.wait_s())
    assert waits == [1.0, 2.0, 4.0, 4.0, 4.0]
    pause = controls[2]
    assert [c is not None for c in controls] == [False, False, True, False, False]  # paused once, at the 3rd
    assert pause is not None and pause.state is TradingState.REDUCING and pause.ts_ms == 7
    assert pause.reason.startswith(
        "venue binance unavailable: 3 failed rounds in a row, last VenueUnavailable"
    )
    resume = h.succeeded(ts_ms=9)
    assert resume is not None and resume.state is TradingState.ACTIVE and "venue binance" in resume.reason
    assert (h.failures, h.wait_s(), h.succeeded(ts_ms=10)) == (0, 0.0, None)


def test_the_venue_s_own_pause_and_retry_after_are_floors() -> None:
    clock = Clock()
    h = VenueHealth("binance", VenueHealthConfig(retry_initial_s=1.0), monotonic=clock)
    h.failed("reconcile", RateLimited("429", retry_after_s=30), gate_pause_s=0.0, ts_ms=0)
    assert h.wait_s() == 30.0
    clock.t = 10.0
    assert h.wait_s(gate_pause_s=45.0) == 45.0


def test_the_venue_pauses_and_resumes_under_its_own_source() -> None:
    h = VenueHealth("binance", VenueHealthConfig(pause_after=1), monotonic=Clock())
    pause = h.failed("reconcile", VenueUnavailable("x"), gate_pause_s=0, ts_ms=0)
    assert pause is not None and (pause.state, pause.source) == (TradingState.REDUCING, "venue")
    assert h.failed("reconcile", VenueUnavailable("x"), gate_pause_s=0, ts_ms=0) is None  # not doubled
    resume = h.succeeded(ts_ms=1)
    assert resume is not None and (resume.state, resume.source) == (TradingState.ACTIVE, "venue")


async def test_a_recorded_ban_is_waited_out_without_requests(tmp_path: Path) -> None:
    path = tmp_path / "state" / "venue_bans.json"
    key = ban_key("binance", "https://api.binance.com/api")
    assert key == "binance api.binance.com"
    assert banned_until_ms(path, key) is None  # no file: no ban
    record_ban(path, key, 10_000)
    record_ban(path, "deribit www.deribit.com", 5)
    assert json.loads(path.read_text())[key] == {"banned_until_ms": 10_000}
    now = [4_000]
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        now[0] += int(s * 1000)

    assert await wait_out_ban(path, key, now_ms=lambda: now[0], sleep=sleep) == 10_000
    assert slept == [6.0] and now[0] == 10_000
    assert await wait_out_ban(path, key, now_ms=lambda: now[0], sleep=sleep) is None  # over: no wait
    path.write_text("{not json")
    assert banned_until_ms(path, key) is None
