"""Folds, metrics and Platt scaling of tradebot.core.ml on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from tradebot.core.ml import Platt, brier, calibration_table, mae, purged_walk_forward, roc_auc


def test_auc_counts_pairs_and_ties_half() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    # pairs (pos, neg): (0.5 vs 0.5) tie = 0.5, (0.5 vs 0.1) = 1, (0.2 vs 0.5) = 0, (0.2 vs 0.1) = 1
    assert roc_auc([1, 1, 0, 0], [0.5, 0.2, 0.5, 0.1]) == pytest.approx(2.5 / 4)
    assert roc_auc([1, 1], [0.2, 0.3]) is None


def test_brier_mae_and_deciles() -> None:
    assert brier([1, 0], [0.8, 0.4]) == pytest.approx((0.04 + 0.16) / 2)
    assert mae([1.0, -1.0], [0.5, 0.0]) == pytest.approx(0.75)
    table = calibration_table(np.arange(20) >= 10, np.linspace(0, 1, 20))
    assert len(table) == 10 and all(r["n"] == 2 for r in table)
    assert [r["observed"] for r in table] == [0.0] * 5 + [1.0] * 5
    assert len(calibration_table([1, 0, 1], [0.1, 0.2, 0.3])) == 3


def test_platt_recovers_a_known_sigmoid() -> None:
    rng = np.random.default_rng(1)
    s = rng.normal(0, 2, 20_000)
    y = rng.random(len(s)) < 1 / (1 + np.exp(-(0.5 * s - 1.0)))
    p = Platt.fit(s, y)
    assert p.a == pytest.approx(0.5, abs=0.05) and p.b == pytest.approx(-1.0, abs=0.07)
    assert np.all(np.diff(p(np.sort(s))) >= 0)  # monotone: the AUC is unchanged


def test_platt_stays_finite_on_separable_classes() -> None:
    p = Platt.fit([-2.0, -1.0, 1.0, 2.0], [0, 0, 1, 1])
    assert np.isfinite(p.a) and np.isfinite(p.b)
    probs = p([-2.0, 2.0])
    assert 0 < probs[0] < 0.5 < probs[1] < 1


def test_folds_purge_the_overlapping_position_and_keep_the_embargo() -> None:
    # positions a (t 0..2), b (t 3..5), c (t 6..8); horizon 2; 2 folds -> blocks a | b | c
    t = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8])
    g = np.array(["a"] * 3 + ["b"] * 3 + ["c"] * 3)
    folds = purged_walk_forward(t, t + 2, g, n_folds=2, embargo_ms=0)
    assert [f.test.tolist() for f in folds] == [[3, 4, 5], [6, 7, 8]]
    # fold 1: a's rows end their labels at 2, 3, 4; only the one ending before 3 stays
    assert folds[0].train.tolist() == [0] and folds[0].purged == 2
    assert folds[1].train.tolist() == [0, 1, 2, 3] and folds[1].purged == 2
    embargoed = purged_walk_forward(t, t + 2, g, n_folds=2, embargo_ms=2)
    assert embargoed[1].train.tolist() == [0, 1]
    with pytest.raises(ValueError, match="n_folds must be >= 1, was 0"):
        purged_walk_forward(t, t, g, n_folds=0, embargo_ms=0)
