"""Incremental momentum indicators: MACD and Wilder's RSI (float maths, O(1) per close)."""

from __future__ import annotations

from math import isfinite

from tradebot.core.indicators.ema import Ema, check_period

__all__ = ["Macd", "WilderRsi"]


class Macd:
    """Moving Average Convergence/Divergence, Gerald Appel (1979), of a close series.

    ``macd = EMA(fast) − EMA(slow)`` of the closes, ``signal = EMA(signal_period)`` of ``macd`` and
    ``histogram = macd − signal`` (quote currency, the closes' unit). The EMAs are
    :class:`~tradebot.core.indicators.Ema` (SMA-seeded): ``macd`` is defined from the ``slow``-th
    close, ``signal`` and ``histogram`` from the ``slow + signal_period − 1``-th.

    Parameters
    ----------
    fast, slow, signal_period
        EMA periods in closes, ints >= 1 with ``fast < slow`` (default 12 / 26 / 9).

    Attributes
    ----------
    macd, signal, histogram
        Current values, ``None`` while warming up.

    Raises
    ------
    ValueError
        If a period is not an int >= 1 or ``fast >= slow`` (constructor), or a close is not finite.
    """

    __slots__ = ("_fast", "_signal", "_slow", "histogram", "macd", "signal")

    def __init__(self, fast: int = 12, slow: int = 26, signal_period: int = 9) -> None:
        check_period("fast", fast)
        check_period("slow", slow)
        check_period("signal_period", signal_period)
        if fast >= slow:
            raise ValueError(f"MACD fast period must be below the slow one, were fast={fast} slow={slow}")
        self._fast = Ema(fast)
        self._slow = Ema(slow)
        self._signal = Ema(signal_period)
        self.macd: float | None = None
        self.signal: float | None = None
        self.histogram: float | None = None

    def update(self, close: float) -> float | None:
        """Add one close; return the histogram (``None`` while warming up).

        Raises
        ------
        ValueError
            If ``close`` is NaN or infinite.
        """
        fast = self._fast.update(close)
        slow = self._slow.update(close)
        if fast is None or slow is None:
            return None
        self.macd = fast - slow
        self.signal = self._signal.update(self.macd)
        if self.signal is None:
            return None
        self.histogram = self.macd - self.signal
        return self.histogram


class WilderRsi:
    """Relative Strength Index, J. Welles Wilder, *New Concepts in Technical Trading Systems* (1978).

    With the close-to-close changes ``d``: the first average gain (loss) is the simple mean of the
    first ``period`` positive parts ``max(d, 0)`` (negative parts ``max(−d, 0)``); then
    ``avg_t = (avg_{t−1} × (period − 1) + x_t) / period``. ``RSI = 100 − 100 / (1 + gain / loss)``,
    in [0, 100]: 100 when the average loss is 0, and 50 when both averages are 0 (a flat series).
    The first value comes at the ``period + 1``-th close (TA-Lib's ``RSI`` convention).

    Parameters
    ----------
    period
        Smoothing period in closes, int >= 1 (default 14).

    Attributes
    ----------
    value
        Current RSI, ``None`` while warming up.

    Raises
    ------
    ValueError
        If ``period`` is not an int >= 1, or a close is not finite.
    """

    __slots__ = ("_gain", "_loss", "_n", "_prev", "period", "value")

    def __init__(self, period: int = 14) -> None:
        self.period = check_period("period", period)
        self._prev: float | None = None
        self._n = 0
        self._gain = 0.0
        self._loss = 0.0
        self.value: float | None = None

    def update(self, close: float) -> float | None:
        """Add one close; return the RSI (``None`` while warming up).

        Raises
        ------
        ValueError
            If ``close`` is NaN or infinite.
        """
        if not isfinite(close):
            raise ValueError(f"RSI({self.period}) close must be finite, was {close!r}")
        prev, self._prev = self._prev, close
        if prev is None:
            return None
        d = close - prev
        gain, loss = (d, 0.0) if d > 0 else (0.0, -d)
        p = self.period
        self._n += 1
        if self._n < p:
            self._gain += gain
            self._loss += loss
            return None
        if self._n == p:
            self._gain = (self._gain + gain) / p
            self._loss = (self._loss + loss) / p
        else:
            self._gain = (self._gain * (p - 1) + gain) / p
            self._loss = (self._loss * (p - 1) + loss) / p
        if self._loss == 0.0:
            self.value = 50.0 if self._gain == 0.0 else 100.0
        else:
            self.value = 100.0 - 100.0 / (1.0 + self._gain / self._loss)
        return self.value
