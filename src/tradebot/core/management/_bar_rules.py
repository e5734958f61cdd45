"""Bar rules of :class:`~tradebot.core.management.position.PositionManager`: initial stop level,
take-profit ladder, trailing stop and the proportional scale-out / scale-in along the trail.

Split from ``position.py`` for size; these functions are part of the manager and use its private
state (same package, one owner).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, cast

from tradebot.core.domain import PositionEventType

if TYPE_CHECKING:
    from tradebot.core.management.actions import Action
    from tradebot.core.management.position import PositionManager

_ET = PositionEventType
_INF = math.inf


def take_level(pm: PositionManager, time_ms: int, high: float) -> Action:
    tp = pm.config.take_profit
    i = pm._ladder_idx
    level = pm._ladder_prices[i]
    if i == 0:
        pm._ladder_ref_m = pm._m
    pm._ladder_idx = i + 1
    before = pm._m
    after = max(0.0, before - tp.fractions[i] * pm._ladder_ref_m)
    unit = f"+{tp.levels[i]} R" if tp.levels_r else f"+{tp.levels[i]} %"
    reason = f"high {high!r} >= take-profit level {i + 1} {level:.8g} ({unit}), sell {tp.fractions[i]}"
    if abs(sum(tp.fractions[: i + 1]) - 1.0) < 1e-9 or after <= 1e-12:
        return pm._exit(_ET.TAKE_PROFIT_EXIT, time_ms, level, reason)
    pm._m = after
    if pm._trailing and before > 0:
        pm._m_trail_start *= after / before
    if i == 0 and pm.config.trailing.enabled and pm.config.trailing.start_after_first_ladder:
        pm._trail_level = -_INF
    return pm._action(_ET.PARTIAL_TAKE_PROFIT, time_ms, level, reason, before=before, urgent=True)


def start_trail(pm: PositionManager, time_ms: int, high: float, out: list[Action]) -> None:
    pm._trailing, pm._peak = True, high
    pm._m_trail_start = pm._m
    pm._last_adjust_ms, pm._last_adjust_price, pm._adjusts = time_ms, high, 0
    ratchet(pm, time_ms, f"trail started at high {high!r}", out, force=True)


def ratchet(pm: PositionManager, time_ms: int, why: str, out: list[Action], *, force: bool = False) -> None:
    atr = pm._atr
    if atr is None:
        return
    cfg = pm.config.trailing
    new_stop = pm._peak - cfg.distance_atr * atr
    stop = pm._stop
    if stop is None or (new_stop > stop and (force or new_stop - stop >= cfg.min_step_atr * atr)):
        pm._stop, pm._stop_kind = new_stop, "trailing"
        reason = f"{why}: stop = peak {pm._peak!r} - {cfg.distance_atr} x ATR {atr:.8g} = {new_stop:.8g}"
        out.append(pm._action(_ET.TRAILING_STOP_UPDATE, time_ms, pm._peak, reason))


def proportional(pm: PositionManager, time_ms: int, close: float, npm: float | None) -> Action | None:
    cfg = pm.config.proportional
    if time_ms - pm._last_adjust_ms < cfg.min_interval_ms or pm._adjusts >= cfg.max_adjustments:
        return None
    # Only called while trailing: the trail's first ratchet set the stop (no cast cost beyond a call).
    stop = cast(float, pm._stop)
    span = pm._peak - stop
    if span <= 0:
        return None
    f = (close - stop) / span
    f = 0.0 if f < 0.0 else 1.0 if f > 1.0 else f
    target = pm._m_trail_start * f
    delta = target - pm._m
    if abs(delta) < cfg.min_step_m:
        return None
    if delta > 0 and close <= pm._avg_entry:
        return None
    if npm is not None and abs(delta) * npm < cfg.min_order_notional_quote:
        return None
    if abs(close - pm._last_adjust_price) < cfg.fee_multiple * 2 * pm.config.fee_rate * close:
        return None
    before = pm._m
    pm._m = target
    pm._adjusts += 1
    pm._last_adjust_ms, pm._last_adjust_price = time_ms, close
    kind = _ET.TRAILING_SCALE_IN if delta > 0 else _ET.TRAILING_SCALE_OUT
    reason = (
        f"f = (close {close!r} - stop {stop:.8g}) / (peak {pm._peak!r} - stop) = {f:.6g}; "
        f"m = {pm._m_trail_start:.6g} x f; adjustment {pm._adjusts}/{cfg.max_adjustments}"
    )
    return pm._action(kind, time_ms, close, reason, before=before, urgent=True, extra={"f": f})


# ------------------------------------------------------------------ period rules
def initial_stop_level(pm: PositionManager, entry: float, atr: float) -> tuple[float, str]:
    cfg = pm.config.initial_stop
    k, regime = cfg.k_normal_atr, "normal"
    avg = pm._regime.value
    if cfg.regime_enabled and pm._regime.ready and avg:
        rel = (atr / entry) / avg
        if rel < cfg.low_vol_ratio:
            k, regime = cfg.k_low_vol_atr, "low"
        elif rel > cfg.high_vol_ratio:
            k, regime = cfg.k_high_vol_atr, "high"
    stop = entry - k * atr
    reason = f"initial stop = entry {entry!r} - {k} x ATR {atr:.8g} = {stop:.8g} ({regime} volatility)"
    swing = pm._swing.value
    if cfg.swing_low_enabled and swing is not None:
        tech = swing - cfg.swing_buffer_atr * atr
        if 0 < tech < entry and entry - tech <= cfg.swing_max_distance_atr * atr:
            stop = tech
            reason = f"swing-low stop = low {swing!r} - {cfg.swing_buffer_atr} x ATR {atr:.8g} = {tech:.8g}"
    return stop, reason
