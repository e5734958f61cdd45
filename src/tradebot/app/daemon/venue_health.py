"""Health of the daemon's periodic venue work (order polling, reconciliation): back off, pause, resume.

A round the venue refuses with a transient error (:class:`~tradebot.errors.VenueUnavailable`:
429 / budget spent, ``-1021``, 5xx, timeouts; or :class:`~tradebot.errors.VenueBanned`) is skipped,
never fatal: the next round waits ``min(retry_max_s, retry_initial_s · 2**(n−1))`` after the n-th
failure in a row, and at least as long as the venue's own back-off or ban (the gate's pause). After
``pause_after`` failures in a row new entries are paused (a :class:`TradingControl` to
``REDUCING`` with ``source="venue"``, recorded by the engine as a ``risk_block`` position event); the
first round that succeeds again lifts that pause (``trading_resumed``). The venue's pause is its own
flag in the risk manager: an operator's ``/pause`` given before or during it stays in force when the
venue recovers, and an operator's ``/resume`` does not lift the venue's pause.

The state is runtime-only and uses the monotonic clock; the core sees only the controls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from tradebot.core.domain import TradingControl, TradingState
from tradebot.errors import RateLimited, VenueBanned, VenueError

log = structlog.get_logger("tradebot.daemon")


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueHealthConfig:
    """Back-off and pause of the periodic venue work.

    Attributes
    ----------
    pause_after
        Failed rounds in a row before new entries pause (≥ 1, default 3).
    retry_initial_s, retry_max_s
        Wait after the first failed round, doubling per failure up to ``retry_max_s`` (1 / 120 s).
    """

    pause_after: int = 3
    retry_initial_s: float = 1.0
    retry_max_s: float = 120.0


class VenueHealth:
    """Counts failed rounds of one venue and decides when to try again, pause and resume.

    Parameters
    ----------
    venue
        Venue name (logs, position-event reasons).
    config
        Thresholds and waits.
    monotonic
        Clock, seconds (tests may pass their own).
    """

    def __init__(self, venue: str, config: VenueHealthConfig | None = None, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.venue = venue
        self.config = config or VenueHealthConfig()
        self._now = monotonic
        self.failures = 0
        self.next_attempt_s = 0.0  # monotonic
        self.paused = False  # this class paused new entries (and will resume them)
        self.last_error = ""

    def wait_s(self, gate_pause_s: float = 0.0) -> float:
        """Seconds until the next round may run (0: now); ``gate_pause_s`` is the venue's own pause."""
        return max(0.0, self.next_attempt_s - self._now(), gate_pause_s)

    def failed(self, what: str, exc: VenueError, *, gate_pause_s: float, ts_ms: int) -> TradingControl | None:
        """Note a failed round of ``what``; return the venue's pause to apply, if this failure starts one."""
        cfg = self.config
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        step = min(cfg.retry_max_s, cfg.retry_initial_s * 2.0 ** min(self.failures - 1, 30))
        venue_says = getattr(exc, "retry_after_s", None) or 0.0
        wait = max(step, gate_pause_s, venue_says)
        self.next_attempt_s = self._now() + wait
        level = "error" if isinstance(exc, VenueBanned) else "warning"
        getattr(log, level)(
            "venue_round_failed",
            venue=self.venue,
            call=what,
            consecutive=self.failures,
            retry_in_s=round(wait, 3),
            rate_limited=isinstance(exc, RateLimited),
            error=self.last_error[:200],
        )
        if self.failures < cfg.pause_after or self.paused:
            return None
        self.paused = True
        log.error(
            "venue_unavailable", venue=self.venue, consecutive=self.failures, action="new entries paused"
        )
        reason = (
            f"venue {self.venue} unavailable: {self.failures} failed rounds in a row, last {self.last_error}"
        )
        return TradingControl(state=TradingState.REDUCING, reason=reason[:300], ts_ms=ts_ms, source="venue")

    def succeeded(self, *, ts_ms: int) -> TradingControl | None:
        """Note a round the venue answered; return the resume, when this class had paused entries."""
        was = self.failures
        self.failures, self.next_attempt_s, self.last_error = 0, 0.0, ""
        if was:
            log.info("venue_recovered", venue=self.venue, failed_rounds=was)
        if not self.paused:
            return None
        self.paused = False
        return TradingControl(
            state=TradingState.ACTIVE,
            reason=f"venue {self.venue} answering again after {was} failed rounds",
            ts_ms=ts_ms,
            source="venue",
        )


__all__ = ["VenueHealth", "VenueHealthConfig"]
