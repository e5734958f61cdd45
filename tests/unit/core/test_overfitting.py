"""Overfitting statistics (tradebot.core.research.overfitting): PSR, DSR and CSCV's PBO.

Expected values are computed here from the formulas with the stated inputs (not by calling the code
under test), plus the numerical example of Bailey & López de Prado (2014).
"""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tradebot.core.research.overfitting import (
    EULER_MASCHERONI,
    column_sharpe_ratios,
    deflated_sharpe_ratio,
    expected_max_sharpe_ratio,
    kurtosis,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    sharpe_ratio,
    skewness,
)

PHI = NormalDist()

# --- moments ---------------------------------------------------------------------------------------


def test_sharpe_ratio_uses_the_sample_std() -> None:
    # mean 2.5, sample variance (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3
    assert sharpe_ratio([1.0, 2.0, 3.0, 4.0]) == pytest.approx(2.5 / math.sqrt(5.0 / 3.0), rel=1e-15)


def test_skewness_and_kurtosis_of_a_small_sample() -> None:
    # x = [0, 0, 0, 4]: mean 1, deviations -1,-1,-1,3 → m2 = 3, m3 = 6, m4 = 21.
    x = [0.0, 0.0, 0.0, 4.0]
    assert skewness(x) == pytest.approx(6.0 / 3.0**1.5, rel=1e-15)
    assert kurtosis(x) == pytest.approx(21.0 / 9.0, rel=1e-15)


def test_kurtosis_is_not_excess() -> None:
    # A symmetric two-point distribution has skew 0 and kurtosis 1.
    assert skewness([-1.0, 1.0] * 50) == pytest.approx(0.0, abs=1e-15)
    assert kurtosis([-1.0, 1.0] * 50) == pytest.approx(1.0, rel=1e-15)


@pytest.mark.parametrize("func", [sharpe_ratio, skewness, kurtosis])
def test_moments_refuse_bad_input(func: object) -> None:
    f = func  # type: ignore[assignment]
    with pytest.raises(ValueError, match="T >= 2"):
        f([0.01])  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"finite.*nan"):
        f([0.01, float("nan"), 0.02])  # type: ignore[operator]
    with pytest.raises(ValueError, match="zero"):
        f([0.01, 0.01, 0.01])  # type: ignore[operator]
    with pytest.raises(ValueError, match="1-D"):
        f([[0.01, 0.02], [0.03, 0.04]])  # type: ignore[operator]


# --- PSR / DSR -------------------------------------------------------------------------------------


def test_psr_hand_computed_normal_case() -> None:
    # SR = 0.1 per period, T = 1000, normal returns (skew 0, kurtosis 3), benchmark 0.
    expected = PHI.cdf(0.1 * math.sqrt(999) / math.sqrt(1 + 0.5 * 0.01))
    assert probabilistic_sharpe_ratio(0.1, 0.0, 1000, 0.0, 3.0) == pytest.approx(expected, rel=1e-15)
    assert expected == pytest.approx(0.99920, abs=1e-5)


def test_psr_non_normal_penalises_negative_skew_and_fat_tails() -> None:
    # SR = 0.1, T = 250, skew -1, kurtosis 6: variance term 1 + 0.1 + 1.25 * 0.01 = 1.1125.
    expected = PHI.cdf(0.1 * math.sqrt(249) / math.sqrt(1.1125))
    got = probabilistic_sharpe_ratio(0.1, 0.0, 250, -1.0, 6.0)
    assert got == pytest.approx(expected, rel=1e-15)
    assert got < probabilistic_sharpe_ratio(0.1, 0.0, 250, 0.0, 3.0)


def test_expected_max_sharpe_hand_computed() -> None:
    # N = 10 trials, V[SR] = 0.04 (std 0.2).
    z = (1 - 0.5772156649015329) * PHI.inv_cdf(0.9) + 0.5772156649015329 * PHI.inv_cdf(1 - 1 / (10 * math.e))
    assert expected_max_sharpe_ratio(0.04, 10) == pytest.approx(0.2 * z, rel=1e-15)
    assert math.isclose(EULER_MASCHERONI, 0.5772156649015329, rel_tol=1e-16)


def test_dsr_matches_the_papers_numerical_example() -> None:
    # Bailey & López de Prado (2014), "A numerical example": N = 100 trials, V[SR_n] = 1/2 annualized,
    # best SR 2.5 annualized, T = 1250 daily returns (5 years of 250 days), skew -3, kurtosis 10.
    # The paper reports SR0 ≈ 0.1132 (daily) and DSR ≈ 0.9004.
    days = 250
    sr0 = expected_max_sharpe_ratio(0.5 / days, 100)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = deflated_sharpe_ratio(2.5 / math.sqrt(days), 1250, -3.0, 10.0, n_trials=100, sr_variance=0.5 / days)
    assert dsr == pytest.approx(0.9004, abs=5e-5)
    # ... which is PSR against SR0, written out:
    sr = 2.5 / math.sqrt(days)
    by_hand = PHI.cdf((sr - sr0) * math.sqrt(1249) / math.sqrt(1 + 3 * sr + 9 / 4 * sr * sr))
    assert dsr == pytest.approx(by_hand, rel=1e-14)


def test_dsr_from_trial_sharpes_uses_their_sample_variance() -> None:
    trials = [0.01, 0.03, 0.05, 0.02, 0.04]  # mean 0.03, sample variance 0.00025
    from_list = deflated_sharpe_ratio(0.05, 500, 0.0, 3.0, trial_sharpes=trials)
    direct = deflated_sharpe_ratio(0.05, 500, 0.0, 3.0, n_trials=5, sr_variance=0.00025)
    assert from_list == pytest.approx(direct, rel=1e-12)


def test_dsr_decreases_as_the_number_of_trials_grows() -> None:
    values = [
        deflated_sharpe_ratio(0.08, 1000, -0.5, 5.0, n_trials=n, sr_variance=0.001)
        for n in (2, 5, 10, 100, 1000, 10_000)
    ]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert values[0] > 0.95 > values[-1]


def test_dsr_with_zero_variance_is_psr_against_zero() -> None:
    dsr = deflated_sharpe_ratio(0.05, 400, 0.0, 3.0, trial_sharpes=[0.05, 0.05, 0.05])
    assert dsr == probabilistic_sharpe_ratio(0.05, 0.0, 400, 0.0, 3.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_trials": 1, "sr_variance": 0.01}, "n_trials must be an integer >= 2, was 1"),
        ({"trial_sharpes": [0.1]}, "N >= 2"),
        ({"trial_sharpes": [0.1, float("inf")]}, "trial_sharpes must be finite, held inf"),
        ({"n_trials": 10, "sr_variance": -0.01}, "sr_variance must be >= 0, was -0.01"),
        ({"n_trials": 10}, "both n_trials and sr_variance"),
        ({"trial_sharpes": [0.1, 0.2], "n_trials": 2}, "not both"),
    ],
)
def test_dsr_refusals_name_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        deflated_sharpe_ratio(0.1, 100, 0.0, 3.0, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0.1, 0.0, 1, 0.0, 3.0), "n must be an integer >= 2, was 1"),
        ((float("nan"), 0.0, 100, 0.0, 3.0), "sr must be a finite number, was nan"),
        ((0.1, 0.0, 100, 0.0, float("inf")), "kurtosis must be a finite number, was inf"),
        ((1.0, 0.0, 100, 3.0, 1.0), "must be > 0"),
    ],
)
def test_psr_refusals_name_the_field(args: tuple[float, float, int, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        probabilistic_sharpe_ratio(*args)


# --- PBO -------------------------------------------------------------------------------------------


def _noise(seed: int, t: int = 800, n: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.01, size=(t, n))


def test_pbo_is_zero_when_one_trial_dominates_every_period() -> None:
    rng = np.random.default_rng(7)
    common = rng.normal(0.0, 0.01, size=(640, 1))
    matrix = common + rng.normal(0.0, 0.001, size=(640, 8))
    matrix[:, 3] += 0.02  # trial 3 beats every other trial in every period, by far
    assert np.all(matrix[:, 3:4] > np.delete(matrix, 3, axis=1))
    result = probability_of_backtest_overfitting(matrix, n_splits=16)
    assert result.n_combinations == math.comb(16, 8) == 12_870
    assert result.pbo == 0.0
    assert len(result.logits) == 12_870
    # the pick is trial 3, ranked first of 8 out of sample: ω = 8/9, λ = ln 8
    assert all(lam == pytest.approx(math.log(8.0)) for lam in result.logits)
    assert result.probability_of_loss == 0.0


def test_pbo_of_pure_noise_is_near_one_half() -> None:
    # i.i.d. trials: the IS winner's OOS rank is uniform, so E[PBO] = 1/2 (N = 20 is even: ranks
    # 1..10 give λ < 0). One matrix's PBO is widely spread (0.1-0.9 across seeds at S = 8), hence
    # the wide band for one seed and the narrow one for the mean over 40 seeds (SE ≈ 0.03).
    result = probability_of_backtest_overfitting(_noise(20240601), n_splits=16)
    assert 0.3 <= result.pbo <= 0.7
    assert result.degradation_slope is not None
    mean = np.mean([probability_of_backtest_overfitting(_noise(s), n_splits=8).pbo for s in range(40)])
    assert 0.4 <= mean <= 0.6


def test_pbo_logits_by_hand_on_a_tiny_matrix() -> None:
    # T = 4, N = 3, S = 2 (blocks of 2 rows), metric = mean: combination {0}: IS rows 0-1, OOS 2-3.
    # Returns in units of 0.25 % so every mean is exact in binary floating point.
    m = [[3.0, 1.0, 0.0], [1.0, 1.0, 0.0], [-2.0, 1.0, 2.0], [-2.0, 1.0, 2.0]]
    result = probability_of_backtest_overfitting(m, n_splits=2, metric=lambda b: b.mean(axis=0))
    # {0}: IS means [2, 1, 0] → trial 0; OOS means [-2, 1, 2] → lowest, rank 1 → ω = 1/4.
    # {1}: IS = rows 2-3 → trial 2; OOS (rows 0-1) means [2, 1, 0] → rank 1 → ω = 1/4.
    assert result.logits == pytest.approx((math.log(1 / 3), math.log(1 / 3)))
    assert result.pbo == 1.0
    assert result.is_performance == (2.0, 2.0)
    assert result.oos_performance == (-2.0, 0.0)
    assert result.probability_of_loss == 0.5
    assert result.degradation_slope is None  # both IS values equal


def test_pbo_drops_the_oldest_remainder_rows() -> None:
    m = _noise(3, t=70, n=4)
    assert probability_of_backtest_overfitting(m, n_splits=4) == probability_of_backtest_overfitting(
        m[2:], n_splits=4
    )


def test_column_sharpe_of_constant_columns() -> None:
    block = np.array([[0.01, 0.0, -0.01, 0.01], [0.01, 0.0, -0.01, 0.03]])
    got = column_sharpe_ratios(block)
    assert got[:3].tolist() == [math.inf, 0.0, -math.inf]
    assert got[3] == pytest.approx(0.02 / math.sqrt(0.0002))


@pytest.mark.parametrize(
    ("matrix", "splits", "message"),
    [
        (np.zeros((32, 4)), 3, "n_splits must be an even integer >= 2, was 3"),
        (np.zeros((8, 4)), 16, "T >= n_splits=16 periods \\(rows\\), had T=8"),
        (np.zeros((32, 1)), 4, "N >= 2 trials \\(columns\\), had N=1"),
        (np.full((32, 3), np.inf), 4, "performance must be finite, held inf at \\[0, 0\\]"),
        ([[0.1, 0.2], [0.3]], 2, "T x N matrix"),
        (np.zeros(32), 4, "2-D"),
    ],
)
def test_pbo_refusals(matrix: object, splits: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        probability_of_backtest_overfitting(matrix, n_splits=splits)  # type: ignore[arg-type]


_matrices = hnp.arrays(
    np.float64,
    shape=st.tuples(st.integers(12, 40), st.integers(2, 6)),
    # Returns are 0 or at least 1e-12 in size: squares of smaller ones (1e-159) underflow to subnormal
    # floats, where scaling by a power of two is no longer exact (a float artefact, not a PBO one).
    elements=st.one_of(st.just(0.0), st.floats(1e-12, 0.1), st.floats(-0.1, -1e-12)),
)


@settings(max_examples=60, deadline=None)
@given(matrix=_matrices, splits=st.sampled_from([2, 4, 6]))
def test_pbo_is_a_probability(matrix: np.ndarray, splits: int) -> None:
    result = probability_of_backtest_overfitting(matrix, n_splits=splits)
    assert 0.0 <= result.pbo <= 1.0
    assert result.n_combinations == math.comb(splits, splits // 2) == len(result.logits)


@settings(max_examples=60, deadline=None)
@given(matrix=_matrices, power=st.integers(-8, 8))
def test_pbo_is_invariant_to_a_positive_scaling(matrix: np.ndarray, power: int) -> None:
    # Powers of two scale every float exactly, so the Sharpe ratios (and their ties) are unchanged.
    base = probability_of_backtest_overfitting(matrix, n_splits=4)
    scaled = probability_of_backtest_overfitting(matrix * 2.0**power, n_splits=4)
    assert scaled.pbo == base.pbo
    assert scaled.logits == base.logits


@settings(max_examples=60, deadline=None)
@given(matrix=_matrices, data=st.data())
def test_pbo_is_invariant_to_the_order_of_trials(matrix: np.ndarray, data: st.DataObject) -> None:
    order = data.draw(st.permutations(range(matrix.shape[1])))
    base = probability_of_backtest_overfitting(matrix, n_splits=4)
    permuted = probability_of_backtest_overfitting(matrix[:, list(order)], n_splits=4)
    assert permuted.pbo == base.pbo
    assert permuted.logits == base.logits
