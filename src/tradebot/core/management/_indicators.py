"""Small incremental indicators the period rules need, with JSON-able state for resume.

Kept here (float maths, O(1) or O(window) per 1h update) so management does not depend on the
signal layer; ``tradebot.core.indicators`` has no persistence hooks.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any


class RollingMean:
    """Simple moving average of the last ``period`` values (``None`` until ``period`` values).

    The mean is ``math.fsum`` of the window (exactly rounded, O(period)), not a running sum, so a
    restored instance gives bit-identical values to one that never stopped.
    """

    __slots__ = ("_values", "period")

    def __init__(self, period: int) -> None:
        self.period = period
        self._values: deque[float] = deque(maxlen=period)

    @property
    def value(self) -> float | None:
        """The mean of the last ``period`` values, or ``None`` while warming up."""
        if len(self._values) < self.period:
            return None
        return math.fsum(self._values) / self.period

    def update(self, x: float) -> None:
        """Add one value."""
        self._values.append(x)

    def state(self) -> list[float]:
        """JSON-able state."""
        return list(self._values)

    def restore(self, values: Sequence[float]) -> None:
        """Restore from :meth:`state`."""
        self._values = deque((float(x) for x in values[-self.period :]), maxlen=self.period)


class RateOfChange:
    """Rate of change ``close / close[period ago] − 1`` as a fraction (``None`` while warming up)."""

    __slots__ = ("_values", "period")

    def __init__(self, period: int) -> None:
        self.period = period
        self._values: deque[float] = deque(maxlen=period + 1)

    @property
    def value(self) -> float | None:
        """The rate of change, e.g. ``-0.03`` for −3 %, or ``None``."""
        if len(self._values) <= self.period:
            return None
        return self._values[-1] / self._values[0] - 1.0

    def update(self, close: float) -> None:
        """Add one close."""
        self._values.append(close)

    def state(self) -> list[float]:
        """JSON-able state."""
        return list(self._values)

    def restore(self, values: Sequence[float]) -> None:
        """Restore from :meth:`state`."""
        self._values = deque((float(x) for x in values), maxlen=self.period + 1)


class RollingMin:
    """Minimum of the last ``period`` values (``None`` when empty); O(period) per update."""

    __slots__ = ("_values",)

    def __init__(self, period: int) -> None:
        self._values: deque[float] = deque(maxlen=period)

    @property
    def value(self) -> float | None:
        """The minimum, or ``None``."""
        return min(self._values) if self._values else None

    def update(self, x: float) -> None:
        """Add one value."""
        self._values.append(x)

    def state(self) -> list[float]:
        """JSON-able state."""
        return list(self._values)

    def restore(self, values: Sequence[float]) -> None:
        """Restore from :meth:`state`."""
        self._values = deque((float(x) for x in values), maxlen=self._values.maxlen)


class SlowEma:
    """EMA with ``alpha = 2 / (period + 1)`` seeded by the first value; ``ready`` after ``period``."""

    __slots__ = ("alpha", "count", "period", "value")

    def __init__(self, period: int) -> None:
        self.period = period
        self.alpha = 2.0 / (period + 1)
        self.value: float | None = None
        self.count = 0

    @property
    def ready(self) -> bool:
        """True once ``period`` values were seen."""
        return self.count >= self.period

    def update(self, x: float) -> None:
        """Add one value."""
        self.count += 1
        self.value = x if self.value is None else self.value + self.alpha * (x - self.value)

    def state(self) -> dict[str, Any]:
        """JSON-able state."""
        return {"value": self.value, "count": self.count}

    def restore(self, data: dict[str, Any]) -> None:
        """Restore from :meth:`state`."""
        self.value = None if data["value"] is None else float(data["value"])
        self.count = int(data["count"])
