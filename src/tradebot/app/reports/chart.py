"""The equity/drawdown chart of a run (a PNG drawn with matplotlib's Agg canvas).

Only this module imports matplotlib, and the drivers never import it: the CLI imports it when it
draws a chart, so a backtest or a daemon does not pay matplotlib's import time.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC
from pathlib import Path

import numpy as np
from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tradebot.core.metrics import EquityCurve, drawdown_series


def _downsample_indices(values: np.ndarray, dd: np.ndarray, max_points: int) -> np.ndarray:
    # Keep first/last and, per bucket, the equity min and max and the deepest drawdown, so that
    # extremes (and the max drawdown) survive. Returns sorted unique indices.
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, (max_points - 2) // 3)
    edges = np.linspace(0, n, buckets + 1, dtype=np.int64)
    keep = [np.array([0, n - 1])]
    for lo, hi in itertools.pairwise(edges.tolist()):
        if hi > lo:
            keep.append(lo + np.array([values[lo:hi].argmin(), values[lo:hi].argmax(), dd[lo:hi].argmax()]))
    return np.unique(np.concatenate(keep))


def _series(curve: EquityCurve, max_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # (datetime64[ms] x, equity, drawdown fraction) of a curve, downsampled to its extremes.
    dd_points = drawdown_series(curve)
    times = np.fromiter((t for t, _ in dd_points), dtype=np.int64, count=len(dd_points))
    values = np.fromiter((float(e) for _, e in curve), dtype=float, count=len(dd_points))
    dd = np.fromiter((d for _, d in dd_points), dtype=float, count=len(dd_points))
    idx = _downsample_indices(values, dd, max_points)
    return times[idx].astype("datetime64[ms]"), values[idx], dd[idx]


def equity_figure(
    equity_curve: EquityCurve,
    *,
    benchmark_curve: EquityCurve | None = None,
    title: str | None = None,
    quote: str = "quote",
    max_points: int = 4000,
) -> Figure:
    """Return the chart's figure: equity (quote currency) over drawdown (percent), UTC dates on x.

    The upper panel has the strategy's equity line (label ``"strategy"``) and, when
    ``benchmark_curve`` is given and not empty, the buy-and-hold line (label ``"buy & hold"``) and a
    legend; the drawdown panel is the strategy's. Each curve longer than ``max_points`` is downsampled
    to per-bucket extremes (min/max equity and deepest drawdown), so the max drawdown stays visible.
    An empty strategy curve gives a chart that says so.

    Raises
    ------
    ValueError
        On an invalid curve (see :func:`tradebot.core.metrics.drawdown_series`) or ``max_points < 10``.
    """
    if max_points < 10:
        raise ValueError(f"max_points must be >= 10, was {max_points!r}")
    fig = Figure(figsize=(11, 6.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_eq, ax_dd = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    if title:
        fig.suptitle(title)
    if not equity_curve:
        ax_eq.text(0.5, 0.5, "no equity data", ha="center", va="center", transform=ax_eq.transAxes)
    else:
        x, values, dd = _series(equity_curve, max_points)
        ax_eq.plot(x, values, linewidth=0.9, color="tab:blue", label="strategy")
        if benchmark_curve:
            bx, bvalues, _ = _series(benchmark_curve, max_points)
            ax_eq.plot(bx, bvalues, linewidth=0.9, color="tab:gray", label="buy & hold")
            ax_eq.legend(loc="upper left")
        ax_dd.fill_between(x, -dd * 100.0, 0.0, color="tab:red", alpha=0.45, linewidth=0)
        locator = mdates.AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]  # matplotlib.dates is unannotated
        ax_dd.xaxis.set_major_locator(locator)
        formatter = mdates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]  # unannotated, as above
        ax_dd.xaxis.set_major_formatter(formatter)
    ax_eq.set_ylabel(f"Equity ({quote})")
    ax_dd.set_ylabel("Drawdown (%)")
    ax_dd.set_xlabel("Time (UTC)")
    for ax in (ax_eq, ax_dd):
        ax.grid(True, alpha=0.3)
    return fig


def write_equity_chart(
    equity_curve: EquityCurve,
    path: str | os.PathLike[str],
    *,
    benchmark_curve: EquityCurve | None = None,
    title: str | None = None,
    quote: str = "quote",
    max_points: int = 4000,
) -> None:
    """Write the PNG of :func:`equity_figure` (strategy and, if given, buy-and-hold) to ``path``.

    Uses the Agg canvas directly (no pyplot, no display), so it runs headless and leaves global
    matplotlib state alone. Creates the parent folder.

    Raises
    ------
    ValueError
        As :func:`equity_figure`.
    """
    fig = equity_figure(
        equity_curve, benchmark_curve=benchmark_curve, title=title, quote=quote, max_points=max_points
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format="png")
