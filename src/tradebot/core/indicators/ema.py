"""Incremental exponential moving average (EMA), O(1) per value."""

from __future__ import annotations

from math import isfinite

__all__ = ["Ema", "check_period"]


def check_period(name: str, period: object) -> int:
    """Return ``period`` if it is an ``int`` >= 1.

    Raises
    ------
    ValueError
        If ``period`` is not an int (bools are refused) or is < 1; the message names ``name``.
    """
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise ValueError(f"{name} must be an int >= 1, was {period!r}")
    return period


class Ema:
    """Exponential moving average of a float series, seeded TA-Lib style.

    The first ``period`` values are averaged (simple mean) to seed the EMA; from then on
    ``EMA_t = EMA_{t-1} + alpha * (x_t - EMA_{t-1})`` with ``alpha = 2 / (period + 1)``.
    It is evaluated as the convex combination ``alpha * x_t + (1 - alpha) * EMA_{t-1}``, which
    keeps the EMA within the range of its inputs (the ``EMA + alpha * (x - EMA)`` form can lose
    digits after a large jump). This is TA-Lib's default ``EMA`` (``TA_COMPATIBILITY_DEFAULT``), so values match
    ``talib.EMA`` from the ``period``-th value on.

    Parameters
    ----------
    period
        Number of values of the seed average, int >= 1. ``period == 1`` returns the input.

    Attributes
    ----------
    value
        Current EMA (same unit as the input), ``None`` until ``period`` values were seen.
    count
        Number of values seen.

    Raises
    ------
    ValueError
        If ``period`` is not an int >= 1 (constructor), or a value is not finite (``update``).
    """

    __slots__ = ("_beta", "_seed_sum", "alpha", "count", "period", "value")

    def __init__(self, period: int) -> None:
        self.period = check_period("period", period)
        self.alpha = 2.0 / (period + 1)
        self._beta = 1.0 - self.alpha
        self.value: float | None = None
        self.count = 0
        self._seed_sum = 0.0

    @property
    def ready(self) -> bool:
        """True once ``period`` values were seen (``value`` is not ``None``)."""
        return self.value is not None

    def update(self, value: float) -> float | None:
        """Add one value and return the EMA (``None`` while fewer than ``period`` values were seen).

        Raises
        ------
        ValueError
            If ``value`` is NaN or infinite (the EMA would stay poisoned forever).
        """
        if not isfinite(value):
            raise ValueError(f"EMA({self.period}) value must be finite, was {value!r}")
        self.count += 1
        ema = self.value
        if ema is not None:
            ema = self.alpha * value + self._beta * ema
            self.value = ema
            return ema
        self._seed_sum += value
        if self.count == self.period:
            self.value = self._seed_sum / self.period
        return self.value

    def __repr__(self) -> str:
        return f"Ema(period={self.period}, count={self.count}, value={self.value!r})"
