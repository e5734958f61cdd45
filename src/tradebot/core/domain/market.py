"""Market data value types: candles (klines) and time helpers.

Candle prices are floats for speed (indicator maths); anything that reaches an order, a fill or
the ledger is converted exactly with :func:`tradebot.core.domain.decimals.to_decimal`.
"""

from __future__ import annotations

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


def validate_candle(candle: Candle) -> str | None:
    """Return why ``candle`` is invalid (non-positive price, high < low, open/close outside
    [low, high], negative volume), or ``None`` when it is valid."""
    o, h, lo, c, v = candle.open, candle.high, candle.low, candle.close, candle.volume
    if not (o > 0 and h > 0 and lo > 0 and c > 0):
        return f"prices must be > 0, were open={o!r} high={h!r} low={lo!r} close={c!r}"
    if h < lo:
        return f"high {h!r} is below low {lo!r}"
    if not (lo <= o <= h and lo <= c <= h):
        return f"open {o!r} / close {c!r} outside [low {lo!r}, high {h!r}]"
    if not v >= 0:
        return f"volume must be >= 0, was {v!r}"
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
