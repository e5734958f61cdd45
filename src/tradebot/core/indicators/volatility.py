"""Volatility measures for sizing (``inverse_vol`` policy): ATR as a fraction of price, EWMA of log returns."""

from __future__ import annotations

import math

from tradebot.core.indicators.ema import check_period

__all__ = ["EwmaVolatility", "atr_fraction"]


def atr_fraction(atr: float, close: float) -> float:
    """Return ATR relative to price, ``atr / close`` (a fraction, e.g. 0.012 = 1.2 %).

    Parameters
    ----------
    atr
        Average true range, quote currency, >= 0.
    close
        Reference price (usually the last close), quote currency, > 0.

    Raises
    ------
    ValueError
        If ``close`` is not > 0 or ``atr`` is negative / not finite.
    """
    if not (close > 0 and math.isfinite(close)):
        raise ValueError(f"close must be a finite price > 0, was {close!r}")
    if not (atr >= 0 and math.isfinite(atr)):
        raise ValueError(f"atr must be finite and >= 0, was {atr!r}")
    return atr / close


class EwmaVolatility:
    """Exponentially weighted volatility of log returns (per candle, a fraction).

    With ``r_t = ln(close_t / close_{t-1})`` the variance is seeded with the mean of the first
    ``period`` squared returns, then ``var_t = alpha * r_t^2 + (1 - alpha) * var_{t-1}`` with
    ``alpha = 2 / (period + 1)`` (zero-mean EWMA variance as in RiskMetrics, J.P. Morgan 1996,
    whose ``lambda`` is ``1 - alpha``). ``value = sqrt(var)`` is the volatility per candle;
    multiply by ``sqrt(candles per year)`` to annualize.

    Parameters
    ----------
    period
        Span in returns, int >= 1 (``period + 1`` closes are needed before ``ready``).

    Raises
    ------
    ValueError
        If ``period`` is not an int >= 1, or a close is not a finite price > 0.
    """

    __slots__ = ("_prev_close", "_seed_sum", "alpha", "count", "period", "variance")

    def __init__(self, period: int) -> None:
        self.period = check_period("period", period)
        self.alpha = 2.0 / (period + 1)
        self.variance: float | None = None
        self.count = 0
        self._seed_sum = 0.0
        self._prev_close: float | None = None

    @property
    def ready(self) -> bool:
        """True once ``period`` returns (``period + 1`` closes) were seen."""
        return self.variance is not None

    @property
    def value(self) -> float | None:
        """Volatility per candle, ``sqrt(variance)`` (fraction), or ``None`` while warming up."""
        var = self.variance
        return None if var is None else math.sqrt(var)

    def update(self, close: float) -> float | None:
        """Add one close and return the volatility per candle (``None`` while warming up)."""
        if not (close > 0 and math.isfinite(close)):
            raise ValueError(f"close must be a finite price > 0, was {close!r}")
        prev = self._prev_close
        self._prev_close = close
        if prev is None:
            return None
        r2 = math.log(close / prev) ** 2
        self.count += 1
        var = self.variance
        if var is not None:
            var = self.alpha * r2 + (1.0 - self.alpha) * var
            self.variance = var
            return math.sqrt(var)
        self._seed_sum += r2
        if self.count == self.period:
            self.variance = self._seed_sum / self.period
        return self.value
