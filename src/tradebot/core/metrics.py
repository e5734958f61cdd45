"""Pure performance measures of a run (STRATEGY.md §7): returns, drawdown, Sharpe, Sortino, trade stats.

Inputs are the run's equity curve (``(time_ms, equity_quote)`` samples, ms UTC, strictly increasing),
its closed trades (:class:`~tradebot.core.domain.TradeRecord`) and totals kept by the engine. Ratios
use float maths; money totals that come from ``Decimal`` inputs (PnL, fees, give-back) stay ``Decimal``.

Conventions
-----------
- Fractions, not percent, except fields ending in ``_pct`` (``0.05`` = 5 %; ``mae_pct=-2.5`` = −2.5 %).
- A year is 365 days (crypto trades every day): ``YEAR_MS = 365 × 86 400 000``.
- A measure that is undefined (no data, zero variance, no losing trade) is ``None``, never NaN or inf.
- A *trade* counts once it is closed (``closed_ms`` set); it is a win when ``net_pnl > 0`` (after
  fees) and a loss when ``net_pnl < 0``; a zero trade counts in the trade total only.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from tradebot.core.domain import ZERO, PositionEvent, TradeRecord, to_decimal

#: Milliseconds in a year of 365 days (the annualization basis of every measure here).
YEAR_MS = 365 * 86_400_000
#: Minimum curve span for an annualized return (shorter spans give meaningless CAGRs).
DAY_MS = 86_400_000

EquityCurve = Sequence[tuple[int, float | Decimal]]


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeStats:
    """Statistics of a set of trades (all trades, or one asset's).

    Attributes
    ----------
    n_trades, n_open_trades
        Closed trades (the basis of every other field) and trades still open (ignored otherwise).
    n_wins, n_losses
        Closed trades with ``net_pnl > 0`` / ``< 0``.
    win_rate
        ``n_wins / n_trades`` (fraction), ``None`` without closed trades.
    avg_win, avg_loss
        Mean ``net_pnl`` of wins / losses, quote currency; ``avg_loss`` is negative. ``None`` if none.
    gross_win, gross_loss
        Σ ``net_pnl`` of wins, and Σ ``|net_pnl|`` of losses (both ≥ 0), quote currency.
    profit_factor
        ``gross_win / gross_loss``; ``None`` when there is no loss.
    net_pnl, trade_fees
        Σ ``net_pnl`` and Σ ``fees`` of closed trades, quote currency.
    expectancy_r, n_trades_with_r
        Mean ``r_multiple`` of the closed trades that have one (Van Tharp's expectancy in R), and their
        count; ``None`` when no trade has an R.
    avg_mae_pct, avg_mfe_pct
        Mean MAE (≤ 0) and MFE (≥ 0), percent of the first entry price; ``None`` without trades.
    avg_giveback
        Mean profit give-back ``mfe_quote − net_pnl``, quote currency; ``None`` without trades.
    """

    n_trades: int
    n_open_trades: int
    n_wins: int
    n_losses: int
    win_rate: float | None
    avg_win: Decimal | None
    avg_loss: Decimal | None
    gross_win: Decimal
    gross_loss: Decimal
    profit_factor: float | None
    net_pnl: Decimal
    trade_fees: Decimal
    expectancy_r: float | None
    n_trades_with_r: int
    avg_mae_pct: float | None
    avg_mfe_pct: float | None
    avg_giveback: Decimal | None

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a flat dict (Decimals kept as ``Decimal``)."""
        return asdict(self)


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
        Fractions; ``annualized_return`` is ``None`` when the span is shorter than one day.
    max_drawdown, max_drawdown_peak_ms, max_drawdown_trough_ms
        Largest peak-to-trough fall as a positive fraction of the peak, and when its peak and trough
        were (``None`` when the curve never fell).
    sharpe, sortino, periods_per_year
        Annualized ratios (risk-free rate 0) and the periods per year used to annualize them.
    exposure_fraction
        Fraction of the curve's span with a position open, ``None`` when not given.
    turnover
        ``traded_notional / mean equity`` (a fraction; 2.0 = twice the capital traded).
    fees_paid, traded_notional, n_orders
        Totals given by the engine (quote currency, quote currency, count).
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


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStats:
    """PnL attribution of one trend stream, computed by the engine (STRATEGY.md §5); rendered as is.

    Attributes
    ----------
    stream
        Stream id, e.g. ``"BTC:4h"``.
    realized, fees, unrealized, total
        Quote currency; ``total`` must equal ``realized − fees + unrealized``.
    time_in_fraction
        Fraction of the run the stream was ``in``, in [0, 1].
    flips
        Number of state changes.

    Raises
    ------
    ValueError
        If ``total`` does not add up, ``time_in_fraction`` is outside [0, 1] or ``flips`` < 0.
    """

    stream: str
    realized: Decimal
    fees: Decimal
    unrealized: Decimal
    total: Decimal
    time_in_fraction: float
    flips: int

    def __post_init__(self) -> None:
        expected = self.realized - self.fees + self.unrealized
        if self.total != expected:
            raise ValueError(
                f"StreamStats({self.stream}).total must equal realized - fees + unrealized "
                f"= {expected}, was {self.total!r}"
            )
        if not 0.0 <= self.time_in_fraction <= 1.0:
            raise ValueError(
                f"StreamStats({self.stream}).time_in_fraction must be in [0, 1], was {self.time_in_fraction!r}"
            )
        if self.flips < 0:
            raise ValueError(f"StreamStats({self.stream}).flips must be >= 0, was {self.flips!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a flat dict (Decimals kept as ``Decimal``)."""
        return asdict(self)


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


def _mean_dec(xs: Sequence[Decimal]) -> Decimal | None:
    return sum(xs, ZERO) / len(xs) if xs else None


def _mean_float(xs: Sequence[float]) -> float | None:
    return math.fsum(xs) / len(xs) if xs else None


def trade_stats(trades: Iterable[TradeRecord]) -> TradeStats:
    """Return the :class:`TradeStats` of ``trades`` (only closed trades are measured).

    Profit factor is gross profit / gross loss; expectancy in R is the mean R multiple
    (Van K. Tharp, *Trade Your Way to Financial Freedom*, 1999); give-back is ``mfe_quote − net_pnl``.
    """
    all_trades = list(trades)
    closed = [t for t in all_trades if t.closed_ms is not None]
    wins = [t.net_pnl for t in closed if t.net_pnl > 0]
    losses = [t.net_pnl for t in closed if t.net_pnl < 0]
    gross_win = sum(wins, ZERO)
    gross_loss = -sum(losses, ZERO)
    rs = [t.r_multiple for t in closed if t.r_multiple is not None]
    return TradeStats(
        n_trades=len(closed),
        n_open_trades=len(all_trades) - len(closed),
        n_wins=len(wins),
        n_losses=len(losses),
        win_rate=len(wins) / len(closed) if closed else None,
        avg_win=_mean_dec(wins),
        avg_loss=_mean_dec(losses),
        gross_win=gross_win,
        gross_loss=gross_loss,
        profit_factor=float(gross_win / gross_loss) if gross_loss > 0 else None,
        net_pnl=sum((t.net_pnl for t in closed), ZERO),
        trade_fees=sum((t.fees for t in closed), ZERO),
        expectancy_r=_mean_float(rs),
        n_trades_with_r=len(rs),
        avg_mae_pct=_mean_float([t.mae_pct for t in closed]),
        avg_mfe_pct=_mean_float([t.mfe_pct for t in closed]),
        avg_giveback=_mean_dec([t.mfe_quote - t.net_pnl for t in closed]),
    )


def group_metrics(
    trades: Iterable[TradeRecord], key: Callable[[TradeRecord], str] = lambda t: t.symbol
) -> dict[str, TradeStats]:
    """Return :class:`TradeStats` per group (default: per symbol), keys sorted.

    Parameters
    ----------
    trades
        Trades of the run (open ones are counted in ``n_open_trades`` only).
    key
        Group of a trade, e.g. ``lambda t: t.symbol``.
    """
    groups: dict[str, list[TradeRecord]] = {}
    for t in trades:
        groups.setdefault(key(t), []).append(t)
    return {k: trade_stats(groups[k]) for k in sorted(groups)}


def event_stats(events: Iterable[PositionEvent]) -> tuple[dict[str, int], dict[str, Decimal]]:
    """Return (count per event type, Σ ``amount_saved_or_gained`` per event type).

    The savings dict only holds types with at least one measured amount (quote currency), e.g.
    ``{"early_exit": Decimal("123.4")}``; keys are the event types' string values, sorted.
    """
    counts: dict[str, int] = {}
    savings: dict[str, Decimal] = {}
    for ev in events:
        name = str(ev.event_type)
        counts[name] = counts.get(name, 0) + 1
        if ev.amount_saved_or_gained is not None:
            savings[name] = savings.get(name, ZERO) + ev.amount_saved_or_gained
    return dict(sorted(counts.items())), dict(sorted(savings.items()))


def infer_periods_per_year(times_ms: Sequence[int]) -> float | None:
    """Return ``YEAR_MS / median spacing`` of the sample times, or ``None`` for fewer than 2 samples."""
    if len(times_ms) < 2:
        return None
    spacing = statistics.median(b - a for a, b in itertools.pairwise(times_ms))
    return YEAR_MS / spacing


def _check_inputs(
    fees_paid: Decimal, traded_notional: Decimal, n_orders: int, periods_per_year: float | None
) -> None:
    if not (isinstance(fees_paid, Decimal) and fees_paid.is_finite() and fees_paid >= 0):
        raise ValueError(f"fees_paid must be a finite Decimal >= 0, was {fees_paid!r}")
    if not (isinstance(traded_notional, Decimal) and traded_notional.is_finite() and traded_notional >= 0):
        raise ValueError(f"traded_notional must be a finite Decimal >= 0, was {traded_notional!r}")
    if isinstance(n_orders, bool) or not isinstance(n_orders, int) or n_orders < 0:
        raise ValueError(f"n_orders must be an int >= 0, was {n_orders!r}")
    if periods_per_year is not None and not (math.isfinite(periods_per_year) and periods_per_year > 0):
        raise ValueError(f"periods_per_year must be finite and > 0, was {periods_per_year!r}")


def _curve_measures(times: list[int], values: list[float], periods_per_year: float | None) -> dict[str, Any]:
    # Return/drawdown/ratio fields of Metrics for a non-empty, validated curve.
    span = times[-1] - times[0]
    growth = values[-1] / values[0]
    annualized = None
    if span >= DAY_MS:
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
        Totals of the run in quote currency (Decimal, ≥ 0).
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
        span) − 1`` (CAGR; ``None`` if span < 1 day); per-sample returns ``r_i = E_i / E_{i−1} − 1``
        feed :func:`sharpe_ratio` and :func:`sortino_ratio`; ``turnover = traded_notional / mean(E)``.

    Raises
    ------
    ValueError
        On an invalid curve (see :func:`drawdown_series`), negative totals, a bad ``periods_per_year``,
        or ``exposure_ms`` outside [0, span].
    """
    _check_inputs(fees_paid, traded_notional, n_orders, periods_per_year)
    times, values = _check_curve(equity_curve)
    stats = trade_stats(trades)
    common = {
        "fees_paid": fees_paid,
        "traded_notional": traded_notional,
        "n_orders": n_orders,
        "trades": stats,
        "n_samples": len(times),
    }
    if not times:
        if exposure_ms is not None and exposure_ms != 0:
            raise ValueError(f"exposure_ms must be 0 or None for an empty equity curve, was {exposure_ms!r}")
        none_fields = [f for f in Metrics.__dataclass_fields__ if f not in common]
        return Metrics(**common, **dict.fromkeys(none_fields))
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
