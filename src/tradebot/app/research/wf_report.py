"""Console tables of a walk-forward report (``walkforward.json``, see :mod:`.walkforward`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tradebot.app.reports.tables import format_value, render_comparison

__all__ = ["render_report"]


def _params(params: Mapping[str, Any] | None) -> str:
    if params is None:
        return "default (no feasible trial)"
    return "\n".join(f"{k}={_short(v)}" for k, v in params.items())


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _stat(block: Mapping[str, Any] | None) -> str:
    value = None if block is None else block.get("value")
    return format_value(value, "ratio") if value is not None else "n/a"


def render_report(report: Mapping[str, Any], console: Console) -> None:
    """Print the per-fold table (windows, trials, in-sample and out-of-sample measures, buy-and-hold
    in the test window, DSR, PBO, parameters chosen), the side-by-side table of the stitched
    out-of-sample run, the default configuration and buy-and-hold, and the overall DSR and PBO."""
    table = Table(title="Walk-forward folds", title_justify="left")
    for name in ("fold", "train (UTC)", "test (UTC)", "trials", "IS Sharpe", "IS return %"):
        table.add_column(name, justify="right" if name not in ("train (UTC)", "test (UTC)") else "left")
    for name in ("OOS return %", "OOS Sharpe", "OOS max DD %", "B&H return %", "DSR", "PBO"):
        table.add_column(name, justify="right")
    table.add_column("parameters chosen", min_width=32)
    for f in report["folds"]:
        is_ = f.get("in_sample") or {}
        oos = f["out_of_sample"]
        ov = f.get("overfitting", {})
        table.add_row(
            str(f["index"]),
            f"{format_value(f['train_start_ms'], 'time')[:10]} → {format_value(f['train_end_ms'], 'time')[:10]}",
            f"{format_value(f['test_start_ms'], 'time')[:10]} → {format_value(f['test_end_ms'], 'time')[:10]}",
            f"{f['n_trials']}" + (f" (+{f['n_failed']} failed)" if f.get("n_failed") else ""),
            format_value(is_.get("sharpe"), "ratio"),
            format_value(is_.get("total_return"), "frac"),
            format_value(oos.get("total_return"), "frac"),
            format_value(oos.get("sharpe"), "ratio"),
            format_value(oos.get("max_drawdown"), "frac"),
            format_value(f.get("buy_and_hold_test", {}).get("total_return"), "frac"),
            _stat(ov.get("deflated_sharpe")),
            _stat(ov.get("pbo")),
            _params(f.get("params")),
        )
    console.print(table)
    run = {"quote": report.get("quote", "quote")}
    base = Path(report["base_config"]).name if report.get("base_config") else "built-in defaults"
    bench = {"buy_and_hold": report["buy_and_hold"]} if report.get("buy_and_hold") is not None else {}
    columns: list[tuple[str, Mapping[str, Any]]] = [
        ("walk-forward OOS", {"overall": report["oos"], "run": run, **bench}),
        (f"default: {base}", {"overall": report["default"], "run": run}),
    ]
    console.print(
        f"out-of-sample period {format_value(report['oos_start_ms'], 'time')} → "
        f"{format_value(report['oos_end_ms'], 'time')} UTC"
    )
    render_comparison(columns, Console(width=max(console.width, 120)))
    dsr, pbo = report["deflated_sharpe"], report["pbo"]
    console.print(
        f"Deflated Sharpe Ratio (OOS, against {dsr.get('n_trials', 0)} trials): {_stat(dsr)}"
        + (f" — {dsr['why']}" if dsr.get("value") is None and dsr.get("why") else "")
        + f"; per-day Sharpe {format_value(dsr.get('sharpe'), 'ratio')}"
    )
    console.print(
        f"Probability of Backtest Overfitting (mean of {len(pbo.get('per_fold', []))} folds, CSCV): {_stat(pbo)}"
    )
