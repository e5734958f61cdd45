"""The engine's port to the position-management models (issue 16, item 3), and the decision rule.

The core never loads a model: the application builds a :class:`Predictor` (LightGBM's text models in
``tradebot.app.ml.model``; a fake in tests) and hands it to the engine, which calls it on each
rebalance-clock close with one feature row (:func:`~tradebot.core.ml.position_features`) per open
position. :func:`decide` then turns a :class:`PositionPrediction` into at most one action, using the
thresholds of :class:`~tradebot.core.management.config.MlConfig`; below the configured confidence the
rules decide alone. Pure: no I/O, clock or logging.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["ML_ACTIONS", "MlDecision", "MlThresholds", "PositionPrediction", "Predictor", "decide"]

#: Actions :func:`decide` may recommend. ``"rules"``: nothing the model is confident about.
ML_ACTIONS: tuple[str, ...] = ("rules", "exit", "take_profit", "trail", "scale_in", "hold_scale_in")


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionPrediction:
    """The models' outputs for one open position at one clock close.

    Attributes
    ----------
    recovered
        Calibrated probability in [0, 1] that a losing position reaches its entry plus round-trip
        fees before its stop within the horizon; ``None`` without that model.
    additional_return
        Predicted (median) best further excursion within the horizon, fraction (0.01 = +1 %).
    time_to_best_ms
        Predicted time to that excursion, ms; ``None`` without that model.
    scale_in_success
        Calibrated probability in [0, 1] that an add here is profitable at the horizon.
    below_confidence
        Probability in [0, 1] that the realized further return is below the take-profit threshold,
        given this prediction (the regressor's out-of-fold conditional distribution); ``None`` when
        the model has no such table.
    above_confidence
        Likewise for the realized further return being above the trail threshold.
    """

    recovered: float | None = None
    additional_return: float | None = None
    time_to_best_ms: float | None = None
    scale_in_success: float | None = None
    below_confidence: float | None = None
    above_confidence: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        """Return the four predictions by label name (JSON-able), for the records."""
        return {
            "recovered": self.recovered,
            "additional_return": self.additional_return,
            "time_to_best_ms": self.time_to_best_ms,
            "scale_in_success": self.scale_in_success,
        }


@runtime_checkable
class Predictor(Protocol):
    """Features in, predictions out: what the engine calls on each rebalance-clock close.

    Attributes
    ----------
    name
        Model name for the records (e.g. ``"position-ml"``).
    version
        Identifies the exact model (the card's SHA-256, shortened), for the records.
    features
        The feature names the model expects, in order (:func:`~tradebot.core.ml.feature_names`).
    horizon_ms
        The label horizon the models were trained on, ms (how long an outcome is observed).
    models
        Which outputs it gives: names of :meth:`PositionPrediction.to_dict` (``"recovered"``, …).
    """

    name: str
    version: str
    features: tuple[str, ...]
    horizon_ms: int
    models: frozenset[str]

    def predict(self, rows: Sequence[Mapping[str, float | None]]) -> list[PositionPrediction]:
        """Return one prediction per feature row (``None`` = missing value), in order. Must be
        deterministic and must not raise on a row of ``None`` values."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class MlThresholds:
    """The decision thresholds (``[management.ml]``; the defaults are the design's seed values).

    Attributes
    ----------
    exit_recovery_below
        Exit a losing position when its recovery probability is below this (0.30).
    take_profit_return_below
        Take profit when the expected further return is below this fraction (0.005 = 0.5 %).
    trail_return_above
        Let a winner trail (start the trailing stop now) when it is above this fraction (0.02).
    scale_in_probability_above
        Scale in only when the success probability is above this (0.70) and the scale-in rule's
        limits allow it.
    min_confidence
        Below this confidence in [0, 1] (0.60) the rules decide alone.
    take_profit_fraction
        Share of the position a model take-profit sells, in (0, 1] (0.5).
    """

    exit_recovery_below: float = 0.30
    take_profit_return_below: float = 0.005
    trail_return_above: float = 0.02
    scale_in_probability_above: float = 0.70
    min_confidence: float = 0.60
    take_profit_fraction: float = 0.5


@dataclass(frozen=True, slots=True)
class MlDecision:
    """What :func:`decide` recommends: one of :data:`ML_ACTIONS`, the confidence behind it (in
    [0, 1], ``None`` for ``"rules"`` without any model output) and a reason with numbers."""

    action: str
    confidence: float | None
    reason: str


def decide(
    p: PositionPrediction,
    *,
    losing: bool,
    can_scale_in: bool,
    can_trail: bool,
    can_take_profit: bool,
    thresholds: MlThresholds,
) -> MlDecision:
    """Return the action the models recommend for one position, or ``"rules"``.

    Order (the first that holds wins): a losing position exits when ``recovered`` is below
    ``exit_recovery_below``; a winner takes profit when ``additional_return`` is below
    ``take_profit_return_below``, or trails when above ``trail_return_above``; then a scale-in when
    ``scale_in_success`` is above ``scale_in_probability_above`` (``can_scale_in``: the rule's limits
    allow one), else ``"hold_scale_in"`` (no add, the rule's own confirmation is not consulted) when
    the model is confident enough to judge. Each needs its confidence >= ``min_confidence``: for a classifier ``max(p, 1 - p)``,
    for the regressor the conditional probability of :attr:`PositionPrediction.below_confidence` /
    ``above_confidence``.

    Parameters
    ----------
    p
        The prediction.
    losing
        The mark is below the entry plus round-trip fees.
    can_scale_in, can_trail, can_take_profit
        Whether the position's state allows that action (not scaled in yet, not trailing yet, …).
    thresholds
        The decision thresholds.
    """
    t = thresholds
    conf = t.min_confidence
    best: float | None = None
    if losing and p.recovered is not None:
        c = max(p.recovered, 1.0 - p.recovered)
        best = c
        if p.recovered < t.exit_recovery_below and c >= conf:
            return MlDecision("exit", c, f"recovery probability {p.recovered:.3f} < {t.exit_recovery_below}")
    if not losing and p.additional_return is not None:
        r = p.additional_return
        if can_take_profit and r < t.take_profit_return_below and p.below_confidence is not None:
            best = max(best or 0.0, p.below_confidence)
            if p.below_confidence >= conf:
                return MlDecision(
                    "take_profit",
                    p.below_confidence,
                    f"expected further return {r:.4f} < {t.take_profit_return_below}",
                )
        if can_trail and r > t.trail_return_above and p.above_confidence is not None:
            best = max(best or 0.0, p.above_confidence)
            if p.above_confidence >= conf:
                return MlDecision(
                    "trail", p.above_confidence, f"expected further return {r:.4f} > {t.trail_return_above}"
                )
    if can_scale_in and p.scale_in_success is not None:
        s = p.scale_in_success
        c = max(s, 1.0 - s)
        best = max(best or 0.0, c)
        if c >= conf:
            if s > t.scale_in_probability_above:
                return MlDecision(
                    "scale_in", c, f"scale-in success probability {s:.3f} > {t.scale_in_probability_above}"
                )
            return MlDecision(
                "hold_scale_in", c, f"scale-in success probability {s:.3f} <= {t.scale_in_probability_above}"
            )
    return MlDecision("rules", best, "below the confidence threshold or no model decision")
