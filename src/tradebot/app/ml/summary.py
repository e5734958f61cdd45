"""Label base rates of a position dataset, and the table ``tradebot ml dataset`` ends with."""

from __future__ import annotations

import statistics
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.table import Table

__all__ = ["base_rates", "render_summary"]


def _values(table: pa.Table, name: str) -> list[Any]:
    return [v for v in table.column(name).to_pylist() if v is not None]


def base_rates(table: pa.Table) -> dict[str, Any]:
    """Return what a model must beat: per classifier label the rows where it is defined and the share
    that is true (``rate``, ``None`` without rows); per regression label its count, mean and median.

    ``rows_complete`` counts the rows whose horizon lies inside the window (the others have no labels).
    """
    out: dict[str, Any] = {
        "rows_complete": sum(bool(v) for v in table.column("horizon_complete").to_pylist())
    }
    for name in ("recovered", "scale_in_success"):
        vals = _values(table, name)
        out[name] = {"defined": len(vals), "rate": sum(vals) / len(vals) if vals else None}
    for name in ("additional_return", "return_at_horizon", "scale_in_return", "time_to_best_ms"):
        vals = _values(table, name)
        out[name] = {
            "defined": len(vals),
            "mean": statistics.fmean(vals) if vals else None,
            "median": statistics.median(vals) if vals else None,
        }
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.2f} %"


def render_summary(manifest: dict[str, Any], console: Console, *, elapsed_s: float) -> None:
    """Print the dataset's size and label base rates (from its manifest) as two tables."""
    rng = manifest["candle_range"]
    run = manifest["runs"][0]
    head = Table(title="ML dataset", show_header=False)
    head.add_column("", style="bold")
    head.add_column("")
    head.add_row("rows", f"{manifest['rows']:,}")
    head.add_row("positions", f"{manifest['positions']:,}")
    head.add_row("symbols", ", ".join(run["symbols"]))
    head.add_row("candles", f"{run['candles']:,} x {run['base_timeframe']} ({rng['start']} → {rng['end']})")
    h = manifest["horizon"]
    head.add_row("horizon", f"{h['periods']} x {h['timeframe']}")
    head.add_row("rows with complete horizon", f"{manifest['label_base_rates']['rows_complete']:,}")
    head.add_row("features", str(len(manifest["features"])))
    head.add_row("config hash", manifest["config_hash"][:16])
    head.add_row("elapsed", f"{elapsed_s:.1f} s")
    console.print(head)
    rates = manifest["label_base_rates"]
    t = Table(title="label base rates")
    for col in ("label", "defined rows", "rate / mean", "median"):
        t.add_column(col, justify="right" if col != "label" else "left")
    for name in ("recovered", "scale_in_success"):
        r = rates[name]
        t.add_row(name, f"{r['defined']:,}", _pct(r["rate"]), "")
    for name in ("additional_return", "return_at_horizon", "scale_in_return"):
        r = rates[name]
        t.add_row(name, f"{r['defined']:,}", _pct(r["mean"]), _pct(r["median"]))
    r = rates["time_to_best_ms"]
    hours = [None if v is None else f"{v / 3_600_000:.1f} h" for v in (r["mean"], r["median"])]
    t.add_row("time_to_best", f"{r['defined']:,}", hours[0] or "-", hours[1] or "-")
    console.print(t)
