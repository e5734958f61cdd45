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


def write_equity_chart(
    equity_curve: EquityCurve,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    quote: str = "quote",
    max_points: int = 4000,
) -> None:
    """Write a PNG with two panels: equity (quote currency) and drawdown (percent), UTC dates on x.

    Uses the Agg canvas directly (no pyplot, no display), so it runs headless and leaves global
    matplotlib state alone. Curves longer than ``max_points`` are downsampled to per-bucket extremes
    (min/max equity and deepest drawdown), so the max drawdown stays visible. An empty curve gives a
    chart that says so.

    Raises
    ------
    ValueError
        On an invalid curve (see :func:`tradebot.core.metrics.drawdown_series`) or ``max_points < 10``.
    """
    if max_points < 10:
        raise ValueError(f"max_points must be >= 10, was {max_points!r}")
    dd_points = drawdown_series(equity_curve)
    fig = Figure(figsize=(11, 6.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_eq, ax_dd = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    if title:
        fig.suptitle(title)
    if not dd_points:
        ax_eq.text(0.5, 0.5, "no equity data", ha="center", va="center", transform=ax_eq.transAxes)
    else:
        times = np.fromiter((t for t, _ in dd_points), dtype=np.int64, count=len(dd_points))
        values = np.fromiter((float(e) for _, e in equity_curve), dtype=float, count=len(dd_points))
        dd = np.fromiter((d for _, d in dd_points), dtype=float, count=len(dd_points))
        idx = _downsample_indices(values, dd, max_points)
        x = times[idx].astype("datetime64[ms]")
        ax_eq.plot(x, values[idx], linewidth=0.9, color="tab:blue")
        ax_dd.fill_between(x, -dd[idx] * 100.0, 0.0, color="tab:red", alpha=0.45, linewidth=0)
        locator = mdates.AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]  # matplotlib.dates is unannotated
        ax_dd.xaxis.set_major_locator(locator)
        formatter = mdates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]  # unannotated, as above
        ax_dd.xaxis.set_major_formatter(formatter)
    ax_eq.set_ylabel(f"Equity ({quote})")
    ax_dd.set_ylabel("Drawdown (%)")
    ax_dd.set_xlabel("Time (UTC)")
    for ax in (ax_eq, ax_dd):
        ax.grid(True, alpha=0.3)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format="png")
