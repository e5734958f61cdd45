"""Period rules of :class:`~tradebot.core.management.position.PositionManager`, run on 1h closes.

Split from ``position.py`` for size; these functions are part of the manager and use its private
state (same package, one owner).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tradebot.core.domain import Candle, PositionEventType
from tradebot.core.management import _bar_rules

if TYPE_CHECKING:
    from tradebot.core.management.actions import Action
    from tradebot.core.management.position import PositionManager

_ET = PositionEventType
_H_MS = 3_600_000
_EPS = 1e-12


def run(pm: PositionManager, candle: Candle, vol_avg: float | None) -> list[Action]:
    # Apply the period rules in order; stop at the first exit.
    t = candle.open_time_ms + candle.timeframe.ms
    out: list[Action] = []
    pm._scale_in_signal = None
    pm._vol_avg = vol_avg
    if candle.high >= pm._half_level:
        pm._reached_half = True
    if pm._trailing:
        _bar_rules.ratchet(pm, t, "ATR update", out)
    for rule in (_time_stop, _early_exit, _management_mode, _scale_in):
        action = rule(pm, candle, t, vol_avg)
        if action is not None:
            out.append(action)
            if pm._exiting:
                break
    return out


def _time_stop(pm: PositionManager, c: Candle, t: int, vol_avg: float | None) -> Action | None:
    cfg = pm.config.time_stop
    if not cfg.enabled or pm._risk is None or pm._reached_half:
        return None
    held_h = (t - pm._opened_ms) / _H_MS
    if held_h < cfg.max_hours:
        return None
    reason = (
        f"held {held_h:.4g} h >= {cfg.max_hours} h without reaching +{cfg.target_r} R ({pm._half_level:.8g})"
    )
    return pm._exit(_ET.TIME_EXIT, t, c.close, reason, _saved(pm, c.close))


def _early_exit(pm: PositionManager, c: Candle, t: int, vol_avg: float | None) -> Action | None:
    cfg = pm.config.early_exit
    if not cfg.enabled or (pm._stop is not None and pm._stop >= pm._avg_entry):
        return None
    losing = c.close < pm._avg_entry
    roc = pm._roc.value
    reason = None
    if cfg.momentum_enabled and losing and roc is not None and roc <= -cfg.momentum_drop_fraction:
        reason = f"momentum reversal: rate of change {roc:.6g} <= -{cfg.momentum_drop_fraction}"
    elif cfg.volume_enabled and pm._dry >= cfg.volume_dry_periods:
        reason = f"volume drying up: {pm._dry} periods < {cfg.volume_dry_ratio} x volume SMA"
    elif cfg.time_decay_enabled and losing and (t - pm._opened_ms) >= cfg.time_decay_hours * _H_MS:
        held_h = (t - pm._opened_ms) / _H_MS
        reason = (
            f"time decay: held {held_h:.4g} h >= {cfg.time_decay_hours} h while losing (close {c.close!r})"
        )
    if reason is None:
        return None
    return pm._exit(_ET.EARLY_EXIT, t, c.close, reason, _saved(pm, c.close))


def _management_mode(pm: PositionManager, c: Candle, t: int, vol_avg: float | None) -> Action | None:
    cfg = pm.config.management_mode
    atr = pm._atr
    if not cfg.enabled or pm._stop_kind != "quit" or atr is None or c.close >= pm._avg_entry:
        return None
    pm._mm_low = c.low if pm._mm_low is None else min(pm._mm_low, c.low)
    before = pm._m
    if c.close >= pm._mm_low + cfg.bounce_atr * atr and before - cfg.scale_out_m >= cfg.min_m - _EPS:
        reason = f"bounce: close {c.close!r} >= low {pm._mm_low!r} + {cfg.bounce_atr} x ATR {atr:.8g}"
        pm._m = before - cfg.scale_out_m
        pm._mm_low, pm._mm_ref = c.close, c.close
        return pm._action(_ET.MANAGEMENT_SCALE_OUT, t, c.close, reason, before=before, urgent=True)
    room = (
        pm._mm_reloads < cfg.max_reloads
        and pm._mm_reload_used + cfg.reload_m <= cfg.reload_budget_m + _EPS
        and before + cfg.reload_m <= pm.config.max_scale + _EPS
    )
    if room and c.close <= pm._mm_ref - cfg.reload_step_atr * atr:
        reason = (
            f"reload: close {c.close!r} <= last {pm._mm_ref!r} - {cfg.reload_step_atr} x ATR {atr:.8g}; "
            f"reload {pm._mm_reloads + 1}/{cfg.max_reloads}, budget {pm._mm_reload_used + cfg.reload_m}/{cfg.reload_budget_m} m"
        )
        pm._m = before + cfg.reload_m
        pm._mm_reloads += 1
        pm._mm_reload_used += cfg.reload_m
        pm._mm_low, pm._mm_ref = c.close, c.close
        return pm._action(_ET.MANAGEMENT_RELOAD, t, c.close, reason, before=before, urgent=True)
    return None


def _scale_in(pm: PositionManager, c: Candle, t: int, vol_avg: float | None) -> Action | None:
    reason = scale_in_signal(pm, c, vol_avg)
    if reason is None:
        return None
    if pm.defer_scale_in:
        # A model judges this add (PositionManager.ml_apply): keep the rule's verdict for its fallback.
        pm._scale_in_signal = reason
        return None
    return apply_scale_in(pm, c, t, reason, vol_avg)


def scale_in_allowed(pm: PositionManager, close: float) -> bool:
    """The scale-in rule's limits without its confirmation: enabled, once, not trailing, with R and
    m > 0, close >= entry + ``trigger_r`` R and above the average entry, room below the caps."""
    cfg = pm.config.scale_in
    r = pm._risk
    if not cfg.enabled or pm._scaled_in or pm._trailing or r is None or pm._m <= 0 or pm._exiting:
        return False
    if close < pm._entry + cfg.trigger_r * r or close <= pm._avg_entry:
        return False
    return min(pm._m + cfg.add_m, cfg.max_total_m, pm.config.max_scale) > pm._m + _EPS


def scale_in_signal(pm: PositionManager, c: Candle, vol_avg: float | None) -> str | None:
    """The rule's reason to add (limits and volume / momentum confirmation), or ``None``."""
    cfg = pm.config.scale_in
    if not scale_in_allowed(pm, c.close):
        return None
    roc = pm._roc.value
    if vol_avg is None or roc is None:
        return None
    if c.volume <= cfg.volume_factor * vol_avg or roc <= cfg.min_momentum_fraction:
        return None
    level = pm._entry + cfg.trigger_r * (pm._risk or 0.0)
    return (
        f"close {c.close!r} >= +{cfg.trigger_r} R ({level:.8g}); volume {c.volume!r} > "
        f"{cfg.volume_factor} x SMA {vol_avg:.8g}; momentum {roc:.6g} > {cfg.min_momentum_fraction}"
    )


def apply_scale_in(
    pm: PositionManager, c: Candle, t: int, reason: str, vol_avg: float | None
) -> Action | None:
    """Add ``add_m`` (capped by ``max_total_m`` and ``max_scale``); ``None`` when there is no room."""
    cfg = pm.config.scale_in
    before = pm._m
    after = min(before + cfg.add_m, cfg.max_total_m, pm.config.max_scale)
    if after <= before + _EPS:
        return None
    pm._m, pm._scaled_in = after, True
    extra: dict[str, float] = {"volume": c.volume}
    if vol_avg is not None:
        extra["volume_sma"] = vol_avg
    return pm._action(_ET.SCALE_IN, t, c.close, reason, before=before, urgent=True, extra=extra)


def _saved(pm: PositionManager, price: float) -> float | None:
    # Per-unit amount an exit at ``price`` saves against the stop it pre-empts.
    return None if pm._stop is None else price - pm._stop
