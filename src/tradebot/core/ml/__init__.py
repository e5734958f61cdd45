"""The pure part of the learned position management (issue 16): features and labels of a position.

- :mod:`~tradebot.core.ml.features` — what is known about an open position at a rebalance-clock
  close: :class:`MarketTracker` (per-symbol indicators on the clock candles) and
  :func:`position_features` (one row's feature values, named by :func:`feature_names`).
- :mod:`~tradebot.core.ml.labels` — what happened after it within a horizon:
  :func:`position_labels`.

No I/O, clock or logging, like the rest of the core; the dataset builder (``tradebot.app.ml``) and,
later, the engine's predictor compute the same features with these functions.
"""

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
from tradebot.core.ml.labels import (
    LABEL_DEFINITIONS,
    LABEL_NAMES,
    CandleArrays,
    LabelConfig,
    Labels,
    position_labels,
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
    "PositionState",
    "StreamReading",
    "feature_definitions",
    "feature_names",
    "position_features",
    "position_labels",
]
