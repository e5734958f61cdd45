"""Actions of the position-management overlay (what a rule decided, for the engine and the record)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tradebot.core.domain import PositionEventType

#: Shared empty result of the hot path (no allocation when nothing happens).
NO_ACTIONS: tuple[Action, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """One overlay decision; becomes one ``position_events`` row in the engine.

    Attributes
    ----------
    event_type
        What happened (``STOP_SET``, ``BREAKEVEN``, ``STOP_EXIT``, ``TRAILING_SCALE_OUT``, …).
    time_ms
        Event time, ms UTC (the bar's time as given by the engine, or the fill / 1h close time).
    price
        The price level that triggered, quote currency (the stop for a stop exit, the ladder level,
        the close for close-based rules, the entry for ``STOP_SET``).
    multiplier_before, multiplier_after
        The multiplier m before and after (equal for stop-only actions). ``0`` after = full exit.
    trigger_reason
        Human-readable cause with numbers, e.g. ``"low 96.5 <= stop 97.0 (initial)"``.
    indicators
        Values behind the decision (JSON-serialisable floats).
    r_multiple
        ``(price − first entry) / R``, or ``None`` without an initial risk.
    profit_pct
        ``(price / average entry − 1) × 100`` (2.5 = +2.5 %), or ``None``.
    urgent
        True when the engine should trade at the next opportunity even inside its rebalance band
        (every change of m); False for stop-only actions.
    amount_saved_or_gained_per_unit
        Quote currency per base unit where measurable: for an early exit, the exit price minus the
        stop it pre-empted; else ``None``.
    stop
        The stop after the action (quote currency), or ``None``.
    ml_prediction
        The model prediction that caused the action (JSON-able), ``None`` for a rule's action.
    """

    event_type: PositionEventType
    time_ms: int
    price: float
    multiplier_before: float
    multiplier_after: float
    trigger_reason: str
    indicators: dict[str, Any] = field(default_factory=dict)
    r_multiple: float | None = None
    profit_pct: float | None = None
    urgent: bool = False
    amount_saved_or_gained_per_unit: float | None = None
    stop: float | None = None
    ml_prediction: dict[str, Any] | None = None

    @property
    def is_exit(self) -> bool:
        """True when the action sets m to 0 from a positive value."""
        return self.multiplier_after == 0.0 and self.multiplier_before > 0.0
