"""Console tables of a walk-forward report (``walkforward.json``, see :mod:`.walkforward`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tradebot.app.ml.train_report import regressor_scale
from tradebot.app.reports.tables import format_value, render_comparison

__all__ = ["render_report"]


def _params(params: Mapping[str, Any] | None, chosen: str | None = None) -> str:
    if params is None:
        return chosen or "default (no feasible trial)"
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
            _params(f.get("params"), f.get("chosen")),
        )
    console.print(table)
    run = {"quote": report.get("quote", "quote")}
    base = Path(report["base_config"]).name if report.get("base_config") else "built-in defaults"
    bench = {"buy_and_hold": report["buy_and_hold"]} if report.get("buy_and_hold") is not None else {}
    ml = report.get("ml")
    columns: list[tuple[str, Mapping[str, Any]]] = [
        ("walk-forward OOS" + (" (rules)" if ml else ""), {"overall": report["oos"], "run": run, **bench}),
    ]
    if ml:
        columns.append(("walk-forward OOS + ML", {"overall": ml["oos"], "run": run}))
    label = f"default: {base}" + (" (model off)" if ml else "")
    columns.append((label, {"overall": report["default"], "run": run}))
    if ml:
        _render_ml(report, console)
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


def _metric_cells(entry: Mapping[str, Any]) -> list[str]:
    # [score, base score, base, beats] of one model's test entry: AUC & Brier for a classifier, MAE for
    # a regressor (time_to_best in hours).
    m = entry.get("metrics")
    if not m:
        return ["-", "-", "-", "-", "not scored"]
    if "auc" in m:
        auc = "-" if m.get("auc") is None else f"{m['auc']:.3f}"
        return [
            f"AUC {auc}",
            f"Brier {m['brier']:.4f}",
            f"{m['base_brier']:.4f}",
            f"rate {m['base_rate']:.3f}",
            "yes" if entry.get("beats_base") else "NO",
        ]
    scale, unit, digits = regressor_scale(str(entry.get("label")))
    return [
        "",
        f"MAE {m['mae'] / scale:.{digits}f}{unit}",
        f"{m['base_mae'] / scale:.{digits}f}{unit}",
        f"median {m['base_median'] / scale:.{digits}f}{unit}",
        "yes" if entry.get("beats_base") else "NO",
    ]


def _render_ml(report: Mapping[str, Any], console: Console) -> None:
    # The fold models on their test windows: one row per fold and model, then the pooled rows.
    ml = report["ml"]
    table = Table(
        title=f"Position models on each fold's test window (horizon {ml['horizon_periods']} periods; "
        "base = the train rows' rate / median)",
        title_justify="left",
    )
    for name in (
        "fold",
        "model",
        "train rows",
        "test rows",
        "AUC",
        "score",
        "base score",
        "base",
        "beats base",
    ):
        table.add_column(name, justify="left" if name == "model" else "right")
    for f in report["folds"]:
        doc = f.get("ml") or {}
        tests: Mapping[str, Any] = doc.get("test") or {}
        if not tests:
            table.add_row(
                str(f["index"]), f"skipped: {doc.get('skipped', '')}", str(doc.get("train_rows", ""))
            )
            continue
        for name, entry in tests.items():
            table.add_row(
                str(f["index"]),
                name,
                f"{doc.get('train_rows', 0):,}",
                f"{entry.get('rows', 0):,}",
                *_metric_cells({**entry, "label": name}),
            )
    pooled: Mapping[str, Any] = (ml.get("test") or {}).get("models") or {}
    for name, entry in pooled.items():
        table.add_row(
            "all",
            name,
            "",
            f"{entry.get('rows', 0):,}",
            *_metric_cells({**entry, "label": name}),
            style="bold",
        )
    console.print(table)
