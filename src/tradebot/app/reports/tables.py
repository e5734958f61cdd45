"""Rich tables of a run's summary: one run (:func:`render_summary`) or several side by side.

The renderers accept both forms of a summary (a dict from
:func:`~tradebot.app.reports.report.build_summary` or one loaded from JSON). ``run["quote"]``
(default ``"quote"``) names the quote currency in the table headers. Fractions are shown as percent;
``*_pct`` fields already are percent.

Both tables show the buy-and-hold benchmark (``summary["buy_and_hold"]``, when present) in a
"Buy & hold" column beside the strategy's overall measures, on the rows of :data:`BENCHMARK_KEYS`.
An annualized return is not shown for a run shorter than 90 days: its cell reads "—" (:data:`SHORT`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from rich.console import Console
from rich.table import Table

NA = "n/a"
#: Shown instead of an annualized return for a curve shorter than 90 days (STRATEGY.md §7).
SHORT = "—"
BENCHMARK_COLUMN = "Buy & hold"
_ANNUALIZE_MIN_MS = 90 * 86_400_000  # tradebot.core.metrics.ANNUALIZE_MIN_MS

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

#: Overall rows that the buy-and-hold column fills (the rest concern trades, orders and exposure).
BENCHMARK_KEYS: frozenset[str] = frozenset(
    {"initial_equity", "final_equity", "total_return", "annualized_return", "max_drawdown"}
    | {"max_drawdown_peak_ms", "max_drawdown_trough_ms", "sharpe", "sortino"}
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
    number: Decimal | float | int = value  # any other number type (e.g. numpy's) passes as is
    return number


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


def _measure(measures: Mapping[str, Any], key: str, kind: str) -> str:
    # One overall cell; an annualized return of a run under 90 days (or of unknown span) reads "—".
    value = measures.get(key)
    if key == "annualized_return" and value is None:
        start, end = _number(measures.get("start_ms")), _number(measures.get("end_ms"))
        if start is None or end is None or int(end) - int(start) < _ANNUALIZE_MIN_MS:
            return SHORT
    return format_value(value, kind)


def _benchmark(summary: Mapping[str, Any]) -> Mapping[str, Any] | None:
    bench = summary.get("buy_and_hold")
    return bench if isinstance(bench, Mapping) else None


def _benchmark_cell(bench: Mapping[str, Any], key: str, kind: str) -> str:
    return _measure(bench, key, kind) if key in BENCHMARK_KEYS else ""


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
    When the summary has ``buy_and_hold``, the overall table has a "Buy & hold" column next to the
    strategy's (equity, return, annualized return, drawdown, Sharpe, Sortino). The annualized return of
    a run under 90 days reads "—".
    """
    q = _quote(summary)
    run = summary.get("run", {})
    console.print(_kv_table("Run", [(str(k), str(v)) for k, v in run.items()], ("Field", "Value")))
    overall = summary.get("overall", {})
    bench = _benchmark(summary)
    table = Table(title="Overall", title_justify="left")
    table.add_column("Measure", no_wrap=True)
    table.add_column("Strategy" if bench is not None else "Value", justify="right", overflow="fold")
    if bench is not None:
        table.add_column(BENCHMARK_COLUMN, justify="right", overflow="fold")
    for label, key, kind in OVERALL_ROWS:
        cells = [label.format(q=q), _measure(overall, key, kind)]
        if bench is not None:
            cells.append(_benchmark_cell(bench, key, kind))
        table.add_row(*cells)
    console.print(table)
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
        [label.format(q=q), *(_measure(s.get("overall", {}), key, kind) for _, s in summaries)]
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
    has ``scale_in_success_rate``) and the count of each event type (0 when a run has none). A last
    "Buy & hold" column, shown once (the runs replay the same candles), holds the benchmark of the
    first summary that has one, on the rows of :data:`BENCHMARK_KEYS`.

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
    bench = next((b for _, s in summaries if (b := _benchmark(s)) is not None), None)
    rows = _comparison_rows(summaries, q)
    if bench is not None:
        table.add_column(BENCHMARK_COLUMN, justify="right", no_wrap=True)
        for row, (_, key, kind) in zip(rows, OVERALL_ROWS, strict=False):
            row.append(_benchmark_cell(bench, key, kind))
        for row in rows[len(OVERALL_ROWS) :]:
            row.append("")
    for row in rows:
        table.add_row(*row)
    console.print(table)
