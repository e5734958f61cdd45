"""``tradebot optimize``: an Optuna study of a search space over stored candles (issue 12 item 4).

TPE (seeded) for one objective, NSGA-II for two. ``--jobs K`` starts K worker processes, each loading
the candles once and pulling trials from the study's storage (default ``<out>/optuna.db``; any
SQLAlchemy URL with ``--storage``, e.g. PostgreSQL so that workers on many machines join one study)
until it holds ``--trials`` finished trials. Re-running the same command continues the study. A seeded
run is reproducible with ``--jobs 1`` only: parallel workers interleave their trials by timing.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
import tomllib
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from decimal import Decimal
from pathlib import Path
from typing import Any

import optuna
import tomli_w
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tradebot.app.reports.tables import render_summary
from tradebot.app.research.overrides import apply
from tradebot.app.research.space import SearchSpace, load_space
from tradebot.app.research.study import (
    StudySpec,
    best_trial,
    configured_model,
    finished_count,
    load_or_create,
    open_storage,
    parse_objectives,
    quiet_optuna,
    run_worker,
)
from tradebot.app.settings import load_settings
from tradebot.core.domain import Timeframe
from tradebot.errors import ConfigError

__all__ = ["base_document", "cmd_optimize", "positive_int", "run_study", "spec_from_args"]


def positive_int(flag: str, value: int) -> int:
    """Return ``value`` if > 0.

    Raises
    ------
    ConfigError
        Otherwise, naming ``flag`` and the value.
    """
    if value <= 0:
        raise ConfigError(f"{flag} must be a positive integer, was {value!r}")
    return value


class StudyProgress:
    """Trials done / total with the best value so far: a rich bar on a terminal, else a line per trial
    on stderr."""

    def __init__(self, console: Console, total: int, label: str) -> None:
        self.total = total
        self.label = label
        self.seen: set[int] = set()
        self.bar: Progress | None = None
        if console.is_terminal:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            )
            self.task = self.bar.add_task(label, total=total)
            self.bar.start()

    def update(self, study: optuna.Study) -> None:
        """Report the trials that finished since the last call."""
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
        best = best_trial(study)
        best_text = "none yet" if best is None else f"{_fmt(best.values)} (trial {best.number})"
        for t in sorted(trials, key=lambda t: t.number):
            if t.number in self.seen:
                continue
            self.seen.add(t.number)
            if self.bar is None:
                what = (
                    _fmt(t.values)
                    if t.state == TrialState.COMPLETE
                    else "FAIL " + str(t.user_attrs.get("error", ""))[:120]
                )
                print(
                    f"{self.label}: trial {t.number} {what}; {len(self.seen)}/{self.total} done, "
                    f"best {best_text}",
                    file=sys.stderr,
                    flush=True,
                )
        if self.bar is not None:
            self.bar.update(self.task, completed=len(trials), description=f"{self.label} best {best_text}")

    def close(self) -> None:
        """Stop the bar."""
        if self.bar is not None:
            self.bar.stop()


def _fmt(values: list[float] | None) -> str:
    return "-" if values is None else ", ".join(f"{v:.6g}" for v in values)


def run_study(spec: StudySpec, jobs: int, console: Console, label: str) -> optuna.Study:
    """Run the study with ``jobs`` worker processes (``1``: in this process) and return it.

    Raises
    ------
    ConfigError, DataError
        From the storage, the data or the space (a worker's error is re-raised here).
    """
    quiet_optuna()
    # Progress reads trials without their bulky attributes (a lean storage, as the workers do); the
    # study returned to the reports is read whole once the trials are done.
    study = load_or_create(spec, open_storage(spec.storage_url, lean=True), spec.seed)
    progress = StudyProgress(console, spec.n_trials, label)
    try:
        if jobs == 1:
            run_worker(spec, 0, on_trial=lambda s, _t: progress.update(s))
        else:
            _run_pool(spec, jobs, lambda: progress.update(study))
        progress.update(study)
    finally:
        progress.close()
    return optuna.load_study(study_name=spec.study_name, storage=open_storage(spec.storage_url))


def _run_pool(spec: StudySpec, jobs: int, poll: Callable[[], None]) -> None:
    # Spawned workers (no inherited connections); the first error of any worker is re-raised.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures: list[Future[None]] = [pool.submit(run_worker, spec, i) for i in range(jobs)]
        while True:
            done, pending = wait(futures, timeout=0.5, return_when=FIRST_EXCEPTION)
            poll()
            for f in done:
                if f.exception() is not None:
                    for p in pending:
                        p.cancel()
                    raise f.exception()  # type: ignore[misc]
            if not pending:
                return
            time.sleep(0.2)


def base_document(space: SearchSpace, params: dict[str, object]) -> dict[str, Any]:
    """Return the base config file's document with ``params`` (dotted paths) applied; each top-level
    section a parameter touches is taken whole from the loaded settings, so list items exist."""
    doc: dict[str, Any] = {}
    if space.base_config is not None:
        doc = tomllib.loads(Path(space.base_config).read_text(encoding="utf-8"))
    top = {p.split(".", 1)[0] for p in params}
    settings = load_settings(space.base_config)
    doc.update(settings.model_dump(include=top, mode="python"))
    return apply(doc, params)


def _tomlable(value: Any) -> Any:
    # TOML has no null and tomli-w no Decimal: drop None, write Decimal money as exact text (the settings
    # read Decimal fields from text), tuples as arrays.
    if isinstance(value, dict):
        return {k: _tomlable(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_tomlable(v) for v in value]
    if isinstance(value, Decimal):
        return f"{value:f}"
    return value


def spec_from_args(args: Any, space: SearchSpace, storage_url: str, study_name: str, **kw: Any) -> StudySpec:
    """Build the :class:`StudySpec` of the command line (timeframe parsed, counts checked).

    Raises
    ------
    ConfigError
        For ``--trials``/``--jobs`` < 1, a bad ``--timeframe``, ``--objective`` or constraint.
    """
    positive_int("--trials", args.trials)
    positive_int("--jobs", args.jobs)
    try:
        timeframe = Timeframe.parse(args.timeframe) if args.timeframe else None
    except ValueError as exc:
        raise ConfigError(f"--timeframe: {exc}") from None
    if args.min_trades is not None and args.min_trades < 0:
        raise ConfigError(f"--min-trades must be >= 0, was {args.min_trades!r}")
    if args.max_drawdown is not None and not 0 < args.max_drawdown <= 1:
        raise ConfigError(f"--max-drawdown must be a fraction in (0, 1], was {args.max_drawdown!r}")
    fields: dict[str, Any] = {
        "space": space,
        "data_dir": args.data,
        "timeframe": timeframe,
        "symbols": args.symbols,
        "start_ms": args.start,
        "end_ms": args.end,
        "objectives": parse_objectives(args.objective),
        "storage_url": storage_url,
        "study_name": study_name,
        "n_trials": args.trials,
        "seed": args.seed,
        "min_trades": args.min_trades,
        "max_drawdown": args.max_drawdown,
    }
    fields.update(kw)
    return StudySpec(**fields)


def _importances(study: optuna.Study, console: Console) -> dict[str, float]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        console.print("parameter importances: skipped (fewer than 2 completed trials)")
        return {}
    try:
        # PED-ANOVA (Optuna's default) ranks what leads to *low* targets: negate a maximised one.
        sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
        with warnings.catch_warnings():  # its "low target" reminder: the sign above handles it
            warnings.simplefilter("ignore", UserWarning)
            imp = optuna.importance.get_param_importances(study, target=lambda t: sign * t.values[0])
    except (RuntimeError, ValueError, ZeroDivisionError) as exc:
        console.print(f"parameter importances: skipped ({exc})")
        return {}
    table = Table("parameter", "importance", title="parameter importances (PED-ANOVA, first objective)")
    for name, value in imp.items():
        table.add_row(name, f"{value:.3f}")
    console.print(table)
    return dict(imp)


def cmd_optimize(args: Any) -> int:
    """``tradebot optimize``: run (or continue) a study, print and write the best trial.

    Returns 0 with a best trial, 1 when no complete trial is feasible.

    Raises
    ------
    ConfigError, DataError
        For bad input (exit 2 in the CLI), before any trial is recorded complete.
    """
    from tradebot.app.logging import configure_logging

    configure_logging(level="warning")
    console = Console(width=max(170, Console().width))
    space = load_space(args.space, base_config=args.config)
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out must be a folder, was the file {str(out)!r}")
    out.mkdir(parents=True, exist_ok=True)
    storage_url = args.storage or f"sqlite:///{(out / 'optuna.db').resolve()}"
    spec = spec_from_args(args, space, storage_url, args.study)
    model = configured_model(spec)
    if model is not None:
        console.print(
            f"[yellow]warning:[/yellow] the configuration names a model ([management.ml] model = "
            f"{model!r}): every trial uses it; if it was trained on candles of this window the "
            "trials are in-sample for it"
        )
    study = run_study(spec, args.jobs, console, f"optimize {args.study}")
    trials = study.get_trials(deepcopy=False)
    n_complete = sum(t.state == TrialState.COMPLETE for t in trials)
    n_fail = sum(t.state == TrialState.FAIL for t in trials)
    console.print(
        f"study {args.study!r}: {finished_count(study)} finished trials ({n_complete} complete, "
        f"{n_fail} failed) in {storage_url}"
    )
    best = best_trial(study)
    if best is None:
        console.print("no complete trial meets the constraints: nothing chosen")
        return 1
    summary = best.user_attrs["summary"]
    console.print(f"best trial {best.number}: {spec.objectives} = {_fmt(best.values)}; params {best.params}")
    render_summary(summary, console)
    importances = _importances(study, console)
    doc = {
        "study": args.study,
        "storage": storage_url,
        "trial": best.number,
        "objectives": list(spec.objectives),
        "values": best.values,
        "params": best.params,
        "importances": importances,
        "summary": summary,
    }
    (out / "best.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (out / "best.toml").write_text(
        f"# best trial {best.number} of study {args.study!r} ({', '.join(spec.objectives)} = "
        f"{_fmt(best.values)})\n" + tomli_w.dumps(_tomlable(base_document(space, dict(best.params)))),
        encoding="utf-8",
    )
    console.print(f"best: {out / 'best.json'}   config: {out / 'best.toml'}")
    return 0
