"""The tables ``tradebot ml train`` ends with: per model its folds against the base rate, the pooled
calibration deciles, and a plain verdict."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tradebot.core.domain import ms_to_datetime

__all__ = ["render_report", "verdict"]


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _err(name: str, x: float | None) -> str:
    # A regressor's error or median: hours for time_to_best (its label is in ms), else a fraction.
    if x is None:
        return "-"
    return f"{x / 3_600_000:.2f} h" if name == "time_to_best" else f"{x:.5f}"


def _day(ms: int | None) -> str:
    return "-" if ms is None else ms_to_datetime(ms).strftime("%Y-%m-%d")


def verdict(name: str, model: dict[str, Any]) -> str:
    """One line: whether ``model`` beats its base rate on the pooled out-of-fold rows, with the numbers
    and its skill (``1 − score / base score`` for the Brier score or the MAE; > 0 is better)."""
    pooled = model.get("pooled")
    if not pooled:
        return f"{name}: NOT SCORED (no fold had enough train rows)"
    if model["kind"] == "classifier":
        skill = 1.0 - pooled["brier"] / pooled["base_brier"] if pooled["base_brier"] else 0.0
        nums = (
            f"AUC {_f(pooled['auc'])} vs 0.5, Brier {_f(pooled['brier'], 4)} vs base "
            f"{_f(pooled['base_brier'], 4)}, skill {skill * 100:+.1f} %"
        )
    else:
        skill = 1.0 - pooled["mae"] / pooled["base_mae"] if pooled["base_mae"] else 0.0
        nums = (
            f"MAE {_err(name, pooled['mae'])} vs base (train median) {_err(name, pooled['base_mae'])}, "
            f"skill {skill * 100:+.1f} %"
        )
    if model["beats_base"]:
        return f"{name}: beats its base rate ({nums})"
    return f"{name}: DOES NOT BEAT its base rate ({nums})"


def render_report(report: dict[str, Any], console: Console) -> None:
    """Print, per model, a table of its folds and the pooled line, its pooled calibration deciles
    (classifiers), and a verdict."""
    for name, model in report["models"].items():
        clf = model["kind"] == "classifier"
        t = Table(title=f"{name} ({model['kind']}; {model['rows']:,} rows, {model['positions']:,} positions)")
        cols = ["fold", "train", "test", "purged", "train → test"]
        cols += ["AUC", "Brier", "base Brier", "base rate"] if clf else ["MAE", "base MAE", "train median"]
        for c in cols:
            t.add_column(c, justify="left" if c == "train → test" else "right")
        for f in model["folds"]:
            span = f"{_day(f['train_start_ms'])} → {_day(f['test_start_ms'])}…{_day(f['test_end_ms'])}"
            head = [
                str(f["fold"]),
                f"{f['train_rows']:,}",
                f"{f['test_rows']:,}",
                f"{f['purged_rows']:,}",
                span,
            ]
            if "metrics" not in f:
                t.add_row(*head, f"skipped: {f.get('skipped', '')}", *[""] * (len(cols) - 6))
                continue
            m = f["metrics"]
            if clf:
                t.add_row(*head, _f(m["auc"]), _f(m["brier"], 4), _f(m["base_brier"], 4), _f(m["base_rate"]))
            else:
                t.add_row(
                    *head, _err(name, m["mae"]), _err(name, m["base_mae"]), _err(name, m["base_median"])
                )
        pooled = model.get("pooled")
        if pooled:
            if clf:
                t.add_row(
                    "all", "", f"{pooled['test_rows']:,}", "", "pooled out-of-fold", _f(pooled["auc"]),
                    _f(pooled["brier"], 4), _f(pooled["base_brier"], 4), _f(pooled["base_rate"]),
                    style="bold",
                )  # fmt: skip
            else:
                t.add_row(
                    "all", "", f"{pooled['test_rows']:,}", "", "pooled out-of-fold", _err(name, pooled["mae"]),
                    _err(name, pooled["base_mae"]), "", style="bold",
                )  # fmt: skip
        console.print(t)
        if clf and model.get("calibration"):
            cal = Table(title=f"{name}: calibration (pooled test rows, deciles of the prediction)")
            for col in ("decile", "rows", "mean predicted", "observed"):
                cal.add_column(col, justify="right")
            for r in model["calibration"]:
                cal.add_row(str(r["bin"]), f"{r['n']:,}", _f(r["mean_predicted"]), _f(r["observed"]))
            console.print(cal)
        line = verdict(name, model)
        console.print(line, style="green" if model["beats_base"] else "bold yellow")
