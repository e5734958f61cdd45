"""Features of an open position at a rebalance-clock close, from what is known at that close only.

Two pure parts:

- :class:`MarketTracker`, one per symbol, fed each closed candle of the rebalance timeframe (the
  clock: 1h by default) in order; it returns a :class:`MarketState` (ATR, ATR regime, MACD
  histogram, RSI, volume against its average) that depends on that candle and the earlier ones only.
- :func:`position_features`, which combines a :class:`PositionState` (the position as the engine
  holds it at the close), the symbol's :class:`MarketState` and its streams' readings into one row.

Every value is a float (flags as 0.0 / 1.0) or ``None`` when it is not defined yet (an indicator
warming up, a position without a stop). Prices are quote currency; fractions are plain ratios
(``0.02`` = 2 %), never percent; times are ms UTC.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tradebot.core.domain import Candle
from tradebot.core.indicators import Macd, WilderAtr, WilderRsi, check_period
from tradebot.core.indicators.volatility import atr_fraction

__all__ = [
    "FeatureConfig",
    "MarketState",
    "MarketTracker",
    "PositionState",
    "StreamReading",
    "feature_definitions",
    "feature_names",
    "position_features",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureConfig:
    """Indicator periods of the market features, in candles of the rebalance timeframe.

    Attributes
    ----------
    atr_period
        Wilder ATR period (default 14).
    atr_regime_periods
        Window of the mean ATR fraction the current one is compared with (default 168: a week of 1h).
    macd_fast, macd_slow, macd_signal
        MACD periods (default 12 / 26 / 9; ``macd_fast < macd_slow``).
    rsi_period
        Wilder RSI period (default 14).
    volume_periods
        Window of the mean volume a candle's volume is compared with (default 24).

    Raises
    ------
    ValueError
        If a period is not an int >= 1, or ``macd_fast >= macd_slow``; the message names the field.
    """

    atr_period: int = 14
    atr_regime_periods: int = 168
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    rsi_period: int = 14
    volume_periods: int = 24

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            check_period(name, value)
        if self.macd_fast >= self.macd_slow:
            raise ValueError(
                f"macd_fast must be below macd_slow, were macd_fast={self.macd_fast} macd_slow={self.macd_slow}"
            )

    @property
    def warmup_periods(self) -> int:
        """Candles after which every market feature is defined (the ATR regime needs the most)."""
        return max(
            self.atr_period + self.atr_regime_periods,
            self.macd_slow + self.macd_signal,
            self.rsi_period + 1,
            self.volume_periods + 1,
        )

    def to_dict(self) -> dict[str, int]:
        """Return the periods by field name (JSON-able), for a dataset's manifest."""
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketState:
    """A symbol's market features after one closed rebalance-timeframe candle.

    Attributes
    ----------
    close_ms
        Close time of the candle, ms UTC.
    known_ms
        When the candle became known, ms UTC: its close, or later when a gap delayed it (the close
        of the base candle that closed the period). A row at time ``t`` may use a state only if
        ``known_ms <= t``.
    close, volume
        The candle's close (quote currency) and volume (base units).
    atr
        Wilder ATR, quote currency; ``None`` while warming up (and so are the fields built on it).
    atr_fraction
        ``atr / close``.
    atr_regime
        ``atr_fraction`` over the mean ``atr_fraction`` of the last ``atr_regime_periods`` candles
        (this one included); > 1 is more volatile than usual.
    macd_hist_fraction
        MACD histogram over the close.
    rsi
        Wilder RSI in [0, 100].
    volume_ratio
        ``volume`` over the mean volume of the ``volume_periods`` candles before this one.
    """

    close_ms: int
    known_ms: int
    close: float
    volume: float
    atr: float | None
    atr_fraction: float | None
    atr_regime: float | None
    macd_hist_fraction: float | None
    rsi: float | None
    volume_ratio: float | None


class MarketTracker:
    """Incremental market features of one symbol on its rebalance-timeframe candles, O(window) per candle.

    Parameters
    ----------
    config
        Indicator periods (default :class:`FeatureConfig`).

    Raises
    ------
    ValueError
        From :meth:`update`: a candle not after the previous one, or with a non-finite price.
    """

    __slots__ = (
        "_atr", "_atr_fractions", "_frac_sum", "_last_open_ms", "_macd", "_rsi", "_vol_sum", "_volumes",
        "config",
    )  # fmt: skip

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config if config is not None else FeatureConfig()
        c = self.config
        self._atr = WilderAtr(c.atr_period)
        self._macd = Macd(c.macd_fast, c.macd_slow, c.macd_signal)
        self._rsi = WilderRsi(c.rsi_period)
        self._atr_fractions: deque[float] = deque(maxlen=c.atr_regime_periods)
        self._volumes: deque[float] = deque(maxlen=c.volume_periods)
        # running sums of the two windows (O(1) per candle instead of a sum over the window)
        self._frac_sum = 0.0
        self._vol_sum = 0.0
        self._last_open_ms: int | None = None

    def update(self, candle: Candle, known_ms: int | None = None) -> MarketState:
        """Add the next closed candle; return the features as of its close.

        Parameters
        ----------
        candle
            A closed candle of the rebalance timeframe, later than the previous one.
        known_ms
            When it became known (ms UTC); default its close time.

        Raises
        ------
        ValueError
            If the candle does not open after the previous one, or a price is not finite.
        """
        if self._last_open_ms is not None and candle.open_time_ms <= self._last_open_ms:
            raise ValueError(
                f"{candle.symbol} {candle.timeframe}: candle open_time_ms={candle.open_time_ms} is not "
                f"after the previous open_time_ms={self._last_open_ms}"
            )
        self._last_open_ms = candle.open_time_ms
        close = candle.close
        atr = self._atr.update(candle.high, candle.low, close)
        hist = self._macd.update(close)
        rsi = self._rsi.update(close)
        volumes = self._volumes
        full = len(volumes) == volumes.maxlen
        vol_mean = self._vol_sum / len(volumes) if full else None
        self._vol_sum += candle.volume - (volumes[0] if full else 0.0)
        volumes.append(candle.volume)
        frac = regime = None
        if atr is not None and close > 0:
            frac = atr_fraction(atr, close)
            fractions = self._atr_fractions
            self._frac_sum += frac - (fractions[0] if len(fractions) == fractions.maxlen else 0.0)
            fractions.append(frac)
            if len(fractions) == fractions.maxlen:
                mean = self._frac_sum / len(fractions)
                regime = frac / mean if mean > 0 else None
        close_ms = candle.open_time_ms + candle.timeframe.ms
        return MarketState(
            close_ms=close_ms,
            known_ms=close_ms if known_ms is None else known_ms,
            close=close,
            volume=candle.volume,
            atr=atr,
            atr_fraction=frac,
            atr_regime=regime,
            macd_hist_fraction=hist / close if hist is not None and close > 0 else None,
            rsi=rsi,
            volume_ratio=candle.volume / vol_mean if vol_mean is not None and vol_mean > 0 else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionState:
    """An open position as the engine holds it at a rebalance-clock close.

    Attributes
    ----------
    time_ms
        The clock close, ms UTC.
    opened_ms
        The first entry fill, ms UTC.
    mark
        Last close of the symbol at ``time_ms``, quote currency (> 0).
    avg_entry
        Fill-weighted average entry price, quote currency (> 0).
    initial_risk
        R: first entry − initial stop, quote currency per base unit; ``None`` without a stop.
    stop
        The overlay's current stop, quote currency; ``None`` without one.
    mae_fraction, mfe_fraction
        Maximum adverse / favourable excursion so far from the first entry price (MAE <= 0 <= MFE).
    trailing
        True once the trailing stop has started.
    position_fraction
        ``qty × mark / equity`` of this position (``None`` when equity is not > 0).
    exposure_fraction
        ``Σ qty × mark / equity`` over every position of the portfolio (``None`` likewise).
    entry_volume
        Volume of the last rebalance-timeframe candle known at the entry (base units), or ``None``.
    """

    time_ms: int
    opened_ms: int
    mark: float
    avg_entry: float
    initial_risk: float | None
    stop: float | None
    mae_fraction: float
    mfe_fraction: float
    trailing: bool
    position_fraction: float | None
    exposure_fraction: float | None
    entry_volume: float | None


@dataclass(frozen=True, slots=True)
class StreamReading:
    """A trend stream's state at the close: ``is_in`` (state ``in``) and its ``confidence`` in [0, 1]."""

    is_in: bool
    confidence: float


_BASE_DEFINITIONS: dict[str, str] = {
    "r_multiple": "(mark - average entry) / R, R = first entry - initial stop per unit; null without a stop",
    "profit_fraction": "mark / average entry - 1",
    "held_ms": "time since the first entry fill, ms",
    "mae_fraction": "maximum adverse excursion so far from the first entry price, fraction (<= 0)",
    "mfe_fraction": "maximum favourable excursion so far from the first entry price, fraction (>= 0)",
    "stop_distance_atr": "(mark - stop) / ATR of the rebalance timeframe; null without a stop or ATR",
    "trailing": "1 once the trailing stop has started, else 0",
    "atr_fraction": "Wilder ATR / close of the rebalance timeframe",
    "atr_regime": "atr_fraction / its mean over the last atr_regime_periods candles",
    "macd_hist_fraction": "MACD histogram (12/26/9 by default) / close",
    "rsi": "Wilder RSI (14 by default), 0..100",
    "volume_ratio": "last candle's volume / mean volume of the volume_periods candles before it",
    "volume_vs_entry": "last candle's volume / volume of the last candle known at the entry",
    "position_fraction": "this position's notional / equity",
    "exposure_fraction": "all positions' notional / equity",
    "streams_in_fraction": "share of the asset's streams in state 'in'",
}


def feature_names(stream_timeframes: Sequence[str]) -> tuple[str, ...]:
    """Return the feature columns, in order, for an asset with streams on ``stream_timeframes``
    (e.g. ``("1h", "4h", "1d")``): the base features, then ``stream_<tf>_in`` and
    ``stream_<tf>_confidence`` per timeframe."""
    streams = [f"stream_{tf}_{part}" for tf in stream_timeframes for part in ("in", "confidence")]
    return (*_BASE_DEFINITIONS, *streams)


def feature_definitions(stream_timeframes: Sequence[str]) -> dict[str, str]:
    """Return a one-line definition of each feature of :func:`feature_names`, in the same order."""
    out = dict(_BASE_DEFINITIONS)
    for tf in stream_timeframes:
        out[f"stream_{tf}_in"] = f"1 if the asset's {tf} trend stream is 'in', else 0"
        out[f"stream_{tf}_confidence"] = f"confidence of the asset's {tf} trend stream, 0..1"
    return out


def position_features(
    position: PositionState,
    market: MarketState | None,
    streams: Mapping[str, StreamReading],
    stream_timeframes: Sequence[str],
) -> dict[str, Any]:
    """Return one row of features (:func:`feature_names` order) for ``position`` at its clock close.

    Parameters
    ----------
    position
        The position at the close.
    market
        The symbol's latest :class:`MarketState` known at ``position.time_ms``, or ``None`` (the
        market features are then ``None``).
    streams
        The asset's stream readings by timeframe; a missing timeframe gives ``None`` values.
    stream_timeframes
        The stream timeframes of the row's columns, in order.

    Returns
    -------
    dict[str, Any]
        Feature name → float or ``None``.

    Raises
    ------
    ValueError
        If ``market`` became known after ``position.time_ms`` (it would leak the future), or the
        mark or average entry is not > 0.
    """
    p = position
    if market is not None and market.known_ms > p.time_ms:
        raise ValueError(f"market state known at {market.known_ms} is later than the row's time {p.time_ms}")
    if not (p.mark > 0 and p.avg_entry > 0):
        raise ValueError(f"mark and avg_entry must be > 0, were {p.mark!r} and {p.avg_entry!r}")
    atr = market.atr if market is not None else None
    r = p.initial_risk
    row: dict[str, Any] = {
        "r_multiple": (p.mark - p.avg_entry) / r if r else None,
        "profit_fraction": p.mark / p.avg_entry - 1.0,
        "held_ms": float(p.time_ms - p.opened_ms),
        "mae_fraction": p.mae_fraction,
        "mfe_fraction": p.mfe_fraction,
        "stop_distance_atr": (p.mark - p.stop) / atr if p.stop is not None and atr else None,
        "trailing": 1.0 if p.trailing else 0.0,
        "atr_fraction": market.atr_fraction if market is not None else None,
        "atr_regime": market.atr_regime if market is not None else None,
        "macd_hist_fraction": market.macd_hist_fraction if market is not None else None,
        "rsi": market.rsi if market is not None else None,
        "volume_ratio": market.volume_ratio if market is not None else None,
        "volume_vs_entry": market.volume / p.entry_volume if market is not None and p.entry_volume else None,
        "position_fraction": p.position_fraction,
        "exposure_fraction": p.exposure_fraction,
    }
    readings = [streams.get(tf) for tf in stream_timeframes]
    known = [s for s in readings if s is not None]
    row["streams_in_fraction"] = sum(s.is_in for s in known) / len(known) if known else None
    for tf, s in zip(stream_timeframes, readings, strict=True):
        row[f"stream_{tf}_in"] = None if s is None else (1.0 if s.is_in else 0.0)
        row[f"stream_{tf}_confidence"] = None if s is None else s.confidence
    return row
