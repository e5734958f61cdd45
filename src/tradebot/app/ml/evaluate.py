"""``tradebot ml evaluate``: trained models scored on a dataset they did not see, against their base.

A ``tradebot ml train`` folder is loaded with the checks of :mod:`tradebot.app.ml.model` (the card's
format, model and kind, the model file's SHA-256, LightGBM's version and parse, the booster's
features, the Platt calibration, one training run), its features must be the dataset's exactly, and
each model predicts every row of the dataset that has its label — the same row selection as the
training: the rows whose horizon is complete (:func:`~tradebot.app.ml.train.load_dataset`) and whose
label is defined (not NaN; ``recovered`` only on the losing rows). A classifier's prediction is its
booster's raw score through the card's Platt scaling, a regressor's the booster's prediction
(``time_to_best`` at least 0), as :class:`~tradebot.app.ml.model.LightGbmPredictor` predicts.

The base to beat is fixed by the training rows, not by the test rows: a classifier's constant
prediction of the rate of its train labels (the card's ``label_stats.mean``; its Brier score, AUC
0.5), a regressor's constant prediction of their median (``label_stats.median``; its MAE). A model
*beats its base* when its AUC is above 0.5 and its Brier score below the base's (classifier), or its
MAE below the base's (regressor). Cards written before ``label_stats`` existed fall back to the
training report's base: ``metrics.pooled.base_rate`` (the folds' train rates, weighted by their test
rows) or the last scored fold's ``base_median``; ``base_source`` says which was used.

:func:`pooled_report` pools the predictions of several evaluations (a walk-forward's test windows),
each row against its own evaluation's base.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tradebot.app.ml.model import (
    CARD_FILE,
    MODEL_KINDS,
    ModelError,
    _feature_mismatch,
    _Model,
    load_folder,
    model_values,
)
from tradebot.app.ml.train import MODELS, Loaded, _classifier_metrics, _regressor_metrics
from tradebot.core.ml import brier, calibration_table, mae

__all__ = ["EVALUATION_FORMAT", "POOLED_FORMAT", "Evaluation", "evaluate_models", "pooled_report"]

EVALUATION_FORMAT = "tradebot-ml-evaluation/1"
POOLED_FORMAT = "tradebot-ml-evaluation-pooled/1"

FloatArray = npt.NDArray[np.float64]
_LABELS: dict[str, str] = {m.name: m.label for m in MODELS}


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    """The result of :func:`evaluate_models`.

    Attributes
    ----------
    report
        The JSON-able report (:func:`evaluate_models`).
    predictions
        Per model present in the folder: ``(y, p, base)`` — the labels of the rows scored, shape
        ``(n,)`` (0/1 for a classifier; the label's unit for a regressor: a fraction for
        ``additional_return``, ms for ``time_to_best``), the predictions, shape ``(n,)`` (calibrated
        probabilities, or the label's unit), and the base (train rate or train median, same unit).
        ``n`` may be 0.
    positions
        Per model: the position id of each row scored, shape ``(n,)``, in the order of ``predictions``.
    """

    report: dict[str, Any]
    predictions: dict[str, tuple[FloatArray, FloatArray, float]]
    positions: dict[str, npt.NDArray[np.str_]]


def _first_difference(got: Sequence[str], expected: Sequence[str]) -> str:
    for i, (a, b) in enumerate(zip(got, expected, strict=False)):
        if a != b:
            return f"column {i} is {a!r} in the dataset, {b!r} in the models"
    if len(got) < len(expected):
        return f"the dataset ends at column {len(got)}, the models go on with {expected[len(got)]!r}"
    return f"the dataset has an extra column {len(expected)}, {got[len(expected)]!r}"


def _check_features(sub: Path, data: Loaded) -> None:
    """Refuse a card whose features are not the dataset's, naming the first differing feature (a card
    that cannot be read is left to :func:`~tradebot.app.ml.model._load_one`, which names the fault)."""
    try:
        card = json.loads((sub / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    features = card.get("features") if isinstance(card, dict) else None
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        return
    if features == data.features:
        return
    raise ModelError(
        f"--dataset {str(data.path)!r}: its features are not the models' ({str(sub / CARD_FILE)!r}; "
        f"{len(data.features)} in the dataset, {len(features)} in the card): "
        f"{_first_difference(data.features, features)} ({_feature_mismatch(data.features, features)})"
    )


def _load_models(folder: Path, data: Loaded) -> dict[str, tuple[_Model, dict[str, Any]]]:
    # Each card's features against the dataset's first (naming the dataset), then load_predictor's
    # checks of the whole folder.
    for name in MODEL_KINDS:
        if (folder / name).exists():
            _check_features(folder / name, data)
    models, cards, _bytes, _horizon = load_folder(folder, tuple(data.features))
    return {m.name: (m, cards[m.name]) for m in models}


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _base(model: _Model, card: dict[str, Any], where: str) -> tuple[float, str]:
    """The base of ``model`` and where it came from (module docstring)."""
    key = "mean" if model.kind == "classifier" else "median"
    stats = card.get("label_stats")
    if isinstance(stats, dict) and _finite(stats.get(key)):
        return float(stats[key]), f"label_stats.{key}"
    metrics = card.get("metrics")
    metrics = metrics if isinstance(metrics, dict) else {}
    if model.kind == "classifier":
        pooled = metrics.get("pooled")
        if isinstance(pooled, dict) and _finite(pooled.get("base_rate")):
            return float(pooled["base_rate"]), "metrics.pooled.base_rate"
    else:
        folds = metrics.get("folds")
        for fold in reversed(folds if isinstance(folds, list) else []):
            m = fold.get("metrics") if isinstance(fold, dict) else None
            if isinstance(m, dict) and _finite(m.get("base_median")):
                return float(m["base_median"]), f"metrics.folds[fold {fold.get('fold')}].base_median"
    raise ModelError(
        f"{where}: no base to score against (no label_stats.{key}, nor a base in its training metrics); "
        "train the model again"
    )


def _predict(model: _Model, x: FloatArray) -> FloatArray:
    """The predictions of ``model`` for the rows ``x`` (shape ``(n, features)``), exactly as
    :meth:`~tradebot.app.ml.model.LightGbmPredictor.predict` gives them."""
    return np.asarray(model_values(model, x), dtype=np.float64)


def _score(kind: str, y: FloatArray, p: FloatArray, base: FloatArray) -> dict[str, Any]:
    """``metrics``, ``calibration`` (classifiers) and ``beats_base`` of predictions ``p`` of labels
    ``y`` against the per-row bases ``base`` (all shape ``(n,)``, ``n >= 1``)."""
    common = float(base[0]) if bool(np.all(base == base[0])) else float(np.mean(base))
    if kind == "classifier":
        metrics = {**_classifier_metrics(y, p, common), "base_brier": brier(y, base)}
        auc = metrics["auc"]
        beats = auc is not None and auc > 0.5 and metrics["brier"] < metrics["base_brier"]
        return {"metrics": metrics, "calibration": calibration_table(y, p), "beats_base": bool(beats)}
    metrics = {**_regressor_metrics(y, p, common), "base_mae": mae(y, base)}
    return {"metrics": metrics, "beats_base": bool(metrics["mae"] < metrics["base_mae"])}


def evaluate_models(models_dir: Path, data: Loaded) -> Evaluation:
    """Score the models of ``models_dir`` on the dataset ``data`` against their train base.

    Parameters
    ----------
    models_dir
        A ``tradebot ml train`` ``--out`` folder (``<model>/card.json`` and ``<model>/model.txt`` per
        model present, at least one).
    data
        A dataset read by :func:`~tradebot.app.ml.train.load_dataset` (rows with a complete horizon),
        normally of candles after the models' training window; may have no rows.

    Returns
    -------
    Evaluation
        ``report``: ``{"format": EVALUATION_FORMAT, "models_dir", "dataset", "dataset_sha256",
        "candle_range" (the dataset manifest's), "rows" (the dataset's rows), "models": {name:
        entry}}``. A classifier's entry: ``label, kind, rows, positions, base_source, train_window``
        (the card's), ``in_training_dataset`` (the dataset is the one the models were trained on:
        in-sample), ``rows_in_train_window`` (rows whose ``[time_ms, horizon_end_ms]`` meets the
        card's train window), ``metrics: {auc (None with one class), brier, base_rate, base_brier,
        base_auc: 0.5, test_rate}``, ``calibration`` (deciles of the prediction,
        :func:`~tradebot.core.ml.calibration_table`) and ``beats_base``; a regressor's: the same with
        ``metrics: {mae, base_median, base_mae}`` in the label's unit (ms for ``time_to_best``) and no
        calibration. Without a labelled row: ``rows: 0, metrics: None, beats_base: False``.
        Deterministic: the same folder and dataset give the same report and arrays.

    Raises
    ------
    ModelError
        (A :class:`~tradebot.errors.ConfigError`.) If the folder does not exist or holds no model; a
        card's features are not the dataset's (naming the first differing feature); for any refusal
        of :func:`~tradebot.app.ml.model.load_predictor` (damaged or mismatched card or model file,
        other LightGBM major version, models of different training runs); or a card has no base (no
        ``label_stats`` and no base in its training metrics).
    """
    loaded = _load_models(models_dir, data)
    report: dict[str, Any] = {
        "format": EVALUATION_FORMAT,
        "models_dir": str(models_dir),
        "dataset": str(data.path),
        "dataset_sha256": data.sha256,
        "candle_range": data.manifest.get("candle_range"),
        "rows": len(data.times),
        "models": {},
    }
    predictions: dict[str, tuple[FloatArray, FloatArray, float]] = {}
    positions: dict[str, npt.NDArray[np.str_]] = {}
    for name, (model, card) in loaded.items():
        base, source = _base(model, card, repr(str(models_dir / name / CARD_FILE)))
        label = _LABELS[name]
        y_all = data.labels[label]
        rows = np.flatnonzero(~np.isnan(y_all))
        y, g = y_all[rows], data.groups[rows]
        p = _predict(model, data.x[rows])
        window = card.get("train_window")
        overlap = None
        if isinstance(window, dict) and _finite(window.get("start_ms")) and _finite(window.get("end_ms")):
            meets = (data.times[rows] <= window["end_ms"]) & (data.label_end[rows] >= window["start_ms"])
            overlap = int(np.sum(meets))
        entry: dict[str, Any] = {
            "label": label,
            "kind": model.kind,
            "rows": len(rows),
            "positions": len(np.unique(g)),
            "base_source": source,
            "train_window": window if isinstance(window, dict) else None,
            "in_training_dataset": card.get("dataset_sha256") == data.sha256,
            "rows_in_train_window": overlap,
        }
        if len(rows):
            entry.update(_score(model.kind, y, p, np.full(len(y), base)))
        else:
            entry.update(metrics=None, beats_base=False)
        report["models"][name] = entry
        predictions[name] = (y, p, base)
        positions[name] = g
    return Evaluation(report=report, predictions=predictions, positions=positions)


def pooled_report(evaluations: Sequence[Evaluation]) -> dict[str, Any]:
    """Pool the predictions of ``evaluations`` per model and score them as :func:`evaluate_models`
    does, each row against the base of its own evaluation.

    Parameters
    ----------
    evaluations
        Evaluations of disjoint datasets (e.g. a walk-forward's test windows, each by its fold's
        models), in order; a model may be missing from some.

    Returns
    -------
    dict
        ``{"format": POOLED_FORMAT, "evaluations": count, "datasets": [paths], "rows": total dataset
        rows, "models": {name: entry}}``, entry as in :func:`evaluate_models` (``label, kind, rows,
        positions, evaluations`` — how many evaluations had the model —, ``metrics``, ``calibration``,
        ``beats_base``) where ``base_brier`` / ``base_mae`` score each row's own base and
        ``base_rate`` / ``base_median`` are the bases' row-weighted mean (the common base when all are
        equal). Over evaluations of the same models with one base, the metrics equal those of
        :func:`evaluate_models` over the concatenated datasets.
    """
    out: dict[str, Any] = {
        "format": POOLED_FORMAT,
        "evaluations": len(evaluations),
        "datasets": [e.report.get("dataset") for e in evaluations],
        "rows": sum(int(e.report.get("rows") or 0) for e in evaluations),
        "models": {},
    }
    for name in MODEL_KINDS:
        parts = [e for e in evaluations if name in e.predictions]
        if not parts:
            continue
        y = np.concatenate([e.predictions[name][0] for e in parts])
        p = np.concatenate([e.predictions[name][1] for e in parts])
        base = np.concatenate([np.full(len(e.predictions[name][0]), e.predictions[name][2]) for e in parts])
        g = np.concatenate([e.positions[name] for e in parts])
        entry: dict[str, Any] = {
            "label": _LABELS[name],
            "kind": MODEL_KINDS[name],
            "rows": len(y),
            "positions": len(np.unique(g)),
            "evaluations": len(parts),
        }
        if len(y):
            entry.update(_score(MODEL_KINDS[name], y, p, base))
        else:
            entry.update(metrics=None, beats_base=False)
        out["models"][name] = entry
    return out
