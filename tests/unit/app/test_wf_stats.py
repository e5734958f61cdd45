"""Walk-forward statistics: the stitched OOS curve (exact) and the fold / overall DSR and PBO."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution

from tradebot.app.research.wf_stats import (
    FoldRun,
    fold_overfitting,
    overall_overfitting,
    returns_matrix,
    stitch,
)
from tradebot.core.research.overfitting import deflated_sharpe_ratio, kurtosis, skewness

H = 3_600_000
D = Decimal


def _run(t0: int, equities: list[str], orders: int = 2) -> FoldRun:
    return FoldRun(
        equity_curve=[(t0 + i * H, D(e)) for i, e in enumerate(equities)],
        trades=[],
        fees_paid=D("1.5"),
        traded_notional=D("1000"),
        n_orders=orders,
        exposure_ms=H,
    )


def test_stitch_compounds_the_folds_and_sums_their_totals() -> None:
    curve, overall = stitch([_run(0, ["10000", "11000"]), _run(10 * H, ["10000", "9000", "9900"], orders=3)])
    assert [e for _, e in curve] == [D(10000), D(11000), D(11000), D(9900), D("10890")]
    assert [t for t, _ in curve] == [0, H, 10 * H, 11 * H, 12 * H]
    assert overall["final_equity"] == D("10890")
    assert overall["total_return"] == pytest.approx(0.089)
    assert overall["max_drawdown"] == pytest.approx(0.1)  # 11000 -> 9900
    assert (overall["n_orders"], overall["fees_paid"], overall["traded_notional"]) == (5, D(3), D(2000))


def test_stitch_refuses_overlapping_or_empty_folds() -> None:
    with pytest.raises(ValueError, match="fold 1 starts at 3600000"):
        stitch([_run(0, ["1", "2"]), _run(H, ["1", "2"])])
    with pytest.raises(ValueError, match="at least one"):
        stitch([])


def _trial(number: int, returns: list[float]) -> optuna.trial.FrozenTrial:
    t = optuna.trial.create_trial(
        params={"x": float(number)},
        distributions={"x": FloatDistribution(0, 100)},
        value=float(np.mean(returns)),
        user_attrs={"daily_returns": {str(86_400_000 * i): r for i, r in enumerate(returns)}},
    )
    t.number = number
    return t


def test_fold_overfitting_matches_the_formulas_on_the_trials_returns() -> None:
    rng = np.random.default_rng(3)
    series = [list(rng.normal(0.001 * k, 0.02, 80)) for k in range(6)]
    trials = [_trial(k, s) for k, s in enumerate(series)]
    numbers, matrix = returns_matrix(trials)
    assert numbers == list(range(6)) and matrix.shape == (80, 6)
    out = fold_overfitting(trials, chosen=5)
    sharpes = [float(np.mean(s) / np.std(s, ddof=1)) for s in series]
    assert out["trial_sharpes"] == pytest.approx(sharpes)
    chosen = np.asarray(series[5])
    expected = deflated_sharpe_ratio(
        sharpes[5],
        80,
        skewness(chosen),
        kurtosis(chosen),
        n_trials=6,
        sr_variance=float(np.var(sharpes, ddof=1)),
    )
    assert out["deflated_sharpe"]["value"] == pytest.approx(expected)
    assert 0.0 <= out["pbo"]["value"] <= 1.0 and out["pbo"]["n_splits"] == 16
    # one trial only: both statistics are undefined, and say why
    alone = fold_overfitting(trials[:1], chosen=0)
    assert alone["deflated_sharpe"]["value"] is None and "2 trials" in alone["deflated_sharpe"]["why"]
    assert alone["pbo"]["value"] is None


def test_skill_among_noise_scores_high_and_noise_alone_does_not() -> None:
    # 20 unskilled configurations: the in-sample best is luck (PBO high, DSR unremarkable); replace
    # one by a configuration with a real edge and choose it: DSR near 1, PBO near 0.
    rng = np.random.default_rng(0)
    noise = [_trial(k, list(rng.normal(0.0, 0.01, 128))) for k in range(20)]
    lucky = max(noise, key=lambda t: t.value or 0.0)
    luck = fold_overfitting(noise, chosen=lucky.number)
    skilled = [_trial(0, list(rng.normal(0.004, 0.01, 128))), *noise[1:]]
    skill = fold_overfitting(skilled, chosen=0)
    assert skill["deflated_sharpe"]["value"] > 0.95 > luck["deflated_sharpe"]["value"]
    assert skill["pbo"]["value"] < 0.1 < 0.3 < luck["pbo"]["value"]


def test_overall_overfitting_pools_every_fold() -> None:
    rng = np.random.default_rng(5)
    folds = [
        {"overfitting": fold_overfitting([_trial(k, list(rng.normal(0, 0.01, 40))) for k in range(4)], 0)}
    ]
    folds.append(
        {"overfitting": fold_overfitting([_trial(k, list(rng.normal(0, 0.01, 40))) for k in range(5)], 1)}
    )
    oos = list(rng.normal(0.0005, 0.01, 60))
    dsr, pbo = overall_overfitting(oos, folds)
    assert dsr["n_trials"] == 9 and len(dsr["per_fold"]) == 2
    assert pbo["value"] == pytest.approx(np.mean([f["overfitting"]["pbo"]["value"] for f in folds]))
