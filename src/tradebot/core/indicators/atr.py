"""Incremental Average True Range with Wilder's smoothing, O(1) per candle."""

from __future__ import annotations

from math import isfinite

from tradebot.core.indicators.ema import check_period

__all__ = ["WilderAtr", "true_range"]


def true_range(high: float, low: float, prev_close: float | None) -> float:
    """Return the true range of one candle (Wilder 1978).

    ``TR = max(high - low, |high - prev_close|, |low - prev_close|)``; without a previous close
    (first candle) ``TR = high - low``. Prices in quote currency; the result is in quote currency.
    """
    tr = high - low
    if prev_close is None:
        return tr
    up = abs(high - prev_close)
    down = abs(low - prev_close)
    if up > tr:
        tr = up
    if down > tr:
        tr = down
    return tr


class WilderAtr:
    """Average True Range, J. Welles Wilder, *New Concepts in Technical Trading Systems* (1978).

    The first ATR is the simple mean of the first ``period`` true ranges (the first TR is
    ``high - low``); then ``ATR_t = (ATR_{t-1} * (period - 1) + TR_t) / period``.

    Note: TA-Lib's ``ATR`` skips the first candle's TR (it needs a previous close), so its first
    value appears one candle later; this class follows Wilder and counts ``high - low`` as TR #1.

    Parameters
    ----------
    period
        Smoothing period in candles, int >= 1 (default 14).

    Attributes
    ----------
    value
        Current ATR in quote currency, ``None`` until ``period`` candles were seen.
    count
        Number of candles seen.

    Raises
    ------
    ValueError
        If ``period`` is not an int >= 1, or a candle has a non-finite price or ``high < low``.
    """

    __slots__ = ("_prev_close", "_seed_sum", "count", "period", "value")

    def __init__(self, period: int = 14) -> None:
        self.period = check_period("period", period)
        self.value: float | None = None
        self.count = 0
        self._seed_sum = 0.0
        self._prev_close: float | None = None

    @property
    def ready(self) -> bool:
        """True once ``period`` candles were seen."""
        return self.value is not None

    def update(self, high: float, low: float, close: float) -> float | None:
        """Add one candle and return the ATR (``None`` while fewer than ``period`` candles were seen).

        Raises
        ------
        ValueError
            If a price is not finite or ``high < low``.
        """
        if not (isfinite(high) and isfinite(low) and isfinite(close)):
            raise ValueError(f"ATR prices must be finite, were high={high!r} low={low!r} close={close!r}")
        if high < low:
            raise ValueError(f"ATR high {high!r} is below low {low!r}")
        tr = true_range(high, low, self._prev_close)
        self._prev_close = close
        self.count += 1
        atr = self.value
        if atr is not None:
            atr = (atr * (self.period - 1) + tr) / self.period
            self.value = atr
            return atr
        self._seed_sum += tr
        if self.count == self.period:
            self.value = self._seed_sum / self.period
        return self.value

    def __repr__(self) -> str:
        return f"WilderAtr(period={self.period}, count={self.count}, value={self.value!r})"
