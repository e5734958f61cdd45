"""Re-entry policy of :class:`~tradebot.core.management.position.PositionManager` after a forced exit.

The lock itself (``locked``, m = 0 while flat) is set by the manager's exits and released by a
stream change (``on_streams``). This module adds the earlier releases of ``ManagementConfig.reentry``
(``"after_periods"``, ``"new_high"``), judged on rebalance-clock closes; see that attribute for their
exact definitions. Split from ``position.py`` for size; part of the manager (same package, one owner).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tradebot.core.domain import Candle, PositionEventType

if TYPE_CHECKING:
    from tradebot.core.management.actions import Action
    from tradebot.core.management.position import PositionManager


def on_period(pm: PositionManager, candle: Candle) -> Action | None:
    # Judge one rebalance-clock candle for a locked manager with a known exit; release → an action.
    exit_ms = pm._exit_ms
    if exit_ms is None:
        return None
    cfg = pm.config
    period_ms = candle.timeframe.ms
    close_ms = candle.open_time_ms + period_ms
    if cfg.reentry == "after_periods":
        # Clock closes strictly after the exit: boundaries k·T with exit_ms < k·T <= close_ms.
        n = close_ms // period_ms - exit_ms // period_ms
        if n < cfg.reentry_periods:
            return None
        reason = f"{n} rebalance-clock closes since the exit at {exit_ms} ms (re-entry after {cfg.reentry_periods})"
        return _release(pm, close_ms, candle.close, reason, {"periods_since_exit": float(n)})
    if cfg.reentry == "new_high":
        high = pm._reentry_high if pm._reentry_high is not None else candle.high
        exit_period_close = -(-exit_ms // period_ms) * period_ms
        if close_ms > exit_period_close and candle.close > high:
            reason = f"close {candle.close!r} > highest price {high!r} since the exit at {exit_ms} ms"
            return _release(pm, close_ms, candle.close, reason, {"high_since_exit": high})
        pm._reentry_high = max(high, candle.high)
    return None


def _release(pm: PositionManager, time_ms: int, price: float, reason: str, extra: dict[str, float]) -> Action:
    before = pm._m
    pm._unlock()
    return pm._action(
        PositionEventType.REENTRY_ALLOWED,
        time_ms,
        price,
        f"re-entry allowed: {reason}",
        before=before,
        urgent=True,
        extra=extra,
    )
