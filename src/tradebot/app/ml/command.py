"""``tradebot ml dataset``: build the position dataset with progress, write it, print a summary."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from tradebot.app.ml.dataset import DatasetOptions, build_dataset
from tradebot.app.ml.files import write_dataset
from tradebot.app.ml.summary import render_summary
from tradebot.app.settings import load_settings
from tradebot.core.domain import Timeframe
from tradebot.errors import ConfigError

__all__ = ["cmd_ml_dataset", "cmd_ml_evaluate", "cmd_ml_train"]


class _Bar:
    """Progress of the phases: a rich bar per phase on a terminal, a line every ~10 % otherwise."""

    LABELS: ClassVar[dict[str, str]] = {
        "backtest": "backtest (candles)",
        "rows": "features and labels (rows)",
    }

    def __init__(self, console: Console) -> None:
        self.console = console
        self._bar: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._last: dict[str, int] = {}

    def __enter__(self) -> _Bar:
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._bar.__enter__()
        return self

    def __call__(self, phase: str, done: int, total: int) -> None:
        label = self.LABELS.get(phase, phase)
        if self._bar is not None:
            task = self._tasks.get(phase)
            if task is None:
                task = self._tasks[phase] = self._bar.add_task(label, total=total)
            self._bar.update(task, completed=done, total=total)
            return
        pct = done * 100 // total if total else 100
        if pct >= self._last.get(phase, -10) + 10 or done == total:
            self._last[phase] = pct
            print(f"{label}: {done:,}/{total:,} ({pct}%)", flush=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)


def cmd_ml_dataset(args: Any) -> int:
    """``tradebot ml dataset``: one row per open position per rebalance close, to Parquet + manifest.

    Raises
    ------
    ConfigError
        For a bad flag value (``--timeframe``, ``--start``/``--end``, ``--out``) or configuration.
    DataError
        For missing or malformed candles.
    """
    from tradebot.app.logging import configure_logging

    configure_logging(level="warning")
    try:
        timeframe = Timeframe.parse(args.timeframe) if args.timeframe else None
    except ValueError as exc:
        raise ConfigError(f"--timeframe: {exc}") from None
    if args.start is not None and args.end is not None and args.start >= args.end:
        raise ConfigError(f"--start must be before --end, were {args.start} and {args.end} (ms UTC)")
    out: Path = args.out
    if out.suffix != ".parquet" or out.is_dir():
        raise ConfigError(f"--out must name a .parquet file, was {str(out)!r}")
    settings = load_settings(args.config)
    options = DatasetOptions(
        data_dir=args.data,
        timeframe=timeframe,
        symbols=args.symbols,
        start_ms=args.start,
        end_ms=args.end,
        horizon_periods=args.horizon,
        config_file=args.config,
    )
    console = Console(width=max(120, Console().width))
    with _Bar(console) as bar:
        dataset = build_dataset(settings, options, progress=bar)
    parquet, manifest = write_dataset(dataset, out)
    render_summary(dataset.manifest, console, elapsed_s=dataset.elapsed_s)
    console.print(f"dataset: {parquet}   manifest: {manifest}")
    return 0


def cmd_ml_train(args: Any) -> int:
    """``tradebot ml train``: walk-forward score the four models, train them on all rows, write the
    model files, their cards and ``report.json``; print the tables and whether each beats its base.

    Raises
    ------
    ConfigError
        For a bad ``--dataset`` (missing, not Parquet, no or mismatched manifest) or ``--out``.
    """
    import time

    from tradebot.app.ml.train import TrainOptions, load_dataset, train_models, write_models
    from tradebot.app.ml.train_report import render_report

    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out must name a folder, was the file {str(out)!r}")
    started = time.perf_counter()
    data = load_dataset(args.dataset)
    if len(data.times) == 0:
        raise ConfigError(f"--dataset: {str(args.dataset)!r} has no row with a complete horizon")
    options = TrainOptions(folds=args.folds, seed=args.seed)
    trained = train_models(data, options)
    report = write_models(data, options, trained, out)
    console = Console(width=max(120, Console().width))
    render_report(report, console)
    console.print(
        f"models, cards and report: {out}   ({len(data.times):,} rows, {options.folds} folds, "
        f"seed {options.seed}, {time.perf_counter() - started:.1f} s)"
    )
    return 0


def cmd_ml_evaluate(args: Any) -> int:
    """``tradebot ml evaluate``: score a model folder on a dataset (normally of later candles than its
    training) against the base rates of its train rows; print a table per model and write the JSON
    (``--out``, default ``<--model>/evaluation-<dataset name>.json``).

    Raises
    ------
    ConfigError
        For a bad ``--dataset`` (missing, not Parquet, no or mismatched manifest, no row with a
        complete horizon) or ``--out``; a :class:`~tradebot.app.ml.model.ModelError` for a bad
        ``--model`` folder or one whose features are not the dataset's.
    """
    from tradebot.app.ml.evaluate import evaluate_models
    from tradebot.app.ml.evaluate_report import render_evaluation
    from tradebot.app.ml.files import write_json_atomic
    from tradebot.app.ml.train import load_dataset

    folder: Path = args.model
    out: Path = args.out or folder / f"evaluation-{args.dataset.stem}.json"
    if out.suffix != ".json" or out.is_dir():
        raise ConfigError(f"--out must name a .json file, was {str(out)!r}")
    data = load_dataset(args.dataset)
    if len(data.times) == 0:
        raise ConfigError(f"--dataset: {str(args.dataset)!r} has no row with a complete horizon")
    evaluation = evaluate_models(folder, data)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, evaluation.report)
    console = Console(width=max(120, Console().width))
    render_evaluation(evaluation.report, console)
    console.print(f"evaluation: {out}   ({len(data.times):,} rows of {args.dataset})")
    return 0
