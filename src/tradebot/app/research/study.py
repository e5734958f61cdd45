"""One Optuna study over a search space: objectives, storage, the trial function and a worker loop.

Shared by ``tradebot optimize`` and ``tradebot walkforward``. A worker process loads the candles once
(:class:`TrialRunner`), then pulls trials from the study's RDB storage until the study holds
``n_trials`` finished trials (complete or failed) in total, counted across every process and machine
that works on it: Optuna's storage is the only coordinator. Each trial stores its summary, its
objective measures, its feasibility and its daily returns as user attributes, so reports never
re-run a trial.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import time
import traceback
import warnings
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.samplers import BaseSampler, NSGAIISampler, TPESampler
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, Trial, TrialState

from tradebot.app.backtest.backtest import (
    BacktestOptions,
    LoadedData,
    backtest_loaded,
    load_data,
    with_symbols,
)
from tradebot.app.ml.runtime import model_folder
from tradebot.app.research.space import CategoricalParam, IntParam, SearchSpace, settings_for, suggest
from tradebot.app.settings import Settings, load_settings
from tradebot.core.domain import Timeframe
from tradebot.errors import ConfigError

__all__ = [
    "LEAN_ATTRS",
    "OBJECTIVES",
    "LeanStorage",
    "StudySpec",
    "TrialRunner",
    "best_trial",
    "daily_returns",
    "finished_count",
    "measures",
    "memory_mb",
    "open_storage",
    "parse_objectives",
    "run_worker",
    "spec_settings",
]

_YEAR_MS = 365.25 * 86_400_000
#: Objective name -> Optuna direction. Values are read from a summary's ``overall`` (calmar computed).
OBJECTIVES: dict[str, Literal["maximize", "minimize"]] = {
    "sharpe": "maximize",
    "sortino": "maximize",
    "calmar": "maximize",
    "profit_factor": "maximize",
    "final_equity": "maximize",
    "total_return": "maximize",
    "max_drawdown": "minimize",
}
_FINISHED = (TrialState.COMPLETE, TrialState.FAIL)
#: Heartbeat of a running trial, s; a trial silent for the grace period is marked FAIL by any worker.
HEARTBEAT_S = 2
GRACE_S = 8


def quiet_optuna() -> None:
    """Silence Optuna's info log and its experimental-feature warnings (heartbeat, stale trials)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def parse_objectives(text: str) -> tuple[str, ...]:
    """Parse ``--objective``: one name, or two separated by a comma (multi-objective, NSGA-II).

    Raises
    ------
    ConfigError
        On an unknown or repeated name or more than two; the message names the value.
    """
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in OBJECTIVES]
    if not names or unknown or len(names) > 2 or len(set(names)) != len(names):
        raise ConfigError(
            f"--objective: expected one or two of {sorted(OBJECTIVES)} separated by a comma, was {text!r}"
        )
    return names


def measures(overall: Mapping[str, Any]) -> dict[str, float | None]:
    """Return every objective measure of a summary's ``overall`` table (floats; ``None`` if undefined).

    ``calmar = annualized return / max drawdown`` with the annualized return computed from
    ``total_return`` over ``end_ms - start_ms`` (so it exists under 90 days too); ``None`` without a
    drawdown.
    """
    out: dict[str, float | None] = {}
    for name in OBJECTIVES:
        value = overall.get(name)
        out[name] = None if value is None else float(value)
    total, mdd = out["total_return"], out["max_drawdown"]
    span = (overall.get("end_ms") or 0) - (overall.get("start_ms") or 0)
    if total is not None and mdd and span > 0 and total > -1:
        annual = (1 + total) ** (_YEAR_MS / span) - 1
        out["calmar"] = annual / mdd if math.isfinite(annual) else None
    else:
        out["calmar"] = None
    return out


def daily_returns(equity_curve: Sequence[tuple[int, Any]]) -> dict[str, float]:
    """Return ``{day_ms: return}``: the simple return of the last equity of each UTC day over the
    previous day's (the first day against the curve's first sample)."""
    last: dict[int, float] = {}
    for t, e in equity_curve:
        last[t - t % 86_400_000] = float(e)
    out: dict[str, float] = {}
    prev = float(equity_curve[0][1]) if equity_curve else 0.0
    for day in sorted(last):
        out[str(day)] = last[day] / prev - 1 if prev > 0 else 0.0
        prev = last[day]
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class StudySpec:
    """Everything a worker needs to join a study (picklable: sent to worker processes).

    Attributes
    ----------
    space
        The parsed, validated search space (``space.base_config`` is the base configuration).
    data_dir, timeframe, symbols, start_ms, end_ms
        Candles of the study window (ms UTC, end exclusive).
    objectives
        One or two names of :data:`OBJECTIVES`.
    storage_url
        SQLAlchemy URL of the Optuna storage (sync driver).
    study_name
        Study in that storage.
    n_trials
        Finished trials (complete or failed) the study should hold in total, > 0.
    seed
        Sampler seed (worker ``i`` uses ``seed + i``); ``None`` for a random one.
    min_trades
        Constraint: at least this many closed trades (``None``: no constraint).
    max_drawdown
        Constraint: max drawdown at most this fraction (``None``: no constraint).
    """

    space: SearchSpace
    data_dir: Path
    timeframe: Timeframe | None
    symbols: tuple[str, ...] | None
    start_ms: int | None
    end_ms: int | None
    objectives: tuple[str, ...]
    storage_url: str
    study_name: str
    n_trials: int
    seed: int | None = None
    min_trades: int | None = None
    max_drawdown: float | None = None
    extra_overrides: Mapping[str, object] = field(default_factory=dict)


def widest_lookback(space: SearchSpace, base: Settings) -> int:
    """Return the warm-up candles (3 x slowest ``slow``) the widest settings of ``space`` need."""
    slow = max(s.slow for s in base.streams)
    for p in space.params:
        if re.fullmatch(r"streams\.\d+\.slow", p.path):
            if isinstance(p, IntParam):
                slow = max(slow, p.high)
            elif isinstance(p, CategoricalParam):
                slow = max([slow, *(int(c) for c in p.choices if isinstance(c, int | float))])
    return slow * 3


def spec_settings(spec: StudySpec, params: Mapping[str, object]) -> Settings:
    """Return the study's base configuration with ``spec.extra_overrides`` and ``params`` (dotted
    paths) applied, narrowed to ``spec.symbols`` (:func:`~tradebot.app.backtest.backtest.with_symbols`).

    Raises
    ------
    ConfigError
        For a value the settings refuse (the trial fails with it).
    """
    overrides = {**spec.extra_overrides, **params}
    base = spec.space.base_config
    settings = settings_for(base, overrides) if overrides else load_settings(base)
    return with_symbols(settings, spec.symbols)


def configured_model(spec: StudySpec) -> str | None:
    """The ``[management.ml] model`` folder the study's base configuration names (``None``: none).

    Raises
    ------
    ConfigError
        For a value the settings refuse.
    """
    return model_folder(spec_settings(spec, {}))


class TrialRunner:
    """Run trials of one study on candles loaded once (per process).

    Raises
    ------
    DataError, ConfigError
        From loading the candles or the base settings.
    """

    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec
        base = self._settings({})
        tfs = {Timeframe(t) for t in ("1h", "4h", "1d")} | {Timeframe(s.timeframe) for s in base.streams}
        options = BacktestOptions(
            data_dir=spec.data_dir,
            timeframe=spec.timeframe,
            symbols=base.symbols,
            start_ms=spec.start_ms,
            end_ms=spec.end_ms,
        )
        # Held as columns (a few large arrays, not millions of objects): nothing for the collector to
        # walk, so no gc.freeze, which would also pin whatever cyclic garbage exists at this point.
        self.data: LoadedData = load_data(
            base, options, lookback_bars=widest_lookback(spec.space, base), warmup_timeframes=frozenset(tfs)
        )
        #: Engine-loop time (s) of the last :meth:`run`.
        self.last_engine_s = 0.0

    def _settings(self, params: Mapping[str, object]) -> Settings:
        return spec_settings(self.spec, params)

    def run(self, params: Mapping[str, object]) -> tuple[dict[str, Any], dict[str, float]]:
        """Back-test ``params`` over the study window; return (JSON-safe summary, daily returns)."""
        result = backtest_loaded(self._settings(params), self.data, run_id="trial")
        self.last_engine_s = result.engine_s
        summary = json.loads(json.dumps(result.summary, default=_plain))
        return summary, daily_returns(result.engine.stats.equity_curve)

    def objective(self, trial: Trial) -> float | tuple[float, ...]:
        """Optuna objective: suggest, back-test, record user attributes, return the objective(s).

        A trial that raises is recorded FAIL with its error text in the ``error`` user attribute. The
        ``perf`` user attribute holds the trial's costs: ``engine_s`` (the engine loop), ``run_s``
        (the whole backtest with its summary and daily returns), the worker's ``rss_mb`` after it
        and ``peak_rss_mb`` so far (MiB), and the worker's ``pid``.
        """
        busy = trial.study.get_trials(deepcopy=False, states=(*_FINISHED, TrialState.RUNNING))
        if sum(t.number < trial.number for t in busy) >= self.spec.n_trials:
            # Two workers asked at once for the last trial: this one is surplus (PRUNED, not counted).
            trial.set_user_attr("surplus", True)
            raise optuna.TrialPruned("the study already has its trials")
        try:
            params = suggest(self.spec.space, trial)
            started = time.perf_counter()
            summary, returns = self.run(params)
            run_s = time.perf_counter() - started
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            trial.set_user_attr("traceback", traceback.format_exc(limit=5)[-2000:])
            raise
        overall = summary["overall"]
        values = measures(overall)
        violations = []
        if self.spec.min_trades is not None:
            violations.append(float(self.spec.min_trades - int(overall.get("n_trades") or 0)))
            trial.set_constraint("min_trades", violations[-1])
        if self.spec.max_drawdown is not None:
            violations.append(float((values["max_drawdown"] or 0.0) - self.spec.max_drawdown))
            trial.set_constraint("max_drawdown", violations[-1])
        trial.set_user_attr("constraints", violations)
        trial.set_user_attr("feasible", all(v <= 0 for v in violations))
        trial.set_user_attr("summary", summary)
        trial.set_user_attr("measures", values)
        trial.set_user_attr("daily_returns", returns)
        trial.set_user_attr(
            "perf",
            {"engine_s": self.last_engine_s, "run_s": run_s, **memory_mb(), "pid": os.getpid()},
        )
        out = []
        for name in self.spec.objectives:
            v = values[name]
            worst = -math.inf if OBJECTIVES[name] == "maximize" else math.inf
            out.append(worst if v is None or not math.isfinite(v) else v)
        return out[0] if len(out) == 1 else tuple(out)


def memory_mb() -> dict[str, float | None]:
    """Return this process's resident memory now (``rss_mb``; ``None`` without ``/proc``) and at its
    peak (``peak_rss_mb``), MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        rss: float | None = pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        rss = None
    # The kernel updates the high-water mark lazily: it may trail the current figure a little.
    return {"rss_mb": rss, "peak_rss_mb": peak if rss is None else max(peak, rss)}


def _plain(value: Any) -> Any:
    # JSON form of the summary's non-JSON values (Decimal money as exact text).
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)


def make_sampler(objectives: Sequence[str], seed: int | None) -> BaseSampler:
    """TPE (seeded) for one objective, NSGA-II for two; both honour the constraints each trial sets
    (``Trial.set_constraint``: a value <= 0 is met)."""
    if len(objectives) > 1:
        return NSGAIISampler(seed=seed)
    return TPESampler(seed=seed)


#: The user attributes workers and the progress display read; a lean storage drops the others.
LEAN_ATTRS = frozenset({"feasible", "error", "surplus"})


class LeanStorage(RDBStorage):
    """An RDB storage whose trials come back with only the :data:`LEAN_ATTRS` user attributes (the
    others stay stored).

    Optuna keeps every finished trial it has read in each process (its cached storage), and a
    trial's summary and daily returns weigh ~130-200 KiB in memory: a worker that only samples and
    counts trials would grow by that much per trial of the study. Read lean, a trial costs ~5 KiB
    (its parameters, values and Optuna's own fields, which the sampler needs). Workers and the
    progress display read trials through this storage; reports open a plain one.
    """

    def _get_trials(
        self,
        study_id: int,
        states: Container[TrialState] | None,
        included_trial_ids: set[int],
        trial_id_greater_than: int,
    ) -> list[FrozenTrial]:
        # The one read the cached storage makes of new and unfinished trials (Optuna 4 and 5).
        trials = super()._get_trials(study_id, states, included_trial_ids, trial_id_greater_than)
        for t in trials:
            if not LEAN_ATTRS.issuperset(t.user_attrs):
                t.user_attrs = {k: v for k, v in t.user_attrs.items() if k in LEAN_ATTRS}
        return trials


def open_storage(url: str, *, lean: bool = False) -> RDBStorage:
    """Open (and create the tables of) an Optuna RDB storage with a heartbeat.

    With ``lean``, a :class:`LeanStorage`: its trials hold only the user attributes workers read.

    Raises
    ------
    ConfigError
        If the URL is malformed or the database unreachable; the message names the URL (no password).
    """
    engine_kwargs: dict[str, Any] = {}
    error: Exception | None = None
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 5}
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    kind = LeanStorage if lean else RDBStorage
    for attempt in range(3):
        try:
            return kind(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S
            )
        except Exception as exc:  # sqlalchemy's errors: bad URL, missing driver, refused connection
            error = exc
            # Workers starting together on a fresh database race to create the tables (a unique
            # violation on the catalogue, or PostgreSQL's DuplicateTable "relation … already exists").
            raced = "duplicate key" in str(exc) or "already exists" in str(exc)
            if not raced or attempt == 2:
                break
            time.sleep(0.5 + attempt)
    shown = re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    raise ConfigError(f"--storage: cannot open {shown!r}: {first}") from None


def load_or_create(spec: StudySpec, storage: RDBStorage, seed: int | None) -> optuna.Study:
    """Create the study (or join it when it exists) with the spec's directions and sampler.

    Raises
    ------
    ConfigError
        If an existing study has other directions than the spec's objectives.
    """
    directions = [OBJECTIVES[n] for n in spec.objectives]
    sampler = make_sampler(spec.objectives, seed)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=spec.study_name,
            directions=directions,
            sampler=sampler,
            load_if_exists=True,
        )
    except ValueError as exc:
        raise ConfigError(f"--study {spec.study_name!r}: {exc}") from None
    if [d.name.lower() for d in study.directions] != directions:
        raise ConfigError(
            f"--study {spec.study_name!r} exists with directions "
            f"{[d.name.lower() for d in study.directions]}, not {directions} of --objective"
        )
    study.set_user_attr("objectives", list(spec.objectives))
    return study


def finished_count(study: optuna.Study) -> int:
    """Trials of ``study`` that finished (complete or failed)."""
    return len(study.get_trials(deepcopy=False, states=_FINISHED))


class _StopAt:
    # Stop this worker once the finished trials, plus those other workers are running, reach n.
    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trials = study.get_trials(deepcopy=False, states=(*_FINISHED, TrialState.RUNNING))
        if len(trials) >= self.n:
            study.stop()


def run_worker(
    spec: StudySpec,
    worker_index: int = 0,
    on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
) -> None:
    """Join the study and run trials until it holds ``spec.n_trials`` finished ones.

    Loads the candles once. Failed trials are recorded and the loop goes on. Trials are read
    through a :class:`LeanStorage`, so the worker's memory does not grow with the study.

    Raises
    ------
    ConfigError, DataError
        From the storage, the space or the data (before any trial runs).
    """
    quiet_optuna()
    storage = open_storage(spec.storage_url, lean=True)
    seed = None if spec.seed is None else spec.seed + worker_index
    study = load_or_create(spec, storage, seed)
    runner = TrialRunner(spec)
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = [_StopAt(spec.n_trials)]
    if on_trial is not None:
        callbacks.append(on_trial)
    while True:
        optuna.storages.fail_stale_trials(study)
        finished = finished_count(study)
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if finished >= spec.n_trials:
            return
        if finished + running >= spec.n_trials:
            # Other workers run the last trials; a dead one's trial turns FAIL after the grace period.
            time.sleep(HEARTBEAT_S)
            continue
        study.optimize(runner.objective, n_trials=None, catch=(Exception,), callbacks=callbacks)


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """Return the best feasible complete trial (for two objectives: the Pareto-front trial best on
    the first), or ``None`` when no complete trial is feasible."""
    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("feasible", True) and t.values is not None
    ]
    if not trials:
        return None
    sign = [1.0 if d.name == "MAXIMIZE" else -1.0 for d in study.directions]

    def key(t: FrozenTrial) -> tuple[float, ...]:
        assert t.values is not None
        return (*(s * v for s, v in zip(sign, t.values, strict=True)), -t.number)

    return max(trials, key=key)
