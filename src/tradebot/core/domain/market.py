"""Market data value types: candles (klines) and time helpers.

Candle prices are floats for speed (indicator maths); anything that reaches an order, a fill or
the ledger is converted exactly with :func:`tradebot.core.domain.decimals.to_decimal`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import NamedTuple

from tradebot.core.domain.enums import Timeframe


class Candle(NamedTuple):
    """One closed candle (kline). Also the engine's "candle closed" input event.

    Attributes
    ----------
    symbol
        ccxt unified symbol, e.g. ``"BTC/USDT"``.
    timeframe
        Candle timeframe.
    open_time_ms
        Open time, milliseconds since the epoch, UTC. The candle covers
        ``[open_time_ms, open_time_ms + timeframe.ms)``.
    open, high, low, close
        Prices in quote currency.
    volume
        Traded volume in base units.
    missing
        For aggregated candles: how many base candles of the period were missing (0 = complete).
    """

    symbol: str
    timeframe: Timeframe
    open_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    missing: int = 0

    @property
    def close_time_ms(self) -> int:
        """Close time, ms UTC: the candle's end boundary ``open_time_ms + timeframe.ms``."""
        return self.open_time_ms + self.timeframe.ms

    @property
    def open_time(self) -> datetime:
        """Open time as a timezone-aware UTC datetime."""
        return ms_to_datetime(self.open_time_ms)

    @property
    def close_time(self) -> datetime:
        """Close time as a timezone-aware UTC datetime."""
        return ms_to_datetime(self.close_time_ms)


#: Prices outside ``[MIN_PRICE, MAX_PRICE]`` (quote currency) are absurd, not market data: below any
#: venue's tick size (Binance's smallest is 1e-8) or above any listed price by orders of magnitude.
#: They are refused at the edge, as exact decimal maths on them (quantizing ``1e300`` to a tick) fails.
MIN_PRICE = 1e-10
MAX_PRICE = 1e12
#: Largest volume of one candle accepted (base units); the most traded meme coins stay below 1e13 a day.
MAX_VOLUME = 1e18


def validate_candle(candle: Candle) -> str | None:
    """Return why ``candle`` is invalid (non-positive, non-finite or absurd price — outside
    [:data:`MIN_PRICE`, :data:`MAX_PRICE`] —, high < low, open/close outside [low, high], negative,
    non-finite or absurd volume — above :data:`MAX_VOLUME`), or ``None`` when it is valid."""
    o, h, lo, c, v = candle.open, candle.high, candle.low, candle.close, candle.volume
    if not (o > 0 and h > 0 and lo > 0 and c > 0):
        return f"prices must be > 0, were open={o!r} high={h!r} low={lo!r} close={c!r}"
    if not all(math.isfinite(x) for x in (o, h, lo, c, v)):
        return f"prices and volume must be finite, were open={o!r} high={h!r} low={lo!r} close={c!r} volume={v!r}"
    if not all(MIN_PRICE <= p <= MAX_PRICE for p in (o, h, lo, c)):
        return (
            f"prices must be within [{MIN_PRICE:g}, {MAX_PRICE:g}], were open={o!r} high={h!r} "
            f"low={lo!r} close={c!r}"
        )
    if h < lo:
        return f"high {h!r} is below low {lo!r}"
    if not (lo <= o <= h and lo <= c <= h):
        return f"open {o!r} / close {c!r} outside [low {lo!r}, high {h!r}]"
    if not v >= 0:
        return f"volume must be >= 0, was {v!r}"
    if not v <= MAX_VOLUME:
        return f"volume must be <= {MAX_VOLUME:g}, was {v!r}"
    return None


def ms_to_datetime(ms: int) -> datetime:
    """Return the timezone-aware UTC datetime of ``ms`` milliseconds since the epoch."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def datetime_to_ms(dt: datetime) -> int:
    """Return milliseconds since the epoch of an aware datetime.

    Raises
    ------
    ValueError
        If ``dt`` is naive (no timezone).
    """
    if dt.tzinfo is None:
        raise ValueError(f"datetime must be timezone-aware (UTC), was naive {dt!r}")
    return int(dt.timestamp() * 1000)


def floor_time(ms: int, timeframe: Timeframe) -> int:
    """Return the UTC-aligned open time of the ``timeframe`` period containing ``ms``."""
    return ms - ms % timeframe.ms
