"""Walk-forward measures: the stitched out-of-sample curve and the overfitting statistics of the folds.

Pure functions over finished backtests and Optuna trials (no I/O): :func:`stitch` chains the folds'
test-window runs into one out-of-sample run, :func:`fold_overfitting` gives the Deflated Sharpe Ratio
of a fold's chosen trial and the PBO of its study, :func:`overall_overfitting` the same over all folds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
from optuna.trial import FrozenTrial

from tradebot.core.domain import TradeRecord
from tradebot.core.metrics import compute_metrics
from tradebot.core.research.overfitting import (
    deflated_sharpe_ratio,
    kurtosis,
    probability_of_backtest_overfitting,
    skewness,
)

__all__ = [
    "FoldRun",
    "daily_sharpe",
    "fold_overfitting",
    "overall_overfitting",
    "returns_matrix",
    "stitch",
]

#: Quote-currency precision of the stitched equity (the ledger's 8 decimals).
_QUOTE_QUANTUM = Decimal("1e-8")

#: CSCV splits (16 in Bailey et al. 2017), lowered to fit short windows (each block >= 2 days).
PBO_SPLITS = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class FoldRun:
    """One fold's out-of-sample backtest, as :func:`stitch` needs it.

    Attributes
    ----------
    equity_curve
        ``(time_ms, equity_quote)`` samples of the test-window run, ms UTC increasing.
    trades
        Its trade records (latest per position).
    fees_paid, traded_notional
        Totals in quote currency.
    n_orders
        Orders sent.
    exposure_ms
        Time with a position open, ms.
    """

    equity_curve: Sequence[tuple[int, Decimal]]
    trades: Sequence[TradeRecord]
    fees_paid: Decimal
    traded_notional: Decimal
    n_orders: int
    exposure_ms: int


def stitch(runs: Sequence[FoldRun]) -> tuple[list[tuple[int, Decimal]], dict[str, Any]]:
    """Chain the folds' test-window runs into one out-of-sample curve and its ``overall`` measures.

    Each fold starts from the configured initial cash; fold ``k``'s curve is scaled by the growth of
    the folds before it (``E_k(t) · Π_{j<k} E_j,last / E_j,first``), so the stitched curve compounds
    as if the equity had been carried from one test window to the next (positions are not: every
    fold starts flat, as its backtest does); samples are rounded to 8 decimals of the quote currency.
    Trade statistics, fees, notional, orders and exposure are the folds' sums, in each fold's own
    quote amounts.

    Returns
    -------
    (curve, overall)
        The stitched ``(time_ms, equity_quote)`` curve and :func:`compute_metrics` of it, with the
        keys of a backtest summary's ``overall``.

    Raises
    ------
    ValueError
        If ``runs`` is empty, a fold has no equity sample, or the folds overlap in time.
    """
    if not runs:
        raise ValueError("stitch needs at least one fold run, was empty")
    curve: list[tuple[int, Decimal]] = []
    factor = Decimal(1)
    for k, run in enumerate(runs):
        if not run.equity_curve:
            raise ValueError(f"fold {k} has no equity sample")
        if curve and run.equity_curve[0][0] <= curve[-1][0]:
            raise ValueError(f"fold {k} starts at {run.equity_curve[0][0]}, before the previous fold ends")
        first = Decimal(run.equity_curve[0][1])
        curve.extend((t, (Decimal(e) * factor).quantize(_QUOTE_QUANTUM)) for t, e in run.equity_curve)
        factor *= Decimal(run.equity_curve[-1][1]) / first
    span = curve[-1][0] - curve[0][0]
    metrics = compute_metrics(
        equity_curve=curve,
        trades=[t for r in runs for t in r.trades],
        fees_paid=sum((r.fees_paid for r in runs), start=Decimal(0)),
        traded_notional=sum((r.traded_notional for r in runs), start=Decimal(0)),
        n_orders=sum(r.n_orders for r in runs),
        exposure_ms=min(span, sum(r.exposure_ms for r in runs)),
    )
    return curve, metrics.to_dict()


def daily_sharpe(returns: npt.NDArray[np.float64]) -> float:
    """Per-day Sharpe ratio ``mean / std (ddof=1)`` of one return series; 0 for a constant series
    (a trial that never trades) so that every trial has a finite score."""
    if returns.size < 2:
        return 0.0
    std = float(np.std(returns, ddof=1))
    return float(np.mean(returns)) / std if std > 0 else 0.0


def returns_matrix(trials: Sequence[FrozenTrial]) -> tuple[list[int], npt.NDArray[np.float64]]:
    """Return ``(trial numbers, T × N daily returns)`` of the trials that stored ``daily_returns``,
    over the days every one of them has (the study window's days, in time order)."""
    kept = [t for t in trials if isinstance(t.user_attrs.get("daily_returns"), Mapping)]
    if not kept:
        return [], np.zeros((0, 0))
    days = set.intersection(*(set(t.user_attrs["daily_returns"]) for t in kept))
    order = sorted(days, key=int)
    matrix = np.array(
        [[float(t.user_attrs["daily_returns"][d]) for t in kept] for d in order], dtype=np.float64
    )
    return [t.number for t in kept], matrix.reshape(len(order), len(kept))


def _dsr(selected: npt.NDArray[np.float64], trial_sharpes: Sequence[float]) -> dict[str, Any]:
    # DSR of the selected daily returns against N trials' Sharpes; None where undefined (and why).
    out: dict[str, Any] = {"value": None, "sharpe": daily_sharpe(selected), "n_trials": len(trial_sharpes)}
    if len(trial_sharpes) < 2 or selected.size < 3 or float(np.std(selected)) == 0.0:
        out["why"] = "needs >= 2 trials and a non-constant series of >= 3 daily returns"
        return out
    var = float(np.var(np.asarray(trial_sharpes), ddof=1))
    if var == 0.0:
        out["why"] = "every trial has the same Sharpe ratio"
        return out
    value = deflated_sharpe_ratio(
        out["sharpe"],
        int(selected.size),
        skewness(selected),
        kurtosis(selected),
        n_trials=len(trial_sharpes),
        sr_variance=var,
    )
    out["value"] = value if math.isfinite(value) else None
    out["sr_variance"] = var
    return out


def _pbo(matrix: npt.NDArray[np.float64]) -> dict[str, Any]:
    # PBO by CSCV over T x N daily returns; None where T or N is too small.
    n_days, n_trials = matrix.shape if matrix.ndim == 2 else (0, 0)
    splits = min(PBO_SPLITS, (n_days // 2) // 2 * 2)
    if n_trials < 2 or splits < 2:
        return {"value": None, "why": f"needs >= 2 trials and >= 4 days, had {n_trials} x {n_days}"}
    result = probability_of_backtest_overfitting(matrix, n_splits=splits)
    return {
        "value": result.pbo,
        "n_splits": splits,
        "n_combinations": result.n_combinations,
        "probability_of_loss": result.probability_of_loss,
        "degradation_slope": result.degradation_slope,
    }


def fold_overfitting(trials: Sequence[FrozenTrial], chosen: int | None) -> dict[str, Any]:
    """Overfitting statistics of one fold's study (in-sample daily returns of its complete trials).

    - ``deflated_sharpe``: the Deflated Sharpe Ratio (Bailey & López de Prado 2014, eq. 10-11) of
      trial ``chosen`` against all ``N`` trials: ``PSR(SR0)`` with ``SR0 = √V[SR_n] · ((1 − γ)
      Φ⁻¹(1 − 1/N) + γ Φ⁻¹(1 − 1/(N e)))``; per-day Sharpe ratios.
    - ``pbo``: the Probability of Backtest Overfitting by combinatorially symmetric cross-validation
      (Bailey, Borwein, López de Prado & Zhu 2017) of the ``T × N`` daily returns, ``S = 16`` blocks
      (fewer for windows under 64 days).

    A value is ``None`` (with ``why``) when it is undefined: fewer than 2 trials, a constant series.
    """
    numbers, matrix = returns_matrix(trials)
    sharpes = [daily_sharpe(matrix[:, i]) for i in range(len(numbers))]
    out: dict[str, Any] = {"pbo": _pbo(matrix)}
    if chosen is None or chosen not in numbers:
        out["deflated_sharpe"] = {"value": None, "why": "no chosen trial", "n_trials": len(numbers)}
    else:
        out["deflated_sharpe"] = _dsr(matrix[:, numbers.index(chosen)], sharpes)
    out["trial_sharpes"] = sharpes
    return out


def overall_overfitting(
    oos_daily_returns: Sequence[float], folds: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(deflated_sharpe, pbo)`` over all trials of all folds.

    ``deflated_sharpe`` deflates the stitched out-of-sample daily returns — the output of the whole
    selection procedure — by the expected maximum Sharpe of all ``N`` trials tried in all folds
    (``V[SR_n]`` of their in-sample per-day Sharpe ratios); the per-fold values stay in each fold.
    ``pbo`` is the mean of the folds' PBO (each fold's trials share one window; trials of different
    folds do not), with the per-fold values listed.
    """
    sharpes = [s for f in folds for s in f.get("overfitting", {}).get("trial_sharpes", [])]
    dsr = _dsr(np.asarray(oos_daily_returns, dtype=np.float64), sharpes)
    dsr["of"] = "stitched out-of-sample daily returns, against every trial of every fold"
    dsr["per_fold"] = [f.get("overfitting", {}).get("deflated_sharpe", {}).get("value") for f in folds]
    per_fold = [f.get("overfitting", {}).get("pbo", {}).get("value") for f in folds]
    known = [v for v in per_fold if v is not None]
    pbo = {
        "value": float(np.mean(known)) if known else None,
        "of": "mean of the folds' PBO (CSCV over each fold's in-sample trials)",
        "per_fold": per_fold,
    }
    return dsr, pbo
