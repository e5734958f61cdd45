"""Model decisions applied to a :class:`~tradebot.core.management.position.PositionManager` (issue 16).

The engine asks the models on a rebalance-clock close, after the period rules ran, and applies what
:func:`tradebot.core.ml.predictor.decide` recommends through :func:`apply`. Each action is the
rules' own kind of event (an early exit, a partial take-profit, a trailing-stop start, a scale-in),
urgent like theirs, and carries the prediction in ``ml_prediction``. Part of the manager (same
package, one owner), split from ``position.py`` for size.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from tradebot.core.domain import Candle, PositionEventType
from tradebot.core.management import _bar_rules, _period_rules

if TYPE_CHECKING:
    from tradebot.core.management.actions import Action
    from tradebot.core.management.position import PositionManager

_ET = PositionEventType


def can_trail(pm: PositionManager) -> bool:
    """A model may start the trailing stop: trailing enabled, not started, an ATR known."""
    return (
        pm._open
        and not pm._exiting
        and pm.config.trailing.enabled
        and not pm._trailing
        and pm._atr is not None
    )


def can_take_profit(pm: PositionManager) -> bool:
    """A model may take profit: open, m > 0, not taken by a model yet in this lifecycle."""
    return pm._open and not pm._exiting and pm._m > 0 and not pm._ml_took


def apply(
    pm: PositionManager,
    action: str,
    candle: Candle,
    *,
    reason: str,
    take_fraction: float,
    prediction: dict[str, Any],
) -> list[Action]:
    """Apply a model recommendation at the close of ``candle``; return the actions (may be empty).

    ``action`` is one of ``tradebot.core.ml.predictor.ML_ACTIONS``. ``"rules"`` (and any action the
    position's state no longer allows) lets a deferred rule scale-in go ahead; ``"hold_scale_in"``
    drops it. ``prediction`` is attached to every action as ``ml_prediction``.
    """
    t = candle.open_time_ms + candle.timeframe.ms
    close = candle.close
    out: list[Action] = []
    deferred = pm._scale_in_signal
    pm._scale_in_signal = None
    why = f"model: {reason}"
    if not pm._open or pm._exiting:
        return out
    if action == "exit":
        saved = None if pm._stop is None else close - pm._stop
        out.append(pm._exit(_ET.EARLY_EXIT, t, close, why, saved))
    elif action == "take_profit" and can_take_profit(pm):
        before = pm._m
        after = max(0.0, before * (1.0 - take_fraction))
        pm._ml_took = True
        if after <= 1e-12:
            out.append(pm._exit(_ET.TAKE_PROFIT_EXIT, t, close, why))
        else:
            pm._m = after
            if pm._trailing and before > 0:
                pm._m_trail_start *= after / before
            reason_tp = f"{why}, sell {take_fraction}"
            out.append(pm._action(_ET.PARTIAL_TAKE_PROFIT, t, close, reason_tp, before=before, urgent=True))
    elif action == "trail" and can_trail(pm):
        _bar_rules.start_trail(pm, t, close, out)  # the peak is the close: the candle's high may be older
    elif action == "scale_in" and _period_rules.scale_in_allowed(pm, close):
        a = _period_rules.apply_scale_in(pm, candle, t, why, pm._vol_avg)
        if a is not None:
            out.append(a)
    elif action != "hold_scale_in" and deferred is not None and _period_rules.scale_in_allowed(pm, close):
        a = _period_rules.apply_scale_in(pm, candle, t, deferred, pm._vol_avg)
        if a is not None:
            out.append(a)
        return out  # the rule's own add: no model prediction behind it
    pm._refresh_levels()
    return [dataclasses.replace(a, ml_prediction=prediction) for a in out]
