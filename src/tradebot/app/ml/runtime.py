"""The model of ``[management.ml]`` for an engine: loaded, checked against the configuration.

One function for every driver (backtest, walk-forward, paper, testnet, live), so a model that does
not match is refused the same way everywhere: a :class:`~tradebot.app.ml.model.ModelError` (a
``ConfigError``: exit code 2) naming the mismatch, before anything trades.
"""

from __future__ import annotations

from pathlib import Path

from tradebot.app.settings import Settings
from tradebot.core.config import EngineConfig
from tradebot.core.ml.predictor import Predictor

__all__ = ["model_folder", "predictor_for"]


def model_folder(settings: Settings) -> str | None:
    """The ``[management.ml] model`` folder the settings name, unchecked (``None``: no model)."""
    ml = settings.management.get("ml")
    model = ml.get("model") if isinstance(ml, dict) else None
    return None if model is None else str(model)


def predictor_for(config: EngineConfig) -> Predictor | None:
    """Return the predictor of ``config.management.ml.model`` (a folder of ``tradebot ml train``,
    relative to the working directory), or ``None`` when no model is configured or management is off.

    Raises
    ------
    ModelError
        If the folder or a model in it is missing, corrupt, or does not match the configuration's
        features or the installed LightGBM (the message names the file and the mismatch).
    """
    ml = config.management.ml
    if ml.model is None or config.management.is_off:
        return None
    from tradebot.app.ml.model import load_predictor  # lightgbm only when a model is configured

    return load_predictor(
        Path(ml.model),
        stream_timeframes=tuple(str(sc.timeframe) for sc in config.streams),
        thresholds=ml.thresholds(),
    )
