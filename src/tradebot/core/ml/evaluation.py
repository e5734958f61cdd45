"""Scoring and calibrating the position-management models: AUC, Brier score, MAE, a calibration
table, and Platt scaling.

- :func:`roc_auc` — the probability that a random positive scores above a random negative (ties
  count half; the Mann–Whitney U statistic over the rank sums). ``None`` with a single class.
- :func:`brier` — mean squared difference between the predicted probability and the 0/1 outcome.
- :func:`mae` — mean absolute error.
- :func:`calibration_table` — the predictions sorted and cut into (up to) ten bins of equal counts
  (deciles), each with its mean prediction and its observed mean.
- :class:`Platt` — Platt scaling (Platt 1999; Lin, Lin & Weng 2007): ``p = 1 / (1 + exp(−(a·s + b)))``
  on a raw score ``s`` (the trees' log-odds), ``a`` and ``b`` fitted by Newton's method on the
  log-loss against Platt's smoothed targets ``(N₊ + 1) / (N₊ + 2)`` and ``1 / (N₋ + 2)`` (which keep
  the fit finite when the classes separate). A monotone map: it leaves the AUC unchanged and fixes
  the probabilities' level and spread.

Pure: numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Platt", "brier", "calibration_table", "mae", "roc_auc"]

FloatArray = npt.NDArray[np.float64]


def _rank(x: FloatArray) -> FloatArray:
    # 1-based ranks, ties given their average rank.
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def roc_auc(y: npt.ArrayLike, score: npt.ArrayLike) -> float | None:
    """Return the ROC AUC of ``score`` for the 0/1 outcomes ``y``, ``None`` unless both classes occur."""
    yy = np.asarray(y, dtype=bool)
    s = np.asarray(score, dtype=np.float64)
    n_pos = int(yy.sum())
    n_neg = len(yy) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _rank(s)
    return float((ranks[yy].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def brier(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Return the Brier score of probabilities ``p`` for outcomes ``y`` (mean of ``(p − y)²``)."""
    return float(np.mean((np.asarray(p, dtype=np.float64) - np.asarray(y, dtype=np.float64)) ** 2))


def mae(y: npt.ArrayLike, pred: npt.ArrayLike) -> float:
    """Return the mean absolute error of ``pred`` for ``y``."""
    return float(np.mean(np.abs(np.asarray(pred, dtype=np.float64) - np.asarray(y, dtype=np.float64))))


def calibration_table(y: npt.ArrayLike, p: npt.ArrayLike, bins: int = 10) -> list[dict[str, Any]]:
    """Return up to ``bins`` rows ``{"bin", "n", "mean_predicted", "observed"}``: the predictions
    sorted (ties by position) and cut into bins of equal counts (deciles for 10; fewer bins with fewer
    rows than ``bins``)."""
    yy = np.asarray(y, dtype=np.float64)
    pp = np.asarray(p, dtype=np.float64)
    order = np.argsort(pp, kind="mergesort")
    out: list[dict[str, Any]] = []
    for i, part in enumerate(np.array_split(order, min(bins, len(order)))):
        out.append(
            {
                "bin": i + 1,
                "n": len(part),
                "mean_predicted": float(pp[part].mean()),
                "observed": float(yy[part].mean()),
            }
        )
    return out


def _sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(z, -500.0, 500.0)))
    return out


@dataclass(frozen=True, slots=True)
class Platt:
    """Platt scaling ``p = sigmoid(a·score + b)`` (module docstring); identity-like ``a=1, b=0`` maps a
    log-odds score to its own probability."""

    a: float = 1.0
    b: float = 0.0

    @classmethod
    def fit(cls, score: npt.ArrayLike, y: npt.ArrayLike, *, max_iter: int = 100) -> Platt:
        """Fit ``a`` and ``b`` on raw scores and 0/1 outcomes (Newton's method with a backtracking
        line search, from ``a = 0`` and ``b`` the log-odds of the smoothed base rate). With no rows,
        return the identity."""
        s = np.asarray(score, dtype=np.float64)
        yy = np.asarray(y, dtype=bool)
        if len(s) == 0:
            return cls()
        n_pos = float(yy.sum())
        n_neg = float(len(yy) - n_pos)
        target = np.where(yy, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
        x = np.column_stack([s, np.ones_like(s)])
        w = np.array([0.0, float(np.log((n_pos + 1.0) / (n_neg + 1.0)))])

        def loss(w_: FloatArray) -> float:
            z = x @ w_
            # log(1 + exp(z)) - t z, stably
            return float(np.sum(np.logaddexp(0.0, z) - target * z))

        current = loss(w)
        for _ in range(max_iter):
            p = _sigmoid(x @ w)
            grad = x.T @ (p - target)
            hess = (x.T * (p * (1.0 - p))) @ x + 1e-12 * np.eye(2)
            step = np.linalg.solve(hess, grad)
            t = 1.0
            while t > 1e-10:
                trial = w - t * step
                new = loss(trial)
                if new <= current - 1e-4 * t * float(grad @ step):
                    break
                t /= 2.0
            else:
                break
            w, done = trial, abs(current - new) < 1e-12 * max(1.0, abs(current))
            current = new
            if done or float(np.max(np.abs(grad))) < 1e-10:
                break
        return cls(float(w[0]), float(w[1]))

    def __call__(self, score: npt.ArrayLike) -> FloatArray:
        """Return the calibrated probabilities of raw scores."""
        return _sigmoid(self.a * np.asarray(score, dtype=np.float64) + self.b)
