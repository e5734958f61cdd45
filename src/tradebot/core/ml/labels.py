"""Labels of an open position: what its symbol's candles did after a row's time, within a horizon.

A row at time ``t`` (a rebalance-clock close, ms UTC) looks at the *horizon window*: the symbol's
base candles that open at or after ``t`` and close at or before ``t + horizon_ms``. The labels use
the row's mark ``c0`` (the close at ``t``), the position's average entry ``E`` and its stop ``S`` at
``t`` (held fixed over the window; no stop = never hit), a taker fee ``f`` and a slippage ``s``
per side (fractions):

``recovered`` (bool; only for a losing row, ``c0 < L`` with ``L = E × (1 + 2f)``, the entry plus the
round-trip fees as the breakeven stop counts them; else null)
    True when a candle's high reaches ``L`` before any candle's low reaches ``S``. A candle reaching
    both counts as stopped (which came first inside it is unknown). False when the stop comes first
    or neither comes within the horizon.
``additional_return`` (fraction)
    ``max(high) / c0 − 1`` over the window: the best further excursion (negative when every high
    stays below ``c0``). The stop is ignored.
``time_to_best_ms`` (ms)
    Close time of the first candle reaching that high, minus ``t``.
``return_at_horizon`` (fraction)
    ``close of the window's last candle / c0 − 1``.
``scale_in_return`` (fraction) and ``scale_in_success`` (bool)
    An add bought at ``t`` at ``c0 × (1 + s) × (1 + f)`` per unit and held with the position's stop:
    sold at the first candle whose low reaches ``S``, at ``min(open, S) × (1 − s) × (1 − f)`` (the
    stop, or the open of a candle that gapped through it), else valued at the window's last close
    ``× (1 − s) × (1 − f)``. Return = proceeds / cost − 1; success = return > 0. The add's size (the
    scale-in rule's ``add_m`` of the initial size) does not change either: fees and slippage are
    proportional. Computed for every row; the scale-in rule's own conditions (>= +0.5 R, volume and
    momentum) are the features' business.

Every label is null when the horizon is not complete: ``t + horizon_ms`` beyond the end of the
candles (a dataset's labels never read past its window), or no candle in the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "LABEL_DEFINITIONS",
    "LABEL_NAMES",
    "CandleArrays",
    "LabelConfig",
    "Labels",
    "position_labels",
    "recovery_level",
]

#: Label columns, in order, with their units.
LABEL_DEFINITIONS: dict[str, str] = {
    "recovered": "losing row (mark < entry x (1 + 2 fee)) whose high reaches entry x (1 + 2 fee) before "
    "its low reaches the stop at the row's time, within the horizon (a candle reaching both: stopped); "
    "null for a row not losing",
    "additional_return": "max high within the horizon / mark - 1 (fraction; the stop ignored)",
    "time_to_best_ms": "close time of the first candle reaching that high - row time (ms)",
    "return_at_horizon": "last close within the horizon / mark - 1 (fraction)",
    "scale_in_return": "return of an add bought at mark x (1 + slippage) x (1 + fee), sold at the stop "
    "(or a gapped open) if a low reaches it, else at the last close in the horizon, x (1 - slippage) "
    "x (1 - fee) (fraction)",
    "scale_in_success": "scale_in_return > 0",
}
LABEL_NAMES: tuple[str, ...] = tuple(LABEL_DEFINITIONS)


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelConfig:
    """How labels are measured.

    Attributes
    ----------
    horizon_ms
        Length of the horizon window, ms (> 0; e.g. 24 rebalance periods of 1h = 86,400,000).
    fee_fraction
        Taker fee per side, fraction in [0, 0.1) (0.001 = 0.1 %).
    slippage_fraction
        Slippage per side, fraction in [0, 0.1) (5 bps = 0.0005).

    Raises
    ------
    ValueError
        For a value out of range; the message names the field and the value.
    """

    horizon_ms: int
    fee_fraction: float = 0.001
    slippage_fraction: float = 0.0005

    def __post_init__(self) -> None:
        if isinstance(self.horizon_ms, bool) or not isinstance(self.horizon_ms, int) or self.horizon_ms <= 0:
            raise ValueError(f"horizon_ms must be an int > 0, was {self.horizon_ms!r}")
        for name in ("fee_fraction", "slippage_fraction"):
            value = getattr(self, name)
            if not 0 <= value < 0.1:
                raise ValueError(f"{name} must be in [0, 0.1), was {value!r}")


@dataclass(frozen=True, slots=True)
class CandleArrays:
    """One symbol's base candles as columns, ascending by open time.

    Attributes
    ----------
    open_ms
        Open times, ms UTC (``int64``), strictly ascending.
    open, high, low, close
        Prices, quote currency (``float64``).
    base_ms
        Base timeframe, ms.
    end_ms
        Exclusive end of what may be read, ms UTC: a horizon reaching past it is incomplete.
    """

    open_ms: npt.NDArray[np.int64]
    open: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    close: npt.NDArray[np.float64]
    base_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Labels:
    """The labels of one row (see the module docstring); every one ``None`` when the horizon is
    incomplete, ``recovered`` also for a row that is not losing."""

    horizon_complete: bool
    recovered: bool | None = None
    additional_return: float | None = None
    time_to_best_ms: int | None = None
    return_at_horizon: float | None = None
    scale_in_return: float | None = None
    scale_in_success: bool | None = None


_INCOMPLETE = Labels(horizon_complete=False)


def recovery_level(avg_entry: float, fee_fraction: float) -> float:
    """The price a losing position must reach to have recovered: its average entry plus round-trip
    fees, ``avg_entry × (1 + 2 fee)`` (quote currency; ``fee_fraction`` a fraction, 0.001 = 0.1 %).
    A row is *losing* while its mark is below it."""
    return avg_entry * (1 + 2 * fee_fraction)


def position_labels(
    candles: CandleArrays,
    *,
    time_ms: int,
    mark: float,
    avg_entry: float,
    stop: float | None,
    config: LabelConfig,
) -> Labels:
    """Return the labels of a row at ``time_ms`` (see the module docstring for the definitions).

    Parameters
    ----------
    candles
        The row's symbol's base candles (any span; the window is cut here).
    time_ms
        The row's time (a clock close), ms UTC.
    mark
        The close at ``time_ms`` (``c0``), quote currency, > 0.
    avg_entry
        The position's average entry (``E``), quote currency, > 0.
    stop
        The position's stop at ``time_ms`` (``S``), or ``None``.
    config
        Horizon, fee and slippage.

    Raises
    ------
    ValueError
        If ``mark`` or ``avg_entry`` is not > 0.
    """
    if not (mark > 0 and avg_entry > 0):
        raise ValueError(f"mark and avg_entry must be > 0, were {mark!r} and {avg_entry!r}")
    end = time_ms + config.horizon_ms
    if end > candles.end_ms:
        return _INCOMPLETE
    times = candles.open_ms
    lo = int(np.searchsorted(times, time_ms, "left"))
    hi = int(np.searchsorted(times, end - candles.base_ms, "right"))
    if hi <= lo:
        return _INCOMPLETE
    high = candles.high[lo:hi]
    low = candles.low[lo:hi]
    f, s = config.fee_fraction, config.slippage_fraction
    stop_at = _first(low <= stop) if stop is not None else None
    recovered = None
    target = recovery_level(avg_entry, f)
    if mark < target:
        up = _first(high >= target)
        recovered = up is not None and (stop_at is None or up < stop_at)
    best = int(np.argmax(high))
    cost = mark * (1 + s) * (1 + f)
    if stop_at is not None and stop is not None:
        exit_price = min(float(candles.open[lo + stop_at]), stop)
    else:
        exit_price = float(candles.close[hi - 1])
    scale_in = exit_price * (1 - s) * (1 - f) / cost - 1
    return Labels(
        horizon_complete=True,
        recovered=recovered,
        additional_return=float(high[best]) / mark - 1,
        time_to_best_ms=int(times[lo + best]) + candles.base_ms - time_ms,
        return_at_horizon=float(candles.close[hi - 1]) / mark - 1,
        scale_in_return=scale_in,
        scale_in_success=scale_in > 0,
    )


def _first(mask: npt.NDArray[np.bool_]) -> int | None:
    # Index of the first True, or None.
    if not mask.any():
        return None
    return int(np.argmax(mask))
