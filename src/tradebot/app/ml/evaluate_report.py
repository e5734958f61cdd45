"""The tables ``tradebot ml evaluate`` ends with: per model its score on the dataset against its train
base, the calibration deciles of a classifier, and a plain verdict."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tradebot.app.ml.train_report import _f, regressor_scale, score_line

__all__ = ["render_evaluation", "verdict"]


def verdict(name: str, entry: dict[str, Any]) -> str:
    """One line: whether the model beats its train base on the dataset (:func:`score_line`)."""
    return score_line(
        name,
        entry["kind"],
        entry.get("metrics"),
        bool(entry["beats_base"]),
        not_scored="no row of the dataset has its label",
    )


def render_evaluation(report: dict[str, Any], console: Console) -> None:
    """Print, per model, a table of its score against its base, a classifier's calibration deciles,
    warnings when the rows overlap the training, and a verdict."""
    for name, e in report["models"].items():
        clf = e["kind"] == "classifier"
        div, unit, digits = regressor_scale(name)
        t = Table(title=f"{name} ({e['kind']}; label {e['label']}; base from card {e['base_source']})")
        cols = ["rows", "positions"]
        if clf:
            cols += ["AUC", "Brier", "base Brier", "base rate", "test rate"]
        else:
            cols += [f"MAE{unit}", f"base MAE{unit}", f"train median{unit}"]
        cols.append("beats base")
        for c in cols:
            t.add_column(c, justify="right")
        m = e.get("metrics")
        head = [f"{e['rows']:,}", f"{e['positions']:,}"]
        beats = "yes" if e["beats_base"] else "no"
        if not m:
            t.add_row(*head, *["-"] * (len(cols) - 3), beats)
        elif clf:
            t.add_row(
                *head, _f(m["auc"]), _f(m["brier"], 4), _f(m["base_brier"], 4), _f(m["base_rate"]),
                _f(m["test_rate"]), beats,
            )  # fmt: skip
        else:
            t.add_row(
                *head, _f(m["mae"] / div, digits), _f(m["base_mae"] / div, digits),
                _f(m["base_median"] / div, digits), beats,
            )  # fmt: skip
        console.print(t)
        if clf and e.get("calibration"):
            cal = Table(title=f"{name}: calibration (deciles of the prediction)")
            for col in ("decile", "rows", "mean predicted", "observed"):
                cal.add_column(col, justify="right")
            for r in e["calibration"]:
                cal.add_row(str(r["bin"]), f"{r['n']:,}", _f(r["mean_predicted"]), _f(r["observed"]))
            console.print(cal)
        if e.get("in_training_dataset"):
            console.print(
                f"{name}: warning: this is the dataset the model was trained on (in-sample, not a test)",
                style="bold yellow",
            )
        elif e.get("rows_in_train_window"):
            console.print(
                f"{name}: warning: {e['rows_in_train_window']:,} rows overlap the model's training window "
                "(their labels or features may have been seen in training)",
                style="bold yellow",
            )
        console.print(verdict(name, e), style="green" if e["beats_base"] else "bold yellow")
