"""Pure performance measures of a run (STRATEGY.md §7): returns, drawdown, Sharpe, Sortino, trade stats.

- :mod:`~tradebot.core.metrics.performance`: the equity curve's returns, drawdown and risk-adjusted
  ratios, and :func:`compute_metrics`, which gathers every measure of a run into :class:`Metrics`;
- :mod:`~tradebot.core.metrics.trades`: trade statistics (overall, per group, per event type) and the
  per-stream attribution record :class:`StreamStats`;
- :mod:`~tradebot.core.metrics.benchmark`: the equal-weight buy-and-hold curve of the run's assets,
  whose :func:`compute_metrics` is the benchmark every report shows beside the strategy.

Conventions
-----------
- Fractions, not percent, except fields ending in ``_pct`` (``0.05`` = 5 %; ``mae_pct=-2.5`` = −2.5 %).
- A year is 365 days (crypto trades every day): ``YEAR_MS = 365 × 86 400 000``.
- ``annualized_return`` is ``None`` for a curve shorter than 90 days (``ANNUALIZE_MIN_MS``).
- A measure that is undefined (no data, zero variance, no losing trade) is ``None``, never NaN or inf.
- A *trade* counts once it is closed (``closed_ms`` set); it is a win when ``net_pnl > 0`` (after
  fees) and a loss when ``net_pnl < 0``; a zero trade counts in the trade total only.
- Ratios use float maths; money totals that come from ``Decimal`` inputs (PnL, fees, give-back)
  stay ``Decimal`` (quote currency).
"""

from __future__ import annotations

from tradebot.core.metrics.benchmark import buy_and_hold_curve, buy_and_hold_quantities
from tradebot.core.metrics.performance import (
    ANNUALIZE_MIN_MS,
    DAY_MS,
    YEAR_MS,
    EquityCurve,
    Metrics,
    compute_metrics,
    drawdown_series,
    infer_periods_per_year,
    sharpe_ratio,
    sortino_ratio,
)
from tradebot.core.metrics.trades import StreamStats, TradeStats, event_stats, group_metrics, trade_stats

__all__ = [
    "ANNUALIZE_MIN_MS",
    "DAY_MS",
    "YEAR_MS",
    "EquityCurve",
    "Metrics",
    "StreamStats",
    "TradeStats",
    "buy_and_hold_curve",
    "buy_and_hold_quantities",
    "compute_metrics",
    "drawdown_series",
    "event_stats",
    "group_metrics",
    "infer_periods_per_year",
    "sharpe_ratio",
    "sortino_ratio",
    "trade_stats",
]
