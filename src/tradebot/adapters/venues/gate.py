"""Per-venue request gate: rate limit (asyncio-throttle), priorities, 429 back-off and 418 halt.

Every request to a venue passes :meth:`VenueGate.slot` with a :class:`Priority`:

* ``URGENT`` (cancels, order lookups) and ``READ`` (balances, trades, open orders) share the
  request-weight throttler; ``ORDER`` (new orders) additionally passes the order-rate throttler and
  waits while any urgent request is queued, so cancels and lookups overtake new orders.
* :meth:`back_off` (HTTP 429) pauses *every* request of the venue until ``Retry-After`` has passed.
* :meth:`ban` (HTTP 418) halts the venue: requests wait for the ban to end, new orders are refused
  at once with :class:`~tradebot.errors.VenueBanned`, and a ``venue_banned`` critical log is written.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import structlog
from asyncio_throttle.throttler import Throttler

from tradebot.errors import VenueBanned

log = structlog.get_logger("tradebot.venues.gate")


class Priority(enum.IntEnum):
    """Request classes, most urgent first."""

    URGENT = 0
    READ = 1
    ORDER = 2


class VenueGate:
    """Throttling and back-off state of one venue.

    Parameters
    ----------
    venue
        Venue name (for logs and errors).
    requests_per_s
        Sustained request rate (from the venue's request-weight limit), > 0.
    orders_per_s
        Sustained new-order rate (from the venue's order limit), > 0.
    default_backoff_s
        Pause after a 429 without ``Retry-After``, seconds.
    max_wait_s
        Longest a request waits for a back-off or ban before failing, seconds.
    monotonic
        Time source (seconds), for tests.
    """

    def __init__(self, venue: str, *, requests_per_s: float = 10.0, orders_per_s: float = 5.0,
                 default_backoff_s: float = 1.0, max_wait_s: float = 120.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        if requests_per_s <= 0 or orders_per_s <= 0:
            raise ValueError(f"rates must be > 0, were {requests_per_s!r} and {orders_per_s!r}")
        self.venue = venue
        self.default_backoff_s, self.max_wait_s = default_backoff_s, max_wait_s
        self._now = monotonic
        self._requests = Throttler(rate_limit=max(1, round(requests_per_s)), period=1.0)
        self._orders = Throttler(rate_limit=max(1, round(orders_per_s)), period=1.0)
        self._paused_until = 0.0
        self._banned_until = 0.0
        self._urgent_waiting = 0
        self._no_urgent = asyncio.Event()
        self._no_urgent.set()

    @property
    def banned(self) -> bool:
        """True while a 418 ban is in force."""
        return self._now() < self._banned_until

    def back_off(self, retry_after_s: float | None) -> None:
        """Pause every request of the venue for ``retry_after_s`` (HTTP 429; default when ``None``)."""
        seconds = self.default_backoff_s if retry_after_s is None else retry_after_s
        self._paused_until = max(self._paused_until, self._now() + seconds)
        log.warning("venue_rate_limited", venue=self.venue, retry_after_s=seconds)

    def ban(self, retry_after_s: float | None) -> None:
        """Halt the venue for ``retry_after_s`` seconds (HTTP 418) and log it loudly."""
        seconds = self.max_wait_s if retry_after_s is None else retry_after_s
        self._banned_until = max(self._banned_until, self._now() + seconds)
        self._paused_until = max(self._paused_until, self._banned_until)
        log.critical("venue_banned", venue=self.venue, retry_after_s=seconds,
                     action="all requests halted; new orders refused until the ban ends")  # fmt: skip

    @asynccontextmanager
    async def slot(self, priority: Priority) -> AsyncIterator[None]:
        """Wait for the right to send one request of ``priority``.

        Raises
        ------
        VenueBanned
            For a new order while the venue is banned, or when a pause exceeds ``max_wait_s``.
        """
        if priority is Priority.ORDER and self.banned:
            raise VenueBanned(f"{self.venue}: banned (HTTP 418); new orders are refused until the ban ends",
                              retry_after_s=self._banned_until - self._now())  # fmt: skip
        if priority is Priority.URGENT:
            self._urgent_waiting += 1
            self._no_urgent.clear()
        try:
            await self._wait_pause()
            if priority is Priority.ORDER:
                await self._no_urgent.wait()
                async with self._orders, self._requests:
                    yield
                return
            async with self._requests:
                yield
        finally:
            if priority is Priority.URGENT:
                self._urgent_waiting -= 1
                if self._urgent_waiting == 0:
                    self._no_urgent.set()

    async def _wait_pause(self) -> None:
        while (delay := self._paused_until - self._now()) > 0:
            if delay > self.max_wait_s:
                raise VenueBanned(f"{self.venue}: paused for {delay:.1f} s > max wait {self.max_wait_s} s",
                                  retry_after_s=delay)  # fmt: skip
            await asyncio.sleep(delay)
