"""Records of a model's predictions about positions, and of how each prediction turned out.

The engine emits an :class:`MlPositionPrediction` when a model is consulted (at a rebalance-clock
close) and, once the trade it was about has closed, an :class:`MlPredictionOutcome` with the
actual values. Drivers hand both to the event store like every other record: the prediction is
inserted into ``ml_position_predictions``, the outcome then updates that row (by
``prediction_id``). Reading the run back returns each prediction with its outcome filled in.

Both records are plain values: JSON payloads (``prediction``, ``features``, ``outcome``) must be
JSON-able (``str`` keys; ``Decimal`` values are stored as decimal strings, non-finite floats as
``null``), times are int ms UTC.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any


def _check_accuracy(value: float | None, prediction_id: uuid.UUID) -> None:
    if value is not None and not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise ValueError(
            f"prediction {prediction_id}: prediction_accuracy must be a fraction in [0, 1] or None, "
            f"was {value!r}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MlPositionPrediction:
    """A model's prediction about a position: one ``ml_position_predictions`` row.

    Written once (an idempotent insert: the same ``prediction_id`` again is ignored); its outcome
    arrives later as an :class:`MlPredictionOutcome`. The three outcome attributes are ``None`` on
    the record the engine emits and are filled when the row is read back after the outcome was
    recorded.

    Attributes
    ----------
    prediction_id
        Row id (UUID). Use a deterministic id (e.g. ``uuid.uuid5`` of the run, symbol and
        ``time_ms``): a replayed step then emits the same id and the store keeps one row.
    model_name, model_version
        Which model (at most 128 and 64 characters).
    prediction
        Model output, JSON-able (e.g. ``{"p_exit": 0.8}``).
    position_event_id
        The position event the prediction informed, or ``None``. That event must be written in
        the same batch or before (foreign key).
    trade_id
        The position (trade) id the prediction is about, ``"<run>-<symbol>-<n>"``, or ``None``.
    confidence
        Model confidence, a fraction in [0, 1], or ``None`` (a non-finite value is stored as
        ``None``).
    features
        Model inputs, JSON-able, or ``None``.
    symbol
        ccxt unified symbol (``"BTC/USDT"``), or ``None``.
    time_ms
        Close time of the rebalance-clock candle the prediction was made at, ms UTC, or ``None``.
    recommended_action
        What the model recommended (e.g. ``"exit"``, ``"hold"``, ``"reduce"``; at most 32
        characters), or ``None``.
    action_taken
        What the engine did with it (e.g. ``"sold 0.015 BTC"``, ``"ignored: below threshold"``; at
        most 64 characters), or ``None``.
    outcome
        The actual values the prediction is judged against (as :attr:`MlPredictionOutcome.outcome`),
        or ``None`` while no outcome was recorded.
    prediction_accuracy
        How right the prediction was, a fraction in [0, 1], or ``None``.
    outcome_time_ms
        When the outcome was known (the trade closed), ms UTC, or ``None``.

    Raises
    ------
    ValueError
        If ``prediction_accuracy`` is not ``None`` nor a number in [0, 1] (NaN included).
    """

    prediction_id: uuid.UUID
    model_name: str
    model_version: str
    prediction: dict[str, Any]
    position_event_id: uuid.UUID | None = None
    trade_id: str | None = None
    confidence: float | None = None
    features: dict[str, Any] | None = None
    symbol: str | None = None
    time_ms: int | None = None
    recommended_action: str | None = None
    action_taken: str | None = None
    outcome: dict[str, Any] | None = None
    prediction_accuracy: float | None = None
    outcome_time_ms: int | None = None

    def __post_init__(self) -> None:
        _check_accuracy(self.prediction_accuracy, self.prediction_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class MlPredictionOutcome:
    """How one recorded prediction turned out: updates its ``ml_position_predictions`` row.

    Emit it after the :class:`MlPositionPrediction` it names (the store writes a batch's
    predictions before its outcomes). Writing it again is harmless (the row gets the same
    values); a later outcome for the same prediction replaces an earlier one.

    Attributes
    ----------
    prediction_id
        The :attr:`MlPositionPrediction.prediction_id` of the prediction (of the same run).
    trade_id
        The position (trade) id the outcome was measured on, or ``None``. It fills in the row's
        ``trade_id`` when the prediction had none (one made while flat, about the trade it
        opened); a ``trade_id`` the prediction already had is kept.
    outcome_time_ms
        When the outcome was known (the trade closed), ms UTC.
    outcome
        The actual values, JSON-able (e.g. ``{"exit_price": "25400.5", "r_multiple": 1.5}``).
    prediction_accuracy
        How right the prediction was, a fraction in [0, 1] (1 = exactly right), or ``None`` when
        it cannot be scored.

    Raises
    ------
    ValueError
        If ``prediction_accuracy`` is not ``None`` nor a number in [0, 1] (NaN included).
    """

    prediction_id: uuid.UUID
    trade_id: str | None
    outcome_time_ms: int
    outcome: dict[str, Any]
    prediction_accuracy: float | None

    def __post_init__(self) -> None:
        _check_accuracy(self.prediction_accuracy, self.prediction_id)
