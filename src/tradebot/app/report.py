"""Human and machine reports of a run: rich tables, a JSON summary and an equity/drawdown chart.

Summary dict (built by :func:`build_summary`, read back by :func:`read_summary_json`)::

    {
      "schema_version": 1,
      "run": {"run_id": str, "mode": str, "config": str, "quote": "USDT", ...},   # free-form, from caller
      "initial_equity": "10000.00" | None,       # quote currency, Decimal string
      "final_equity": "10421.37" | None,
      "overall": Metrics.to_dict(),              # tradebot.core.metrics: fractions, Decimals in quote
      "per_asset": {symbol: TradeStats.to_dict()},
      "per_stream": {stream: StreamStats.to_dict()},
      "event_counts": {event_type: int},         # e.g. {"entry": 12, "early_exit": 3}
      "event_savings": {event_type: Decimal},    # Σ amount_saved_or_gained, quote (may be empty)
      **extras,                                  # e.g. "scale_in_success_rate": 0.6 (fraction)
    }

In memory, money values are ``Decimal``; in the JSON file every ``Decimal`` is a string (``f"{x:f}"``)
and every NaN / ±inf becomes ``null``. The renderers accept both forms (a dict from
:func:`build_summary` or one loaded from JSON). ``run["quote"]`` (default ``"quote"``) names the quote
currency in the table headers. Fractions are shown as percent; ``*_pct`` fields already are percent.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from tradebot.core.metrics import EquityCurve, Metrics, drawdown_series

SCHEMA_VERSION = 1
_RESERVED = frozenset(
    {"schema_version", "run", "initial_equity", "final_equity", "overall", "per_asset", "per_stream"}
    | {"event_counts", "event_savings"}
)
NA = "n/a"

# (label, key in "overall", kind); "{q}" is replaced by the quote currency.
OVERALL_ROWS: tuple[tuple[str, str, str], ...] = (
    ("Initial equity ({q})", "initial_equity", "money"),
    ("Final equity ({q})", "final_equity", "money"),
    ("Total return (%)", "total_return", "frac"),
    ("Annualized return (%)", "annualized_return", "frac"),
    ("Max drawdown (%)", "max_drawdown", "frac"),
    ("Max drawdown peak (UTC)", "max_drawdown_peak_ms", "time"),
    ("Max drawdown trough (UTC)", "max_drawdown_trough_ms", "time"),
    ("Sharpe (annualized)", "sharpe", "ratio"),
    ("Sortino (annualized)", "sortino", "ratio"),
    ("Trades (closed)", "n_trades", "int"),
    ("Win rate (%)", "win_rate", "frac"),
    ("Average win ({q})", "avg_win", "money"),
    ("Average loss ({q})", "avg_loss", "money"),
    ("Profit factor", "profit_factor", "ratio"),
    ("Expectancy (R)", "expectancy_r", "ratio"),
    ("Average MAE (%)", "avg_mae_pct", "pct"),
    ("Average MFE (%)", "avg_mfe_pct", "pct"),
    ("Average profit give-back ({q})", "avg_giveback", "money"),
    ("Net PnL of closed trades ({q})", "net_pnl", "money"),
    ("Exposure time (%)", "exposure_fraction", "frac"),
    ("Turnover (× mean equity)", "turnover", "ratio"),
    ("Fees paid ({q})", "fees_paid", "money"),
    ("Orders", "n_orders", "int"),
)

ASSET_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("Trades", "n_trades", "int"),
    ("Open", "n_open_trades", "int"),
    ("Win rate (%)", "win_rate", "frac"),
    ("Avg win ({q})", "avg_win", "money"),
    ("Avg loss ({q})", "avg_loss", "money"),
    ("Profit factor", "profit_factor", "ratio"),
    ("Exp. (R)", "expectancy_r", "ratio"),
    ("MAE (%)", "avg_mae_pct", "pct"),
    ("MFE (%)", "avg_mfe_pct", "pct"),
    ("Give-back ({q})", "avg_giveback", "money"),
    ("Net PnL ({q})", "net_pnl", "money"),
    ("Fees ({q})", "trade_fees", "money"),
)

# Shown only when some per-asset row carries them (the engine's totals, including open trades).
ASSET_OPTIONAL_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("Fees paid ({q})", "fees_paid", "money"),
    ("Traded ({q})", "traded_notional", "money"),
)

STREAM_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("Realized ({q})", "realized", "money"),
    ("Fees ({q})", "fees", "money"),
    ("Unrealized ({q})", "unrealized", "money"),
    ("Total ({q})", "total", "money"),
    ("Time in (%)", "time_in_fraction", "frac"),
    ("Flips", "flips", "int"),
)


def _number(value: Any) -> Decimal | float | int | None:
    # Accept the in-memory form (Decimal/float/int) and the JSON form (Decimal strings).
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = Decimal(value)
        except InvalidOperation:
            return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Decimal) and not value.is_finite():
        return None
    return value


def format_value(value: Any, kind: str) -> str:
    """Format one measure for display; ``None``/NaN/inf give ``"n/a"``.

    Kinds: ``money`` (2 decimals, thousands separators), ``frac`` (fraction → percent, 2 decimals),
    ``pct`` (already percent, 2 decimals), ``ratio`` (2 decimals), ``int`` (thousands separators),
    ``time`` (ms UTC → ``YYYY-MM-DD HH:MM``).

    Raises
    ------
    ValueError
        For an unknown ``kind``.
    """
    x = _number(value)
    if x is None:
        return NA
    if kind == "money":
        return format(x, ",.2f")
    if kind == "frac":
        return f"{float(x) * 100:,.2f}"
    if kind in ("pct", "ratio"):
        return f"{float(x):.2f}"
    if kind == "int":
        return f"{int(x):,}"
    if kind == "time":
        return datetime.fromtimestamp(int(x) / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
    raise ValueError(f"kind must be one of money/frac/pct/ratio/int/time, was {kind!r}")


def _to_plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return dict(value)


def build_summary(
    *,
    run_info: Mapping[str, Any],
    metrics: Metrics,
    per_asset: Mapping[str, Any],
    per_stream: Mapping[str, Any] | Sequence[Any],
    event_counts: Mapping[str, int],
    extras: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the summary dict of a run (shape in the module docstring).

    Parameters
    ----------
    run_info
        Free-form run description; ``"quote"`` names the quote currency (e.g. ``"USDT"``).
    metrics
        Overall measures from :func:`tradebot.core.metrics.compute_metrics`.
    per_asset
        ``{symbol: TradeStats}`` (e.g. from ``group_metrics``) or ``{symbol: dict}``.
    per_stream
        ``{stream: StreamStats | dict}`` or a sequence of ``StreamStats`` (keyed by ``.stream``).
    event_counts
        ``{event_type: count}`` (e.g. the first result of ``event_stats``).
    extras
        More top-level keys, e.g. ``{"event_savings": {...}, "scale_in_success_rate": 0.6}``.

    Raises
    ------
    ValueError
        If ``extras`` uses a reserved key other than ``event_savings``.
    """
    extras = dict(extras or {})
    clash = sorted((set(extras) & _RESERVED) - {"event_savings"})
    if clash:
        raise ValueError(f"extras must not use reserved summary keys, was {clash!r}")
    if isinstance(per_stream, Mapping):
        streams = {str(k): _to_plain(v) for k, v in per_stream.items()}
    else:
        streams = {s.stream: _to_plain(s) for s in per_stream}
    overall = metrics.to_dict()
    return {
        "schema_version": SCHEMA_VERSION,
        "run": dict(run_info),
        "initial_equity": None if metrics.initial_equity is None else f"{metrics.initial_equity:f}",
        "final_equity": None if metrics.final_equity is None else f"{metrics.final_equity:f}",
        "overall": overall,
        "per_asset": {str(k): _to_plain(v) for k, v in per_asset.items()},
        "per_stream": streams,
        "event_counts": {str(k): int(v) for k, v in sorted(event_counts.items())},
        "event_savings": dict(extras.pop("event_savings", {})),
        **extras,
    }


def _quote(summary: Mapping[str, Any]) -> str:
    return str(summary.get("run", {}).get("quote", "quote"))


def _kv_table(title: str, rows: Sequence[tuple[str, str]], header: tuple[str, str]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(header[0], no_wrap=True)
    table.add_column(header[1], justify="right", overflow="fold")
    for k, v in rows:
        table.add_row(k, v)
    return table


def _grid_table(
    title: str,
    first: str,
    rows: Mapping[str, Mapping[str, Any]],
    columns: Sequence[tuple[str, str, str]],
    q: str,
) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(first, no_wrap=True, min_width=max(map(len, rows), default=0))
    for label, _, _ in columns:
        # Unit on its own header line keeps 12+ columns within ~160 characters.
        table.add_column(label.format(q=q).replace(" (", "\n("), justify="right", no_wrap=True)
    for name, row in rows.items():
        table.add_row(name, *(format_value(row.get(key), kind) for _, key, kind in columns))
    return table


def render_summary(summary: Mapping[str, Any], console: Console) -> None:
    """Print the run info, overall measures, per-asset, per-stream and event tables to ``console``.

    Units are in the labels: ``(%)`` percent, ``(USDT)`` quote currency, ``(R)`` multiples of initial risk.
    """
    q = _quote(summary)
    run = summary.get("run", {})
    console.print(_kv_table("Run", [(str(k), str(v)) for k, v in run.items()], ("Field", "Value")))
    overall = summary.get("overall", {})
    rows = [(label.format(q=q), format_value(overall.get(key), kind)) for label, key, kind in OVERALL_ROWS]
    console.print(_kv_table("Overall", rows, ("Measure", "Value")))
    if summary.get("per_asset"):
        assets = summary["per_asset"]
        extra = [c for c in ASSET_OPTIONAL_COLUMNS if any(c[1] in row for row in assets.values())]
        console.print(_grid_table("Per asset", "Symbol", assets, (*ASSET_COLUMNS, *extra), q))
    if summary.get("per_stream"):
        console.print(_grid_table("Per stream", "Stream", summary["per_stream"], STREAM_COLUMNS, q))
    counts = summary.get("event_counts", {})
    savings = summary.get("event_savings", {})
    if counts:
        table = Table(title="Position events", title_justify="left")
        table.add_column("Event type")
        table.add_column("Count", justify="right")
        table.add_column(f"Saved / gained ({q})", justify="right", no_wrap=True)
        for name, n in counts.items():
            table.add_row(name, format_value(n, "int"), format_value(savings.get(name), "money"))
        console.print(table)


def _comparison_rows(summaries: Sequence[tuple[str, Mapping[str, Any]]], q: str) -> list[list[str]]:
    rows = [
        [label.format(q=q), *(format_value(s.get("overall", {}).get(key), kind) for _, s in summaries)]
        for label, key, kind in OVERALL_ROWS
    ]
    rows.append(
        [
            f"Early-exit savings ({q})",
            *(format_value(s.get("event_savings", {}).get("early_exit"), "money") for _, s in summaries),
        ]
    )
    if any("scale_in_success_rate" in s for _, s in summaries):
        rows.append(
            [
                "Scale-in success rate (%)",
                *(format_value(s.get("scale_in_success_rate"), "frac") for _, s in summaries),
            ]
        )
    types = sorted({t for _, s in summaries for t in s.get("event_counts", {})})
    for t in types:
        rows.append(
            [
                f"Events: {t}",
                *(format_value(s.get("event_counts", {}).get(t, 0), "int") for _, s in summaries),
            ]
        )
    return rows


def render_comparison(summaries: Sequence[tuple[str, Mapping[str, Any]]], console: Console) -> None:
    """Print one table with one column per configuration and one row per measure.

    Rows: the overall measures of :func:`render_summary`, early-exit savings (Σ of
    ``event_savings["early_exit"]``, ``n/a`` when absent), the scale-in success rate (when any summary
    has ``scale_in_success_rate``) and the count of each event type (0 when a run has none).

    Parameters
    ----------
    summaries
        ``(column name, summary dict)`` pairs, e.g. ``[("fixed stop", s1), ("managed", s2)]``.

    Raises
    ------
    ValueError
        If ``summaries`` is empty.
    """
    if not summaries:
        raise ValueError("summaries must hold at least one (name, summary) pair, was empty")
    quotes = {_quote(s) for _, s in summaries}
    q = quotes.pop() if len(quotes) == 1 else "quote"
    table = Table(title="Comparison", title_justify="left")
    table.add_column("Measure")
    for name, _ in summaries:
        table.add_column(name, justify="right", no_wrap=True)
    for row in _comparison_rows(summaries, q):
        table.add_row(*row)
    console.print(table)


def _jsonable(value: Any, path: str) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return f"{value:f}" if value.is_finite() else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, datetime | UUID):
        return str(value) if isinstance(value, UUID) else value.isoformat()
    if hasattr(value, "to_dict") or (is_dataclass(value) and not isinstance(value, type)):
        return _jsonable(_to_plain(value), path)
    if isinstance(value, np.generic):
        return _jsonable(value.item(), path)
    raise TypeError(f"{path} is not JSON-serialisable, was {value!r}")


def write_summary_json(summary: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``summary`` as JSON (UTF-8, indented), atomically (temp file + rename).

    Decimals become strings, NaN/±inf become ``null``, dataclasses become objects. Top-level
    ``initial_equity`` and ``final_equity`` are required (taken from ``summary["overall"]`` if missing).

    Raises
    ------
    ValueError
        If the equity keys are missing from both the top level and ``overall``.
    TypeError
        If a value cannot be serialised (the message names its path, e.g. ``summary.run.x``).
    """
    data = dict(summary)
    for key in ("initial_equity", "final_equity"):
        if key not in data:
            overall = data.get("overall", {})
            if key not in overall:
                raise ValueError(f"summary must contain {key!r} (top level or overall), was missing")
            data[key] = overall[key]
    text = json.dumps(_jsonable(data, "summary"), indent=2, allow_nan=False, ensure_ascii=False)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_summary_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return a summary written by :func:`write_summary_json` (Decimals stay strings; renderers accept them)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


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
        locator = mdates.AutoDateLocator(tz=UTC)
        ax_dd.xaxis.set_major_locator(locator)
        ax_dd.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    ax_eq.set_ylabel(f"Equity ({quote})")
    ax_dd.set_ylabel("Drawdown (%)")
    ax_dd.set_xlabel("Time (UTC)")
    for ax in (ax_eq, ax_dd):
        ax.grid(True, alpha=0.3)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format="png")
