"""Per-venue request gate: rate limit (asyncio-throttle), a request budget per window, priorities,
429 back-off and 418 halt.

Every request to a venue passes :meth:`VenueGate.slot` with a :class:`Priority`:

* ``URGENT`` (cancels, order lookups) and ``READ`` (balances, trades, open orders) share the
  request-weight throttler; ``ORDER`` (new orders) additionally passes the order-rate throttler and
  waits while any urgent request is queued, so cancels and lookups overtake new orders.
* Every request also counts against the budget: at most ``budget`` requests in any ``window_s``
  (a sliding window), whatever the venue's own limits say.
* :meth:`back_off` (HTTP 429) pauses *every* request of the venue for
  ``max(Retry-After, backoff_initial_s · 2**(n−1))`` after the n-th 429 in a row (capped at
  ``backoff_max_s``; :meth:`succeeded` resets n): the venue's word is a floor, repeated throttling
  backs off harder, as Binance asks ("back off … to avoid a ban", ``rest-api.md`` "LIMITS") and
  Deribit documents for ``too_many_requests``.
* :meth:`ban` (HTTP 418) halts the venue: requests wait for the ban to end, new orders are refused
  at once with :class:`~tradebot.errors.VenueBanned`, and a ``venue_banned`` critical log is written.
  The end of the ban is known in wall-clock ms (:attr:`banned_until_ms`) so the runtime can keep it
  across a restart (:meth:`restore_ban`, ``on_ban``).
* Inside :meth:`background` (periodic polling and reconciliation) a request that would wait for a
  back-off, a ban or the budget raises :class:`~tradebot.errors.RateLimited` /
  :class:`~tradebot.errors.VenueBanned` at once instead: the caller skips its round and the engine
  task is never held by a pause.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar

import structlog
from asyncio_throttle.throttler import Throttler

from tradebot.errors import RateLimited, VenueBanned

log = structlog.get_logger("tradebot.venues.gate")

_BACKGROUND: ContextVar[bool] = ContextVar("tradebot_gate_background", default=False)


class Priority(enum.IntEnum):
    """Request classes, most urgent first."""

    URGENT = 0
    READ = 1
    ORDER = 2


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


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
        Pause after a 429 without ``Retry-After``, seconds (also the first step of the exponential).
    backoff_max_s
        Longest pause the exponential reaches, seconds (a longer ``Retry-After`` is still honoured).
    budget, window_s
        At most ``budget`` requests (≥ 1) in any ``window_s`` seconds (> 0); default 1 200 per 60 s.
    max_wait_s
        Longest a request waits for a back-off or ban before failing, seconds.
    monotonic, wall_ms
        Time sources (seconds; ms UTC), for tests.
    on_ban
        Called with the end of a new or longer ban, ms UTC (the runtime persists it).
    """

    def __init__(self, venue: str, *, requests_per_s: float = 10.0, orders_per_s: float = 5.0,
                 default_backoff_s: float = 1.0, backoff_max_s: float = 60.0, budget: int = 1200,
                 window_s: float = 60.0, max_wait_s: float = 120.0,
                 monotonic: Callable[[], float] = time.monotonic, wall_ms: Callable[[], int] = _wall_ms,
                 on_ban: Callable[[int], None] | None = None) -> None:  # fmt: skip
        if requests_per_s <= 0 or orders_per_s <= 0:
            raise ValueError(f"rates must be > 0, were {requests_per_s!r} and {orders_per_s!r}")
        if budget < 1 or window_s <= 0:
            raise ValueError(f"budget must be >= 1 and window_s > 0, were {budget!r} and {window_s!r}")
        self.venue = venue
        self.default_backoff_s, self.backoff_max_s = default_backoff_s, backoff_max_s
        self.max_wait_s = max_wait_s
        self.budget, self.window_s = budget, window_s
        self.on_ban = on_ban
        self._now, self._wall_ms = monotonic, wall_ms
        self._requests = Throttler(rate_limit=max(1, round(requests_per_s)), period=1.0)
        self._orders = Throttler(rate_limit=max(1, round(orders_per_s)), period=1.0)
        self._sent: deque[float] = deque()  # monotonic times of the requests in the budget window
        self._paused_until = 0.0
        self._banned_until = 0.0
        self._strikes = 0  # consecutive 429s
        self._urgent_waiting = 0
        self._no_urgent = asyncio.Event()
        self._no_urgent.set()

    def monotonic(self) -> float:
        """The gate's monotonic clock, seconds."""
        return self._now()

    def wall_ms(self) -> int:
        """The gate's wall clock, ms UTC."""
        return self._wall_ms()

    @property
    def banned(self) -> bool:
        """True while a 418 ban is in force."""
        return self._now() < self._banned_until

    @property
    def banned_until_ms(self) -> int | None:
        """End of the ban in force, ms UTC (wall clock), else ``None``."""
        left = self._banned_until - self._now()
        return self._wall_ms() + round(left * 1000) if left > 0 else None

    def pause_left_s(self) -> float:
        """Seconds until requests may go out again (back-off or ban), 0 when none is in force."""
        return max(0.0, self._paused_until - self._now())

    def back_off(self, retry_after_s: float | None) -> float:
        """Pause every request of the venue after a 429; return the pause, seconds.

        The pause is ``max(retry_after_s, default_backoff_s · 2**(n−1))`` for the n-th 429 in a row,
        the exponential capped at ``backoff_max_s`` (``retry_after_s`` ``None``: the exponential alone).
        """
        self._strikes += 1
        step = min(self.backoff_max_s, self.default_backoff_s * 2.0 ** min(self._strikes - 1, 30))
        seconds = max(step, retry_after_s or 0.0)
        self._paused_until = max(self._paused_until, self._now() + seconds)
        log.warning("venue_rate_limited", venue=self.venue, retry_after_s=retry_after_s, pause_s=round(seconds, 3),
                    consecutive=self._strikes)  # fmt: skip
        return seconds

    def succeeded(self) -> None:
        """Note a request the venue answered (not throttled): the next 429 starts the exponential anew."""
        self._strikes = 0

    def ban(self, retry_after_s: float | None) -> None:
        """Halt the venue for ``retry_after_s`` seconds (HTTP 418; ``None``: ``max_wait_s``) and log it loudly."""
        seconds = self.max_wait_s if retry_after_s is None else retry_after_s
        before = self._banned_until
        self._banned_until = max(self._banned_until, self._now() + seconds)
        self._paused_until = max(self._paused_until, self._banned_until)
        until_ms = self.banned_until_ms
        log.critical("venue_banned", venue=self.venue, retry_after_s=seconds, banned_until_ms=until_ms,
                     action="all requests halted; new orders refused until the ban ends")  # fmt: skip
        if self.on_ban is not None and until_ms is not None and self._banned_until > before:
            self.on_ban(until_ms)

    def restore_ban(self, until_ms: int) -> None:
        """Put a ban recorded before a restart back in force until ``until_ms`` (ms UTC); a past one is ignored."""
        left_s = (until_ms - self._wall_ms()) / 1000
        if left_s > 0:
            self._banned_until = max(self._banned_until, self._now() + left_s)
            self._paused_until = max(self._paused_until, self._banned_until)

    @staticmethod
    @contextmanager
    def background() -> Iterator[None]:
        """Within the block (this task and what it awaits), fail at once instead of waiting for a
        back-off, a ban or the budget (see the module docstring)."""
        token = _BACKGROUND.set(True)
        try:
            yield
        finally:
            _BACKGROUND.reset(token)

    @staticmethod
    def in_background() -> bool:
        """True inside :meth:`background`."""
        return _BACKGROUND.get()

    @asynccontextmanager
    async def slot(self, priority: Priority) -> AsyncIterator[None]:
        """Wait for the right to send one request of ``priority``.

        Raises
        ------
        VenueBanned
            For a new order while the venue is banned, when a pause exceeds ``max_wait_s``, or in
            :meth:`background` while banned.
        RateLimited
            In :meth:`background` while a back-off is in force or the budget is spent.
        """
        if priority is Priority.ORDER and self.banned:
            raise VenueBanned(f"{self.venue}: banned (HTTP 418); new orders are refused until the ban ends",
                              retry_after_s=self._banned_until - self._now())  # fmt: skip
        if priority is Priority.URGENT:
            self._urgent_waiting += 1
            self._no_urgent.clear()
        try:
            await self._wait_pause()
            await self._spend_budget()
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

    def budget_wait_s(self) -> float:
        """Seconds until the budget allows one more request (0 when it does now)."""
        now = self._now()
        while self._sent and now - self._sent[0] >= self.window_s:
            self._sent.popleft()
        if len(self._sent) < self.budget:
            return 0.0
        return self._sent[0] + self.window_s - now

    async def _spend_budget(self) -> None:
        while (delay := self.budget_wait_s()) > 0:
            if self.in_background():
                raise RateLimited(f"{self.venue}: request budget {self.budget} per {self.window_s:g} s spent",
                                  retry_after_s=delay)  # fmt: skip
            log.warning("venue_budget_spent", venue=self.venue, budget=self.budget, window_s=self.window_s,
                        wait_s=round(delay, 3))  # fmt: skip
            await asyncio.sleep(delay)
        self._sent.append(self._now())

    async def _wait_pause(self) -> None:
        while (delay := self._paused_until - self._now()) > 0:
            if self.banned and (self.in_background() or delay > self.max_wait_s):
                raise VenueBanned(
                    f"{self.venue}: banned (HTTP 418) for {delay:.1f} s more", retry_after_s=delay
                )
            if self.in_background():
                raise RateLimited(f"{self.venue}: backing off for {delay:.1f} s more", retry_after_s=delay)
            if delay > self.max_wait_s:
                raise VenueBanned(f"{self.venue}: paused for {delay:.1f} s > max wait {self.max_wait_s} s",
                                  retry_after_s=delay)  # fmt: skip
            await asyncio.sleep(delay)
