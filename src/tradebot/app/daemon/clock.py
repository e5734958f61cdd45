"""Runtime clocks (timers, timeouts, feed lag): the core never reads a clock, the runtime does.

:class:`LiveClock` is the wall clock. :class:`FollowClock` reads another time source, e.g. the local
exchange simulator's market clock (``lambda: sim.market.now_ms``) in the demo and tests, so feed lag
is measured in the simulator's time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class LiveClock:
    """Wall clock, ms UTC; :meth:`sleep` is ``asyncio.sleep``."""

    def now_ms(self) -> int:
        """Return the wall time, ms UTC."""
        return time.time_ns() // 1_000_000

    def monotonic_s(self) -> float:
        """Return a monotonic time, seconds (for intervals only)."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of wall time."""
        await asyncio.sleep(seconds)


class FollowClock(LiveClock):
    """A clock whose ``now_ms`` follows ``source`` (ms UTC); sleeping and intervals stay in wall time.

    Parameters
    ----------
    source
        Returns the current time of the followed clock, ms UTC.
    """

    def __init__(self, source: Callable[[], int]) -> None:
        self._source = source

    def now_ms(self) -> int:
        """Return the followed clock's time, ms UTC."""
        return self._source()
