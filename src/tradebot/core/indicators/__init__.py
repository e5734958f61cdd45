"""Incremental indicators (float maths, O(1) per update), shared by signals and management.

- :class:`Ema` — exponential moving average, SMA-seeded (TA-Lib convention).
- :class:`WilderAtr` — average true range with Wilder's smoothing.
- :func:`atr_fraction`, :class:`EwmaVolatility` — volatility measures for sizing.
- :class:`Macd`, :class:`WilderRsi` — momentum (MACD histogram, RSI), for the ML features.
"""

from tradebot.core.indicators.atr import WilderAtr, true_range
from tradebot.core.indicators.ema import Ema, check_period
from tradebot.core.indicators.momentum import Macd, WilderRsi
from tradebot.core.indicators.volatility import EwmaVolatility, atr_fraction

__all__ = [
    "Ema",
    "EwmaVolatility",
    "Macd",
    "WilderAtr",
    "WilderRsi",
    "atr_fraction",
    "check_period",
    "true_range",
]
