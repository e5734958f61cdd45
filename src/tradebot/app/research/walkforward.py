"""``tradebot walkforward``: optimise on each train window, test the choice on the window after it.

Rolling (or ``--anchored``) folds ``--train 12M --test 3M --step 3M`` over the data's span (or
``--start``/``--end``). For each fold an Optuna study (``<study>-fold<k>`` in ``--storage``, default
``<out>/optuna.db``) searches ``--space`` on the train window only — its candles end at the train
window's end; warm-up candles from before its start are allowed — and the best feasible trial's
parameters are back-tested on the test window. The folds' test runs are stitched into one
out-of-sample (OOS) run and set beside the default configuration and buy-and-hold over the same
period, with the Deflated Sharpe Ratio and the Probability of Backtest Overfitting over the trials
(:mod:`tradebot.app.research.wf_stats`). Re-running the command continues unfinished fold studies.
Without ``--space`` (allowed with ``--ml``) nothing is searched: every fold runs the configuration.

With ``--ml``, each fold also trains the position models on its train window and tests them on the
window after it — their metrics against the base rates, and the test window back-tested with the
rules alone and with the fold's models, stitched like the OOS run (:mod:`.wf_ml`).

Outputs in ``--out``: ``walkforward.json``, ``walkforward.png`` (OOS equity vs buy-and-hold), with
``--ml`` ``walkforward_ml.png`` and ``fold<k>/`` (datasets, models, test evaluation), and the tables
on the console.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from tradebot.app.backtest.backtest import (
    BacktestOptions,
    BacktestResult,
    backtest_loaded,
    load_data,
)
from tradebot.app.ml.evaluate import Evaluation, pooled_report
from tradebot.app.reports.report import write_summary_json
from tradebot.app.reports.summary import buy_and_hold_curve_of
from tradebot.app.research.optimize import run_study, spec_from_args
from tradebot.app.research.space import SearchSpace, load_space
from tradebot.app.research.study import (
    StudySpec,
    best_trial,
    configured_model,
    daily_returns,
    spec_settings,
)
from tradebot.app.research.wf_ml import MlOptions, check_ml_settings, ml_fold, rules_overrides
from tradebot.app.research.wf_report import render_report
from tradebot.app.research.wf_stats import FoldRun, fold_overfitting, overall_overfitting, stitch
from tradebot.app.settings import Settings
from tradebot.core.domain import ms_to_datetime
from tradebot.core.research.folds import Fold, make_folds, parse_duration
from tradebot.errors import ConfigError, DataError

__all__ = ["WalkForwardResult", "cmd_walkforward", "data_span", "run_walkforward"]


EquityCurve = list[tuple[int, Any]]


@dataclass(slots=True, kw_only=True)
class WalkForwardResult:
    """A walk-forward's report and curves ``[(time ms UTC, equity quote)]``: the stitched OOS run,
    buy-and-hold over the OOS period (``None`` without a benchmark) and, with ``--ml``, the stitched
    OOS run with the fold models."""

    report: dict[str, Any]
    oos_curve: EquityCurve
    buy_and_hold_curve: EquityCurve | None
    ml_curve: EquityCurve | None = None


def _day(ms: int) -> str:
    return ms_to_datetime(ms).strftime("%Y-%m-%d %H:%M")


def data_span(spec: StudySpec) -> tuple[int, int]:
    """Return ``[start, end)`` in ms UTC where every symbol has base candles (within the spec's
    ``start_ms``/``end_ms`` when given).

    Raises
    ------
    DataError
        If the data folder, a symbol's files or the timeframe are missing.
    """
    settings = spec_settings(spec, {})
    options = BacktestOptions(
        data_dir=spec.data_dir,
        timeframe=spec.timeframe,
        symbols=settings.symbols,
        start_ms=spec.start_ms,
        end_ms=spec.end_ms,
    )
    data = load_data(settings, options, lookback_bars=0)
    start = max(c[0].open_time_ms for c in data.candles.values())
    end = min(c[-1].open_time_ms for c in data.candles.values()) + data.base.ms
    return start, end


def _backtest(spec: StudySpec, settings: Settings, start_ms: int, end_ms: int, label: str) -> BacktestResult:
    # One backtest of ``settings`` over [start_ms, end_ms) of the spec's data (no database, no chart).
    options = BacktestOptions(
        data_dir=spec.data_dir,
        timeframe=spec.timeframe,
        symbols=settings.symbols,
        start_ms=start_ms,
        end_ms=end_ms,
    )
    return backtest_loaded(settings, load_data(settings, options), label=label)


def _fold_run(result: BacktestResult) -> FoldRun:
    stats = result.engine.stats
    curve = stats.equity_curve
    span = curve[-1][0] - curve[0][0] if curve else 0
    return FoldRun(
        equity_curve=curve,
        trades=result.trades,
        fees_paid=stats.fees_quote,
        traded_notional=stats.traded_notional,
        n_orders=int(result.summary["overall"]["n_orders"]),
        exposure_ms=min(stats.exposure_ms, span),
    )


def run_walkforward(
    spec: StudySpec, folds: list[Fold], jobs: int, console: Console, ml: MlOptions | None = None
) -> WalkForwardResult:
    """Run every fold's study (when the space has parameters) and test run, then the OOS comparison;
    with ``ml``, also train the position models on each train window and test them on the window
    after it (:mod:`tradebot.app.research.wf_ml`).

    Returns
    -------
    WalkForwardResult
        The ``walkforward.json`` document (see :func:`cmd_walkforward`) and the curves.

    Raises
    ------
    ConfigError, DataError
        From the storage, the space or the data.
    """
    searched = bool(spec.space.params)
    fold_docs: list[dict[str, Any]] = []
    runs: list[FoldRun] = []
    ml_runs: list[FoldRun] = []
    evaluations: list[Evaluation] = []
    for fold in folds:
        name = f"{spec.study_name}-fold{fold.index}"
        console.print(
            f"fold {fold.index + 1}/{len(folds)}: train {_day(fold.train_start_ms)} → "
            f"{_day(fold.train_end_ms)}, test → {_day(fold.test_end_ms)}"
            + (f" (study {name!r})" if searched else "")
        )
        best: FrozenTrial | None = None
        trials: list[FrozenTrial] = []
        n_failed = 0
        if searched:
            fold_spec = replace(
                spec,
                study_name=name,
                start_ms=fold.train_start_ms,
                end_ms=fold.train_end_ms,
                seed=None if spec.seed is None else spec.seed + 1000 * fold.index,
            )
            study = run_study(fold_spec, jobs, console, f"fold {fold.index + 1}/{len(folds)}")
            best = best_trial(study)
            trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            n_failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
        params = dict(best.params) if best is not None else None
        ml_fold_result = None if ml is None else ml_fold(spec, fold, params, ml, console)
        if ml_fold_result is not None:
            settings = ml_fold_result.rules_settings
        else:
            settings = spec_settings(spec, params or {})
        test = _backtest(spec, settings, fold.test_start_ms, fold.test_end_ms, f"fold {fold.index} OOS")
        runs.append(_fold_run(test))
        bench = test.summary.get("buy_and_hold") or {}
        if not searched:
            chosen = "the configuration (no --space)"
        else:
            chosen = "best feasible trial" if best is not None else "default (no feasible trial)"
        doc: dict[str, Any] = {
            "index": fold.index,
            "study": name if searched else None,
            "train_start_ms": fold.train_start_ms,
            "train_end_ms": fold.train_end_ms,
            "test_start_ms": fold.test_start_ms,
            "test_end_ms": fold.test_end_ms,
            "n_trials": len(trials),
            "n_failed": n_failed,
            "chosen_trial": None if best is None else best.number,
            "params": params,
            "chosen": chosen,
            "objective_values": None if best is None else best.values,
            "in_sample": None if best is None else best.user_attrs["summary"]["overall"],
            "out_of_sample": test.summary["overall"],
            "buy_and_hold_test": {k: bench.get(k) for k in ("total_return", "max_drawdown", "sharpe")},
            "overfitting": fold_overfitting(trials, None if best is None else best.number),
        }
        if ml_fold_result is not None:
            with_model = ml_fold_result.ml_settings
            ml_test = (
                test
                if with_model is None
                else _backtest(
                    spec, with_model, fold.test_start_ms, fold.test_end_ms, f"fold {fold.index} OOS + ML"
                )
            )
            ml_runs.append(_fold_run(ml_test))
            if ml_fold_result.evaluation is not None:
                evaluations.append(ml_fold_result.evaluation)
            doc["ml"] = {
                **ml_fold_result.doc,
                "model_used": with_model is not None,
                "out_of_sample": ml_test.summary["overall"],
            }
        fold_docs.append(doc)
    oos_curve, oos_overall = stitch(runs)
    oos_start, oos_end = folds[0].test_start_ms, folds[-1].test_end_ms
    console.print(f"default configuration over the OOS period {_day(oos_start)} → {_day(oos_end)}")
    default_settings = spec_settings(spec, rules_overrides(None) if ml is not None else {})
    default = _backtest(spec, default_settings, oos_start, oos_end, "default")
    bh_curve = buy_and_hold_curve_of(default.engine, default.summary)
    dsr, pbo = overall_overfitting(list(daily_returns(oos_curve).values()), fold_docs)
    report: dict[str, Any] = {
        "initial_equity": oos_overall["initial_equity"],
        "final_equity": oos_overall["final_equity"],
        "quote": default.summary["run"]["quote"],
        "base_config": None if spec.space.base_config is None else str(spec.space.base_config),
        "objectives": list(spec.objectives) if searched else [],
        "trials_per_fold": spec.n_trials if searched else 0,
        "oos_start_ms": oos_start,
        "oos_end_ms": oos_end,
        "folds": fold_docs,
        "oos": oos_overall,
        "default": default.summary["overall"],
        "buy_and_hold": default.summary.get("buy_and_hold"),
        "deflated_sharpe": dsr,
        "pbo": pbo,
    }
    ml_curve: EquityCurve | None = None
    if ml is not None:
        ml_curve, ml_overall = stitch(ml_runs)
        report["ml"] = {
            "horizon_periods": ml.horizon_periods,
            "inner_folds": ml.inner_folds,
            "seed": ml.seed,
            "oos": ml_overall,
            "test": pooled_report(evaluations) if evaluations else None,
        }
    return WalkForwardResult(
        report=report, oos_curve=oos_curve, buy_and_hold_curve=bh_curve, ml_curve=ml_curve
    )


def _folds(args: Any, spec: StudySpec) -> list[Fold]:
    # The folds of the command line over the data's span; refused naming the values when none fits.
    try:
        train, test = parse_duration(args.train), parse_duration(args.test)
        step = parse_duration(args.step) if args.step else test
    except ValueError as exc:
        raise ConfigError(f"--train/--test/--step: {exc}") from None
    start, end = data_span(spec)
    folds = make_folds(start, end, train, test, step, anchored=args.anchored)
    if folds and len(folds) > 1 and folds[1].test_start_ms < folds[0].test_end_ms:
        raise ConfigError(
            f"--step {args.step} is shorter than --test {args.test}: test windows would overlap"
        )
    if not folds:
        raise ConfigError(
            f"--train {args.train} + --test {args.test} is longer than the data: "
            f"{_day(start)} → {_day(end)} in {str(spec.data_dir)!r}"
        )
    return folds


def cmd_walkforward(args: Any) -> int:
    """``tradebot walkforward``: folds, studies, OOS runs, report; returns 0.

    ``walkforward.json`` keys: ``folds`` (per fold: windows in ms UTC, ``params`` chosen,
    ``in_sample`` and ``out_of_sample`` measure tables, ``buy_and_hold_test``, ``overfitting``),
    ``oos`` (the stitched out-of-sample measures), ``default`` (the base configuration over the OOS
    period) and ``buy_and_hold`` (equal-weight buy-and-hold over it) — those three with the keys of
    a backtest summary's ``overall`` — ``deflated_sharpe`` and ``pbo``. With ``--ml`` each fold has
    ``ml`` (``train_rows``, ``inner_cv``, ``test`` — per model its test rows, metrics against the
    base and ``beats_base`` —, ``model_used`` and ``out_of_sample`` of the run with the models), and
    the report ``ml``: ``oos`` (the stitched runs with the fold models) and ``test`` (the test
    predictions of all folds pooled per model); ``oos`` is then the rules alone (model off).

    Raises
    ------
    ConfigError, DataError
        For bad input (exit 2 in the CLI): neither ``--space`` nor ``--ml``, durations, folds longer
        than the data, the space, the storage, an objective, ``--ml-horizon``/``--ml-folds``, ``--ml``
        with management off; nothing is recorded complete before these checks pass.
    """
    from tradebot.app.logging import configure_logging

    configure_logging(level="warning")
    console = Console(width=max(170, Console().width))
    if args.space is None and not args.ml:
        raise ConfigError(
            "walkforward needs --space (search parameters per fold), --ml (train the position models "
            "per fold) or both"
        )
    if args.space is not None:
        space: SearchSpace = load_space(args.space, base_config=args.config)
    else:
        space = SearchSpace(params=(), base_config=None if args.config is None else Path(args.config))
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out must be a folder, was the file {str(out)!r}")
    storage_url = args.storage or f"sqlite:///{(out / 'optuna.db').resolve()}"
    spec = spec_from_args(args, space, storage_url, args.study)
    ml = _ml_options(args, spec, out, console)
    if ml is not None:  # the studies, the datasets and the rules arm run without the configured model
        spec = replace(spec, extra_overrides={**spec.extra_overrides, **rules_overrides(None)})
    try:
        folds = _folds(args, spec)
    except DataError as exc:
        raise DataError(f"walkforward: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    result = run_walkforward(spec, folds, args.jobs, console, ml)
    report = result.report
    render_report(report, console)
    write_summary_json(report, out / "walkforward.json")
    from tradebot.app.reports.chart import write_equity_chart  # matplotlib only when a chart is drawn

    quote = str(report["quote"])
    write_equity_chart(
        result.oos_curve,
        out / "walkforward.png",
        benchmark_curve=result.buy_and_hold_curve,
        title=f"walk-forward OOS ({len(folds)} folds) vs buy-and-hold",
        quote=quote,
    )
    charts = str(out / "walkforward.png")
    if result.ml_curve is not None:
        write_equity_chart(
            result.ml_curve,
            out / "walkforward_ml.png",
            benchmark_curve=result.buy_and_hold_curve,
            title=f"walk-forward OOS with the fold models ({len(folds)} folds) vs buy-and-hold",
            quote=quote,
        )
        charts += f", {out / 'walkforward_ml.png'}"
    console.print(f"report: {out / 'walkforward.json'}   charts: {charts}")
    return 0


def _ml_options(args: Any, spec: StudySpec, out: Path, console: Console) -> MlOptions | None:
    # --ml's options, checked before any fold runs; without --ml, a warning when the configuration
    # names a model (trained on who knows which candles: its test windows may be in-sample for it).
    if not args.ml:
        if configured_model(spec) is not None:
            console.print(
                "[yellow]warning:[/yellow] the configuration names a model ([management.ml] model); "
                "it was not trained per fold, so the test windows may be in its training data — "
                "use --ml to train and test the models fold by fold"
            )
        return None
    horizon, inner = args.ml_horizon, args.ml_folds
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ConfigError(
            f"--ml-horizon must be an integer number of rebalance periods >= 1, was {horizon!r}"
        )
    if isinstance(inner, bool) or not isinstance(inner, int) or inner < 2:
        raise ConfigError(f"--ml-folds must be an integer >= 2, was {inner!r}")
    check_ml_settings(spec_settings(spec, {}))
    return MlOptions(out=out, horizon_periods=horizon, inner_folds=inner, seed=args.seed)
