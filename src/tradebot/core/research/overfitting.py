"""Overfitting statistics of a study: Sharpe moments, PSR, Deflated Sharpe Ratio and PBO (STRATEGY.md §8).

Sources
-------
- Bailey, D. H. & López de Prado, M. (2014). "The Deflated Sharpe Ratio: Correcting for Selection Bias,
  Backtest Overfitting and Non-Normality". *Journal of Portfolio Management* 40(5), 94-107.
- Bailey, D. H., Borwein, J., López de Prado, M. & Zhu, Q. J. (2017). "The Probability of Backtest
  Overfitting". *Journal of Computational Finance* 20(4), 39-69.

Conventions
-----------
- Every Sharpe ratio here is *per period* (the period of the returns given: one candle, one day),
  never annualized and without a risk-free rate: ``SR = mean(r) / std(r, ddof=1)``. To use an
  annualized figure divide it by ``sqrt(periods_per_year)`` first.
- Kurtosis is the plain (non-excess) fourth standardized moment: 3 for a normal distribution.
- Invalid input raises ``ValueError`` naming the argument and the value; nothing returns NaN.

Pure: numpy and the standard library only (``statistics.NormalDist`` gives Φ and Φ⁻¹); no I/O.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "EULER_MASCHERONI",
    "PBOResult",
    "column_sharpe_ratios",
    "deflated_sharpe_ratio",
    "expected_max_sharpe_ratio",
    "kurtosis",
    "probabilistic_sharpe_ratio",
    "probability_of_backtest_overfitting",
    "sharpe_ratio",
    "skewness",
]

#: The Euler–Mascheroni constant γ of the expected-maximum approximation (Bailey & López de Prado 2014).
EULER_MASCHERONI = 0.5772156649015329

_NORMAL = NormalDist()

#: A performance metric for CSCV: a (rows × N) block of returns → N scores (higher is better).
Metric = Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]


# --- moments ---------------------------------------------------------------------------------------


def _returns_1d(returns: npt.ArrayLike, name: str = "returns") -> npt.NDArray[np.float64]:
    # Validate a 1-D series of at least two finite returns; return it as float64.
    try:
        arr = np.asarray(returns, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 1-D sequence of numbers, was {returns!r}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, had shape {arr.shape}")
    if arr.size < 2:
        raise ValueError(f"{name} must hold at least 2 returns (T >= 2), had T={arr.size}")
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)][0]
        raise ValueError(f"{name} must be finite, held {float(bad)!r}")
    return arr


def _central_moments(arr: npt.NDArray[np.float64], name: str) -> tuple[float, float, float]:
    # Biased central moments m2, m3, m4 (divided by T); refuses a constant series.
    dev = arr - arr.mean()
    m2 = float(np.mean(dev**2))
    if m2 == 0.0:
        raise ValueError(f"{name} has zero variance (all returns equal {float(arr[0])!r})")
    return m2, float(np.mean(dev**3)), float(np.mean(dev**4))


def sharpe_ratio(returns: npt.ArrayLike) -> float:
    """Return the per-period Sharpe ratio ``mean(r) / std(r, ddof=1)`` of a return series.

    Parameters
    ----------
    returns
        ``T`` simple (or log) returns of one strategy, one per period, as fractions; ``T >= 2``.

    Returns
    -------
    float
        The Sharpe ratio in units of the returns' period (not annualized, no risk-free rate).

    Raises
    ------
    ValueError
        If ``returns`` is not 1-D, has fewer than 2 values, holds a non-finite value, or has zero
        standard deviation (the ratio is undefined).
    """
    arr = _returns_1d(returns)
    std = float(np.std(arr, ddof=1))
    if std == 0.0:
        raise ValueError(f"returns has zero standard deviation (all returns equal {float(arr[0])!r})")
    return float(np.mean(arr)) / std


def skewness(returns: npt.ArrayLike) -> float:
    """Return the sample skewness ``γ3 = m3 / m2^1.5`` (biased moments, divided by ``T``).

    Raises
    ------
    ValueError
        As :func:`sharpe_ratio` (not 1-D, ``T < 2``, non-finite, zero variance).
    """
    m2, m3, _ = _central_moments(_returns_1d(returns), "returns")
    return m3 / math.pow(m2, 1.5)


def kurtosis(returns: npt.ArrayLike) -> float:
    """Return the sample kurtosis ``γ4 = m4 / m2²`` (non-excess: 3 for a normal distribution).

    Raises
    ------
    ValueError
        As :func:`sharpe_ratio` (not 1-D, ``T < 2``, non-finite, zero variance).
    """
    m2, _, m4 = _central_moments(_returns_1d(returns), "returns")
    return m4 / m2**2


# --- PSR and DSR -----------------------------------------------------------------------------------


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, was {value!r}")
    return float(value)


def _count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, was {value!r}")
    return int(value)


def probabilistic_sharpe_ratio(sr: float, sr_benchmark: float, n: int, skew: float, kurtosis: float) -> float:
    """Return the Probabilistic Sharpe Ratio: the probability that the true SR exceeds a benchmark.

    ``PSR(SR*) = Φ( (SR − SR*) · sqrt(T − 1) / sqrt(1 − γ3·SR + (γ4 − 1)/4 · SR²) )``
    (Bailey & López de Prado 2014, eq. 9; first in Bailey & López de Prado 2012).

    Parameters
    ----------
    sr
        Observed Sharpe ratio, per period (not annualized).
    sr_benchmark
        Benchmark Sharpe ratio ``SR*``, per period (0 asks "is the SR positive at all").
    n
        Number of returns ``T`` behind ``sr``; ``T >= 2``.
    skew
        Skewness ``γ3`` of those returns.
    kurtosis
        Kurtosis ``γ4`` of those returns, non-excess (3 for normal returns).

    Returns
    -------
    float
        A probability in ``[0, 1]``.

    Raises
    ------
    ValueError
        If a value is not finite, ``n < 2``, or the variance term
        ``1 − γ3·SR + (γ4 − 1)/4 · SR²`` is not positive (moments no distribution can have, since
        ``γ4 >= 1 + γ3²``).
    """
    sr = _finite("sr", sr)
    sr_benchmark = _finite("sr_benchmark", sr_benchmark)
    n = _count("n", n, 2)
    skew = _finite("skew", skew)
    kurtosis = _finite("kurtosis", kurtosis)
    variance_term = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if variance_term <= 0.0:
        raise ValueError(
            f"1 - skew*sr + (kurtosis-1)/4*sr^2 must be > 0, was {variance_term!r} "
            f"(sr={sr!r}, skew={skew!r}, kurtosis={kurtosis!r})"
        )
    z = (sr - sr_benchmark) * math.sqrt(n - 1) / math.sqrt(variance_term)
    return _NORMAL.cdf(z)


def expected_max_sharpe_ratio(sr_variance: float, n_trials: int) -> float:
    """Return ``SR0``, the expected maximum Sharpe ratio of ``N`` unskilled trials.

    ``SR0 = sqrt(V[SR_n]) · ((1 − γ)·Φ⁻¹(1 − 1/N) + γ·Φ⁻¹(1 − 1/(N·e)))``, γ the Euler–Mascheroni
    constant (Bailey & López de Prado 2014, eq. 11 with a zero mean).

    Parameters
    ----------
    sr_variance
        Variance ``V[SR_n]`` of the trials' Sharpe ratios, per period squared; ``>= 0``. Zero (all
        trials scored alike) gives ``SR0 = 0``, the formula's value: there is no dispersion to select on.
    n_trials
        Number of independent trials ``N``; ``N >= 2``.

    Raises
    ------
    ValueError
        If ``sr_variance`` is negative or not finite, or ``n_trials < 2``.
    """
    sr_variance = _finite("sr_variance", sr_variance)
    if sr_variance < 0.0:
        raise ValueError(f"sr_variance must be >= 0, was {sr_variance!r}")
    n_trials = _count("n_trials", n_trials, 2)
    if sr_variance == 0.0:
        return 0.0
    g = EULER_MASCHERONI
    max_z = (1.0 - g) * _NORMAL.inv_cdf(1.0 - 1.0 / n_trials) + g * _NORMAL.inv_cdf(
        1.0 - 1.0 / (n_trials * math.e)
    )
    return math.sqrt(sr_variance) * max_z


def deflated_sharpe_ratio(
    sr: float,
    n: int,
    skew: float,
    kurtosis: float,
    *,
    trial_sharpes: Sequence[float] | npt.NDArray[np.float64] | None = None,
    n_trials: int | None = None,
    sr_variance: float | None = None,
) -> float:
    """Return the Deflated Sharpe Ratio of the trial selected out of a study.

    ``DSR = PSR(SR0)`` with ``SR0`` from :func:`expected_max_sharpe_ratio` (Bailey & López de Prado
    2014, eq. 10-11): the probability that the selected trial's true SR beats the best SR that
    ``N`` unskilled trials would show by luck.

    Parameters
    ----------
    sr, n, skew, kurtosis
        The selected trial's per-period Sharpe ratio, its number of returns ``T >= 2``, and their
        skewness and (non-excess) kurtosis; see :func:`probabilistic_sharpe_ratio`.
    trial_sharpes
        Per-period Sharpe ratios of *all* ``N`` trials of the study (the selected one included);
        ``N = len(trial_sharpes)`` and ``V[SR_n]`` is their sample variance (``ddof=1``).
    n_trials, sr_variance
        Instead of ``trial_sharpes``: ``N`` and ``V[SR_n]`` given directly (e.g. an effective number
        of independent trials).

    Raises
    ------
    ValueError
        If neither or both of ``trial_sharpes`` and (``n_trials``, ``sr_variance``) are given,
        ``N < 2``, a value is not finite, or as :func:`probabilistic_sharpe_ratio`.
    """
    if trial_sharpes is not None:
        if n_trials is not None or sr_variance is not None:
            raise ValueError("give either trial_sharpes or (n_trials, sr_variance), not both")
        sharpes = np.asarray(trial_sharpes, dtype=np.float64)
        if sharpes.ndim != 1 or sharpes.size < 2:
            raise ValueError(f"trial_sharpes must hold N >= 2 Sharpe ratios, had shape {sharpes.shape}")
        if not np.all(np.isfinite(sharpes)):
            bad = sharpes[~np.isfinite(sharpes)][0]
            raise ValueError(f"trial_sharpes must be finite, held {float(bad)!r}")
        n_trials, sr_variance = int(sharpes.size), float(np.var(sharpes, ddof=1))
    elif n_trials is None or sr_variance is None:
        raise ValueError("give trial_sharpes, or both n_trials and sr_variance")
    sr0 = expected_max_sharpe_ratio(sr_variance, n_trials)
    return probabilistic_sharpe_ratio(sr, sr0, n, skew, kurtosis)


# --- PBO (CSCV) ------------------------------------------------------------------------------------


def column_sharpe_ratios(block: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Return the per-period Sharpe ratio of each column of a (rows × N) block of returns.

    A column with zero standard deviation scores ``+inf`` / ``-inf`` / ``0`` by the sign of its mean,
    so that a constant gain still ranks above any risky return and ranks stay defined.

    Raises
    ------
    ValueError
        If ``block`` is not 2-D or has fewer than 2 rows.
    """
    if block.ndim != 2 or block.shape[0] < 2:
        raise ValueError(f"block must be 2-D with at least 2 rows, had shape {block.shape}")
    mean = block.mean(axis=0)
    std = block.std(axis=0, ddof=1)
    out = np.where(mean > 0.0, np.inf, np.where(mean < 0.0, -np.inf, 0.0))
    np.divide(mean, std, out=out, where=std > 0.0)
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class PBOResult:
    """Outcome of CSCV (Bailey, Borwein, López de Prado & Zhu 2017).

    Attributes
    ----------
    pbo
        Probability of backtest overfitting: the fraction of combinations whose logit ``λ <= 0``, i.e.
        where the in-sample best trial ranks at or below the out-of-sample median; in ``[0, 1]``.
    logits
        ``λ_c = ln(ω_c / (1 − ω_c))`` per combination, in :func:`itertools.combinations` order.
    n_combinations
        ``C(S, S/2)``, the number of in-sample/out-of-sample splits evaluated.
    is_performance, oos_performance
        Metric of the in-sample best trial in sample and out of sample, per combination.
    degradation_slope
        OLS slope of ``oos_performance`` on ``is_performance`` (negative: the better a trial looked in
        sample, the worse it did out of sample); ``None`` when the in-sample values do not vary.
    probability_of_loss
        Fraction of combinations where the in-sample best trial's metric is ``< 0`` out of sample.
    """

    pbo: float
    logits: tuple[float, ...]
    n_combinations: int
    is_performance: tuple[float, ...]
    oos_performance: tuple[float, ...]
    degradation_slope: float | None
    probability_of_loss: float


def _performance_matrix(performance: Any) -> npt.NDArray[np.float64]:
    try:
        matrix = np.asarray(performance, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"performance must be a T x N matrix of numbers: {exc}") from exc
    if matrix.ndim != 2:
        raise ValueError(f"performance must be 2-D (T periods x N trials), had shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        row, col = np.argwhere(~np.isfinite(matrix))[0]
        raise ValueError(f"performance must be finite, held {float(matrix[row, col])!r} at [{row}, {col}]")
    return matrix


def _relative_rank(scores: npt.NDArray[np.float64], index: int) -> float:
    # ω = rank / (N + 1), rank 1..N ascending, ties sharing their average rank.
    value = scores[index]
    rank = float(np.sum(scores < value)) + (float(np.sum(scores == value)) + 1.0) / 2.0
    return rank / (scores.size + 1)


def probability_of_backtest_overfitting(
    performance: npt.ArrayLike, n_splits: int = 16, metric: Metric = column_sharpe_ratios
) -> PBOResult:
    """Estimate the Probability of Backtest Overfitting by combinatorially symmetric cross-validation.

    CSCV (Bailey, Borwein, López de Prado & Zhu 2017, §2): split the ``T`` rows into ``S`` contiguous
    blocks of ``T // S`` rows (the oldest ``T mod S`` rows are dropped). For each of the ``C(S, S/2)``
    ways to choose half the blocks: in sample (IS) = the chosen blocks, out of sample (OOS) = the
    others, both in time order; ``n*`` = the trial with the best IS metric; ``ω`` = its OOS rank
    among the ``N`` trials divided by ``N + 1``; ``λ = ln(ω / (1 − ω))``. ``PBO`` = the fraction of
    combinations with ``λ <= 0``.

    Parameters
    ----------
    performance
        ``T × N`` returns (fractions per period): one column per trial (configuration), one row per
        period, all trials over the same periods. A numpy array or a sequence of rows.
    n_splits
        ``S``, an even number ``>= 2`` and ``<= T`` (16 in the paper: 12 870 combinations).
    metric
        Scores of each column of a (rows × N) block, higher is better; by default the per-period
        Sharpe ratio (:func:`column_sharpe_ratios`). Must return ``N`` values, none NaN.

    Returns
    -------
    PBOResult
        ``pbo``, the logits, and the degradation statistics of the paper's §3.

    Notes
    -----
    Deterministic. When several trials tie for the best IS metric the one with the worst OOS metric
    is taken (the conservative choice, and independent of column order). OOS ties share their
    average rank.

    Raises
    ------
    ValueError
        If ``performance`` is not a 2-D finite matrix, ``N < 2``, ``S`` is odd or ``< 2``, ``T < S``,
        or ``metric`` returns a wrong shape or NaN.
    """
    matrix = _performance_matrix(performance)
    n_periods, n_trials = matrix.shape
    if isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 2 or n_splits % 2:
        raise ValueError(f"n_splits must be an even integer >= 2, was {n_splits!r}")
    if n_trials < 2:
        raise ValueError(f"performance must hold N >= 2 trials (columns), had N={n_trials}")
    if n_periods < n_splits:
        raise ValueError(f"performance must hold T >= n_splits={n_splits} periods (rows), had T={n_periods}")
    size = n_periods // n_splits
    start = n_periods - size * n_splits
    blocks = [np.arange(start + i * size, start + (i + 1) * size) for i in range(n_splits)]

    def score(rows: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
        values = np.asarray(metric(matrix[rows]), dtype=np.float64)
        if values.shape != (n_trials,) or np.any(np.isnan(values)):
            raise ValueError(f"metric must return {n_trials} non-NaN scores, returned {values!r}")
        return values

    logits: list[float] = []
    is_perf: list[float] = []
    oos_perf: list[float] = []
    for chosen in itertools.combinations(range(n_splits), n_splits // 2):
        in_rows = np.concatenate([blocks[i] for i in chosen])
        out_rows = np.concatenate([blocks[i] for i in range(n_splits) if i not in chosen])
        in_scores, out_scores = score(in_rows), score(out_rows)
        best = np.flatnonzero(in_scores == in_scores.max())
        pick = int(best[np.argmin(out_scores[best])])
        omega = _relative_rank(out_scores, pick)
        logits.append(math.log(omega / (1.0 - omega)))
        is_perf.append(float(in_scores[pick]))
        oos_perf.append(float(out_scores[pick]))
    n_comb = len(logits)
    return PBOResult(
        pbo=sum(1 for lam in logits if lam <= 0.0) / n_comb,
        logits=tuple(logits),
        n_combinations=n_comb,
        is_performance=tuple(is_perf),
        oos_performance=tuple(oos_perf),
        degradation_slope=_ols_slope(is_perf, oos_perf),
        probability_of_loss=sum(1 for p in oos_perf if p < 0.0) / n_comb,
    )


def _ols_slope(x: Sequence[float], y: Sequence[float]) -> float | None:
    # OLS slope of y on x; None when x does not vary or a value is infinite.
    xa, ya = np.asarray(x), np.asarray(y)
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        return None
    dx = xa - xa.mean()
    sxx = float(np.dot(dx, dx))
    if sxx == 0.0:
        return None
    return float(np.dot(dx, ya - ya.mean())) / sxx
