"""The tables ``tradebot ml train`` ends with: per model its folds against the base rate, the pooled
calibration deciles, and a plain verdict."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tradebot.core.domain import ms_to_datetime

__all__ = ["regressor_scale", "render_report", "score_line", "verdict"]


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def regressor_scale(name: str) -> tuple[float, str, int]:
    """Divisor, unit and digits a regressor's numbers are shown in: ``time_to_best`` (ms) in hours."""
    return (3_600_000.0, " h", 2) if name == "time_to_best" else (1.0, "", 5)


def _err(name: str, x: float | None) -> str:
    # A regressor's error or median in its display unit.
    if x is None:
        return "-"
    div, unit, digits = regressor_scale(name)
    return f"{x / div:.{digits}f}{unit}"


def _day(ms: int | None) -> str:
    return "-" if ms is None else ms_to_datetime(ms).strftime("%Y-%m-%d")


def score_line(name: str, kind: str, m: dict[str, Any] | None, beats: bool, *, not_scored: str) -> str:
    """One line: whether a model beats its base on the rows of ``m`` (its metrics: ``auc``,
    ``brier``, ``base_brier`` and, if known, ``base_rate``; or ``mae``, ``base_mae``), with the
    numbers and its skill (``1 − score / base score`` for the Brier score or the MAE; > 0 is better).
    ``not_scored`` says why when ``m`` is empty."""
    if not m:
        return f"{name}: NOT SCORED ({not_scored})"
    if kind == "classifier":
        skill = 1.0 - m["brier"] / m["base_brier"] if m["base_brier"] else 0.0
        rate = f" (train rate {_f(m['base_rate'])})" if m.get("base_rate") is not None else ""
        nums = (
            f"AUC {_f(m['auc'])} vs 0.5, Brier {_f(m['brier'], 4)} vs base{rate} "
            f"{_f(m['base_brier'], 4)}, skill {skill * 100:+.1f} %"
        )
    else:
        skill = 1.0 - m["mae"] / m["base_mae"] if m["base_mae"] else 0.0
        nums = (
            f"MAE {_err(name, m['mae'])} vs base (train median) {_err(name, m['base_mae'])}, "
            f"skill {skill * 100:+.1f} %"
        )
    if beats:
        return f"{name}: beats its base rate ({nums})"
    return f"{name}: DOES NOT BEAT its base rate ({nums})"


def verdict(name: str, model: dict[str, Any]) -> str:
    """:func:`score_line` of a trained model on its pooled out-of-fold rows."""
    return score_line(
        name,
        model["kind"],
        model.get("pooled"),
        bool(model["beats_base"]),
        not_scored="no fold had enough train rows",
    )


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
