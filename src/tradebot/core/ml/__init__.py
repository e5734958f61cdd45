"""The pure part of the learned position management (issue 16): features and labels of a position.

- :mod:`~tradebot.core.ml.features` — what is known about an open position at a rebalance-clock
  close: :class:`MarketTracker` (per-symbol indicators on the clock candles) and
  :func:`position_features` (one row's feature values, named by :func:`feature_names`).
- :mod:`~tradebot.core.ml.labels` — what happened after it within a horizon:
  :func:`position_labels`.
- :mod:`~tradebot.core.ml.folds` — purged, embargoed walk-forward folds grouped by position
  (:func:`purged_walk_forward`, :func:`holdout_split`).
- :mod:`~tradebot.core.ml.evaluation` — AUC, Brier, MAE, calibration tables and Platt scaling.

No I/O, clock or logging, like the rest of the core; the dataset builder (``tradebot.app.ml``) and,
later, the engine's predictor compute the same features with these functions.
"""

from tradebot.core.ml.evaluation import Platt, brier, calibration_table, mae, roc_auc
from tradebot.core.ml.features import (
    FeatureConfig,
    MarketState,
    MarketTracker,
    PositionState,
    StreamReading,
    feature_definitions,
    feature_names,
    position_features,
)
from tradebot.core.ml.folds import PurgedFold, holdout_split, purged_walk_forward
from tradebot.core.ml.labels import (
    LABEL_DEFINITIONS,
    LABEL_NAMES,
    CandleArrays,
    LabelConfig,
    Labels,
    position_labels,
    recovery_level,
)

__all__ = [
    "LABEL_DEFINITIONS",
    "LABEL_NAMES",
    "CandleArrays",
    "FeatureConfig",
    "LabelConfig",
    "Labels",
    "MarketState",
    "MarketTracker",
    "Platt",
    "PositionState",
    "PurgedFold",
    "StreamReading",
    "brier",
    "calibration_table",
    "feature_definitions",
    "feature_names",
    "holdout_split",
    "mae",
    "position_features",
    "position_labels",
    "purged_walk_forward",
    "recovery_level",
    "roc_auc",
]
