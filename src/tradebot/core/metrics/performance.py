"""Performance measures of a run's equity curve (STRATEGY.md §7): returns, drawdown, Sharpe, Sortino.

Inputs are the run's equity curve (``(time_ms, equity_quote)`` samples, ms UTC, strictly increasing),
its trades (summarised by :mod:`tradebot.core.metrics.trades`) and totals kept by the engine; ratios
use float maths, money totals stay ``Decimal``. :func:`compute_metrics` gathers everything into
:class:`Metrics`. Conventions: see :mod:`tradebot.core.metrics`.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypedDict

from tradebot.core.domain import TradeRecord, to_decimal
from tradebot.core.metrics.trades import TradeStats, trade_stats

__all__ = [
    "ANNUALIZE_MIN_MS",
    "DAY_MS",
    "YEAR_MS",
    "EquityCurve",
    "Metrics",
    "compute_metrics",
    "drawdown_series",
    "infer_periods_per_year",
    "sharpe_ratio",
    "sortino_ratio",
]

#: Milliseconds in a year of 365 days (the annualization basis of every measure here).
YEAR_MS = 365 * 86_400_000
#: Milliseconds in a day.
DAY_MS = 86_400_000
#: Minimum curve span for an annualized return (STRATEGY.md §7: annualized figures are omitted under 90
#: days; a shorter span compounds a few weeks' luck into a meaningless CAGR).
ANNUALIZE_MIN_MS = 90 * DAY_MS

EquityCurve = Sequence[tuple[int, float | Decimal]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics:
    """Measures of one run. See :func:`compute_metrics` for the definitions.

    Attributes
    ----------
    initial_equity, final_equity
        First / last equity of the curve, quote currency (``None`` for an empty curve).
    start_ms, end_ms, n_samples
        Span of the curve (ms UTC) and its number of samples.
    total_return, annualized_return
        Fractions; ``annualized_return`` is ``None`` when the span is shorter than 90 days
        (:data:`ANNUALIZE_MIN_MS`).
    max_drawdown, max_drawdown_peak_ms, max_drawdown_trough_ms
        Largest peak-to-trough fall as a positive fraction of the peak, and when its peak and trough
        were (``None`` when the curve never fell).
    sharpe, sortino, periods_per_year
        Annualized ratios (risk-free rate 0) and the periods per year used to annualize them. Unlike
        ``annualized_return`` they are kept under 90 days: they scale the per-sample mean/deviation
        ratio by √periods_per_year rather than compound the run's return over a year, so a short run
        does not extrapolate its gain; they are ``None`` only when undefined.
    exposure_fraction
        Fraction of the curve's span with a position open, ``None`` when not given.
    turnover
        ``traded_notional / mean equity`` (a fraction; 2.0 = twice the capital traded).
    fees_paid, traded_notional, n_orders
        Totals given by the engine (quote currency, quote currency, count); ``fees_paid`` is net of
        maker rebates (negative when the rebates exceed the fees).
    trades
        Trade statistics of all trades (flattened into :meth:`to_dict`).
    """

    initial_equity: Decimal | None
    final_equity: Decimal | None
    start_ms: int | None
    end_ms: int | None
    n_samples: int
    total_return: float | None
    annualized_return: float | None
    max_drawdown: float | None
    max_drawdown_peak_ms: int | None
    max_drawdown_trough_ms: int | None
    sharpe: float | None
    sortino: float | None
    periods_per_year: float | None
    exposure_fraction: float | None
    turnover: float | None
    fees_paid: Decimal
    traded_notional: Decimal
    n_orders: int
    trades: TradeStats = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Return every measure as one flat dict (trade stats merged in; Decimals kept as ``Decimal``)."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "trades"}
        out.update(self.trades.to_dict())
        return out


def _check_curve(equity_curve: EquityCurve) -> tuple[list[int], list[float]]:
    # Validate once: strictly increasing int times, finite positive equity. Returns (times, floats).
    times: list[int] = []
    values: list[float] = []
    for i, (t, e) in enumerate(equity_curve):
        if isinstance(t, bool) or not isinstance(t, int):
            raise ValueError(f"equity_curve[{i}] time_ms must be an int (ms UTC), was {t!r}")
        value = float(e)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"equity_curve[{i}] equity must be finite and > 0, was {e!r}")
        if times and t <= times[-1]:
            raise ValueError(
                f"equity_curve[{i}] time_ms must be strictly increasing, was {t!r} after {times[-1]!r}"
            )
        times.append(t)
        values.append(value)
    return times, values


def drawdown_series(equity_curve: EquityCurve) -> list[tuple[int, float]]:
    """Return the drawdown at every sample: ``1 − equity / running peak``.

    Parameters
    ----------
    equity_curve
        ``(time_ms, equity_quote)`` samples, ms UTC strictly increasing, equity finite and > 0.

    Returns
    -------
    list of (time_ms, drawdown_fraction)
        Same length as the curve; fractions in [0, 1), 0 at a new peak.

    Raises
    ------
    ValueError
        On unordered times or non-positive / non-finite equity (naming the index and value).
    """
    times, values = _check_curve(equity_curve)
    out: list[tuple[int, float]] = []
    peak = -math.inf
    for t, v in zip(times, values, strict=True):
        peak = max(peak, v)
        out.append((t, 1.0 - v / peak))
    return out


def _max_drawdown(times: list[int], values: list[float]) -> tuple[float, int | None, int | None]:
    peak, peak_t = values[0], times[0]
    worst, worst_peak_t, worst_trough_t = 0.0, None, None
    for t, v in zip(times, values, strict=True):
        if v > peak:
            peak, peak_t = v, t
        dd = 1.0 - v / peak
        if dd > worst:
            worst, worst_peak_t, worst_trough_t = dd, peak_t, t
    return worst, worst_peak_t, worst_trough_t


def sharpe_ratio(returns: Sequence[float], periods_per_year: float) -> float | None:
    """Return the annualized Sharpe ratio ``mean(r) / stdev(r) × √periods_per_year`` (risk-free 0).

    Sources: W. F. Sharpe, "Mutual Fund Performance", J. Business 39 (1966); W. F. Sharpe, "The Sharpe
    Ratio", J. Portfolio Management 21 (1994) — ex-post ratio of the mean differential return to its
    sample standard deviation (divisor n − 1), annualized by √(periods per year) as in Sharpe (1994).

    Returns ``None`` for fewer than 2 returns or a zero standard deviation (a flat curve, or constant
    returns whose deviation is float rounding: ``sd ≤ 1e-12 × |mean|``).
    """
    n = len(returns)
    if n < 2:
        return None
    mean = math.fsum(returns) / n
    sd = math.sqrt(math.fsum((r - mean) ** 2 for r in returns) / (n - 1))
    # Constant returns leave only float rounding in sd; the ratio would be noise (~1e16).
    if sd == 0.0 or sd <= 1e-12 * abs(mean):
        return None
    return mean / sd * math.sqrt(periods_per_year)


def sortino_ratio(returns: Sequence[float], periods_per_year: float) -> float | None:
    """Return the annualized Sortino ratio ``mean(r) / DD × √periods_per_year`` (target return 0).

    ``DD = sqrt(Σ min(r_i, 0)² / n)`` is the downside deviation over *all* n periods, periods above the
    target counting as 0 (F. A. Sortino & L. N. Price, "Performance Measurement in a Downside Risk
    Framework", J. Investing 3 (1994); same convention as Sortino & van der Meer 1991).

    Returns ``None`` for fewer than 2 returns or when no period is below the target (DD = 0).
    """
    n = len(returns)
    if n < 2:
        return None
    downside = math.fsum(min(r, 0.0) ** 2 for r in returns) / n
    if downside == 0.0:
        return None
    return math.fsum(returns) / n / math.sqrt(downside) * math.sqrt(periods_per_year)


def infer_periods_per_year(times_ms: Sequence[int]) -> float | None:
    """Return ``YEAR_MS / median spacing`` of the sample times, or ``None`` for fewer than 2 samples."""
    if len(times_ms) < 2:
        return None
    spacing = statistics.median(b - a for a, b in itertools.pairwise(times_ms))
    return YEAR_MS / spacing


def _check_inputs(
    fees_paid: Decimal, traded_notional: Decimal, n_orders: int, periods_per_year: float | None
) -> None:
    # net of maker rebates (a negative fill fee, Deribit): a run whose rebates exceed its fees has < 0
    if not (isinstance(fees_paid, Decimal) and fees_paid.is_finite()):
        raise ValueError(f"fees_paid must be a finite Decimal, was {fees_paid!r}")
    if not (isinstance(traded_notional, Decimal) and traded_notional.is_finite() and traded_notional >= 0):
        raise ValueError(f"traded_notional must be a finite Decimal >= 0, was {traded_notional!r}")
    if isinstance(n_orders, bool) or not isinstance(n_orders, int) or n_orders < 0:
        raise ValueError(f"n_orders must be an int >= 0, was {n_orders!r}")
    if periods_per_year is not None and not (math.isfinite(periods_per_year) and periods_per_year > 0):
        raise ValueError(f"periods_per_year must be finite and > 0, was {periods_per_year!r}")


class _Totals(TypedDict):
    # Fields of Metrics that an empty curve has too.
    fees_paid: Decimal
    traded_notional: Decimal
    n_orders: int
    trades: TradeStats
    n_samples: int


class _CurveMeasures(TypedDict):
    # Return/drawdown/ratio fields of Metrics (see _curve_measures).
    total_return: float
    annualized_return: float | None
    max_drawdown: float
    max_drawdown_peak_ms: int | None
    max_drawdown_trough_ms: int | None
    sharpe: float | None
    sortino: float | None
    periods_per_year: float | None


def _curve_measures(times: list[int], values: list[float], periods_per_year: float | None) -> _CurveMeasures:
    # Return/drawdown/ratio fields of Metrics for a non-empty, validated curve.
    span = times[-1] - times[0]
    growth = values[-1] / values[0]
    annualized: float | None = None
    if span >= ANNUALIZE_MIN_MS:
        try:
            annualized = growth ** (YEAR_MS / span) - 1.0
        except OverflowError:
            annualized = None
    returns = [b / a - 1.0 for a, b in itertools.pairwise(values)]
    ppy = periods_per_year if periods_per_year is not None else infer_periods_per_year(times)
    mdd, peak_t, trough_t = _max_drawdown(times, values)
    return {
        "total_return": growth - 1.0,
        "annualized_return": annualized,
        "max_drawdown": mdd,
        "max_drawdown_peak_ms": peak_t,
        "max_drawdown_trough_ms": trough_t,
        "sharpe": sharpe_ratio(returns, ppy) if ppy is not None else None,
        "sortino": sortino_ratio(returns, ppy) if ppy is not None else None,
        "periods_per_year": ppy,
    }


def compute_metrics(
    *,
    equity_curve: EquityCurve,
    trades: Sequence[TradeRecord],
    fees_paid: Decimal,
    traded_notional: Decimal,
    n_orders: int,
    exposure_ms: int | None = None,
    periods_per_year: float | None = None,
) -> Metrics:
    """Return the measures of a run (STRATEGY.md §7).

    Parameters
    ----------
    equity_curve
        ``(time_ms, equity_quote)`` samples, ms UTC strictly increasing, equity finite and > 0 (float or
        Decimal). May be empty (every curve measure is then ``None``).
    trades
        Trade records of the run; only closed ones enter the trade statistics.
    fees_paid, traded_notional
        Totals of the run in quote currency (Decimal). ``fees_paid`` is net of maker rebates and so
        may be negative (a run whose rebates exceed its fees); ``traded_notional`` is ≥ 0.
    n_orders
        Orders sent.
    exposure_ms
        Time with a position open, ms, at most the curve's span; ``None`` if not tracked.
    periods_per_year
        Sampling frequency used to annualize Sharpe and Sortino. Default: ``YEAR_MS / median spacing``
        of the curve (e.g. 8760 for hourly samples).

    Returns
    -------
    Metrics
        ``total_return = E_last / E_first − 1``; ``annualized_return = (E_last / E_first)^(YEAR_MS /
        span) − 1`` (CAGR; ``None`` if span < 90 days, :data:`ANNUALIZE_MIN_MS`); per-sample returns ``r_i = E_i / E_{i−1} − 1``
        feed :func:`sharpe_ratio` and :func:`sortino_ratio`; ``turnover = traded_notional / mean(E)``.

    Raises
    ------
    ValueError
        On an invalid curve (see :func:`drawdown_series`), a non-finite ``fees_paid``, a negative
        ``traded_notional`` or ``n_orders``, a bad ``periods_per_year``, or ``exposure_ms`` outside
        [0, span].
    """
    _check_inputs(fees_paid, traded_notional, n_orders, periods_per_year)
    times, values = _check_curve(equity_curve)
    stats = trade_stats(trades)
    common: _Totals = {
        "fees_paid": fees_paid,
        "traded_notional": traded_notional,
        "n_orders": n_orders,
        "trades": stats,
        "n_samples": len(times),
    }
    if not times:
        if exposure_ms is not None and exposure_ms != 0:
            raise ValueError(f"exposure_ms must be 0 or None for an empty equity curve, was {exposure_ms!r}")
        return Metrics(
            **common,
            initial_equity=None,
            final_equity=None,
            start_ms=None,
            end_ms=None,
            total_return=None,
            annualized_return=None,
            max_drawdown=None,
            max_drawdown_peak_ms=None,
            max_drawdown_trough_ms=None,
            sharpe=None,
            sortino=None,
            periods_per_year=None,
            exposure_fraction=None,
            turnover=None,
        )
    span = times[-1] - times[0]
    exposure = None
    if exposure_ms is not None:
        if not 0 <= exposure_ms <= span:
            raise ValueError(f"exposure_ms must be in [0, span={span}], was {exposure_ms!r}")
        exposure = exposure_ms / span if span > 0 else None
    first, last = equity_curve[0][1], equity_curve[-1][1]
    return Metrics(
        **common,
        **_curve_measures(times, values, periods_per_year),
        initial_equity=to_decimal(first, field="equity_curve[0]"),
        final_equity=to_decimal(last, field="equity_curve[-1]"),
        start_ms=times[0],
        end_ms=times[-1],
        exposure_fraction=exposure,
        turnover=float(traded_notional) / math.fsum(values) * len(values),
    )
