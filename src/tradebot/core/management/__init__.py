"""Position-management overlay (STRATEGY.md §3) and hard risk limits (§4). Pure: no I/O, no clock.

- :class:`PositionManager` — per-symbol multiplier m, stops, ladder, trail, scale in/out, exits.
- :class:`ManagementConfig` and its sub-configs — every rule switchable and parameterised.
- :class:`Action` — one overlay decision (becomes a ``position_events`` row).
- :class:`RiskLimits`, :class:`RiskManager`, :class:`RiskEvent` — limits that no rule overrides.
"""

from tradebot.core.management.actions import NO_ACTIONS, Action
from tradebot.core.management.config import (
    BreakevenConfig,
    EarlyExitConfig,
    IndicatorConfig,
    InitialStopConfig,
    ManagementConfig,
    ManagementModeConfig,
    MlConfig,
    ProportionalConfig,
    ScaleInConfig,
    TakeProfitConfig,
    TimeStopConfig,
    TrailingConfig,
)
from tradebot.core.management.position import PositionManager
from tradebot.core.management.risk import RiskEvent, RiskManager
from tradebot.core.management.risk_limits import BlackoutWindow, RiskLimits

__all__ = [
    "NO_ACTIONS",
    "Action",
    "BlackoutWindow",
    "BreakevenConfig",
    "EarlyExitConfig",
    "IndicatorConfig",
    "InitialStopConfig",
    "ManagementConfig",
    "ManagementModeConfig",
    "MlConfig",
    "PositionManager",
    "ProportionalConfig",
    "RiskEvent",
    "RiskLimits",
    "RiskManager",
    "ScaleInConfig",
    "TakeProfitConfig",
    "TimeStopConfig",
    "TrailingConfig",
]
