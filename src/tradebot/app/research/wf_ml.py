"""``tradebot walkforward --ml``: the position models trained on each fold's train window and tested on
the window after it (issue 16, item 7).

For each fold, with the configuration the fold chose (its study's best parameters, or the
configuration itself without ``--space``):

1. **dataset** of the train window — a backtest of the configuration *without* a model over the
   train window's candles only (their end is the train window's end), one row per open position per
   rebalance close; a row's labels look at most ``--ml-horizon`` periods ahead and a row whose
   horizon passes the train window's end is incomplete and left out of training. So no label of the
   train rows reads a candle of the test window (the purge), and the test window starts where the
   last complete horizon ends at the latest (an embargo of at least the horizon, López de Prado,
   *Advances in Financial Machine Learning*, ch. 7);
2. **models** trained on it (``tradebot ml train``'s :func:`~tradebot.app.ml.train.train_models`,
   inner purged folds for its report) into ``<out>/fold<k>/models``;
3. **test metrics**: the dataset of the test window (the same rule-managed backtest over it) scored by
   those models against the base rates of their train rows (:mod:`tradebot.app.ml.evaluate`);
4. **test runs**: the test window back-tested twice — the rules alone and the rules with the fold's
   models (``[management.ml] model`` set to its folder, the configuration's thresholds).

The two arms are stitched across folds like the walk-forward's out-of-sample run, and the test
predictions are pooled into one table per model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from tradebot.app.ml.dataset import DatasetOptions, build_dataset
from tradebot.app.ml.evaluate import Evaluation, evaluate_models
from tradebot.app.ml.files import write_dataset, write_json_atomic
from tradebot.app.ml.train import TrainOptions, load_dataset, train_models, write_models
from tradebot.app.research.study import StudySpec, spec_settings
from tradebot.app.settings import Settings, build_engine_config
from tradebot.core.domain import Timeframe
from tradebot.core.research.folds import Fold
from tradebot.errors import ConfigError

__all__ = ["MlFoldResult", "MlOptions", "check_ml_settings", "ml_fold", "rules_overrides"]

#: The override that switches the model off: the rules arm, and every dataset's backtest.
_NO_MODEL: dict[str, object] = {"management.ml.model": None}


@dataclass(frozen=True, slots=True, kw_only=True)
class MlOptions:
    """``--ml-horizon`` (rebalance periods, int >= 1), ``--ml-folds`` (inner folds of the training
    report, int >= 2) and the seed of the trees; ``out``: the walk-forward's output folder."""

    out: Path
    horizon_periods: int = 24
    inner_folds: int = 4
    seed: int = 0


@dataclass(slots=True, kw_only=True)
class MlFoldResult:
    """One fold's ML part: the ``walkforward.json`` entry, its test evaluation, the settings of the
    two test arms."""

    doc: dict[str, Any]
    evaluation: Evaluation | None
    rules_settings: Settings
    ml_settings: Settings | None


def rules_overrides(params: dict[str, Any] | None) -> dict[str, object]:
    """The overrides of a fold's rules arm: its chosen parameters with the model switched off."""
    return {**(params or {}), **_NO_MODEL}


def check_ml_settings(settings: Settings) -> None:
    """Refuse ``--ml`` on a configuration that cannot use a model.

    Raises
    ------
    ConfigError
        If position management is off (``[management]`` disabled): the models act through it.
    """
    config = build_engine_config(settings, run_id="wf-ml-check", base_timeframe=Timeframe.parse("1m"))
    if config.management.is_off:
        raise ConfigError(
            "--ml: position management is off in this configuration; the models act through it "
            "(use a configuration with [management], e.g. config/managed.toml)"
        )


def _dataset_options(spec: StudySpec, start_ms: int, end_ms: int, options: MlOptions) -> DatasetOptions:
    return DatasetOptions(
        data_dir=spec.data_dir,
        timeframe=spec.timeframe,
        symbols=spec.symbols,
        start_ms=start_ms,
        end_ms=end_ms,
        horizon_periods=options.horizon_periods,
        config_file=spec.space.base_config,
    )


def ml_fold(
    spec: StudySpec, fold: Fold, params: dict[str, Any] | None, options: MlOptions, console: Console
) -> MlFoldResult:
    """Build the fold's datasets, train its models, score them on the test window and return the
    settings of its two test arms (``ml_settings`` is ``None`` when no model could be trained).

    Files: ``<out>/fold<k>/train.parquet``, ``test.parquet`` (with manifests), ``models/`` (model
    files, cards, ``report.json``) and ``models/evaluation-test.json``.

    Raises
    ------
    ConfigError, DataError
        From the settings, the candles or a dataset.
    """
    folder = options.out / f"fold{fold.index}"
    rules = spec_settings(spec, rules_overrides(params))
    console.print(f"  ml: dataset of the train window ({options.horizon_periods} periods of horizon)")
    train_file, _ = write_dataset(
        build_dataset(rules, _dataset_options(spec, fold.train_start_ms, fold.train_end_ms, options)),
        folder / "train.parquet",
    )
    train = load_dataset(train_file)
    doc: dict[str, Any] = {"train_rows": len(train.times), "models_dir": str(folder / "models")}
    if len(train.times) == 0:
        doc["skipped"] = "no train row with a complete horizon"
        return MlFoldResult(doc=doc, evaluation=None, rules_settings=rules, ml_settings=None)
    topts = TrainOptions(folds=options.inner_folds, seed=options.seed + 1000 * fold.index)
    console.print(f"  ml: training on {len(train.times):,} rows")
    trained = train_models(train, topts)
    models = folder / "models"
    report = write_models(train, topts, trained, models)
    doc["inner_cv"] = {name: m.get("pooled") for name, m in report["models"].items()}
    if not any(t.booster is not None for t in trained):
        doc["skipped"] = "; ".join(f"{name}: {m.get('final')}" for name, m in report["models"].items())
        return MlFoldResult(doc=doc, evaluation=None, rules_settings=rules, ml_settings=None)
    console.print("  ml: dataset of the test window, scored by the fold's models")
    test_file, _ = write_dataset(
        build_dataset(rules, _dataset_options(spec, fold.test_start_ms, fold.test_end_ms, options)),
        folder / "test.parquet",
    )
    evaluation = evaluate_models(models, load_dataset(test_file))
    write_json_atomic(models / "evaluation-test.json", evaluation.report)
    doc["test_rows"] = evaluation.report.get("rows")
    doc["test"] = evaluation.report["models"]
    ml_settings = spec_settings(spec, {**(params or {}), "management.ml.model": str(models)})
    return MlFoldResult(doc=doc, evaluation=evaluation, rules_settings=rules, ml_settings=ml_settings)
