"""VenueGate: Retry-After as a floor of a doubling 429 back-off, the request budget per window,
fail-fast background rounds, and bans in wall-clock time (for the restart)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tradebot.adapters.venues.ccxt_venue import ban_until_ms
from tradebot.adapters.venues.gate import Priority, VenueGate
from tradebot.errors import RateLimited, VenueBanned

pytestmark = pytest.mark.timeout(10)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def wall_ms(self) -> int:
        return 1_700_000_000_000 + round(self.t * 1000)


def gate(clock: Clock, **kw: object) -> VenueGate:
    return VenueGate("test", requests_per_s=1000, orders_per_s=1000, monotonic=clock, wall_ms=clock.wall_ms,
                     **kw)  # type: ignore[arg-type]  # fmt: skip


async def test_retry_after_is_a_floor_of_a_pause_doubling_per_consecutive_429() -> None:
    clock = Clock()
    g = gate(clock, default_backoff_s=1.0, backoff_max_s=8.0)
    assert [g.back_off(1) for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # capped at backoff_max_s
    assert g.pause_left_s() == 8.0
    g.succeeded()  # an answered request starts the doubling anew
    assert g.back_off(None) == 1.0
    assert g.back_off(30) == 30.0  # the venue's longer Retry-After is honoured as is
    assert g.pause_left_s() == 30.0


async def test_a_background_request_fails_at_once_while_the_venue_backs_off() -> None:
    clock = Clock()
    g = gate(clock)
    g.back_off(5)
    with VenueGate.background(), pytest.raises(RateLimited) as info:
        async with g.slot(Priority.READ):
            pytest.fail("sent during the back-off")
    assert info.value.retry_after_s == 5.0
    clock.t += 5.0
    with VenueGate.background():
        async with g.slot(Priority.READ):
            pass
    assert not VenueGate.in_background()


async def test_a_foreground_request_waits_out_retry_after() -> None:
    g = VenueGate("test", requests_per_s=1000, orders_per_s=1000, default_backoff_s=0.2)
    g.back_off(0.3)
    t0 = time.monotonic()
    async with g.slot(Priority.READ):
        waited = time.monotonic() - t0
    assert 0.28 <= waited < 1.0


async def test_the_budget_allows_so_many_requests_per_sliding_window() -> None:
    clock = Clock()
    g = gate(clock, budget=3, window_s=10.0)
    for _ in range(3):
        async with g.slot(Priority.READ):
            clock.t += 1.0
    assert g.budget_wait_s() == pytest.approx(7.0)  # the first of the three leaves the window at t0 + 10
    with VenueGate.background(), pytest.raises(RateLimited, match="budget 3 per 10 s"):
        async with g.slot(Priority.URGENT):
            pass
    clock.t += 7.0
    async with g.slot(Priority.READ):
        pass
    assert g.budget_wait_s() > 0


async def test_a_foreground_request_waits_for_the_budget() -> None:
    g = VenueGate("test", requests_per_s=1000, orders_per_s=1000, budget=2, window_s=0.3)
    t0 = time.monotonic()
    for _ in range(3):
        async with g.slot(Priority.READ):
            pass
    assert 0.28 <= time.monotonic() - t0 < 1.0


async def test_a_ban_is_known_in_wall_time_and_restored_after_a_restart() -> None:
    clock = Clock()
    recorded: list[int] = []
    g = gate(clock, on_ban=recorded.append)
    g.ban(120)
    assert g.banned and g.banned_until_ms == clock.wall_ms() + 120_000
    assert recorded == [clock.wall_ms() + 120_000]
    g.ban(60)  # a shorter ban does not shorten it nor record again
    assert recorded == [clock.wall_ms() + 120_000]
    with pytest.raises(VenueBanned):  # new orders refused at once
        async with g.slot(Priority.ORDER):
            pass
    with VenueGate.background(), pytest.raises(VenueBanned):
        async with g.slot(Priority.READ):
            pass
    fresh = gate(clock)  # the next process: the ban is put back from its recorded end
    fresh.restore_ban(recorded[0] - 30_000)
    assert fresh.banned and fresh.pause_left_s() == pytest.approx(90.0)
    past = gate(clock)
    past.restore_ban(clock.wall_ms() - 1)
    assert not past.banned and past.banned_until_ms is None


def test_the_ban_end_is_read_from_binance_s_message() -> None:
    assert ban_until_ms("Way too many requests; IP banned until 1633998600000.") == 1633998600000
    assert ban_until_ms("Way too much request weight used; IP banned.") is None


async def test_background_mode_is_per_task() -> None:
    seen: list[bool] = []

    async def other() -> None:
        seen.append(VenueGate.in_background())

    with VenueGate.background():
        async with asyncio.TaskGroup() as tg:  # a task started inside inherits the context
            tg.create_task(other())
        seen.append(VenueGate.in_background())
    seen.append(VenueGate.in_background())
    assert seen == [True, True, False]
