"""``tradebot ml train``: the four position-management models, walk-forward scored, then saved.

From a dataset of ``tradebot ml dataset`` (its Parquet file and manifest), only the rows whose horizon
is complete:

- ``recovered`` — a binary classifier on the losing rows (where the label is defined);
- ``additional_return`` — a regressor (L1 objective: it predicts a median, scored by MAE);
- ``scale_in_success`` — a binary classifier;
- ``time_to_best`` — a regressor (L1) of ``time_to_best_ms``, the time to the best further excursion.

Each is scored on purged, embargoed walk-forward folds grouped by position
(:func:`tradebot.core.ml.purged_walk_forward`, embargo = the label horizon H). In each fold a
classifier's trees are fitted on the train rows but the last quarter of its positions
(:func:`~tradebot.core.ml.holdout_split`, purged and embargoed too), and Platt scaling is fitted on
that held-out quarter. The base rate to beat comes from the fold's train rows: a classifier's
constant prediction of the train rate (its Brier score; AUC 0.5), a regressor's train median (its
MAE). A model *beats its base* when its pooled out-of-fold Brier (or MAE) is below the base's and,
for a classifier, its pooled AUC is above 0.5.

The final models train on all the rows (same parameters and rounds); a final classifier's Platt
scaling is fitted on the pooled out-of-fold raw scores of the fold models, which no tree saw in
training. LightGBM runs with ``deterministic=True``, one thread and the seed, so the same dataset and
seed give byte-identical model files. Models are saved in LightGBM's text format (never a pickle)
with a ``card.json`` (read back by :func:`tradebot.app.ml.model.load_predictor`). A card's
``label_stats`` sums up the labels the final model was trained on (rows, mean; a regressor's median
too): the base that ``tradebot ml evaluate`` (:mod:`tradebot.app.ml.evaluate`) scores a later,
out-of-sample dataset against.

The ``additional_return`` card also holds a *conditional table* (:func:`conditional_table`): the
distribution of the realized label given the prediction, from the pooled out-of-fold (prediction,
actual) pairs, so that the engine can tell how sure "the further return is below 0.5 %" is.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tradebot import __version__
from tradebot.app.ml.files import atomic_target, manifest_path, write_json_atomic
from tradebot.app.ml.manifest import DATASET_FORMAT
from tradebot.app.ml.model import CARD_FORMAT, CONDITIONAL_BINS, CONDITIONAL_LEVELS
from tradebot.core.ml import (
    Platt,
    brier,
    calibration_table,
    holdout_split,
    mae,
    purged_walk_forward,
    roc_auc,
)
from tradebot.errors import ConfigError

__all__ = [
    "CARD_FORMAT",
    "MODELS",
    "ModelSpec",
    "TrainOptions",
    "conditional_table",
    "load_dataset",
    "train_models",
    "write_models",
]

REPORT_FORMAT = "tradebot-ml-report/1"
#: The share of a fold's train positions held out to calibrate a classifier.
CALIBRATION_FRACTION = 0.25


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model: its name (folder), label column, kind and the rows it learns from; ``conditional``:
    its card gets a :func:`conditional_table` (regressors only)."""

    name: str
    label: str
    kind: str  # "classifier" | "regressor"
    rows: str  # a plain-words description, for the card and the report
    conditional: bool = False


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("recovered", "recovered", "classifier", "losing rows with a complete horizon"),
    ModelSpec(
        "additional_return",
        "additional_return",
        "regressor",
        "rows with a complete horizon",
        conditional=True,
    ),
    ModelSpec("scale_in_success", "scale_in_success", "classifier", "rows with a complete horizon"),
    ModelSpec("time_to_best", "time_to_best_ms", "regressor", "rows with a complete horizon"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainOptions:
    """``--folds``, ``--seed`` and the trees' size."""

    folds: int = 4
    seed: int = 0
    rounds: int = 100
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_data_in_leaf: int = 20


@dataclass(slots=True, kw_only=True)
class Loaded:
    """A dataset read for training: the columns needed, the manifest and the file's hash."""

    path: Path
    manifest: dict[str, Any]
    sha256: str
    features: list[str]
    x: npt.NDArray[np.float64]
    times: npt.NDArray[np.int64]
    label_end: npt.NDArray[np.int64]
    groups: npt.NDArray[np.str_]
    labels: dict[str, npt.NDArray[np.float64]]  # NaN where undefined
    horizon_ms: int


@dataclass(slots=True, kw_only=True)
class Trained:
    """One model's result: the report entry, the final booster and its card."""

    spec: ModelSpec
    report: dict[str, Any]
    booster: lgb.Booster | None
    card: dict[str, Any] = field(default_factory=dict)


def load_dataset(path: Path) -> Loaded:
    """Read the dataset ``path`` and its manifest; keep the rows whose horizon is complete.

    Raises
    ------
    ConfigError
        If the file is not a ``.parquet`` file, is missing, has no manifest beside it, the manifest's
        format is not this version's, or its hash or columns do not match the file.
    """
    if path.suffix != ".parquet":
        raise ConfigError(f"--dataset must name a .parquet file, was {str(path)!r}")
    if not path.is_file():
        raise ConfigError(f"--dataset: file {str(path)!r} does not exist")
    mpath = manifest_path(path)
    if not mpath.is_file():
        raise ConfigError(f"--dataset: no manifest {str(mpath)!r} beside {str(path)!r}")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--dataset: manifest {str(mpath)!r} is not readable JSON: {exc}") from None
    if manifest.get("format") != DATASET_FORMAT:
        raise ConfigError(
            f"--dataset: manifest format {manifest.get('format')!r}, expected {DATASET_FORMAT!r}"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if manifest.get("parquet_sha256") != digest:
        raise ConfigError(
            f"--dataset: SHA-256 of {str(path)!r} is {digest[:16]}…, the manifest says "
            f"{str(manifest.get('parquet_sha256'))[:16]}… (file changed after it was written)"
        )
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ConfigError(f"--dataset: {str(path)!r} is not a readable Parquet file: {exc}") from None
    features = list(manifest["features"])
    needed = {*features, "time_ms", "horizon_end_ms", "position_id", "horizon_complete"}
    needed |= {m.label for m in MODELS}
    missing = sorted(needed - set(table.column_names))
    if missing:
        raise ConfigError(f"--dataset: columns missing from {str(path)!r}: {', '.join(missing)}")
    table = table.filter(pc.equal(table.column("horizon_complete"), True))

    def floats(name: str) -> npt.NDArray[np.float64]:
        col = table.column(name).cast("double")
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)

    x = np.column_stack([floats(f) for f in features]) if features else np.empty((table.num_rows, 0))
    return Loaded(
        path=path,
        manifest=manifest,
        sha256=digest,
        features=features,
        x=x,
        times=np.asarray(table.column("time_ms").to_numpy(), dtype=np.int64),
        label_end=np.asarray(table.column("horizon_end_ms").to_numpy(), dtype=np.int64),
        groups=np.asarray(table.column("position_id").to_pylist(), dtype=np.str_),
        labels={m.label: floats(m.label) for m in MODELS},
        horizon_ms=int(manifest["horizon"]["ms"]),
    )


def _params(spec: ModelSpec, options: TrainOptions) -> dict[str, Any]:
    return {
        "objective": "binary" if spec.kind == "classifier" else "l1",
        "learning_rate": options.learning_rate,
        "num_leaves": options.num_leaves,
        "min_data_in_leaf": options.min_data_in_leaf,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "seed": options.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "verbosity": -1,
    }


def _fit(
    spec: ModelSpec,
    options: TrainOptions,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    names: list[str],
) -> lgb.Booster:
    data = lgb.Dataset(x, label=y, feature_name=names, free_raw_data=True, params={"verbosity": -1})
    return lgb.train(_params(spec, options), data, num_boost_round=options.rounds)


def _raw(booster: lgb.Booster, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(booster.predict(x, raw_score=True), dtype=np.float64)


def _classifier_metrics(
    y: npt.NDArray[np.float64], p: npt.NDArray[np.float64], rate: float
) -> dict[str, Any]:
    base = np.full(len(y), rate)
    return {
        "auc": roc_auc(y, p),
        "brier": brier(y, p),
        "base_rate": rate,
        "base_brier": brier(y, base),
        "base_auc": 0.5,
        "test_rate": float(np.mean(y)),
    }


def _regressor_metrics(
    y: npt.NDArray[np.float64], pred: npt.NDArray[np.float64], median: float
) -> dict[str, Any]:
    return {"mae": mae(y, pred), "base_median": median, "base_mae": mae(y, np.full(len(y), median))}


def conditional_table(pred: npt.ArrayLike, actual: npt.ArrayLike) -> dict[str, Any]:
    """Return the distribution of ``actual`` given the bin of ``pred``, for a regressor's card.

    The predictions are cut at their 9 inner decile edges (``numpy.quantile`` at 0.1 … 0.9, linear
    interpolation) into 10 bins: a prediction ``p`` is in bin ``numpy.searchsorted(edges, p,
    side="right")`` (0 … 9; on an edge: the upper bin). For each bin, the 21 quantiles (levels 0,
    0.05, …, 1) of the actual values of its rows; a bin without rows (tied edges) gets the quantiles
    of all the rows.

    Parameters
    ----------
    pred, actual
        Pooled out-of-fold predictions and the realized labels, shape ``(n,)``, ``n >= 1``, same units
        (for ``additional_return``: fractions).

    Returns
    -------
    dict
        ``{"edges": [9 floats], "quantiles": [21 levels], "actual": [10 x 21 floats], "rows": [10
        ints], "applies_to": ..., "fitted_on": ...}`` (JSON-able). Deterministic.

    Raises
    ------
    ValueError
        If the arrays are empty or of different lengths.
    """
    p = np.asarray(pred, dtype=np.float64)
    y = np.asarray(actual, dtype=np.float64)
    if len(p) == 0 or len(p) != len(y):
        raise ValueError(f"conditional_table needs equal, non-empty arrays, had {len(p)} and {len(y)}")
    levels = np.asarray(CONDITIONAL_LEVELS, dtype=np.float64)
    edges = np.quantile(p, np.arange(1, CONDITIONAL_BINS) / CONDITIONAL_BINS)
    bins = np.searchsorted(edges, p, side="right")
    pooled = np.quantile(y, levels)
    table: list[list[float]] = []
    rows: list[int] = []
    for b in range(CONDITIONAL_BINS):
        part = y[bins == b]
        rows.append(len(part))
        table.append([float(v) for v in (np.quantile(part, levels) if len(part) else pooled)])
    return {
        "edges": [float(v) for v in edges],
        "quantiles": list(CONDITIONAL_LEVELS),
        "actual": table,
        "rows": rows,
        "applies_to": "the booster's prediction p: bin = numpy.searchsorted(edges, p, side='right') "
        "(0..9; an edge belongs to the upper bin); actual[bin] = quantiles of the realized label of "
        "that bin's rows at the levels of 'quantiles' (the quantiles of all rows for a bin without "
        "rows, see 'rows')",
        "fitted_on": "pooled out-of-fold predictions of the fold models",
    }


def _label_stats(spec: ModelSpec, y: npt.NDArray[np.float64]) -> dict[str, Any]:
    """The labels the final model was trained on, summed up for a later out-of-sample test: their
    count and mean (a classifier's base rate), and a regressor's median (its base prediction); in the
    label's unit (a fraction for ``additional_return``, ms for ``time_to_best_ms``)."""
    stats: dict[str, Any] = {"rows": len(y), "mean": float(np.mean(y))}
    if spec.kind == "regressor":
        stats["median"] = float(np.median(y))
    return stats


def _train_one(spec: ModelSpec, data: Loaded, options: TrainOptions) -> Trained:
    y_all = data.labels[spec.label]
    rows = np.flatnonzero(~np.isnan(y_all))
    x, y = data.x[rows], y_all[rows]
    t, e, g = data.times[rows], data.label_end[rows], data.groups[rows]
    h = data.horizon_ms
    folds = purged_walk_forward(t, e, g, n_folds=options.folds, embargo_ms=h)
    fold_reports: list[dict[str, Any]] = []
    oof_y: list[npt.NDArray[np.float64]] = []
    oof_p: list[npt.NDArray[np.float64]] = []
    oof_base: list[npt.NDArray[np.float64]] = []
    oof_raw: list[npt.NDArray[np.float64]] = []
    for fold in folds:
        entry: dict[str, Any] = {
            "fold": fold.index,
            "train_rows": len(fold.train),
            "test_rows": len(fold.test),
            "purged_rows": fold.purged,
            "train_start_ms": fold.train_start_ms,
            "train_end_ms": fold.train_end_ms,
            "test_start_ms": fold.test_start_ms,
            "test_end_ms": fold.test_end_ms,
        }
        yt, ytest = y[fold.train], y[fold.test]
        if len(fold.train) < 2 * options.min_data_in_leaf:
            entry["skipped"] = f"{len(fold.train)} train rows, fewer than {2 * options.min_data_in_leaf}"
            fold_reports.append(entry)
            continue
        if spec.kind == "classifier":
            fit, cal = holdout_split(fold.train, t, e, g, fraction=CALIBRATION_FRACTION, embargo_ms=h)
            if len(fit) < options.min_data_in_leaf or len(cal) == 0:
                fit, cal = fold.train, np.empty(0, dtype=np.int64)
            booster = _fit(spec, options, x[fit], y[fit], data.features)
            platt = Platt.fit(_raw(booster, x[cal]), y[cal]) if len(cal) else Platt()
            raw = _raw(booster, x[fold.test])
            p = platt(raw)
            rate = float(np.mean(yt))
            entry.update(
                fit_rows=len(fit),
                calibration_rows=len(cal),
                platt={"a": platt.a, "b": platt.b},
                metrics=_classifier_metrics(ytest, p, rate),
                calibration=calibration_table(ytest, p),
            )
            oof_raw.append(raw)
            oof_base.append(np.full(len(ytest), rate))
        else:
            booster = _fit(spec, options, x[fold.train], yt, data.features)
            p = np.asarray(booster.predict(x[fold.test]), dtype=np.float64)
            median = float(np.median(yt))
            entry["metrics"] = _regressor_metrics(ytest, p, median)
            oof_base.append(np.full(len(ytest), median))
        oof_y.append(ytest)
        oof_p.append(p)
        fold_reports.append(entry)
    report: dict[str, Any] = {
        "label": spec.label,
        "kind": spec.kind,
        "rows": len(rows),
        "positions": len(np.unique(g)),
        "row_selection": spec.rows,
        "folds": fold_reports,
    }
    if oof_y:
        py, pp, pb = np.concatenate(oof_y), np.concatenate(oof_p), np.concatenate(oof_base)
        pooled: dict[str, Any]
        if spec.kind == "classifier":
            pooled = {
                "auc": roc_auc(py, pp),
                "brier": brier(py, pp),
                "base_brier": brier(py, pb),
                "base_auc": 0.5,
                "base_rate": float(np.mean(pb)),  # the folds' train rates, weighted by test rows
                "test_rows": len(py),
                "test_rate": float(np.mean(py)),
            }
            auc = pooled["auc"]
            beats = auc is not None and auc > 0.5 and pooled["brier"] < pooled["base_brier"]
            report["calibration"] = calibration_table(py, pp)
        else:
            pooled = {"mae": mae(py, pp), "base_mae": mae(py, pb), "test_rows": len(py)}
            beats = pooled["mae"] < pooled["base_mae"]
        report["pooled"] = pooled
        report["beats_base"] = bool(beats)
    else:
        report["pooled"] = None
        report["beats_base"] = False
    if len(rows) < 2 * options.min_data_in_leaf:
        report["final"] = f"not trained: {len(rows)} rows, fewer than {2 * options.min_data_in_leaf}"
        return Trained(spec=spec, report=report, booster=None)
    booster = _fit(spec, options, x, y, data.features)
    card: dict[str, Any] = {}
    if spec.kind == "classifier":
        platt = Platt.fit(np.concatenate(oof_raw), np.concatenate(oof_y)) if oof_raw else Platt()
        card["calibration"] = {
            "method": "platt",
            "a": platt.a,
            "b": platt.b,
            "applies_to": "raw score (log-odds) of the booster: p = 1 / (1 + exp(-(a * raw + b)))",
            "fitted_on": "pooled out-of-fold raw scores of the fold models",
        }
    if spec.conditional and oof_p:
        card["conditional"] = conditional_table(np.concatenate(oof_p), np.concatenate(oof_y))
    card["train_window"] = {"start_ms": int(t.min()), "end_ms": int(e.max()), "rows": len(rows)}
    card["label_stats"] = _label_stats(spec, y)
    return Trained(spec=spec, report=report, booster=booster, card=card)


def train_models(data: Loaded, options: TrainOptions) -> list[Trained]:
    """Score the four models on walk-forward folds and train the final ones (module docstring)."""
    return [_train_one(spec, data, options) for spec in MODELS]


def _versions() -> dict[str, str]:
    import pyarrow

    return {
        "tradebot": __version__,
        "lightgbm": lgb.__version__,
        "numpy": np.__version__,
        "pyarrow": pyarrow.__version__,
        "python": platform.python_version(),
    }


def write_models(data: Loaded, options: TrainOptions, trained: list[Trained], out: Path) -> dict[str, Any]:
    """Write ``out/<model>/model.txt`` (LightGBM text) and ``card.json`` for each trained model, and
    ``out/report.json``; return the report."""
    out.mkdir(parents=True, exist_ok=True)
    versions = _versions()
    head = {
        "dataset": str(data.path),
        "dataset_sha256": data.sha256,
        "dataset_manifest_sha256": data.manifest.get("parquet_sha256"),
        "config_hash": data.manifest.get("config_hash"),
        "horizon": data.manifest["horizon"],
        "embargo_ms": data.horizon_ms,
        "folds": options.folds,
        "seed": options.seed,
    }
    report: dict[str, Any] = {"format": REPORT_FORMAT, **head, "versions": versions, "models": {}}
    for item in trained:
        report["models"][item.spec.name] = item.report
        if item.booster is None:
            continue
        folder = out / item.spec.name
        folder.mkdir(exist_ok=True)
        model = folder / "model.txt"
        with atomic_target(model) as tmp:
            item.booster.save_model(str(tmp))
        card = {
            "format": CARD_FORMAT,
            "model": item.spec.name,
            "label": item.spec.label,
            "kind": item.spec.kind,
            "label_definition": data.manifest.get("label_definitions", {}).get(item.spec.label),
            "row_selection": item.spec.rows,
            "model_file": model.name,
            "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
            "features": data.features,
            **head,
            "candle_range": {
                k: data.manifest["candle_range"].get(k) for k in ("start_ms", "end_ms", "start", "end")
            },
            **item.card,
            "params": {**_params(item.spec, options), "num_boost_round": options.rounds},
            "metrics": {
                "folds": [
                    {k: f.get(k) for k in ("fold", "train_rows", "test_rows", "metrics", "skipped") if k in f}
                    for f in item.report["folds"]
                ],
                "pooled": item.report["pooled"],
                "beats_base": item.report["beats_base"],
            },
            "versions": versions,
        }
        write_json_atomic(folder / "card.json", card)
    write_json_atomic(out / "report.json", report)
    return report
