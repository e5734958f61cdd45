"""Shared helpers of the management tests (constructed candle paths)."""

from __future__ import annotations

from typing import Any

from tradebot.core.domain import Candle, Timeframe
from tradebot.core.management import ManagementConfig, PositionManager

H = 3_600_000
#: Every rule family that is on by default, switched off; tests switch on what they exercise.
ALL_OFF: dict[str, Any] = {
    name: {"enabled": False}
    for name in (
        "breakeven",
        "take_profit",
        "trailing",
        "proportional",
        "scale_in",
        "time_stop",
        "early_exit",
    )
}


def manager(**sections: Any) -> PositionManager:
    """A manager with every rule off except the sections given (dicts merged over ``enabled: True``)."""
    data: dict[str, Any] = {k: dict(v) for k, v in ALL_OFF.items()}
    for name, values in sections.items():
        if isinstance(values, dict):
            data[name] = {"enabled": True, **values} if name != "indicators" else values
        else:
            data[name] = values
    return PositionManager("BTC/USDT", ManagementConfig.from_dict(data))


def bar(pm: PositionManager, t: int, o: float, h: float, lo: float, c: float, **kw: Any):
    return pm.on_bar(time_ms=t, open=o, high=h, low=lo, close=c, **kw)


def candle(open_ms: int, o: float, h: float, lo: float, c: float, v: float = 100.0) -> Candle:
    return Candle("BTC/USDT", Timeframe.H1, open_ms, o, h, lo, c, v)


def kinds(actions) -> list[str]:
    return [a.event_type.value for a in actions]
