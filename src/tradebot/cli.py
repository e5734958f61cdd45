"""Command line: ``tradebot backtest | db upgrade | events | exchange-sim | ml dataset | ml train | ml evaluate | …``.

Thin: parse → load settings → call an app function → print. Errors that a user can fix
(:class:`ConfigError`, :class:`DataError`) are printed as one clear message with exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tradebot import __version__
from tradebot.errors import ConfigError, DataError, TradebotError

DEFAULT_DATA = Path("data/sample")


def default_data_dir() -> Path:
    """Return the default ``--data``: ``data/sample`` under the working directory, else the checkout's
    (where an editable install's package lives), so that ``tradebot demo`` runs from any folder."""
    if DEFAULT_DATA.is_dir():
        return DEFAULT_DATA
    checkout = Path(__file__).resolve().parents[2] / DEFAULT_DATA
    return checkout if checkout.is_dir() else DEFAULT_DATA


def _metrics_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus /metrics on this port, 0 = any free one (default: TRADEBOT_METRICS__PORT, else off)",
    )


def _utc_ms(value: str) -> int:
    """Parse ``YYYY-MM-DD`` or an ISO datetime (naive = UTC) into ms UTC."""
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a UTC date like 2024-01-31, was {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, was {value!r}")
    return seconds


def _symbols(value: str) -> tuple[str, ...]:
    out = []
    for part in value.split(","):
        part = part.strip().upper()
        if not part:
            continue
        if "/" not in part:
            part = part[:-4] + "/USDT" if part.endswith("USDT") and len(part) > 4 else part + "/USDT"
        out.append(part)
    if not out:
        raise argparse.ArgumentTypeError(f"expected symbols like BTC,ETH or BTC/USDT, was {value!r}")
    return tuple(out)


def _study_arguments(p: argparse.ArgumentParser, *, study: bool, space_required: bool = True) -> None:
    # Flags shared by `optimize` and `walkforward` (optuna is imported only when one runs).
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="candle folder (default data/sample)")
    p.add_argument("--timeframe", help="base timeframe (default: finest available)")
    p.add_argument("--symbols", type=_symbols, help="e.g. BTC,ETH (default: the config's symbols)")
    p.add_argument("--start", type=_utc_ms, help="first UTC date of the window")
    p.add_argument("--end", type=_utc_ms, help="end UTC date (exclusive)")
    p.add_argument(
        "--space",
        type=Path,
        required=space_required,
        help="search space TOML, e.g. config/spaces/example.toml"
        + ("" if space_required else " (optional with --ml: the configuration as it is)"),
    )
    p.add_argument("--config", type=Path, help="base config (default: the space's [base] config)")
    p.add_argument(
        "--objective",
        default="sharpe",
        help="sharpe | sortino | calmar | profit_factor | final_equity | total_return | max_drawdown, "
        "or two separated by a comma (NSGA-II), e.g. sharpe,max_drawdown (default sharpe)",
    )
    p.add_argument("--trials", type=int, default=50, help="finished trials per study (default 50)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--storage", help="SQLAlchemy URL of the Optuna storage (default sqlite <out>/optuna.db)")
    if study:
        p.add_argument("--study", default="tradebot", help="study name in the storage (default tradebot)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed; reproducible with --jobs 1 (default 0)")
    p.add_argument("--min-trades", type=int, help="constraint: at least N closed trades")
    p.add_argument("--max-drawdown", type=float, help="constraint: max drawdown at most F (a fraction)")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``tradebot`` command."""
    p = argparse.ArgumentParser(prog="tradebot", description="Trend-stream portfolio trading bot.")
    p.add_argument("--version", action="version", version=f"tradebot {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    bt = sub.add_parser("backtest", help="replay stored candles through the engine")
    bt.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder of candle files (default data/sample)"
    )
    bt.add_argument("--timeframe", help="base timeframe (1m, 3m, 5m, 15m, 1h); default: finest available")
    bt.add_argument("--symbols", type=_symbols, help="e.g. BTC,ETH,SOL or BTC/USDT,ETH/USDT")
    bt.add_argument("--start", type=_utc_ms, help="first UTC date, e.g. 2023-01-01")
    bt.add_argument("--end", type=_utc_ms, help="end UTC date (exclusive)")
    bt.add_argument("--config", type=Path, help="TOML configuration file")
    bt.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        metavar="CONFIG",
        help="run several configurations on the same data and compare them",
    )
    bt.add_argument("--db", help="SQLAlchemy async URL (default: TRADEBOT_DATABASE_URL or sqlite file)")
    bt.add_argument("--no-db", action="store_true", help="do not write to a database")
    bt.add_argument("--out", type=Path, default=Path("out"), help="folder for summary JSON and chart")

    db = sub.add_parser("db", help="database maintenance")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    up = dbsub.add_parser("upgrade", help="run the migrations to the newest revision")
    up.add_argument("--db", help="SQLAlchemy async URL (default: TRADEBOT_DATABASE_URL)")

    ev = sub.add_parser("events", help="list the position events of a run")
    ev.add_argument("--db", help="SQLAlchemy async URL (default: TRADEBOT_DATABASE_URL)")
    ev.add_argument("--run", help="run id (default: the latest run)")
    ev.add_argument("--symbol", type=_symbols, help="filter by symbol(s)")
    ev.add_argument("--type", dest="types", help="comma-separated event types, e.g. stop_exit,early_exit")
    ev.add_argument("--start", type=_utc_ms, help="from this UTC date/time")
    ev.add_argument("--end", type=_utc_ms, help="until this UTC date/time (exclusive)")
    ev.add_argument("--limit", type=int, default=200, help="at most this many rows (default 200)")

    tr = sub.add_parser("trades", help="the trades of a run: a table, or every field as CSV / JSON")
    tr.add_argument("--db", help="SQLAlchemy async URL (default: TRADEBOT_DATABASE_URL)")
    tr.add_argument("--run", help="run id (default: the latest run)")
    tr.add_argument("--symbol", type=_symbols, help="only these symbol(s), e.g. BTC,ETH")
    tr.add_argument("--format", choices=("table", "csv", "json"), default="table", help="default table")
    tr.add_argument("--out", type=Path, help="write CSV / JSON to this file (default stdout)")

    pl = sub.add_parser("plot", help="PNGs of a run: price with trades per asset, equity vs buy-and-hold")
    pl.add_argument("--db", help="SQLAlchemy async URL (default: TRADEBOT_DATABASE_URL)")
    pl.add_argument("--run", help="run id (default: the latest run)")
    pl.add_argument("--symbol", type=_symbols, help="only these symbol(s), e.g. BTC,ETH")
    pl.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="candle folder of the run (default data/sample)"
    )
    pl.add_argument("--out", type=Path, default=Path("out"), help="folder; PNGs go to <out>/<run id>/")

    runs = sub.add_parser("runs", help="list stored runs")
    runs.add_argument("--db", help="SQLAlchemy async URL (default: TRADEBOT_DATABASE_URL)")

    sim = sub.add_parser("exchange-sim", help="serve the local exchange simulator on 127.0.0.1")
    from tradebot.exchange_sim.server import add_arguments

    add_arguments(sim)

    from tradebot.app.research.download_args import add_arguments as add_download_arguments

    add_download_arguments(sub.add_parser("download", help="download candle history into --data files"))

    opt = sub.add_parser("optimize", help="search a --space of parameters with Optuna (TPE / NSGA-II)")
    _study_arguments(opt, study=True)
    opt.add_argument("--out", type=Path, default=Path("out/optimize"), help="output folder")

    wf = sub.add_parser(
        "walkforward", help="optimise on rolling train windows, test each choice on the window after it"
    )
    _study_arguments(wf, study=True, space_required=False)
    wf.set_defaults(study="walkforward")
    wf.add_argument(
        "--ml",
        action="store_true",
        help="also train the position models on each train window and test them on the window after "
        "it (the rules alone vs the rules with the fold's models)",
    )
    wf.add_argument(
        "--ml-horizon",
        type=int,
        default=24,
        help="with --ml: label horizon in rebalance periods (default 24)",
    )
    wf.add_argument(
        "--ml-folds", type=int, default=4, help="with --ml: inner folds of each training report (default 4)"
    )
    wf.add_argument("--train", default="12M", help="train window: 30D, 12M, 1Y, 2W, 36h (default 12M)")
    wf.add_argument("--test", default="3M", help="test window after each train window (default 3M)")
    wf.add_argument("--step", help="move between folds, at least --test (default: --test)")
    wf.add_argument(
        "--anchored",
        action="store_true",
        help="train windows all start at the data's start (default rolling)",
    )
    wf.add_argument("--out", type=Path, default=Path("out/walkforward"), help="output folder")

    ml = sub.add_parser("ml", help="learned position management: the position dataset and its models")
    mlsub = ml.add_subparsers(dest="ml_command", required=True)
    from tradebot.app.ml.dataset_args import add_arguments as add_dataset_arguments

    add_dataset_arguments(
        mlsub.add_parser(
            "dataset", help="one row per open position per rebalance close: features, labels (Parquet)"
        ),
        utc_ms=_utc_ms,
        symbols=_symbols,
        default_data=DEFAULT_DATA,
    )
    from tradebot.app.ml.train_args import add_arguments as add_train_arguments

    add_train_arguments(
        mlsub.add_parser(
            "train", help="walk-forward scored LightGBM models from a dataset, saved with their cards"
        )
    )
    from tradebot.app.ml.evaluate_args import add_arguments as add_evaluate_arguments

    add_evaluate_arguments(
        mlsub.add_parser(
            "evaluate", help="score trained models on another dataset against their train base rates"
        )
    )

    run = sub.add_parser("run", help="run the trading daemon (TRADEBOT_MODE paper | testnet | live)")
    run.add_argument("--config", type=Path, help="TOML configuration file")
    run.add_argument(
        "--migrate",
        action="store_true",
        help="upgrade the database schema to head first (default: refuse an old schema)",
    )
    _metrics_argument(run)

    demo = sub.add_parser("demo", help="offline demo: the daemon against the local exchange simulator")
    demo.add_argument("--data", type=Path, default=DEFAULT_DATA, help="candle folder (default data/sample)")
    demo.add_argument("--days", type=float, default=7.0, help="simulated days to trade (default 7)")
    demo.add_argument(
        "--minute-wall-s",
        type=float,
        default=0.004,
        help="wall seconds per simulated minute (default 0.004 = 15,000x)",
    )
    demo.add_argument(
        "--db", help="SQLAlchemy async URL (default: TRADEBOT_DATABASE_URL, else tradebot.db in the data dir)"
    )
    demo.add_argument("--config", type=Path, help="TOML configuration file")
    demo.add_argument("--out", type=Path, default=Path("out"), help="folder for summary JSON and chart")
    demo.add_argument(
        "--paper",
        action="store_true",
        help="fill orders in the daemon's paper venue instead of the simulator's order endpoints",
    )
    _metrics_argument(demo)

    st = sub.add_parser(
        "status", help="positions, open orders, state and feed of a running or stopped daemon"
    )
    st.add_argument("--db", help="SQLAlchemy async URL (default: TRADEBOT_DATABASE_URL, else the data dir's)")
    st.add_argument("--run", help="run id (default: the latest run)")
    st.add_argument("--health", help="health file (default TRADEBOT_DAEMON__HEALTH_FILE)")
    st.add_argument("--json", action="store_true", help="one JSON object (a line per refresh with --watch)")
    st.add_argument(
        "--watch", type=_positive_seconds, metavar="S", help="redraw every S seconds until Ctrl-C"
    )

    hc = sub.add_parser("healthcheck", help="exit 0 when the running daemon's health file is fresh")
    hc.add_argument("--file", help="health file (default TRADEBOT_DAEMON__HEALTH_FILE)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tradebot`` command; return the process exit code."""
    args = build_parser().parse_args(argv)
    if getattr(args, "data", None) == DEFAULT_DATA:
        args.data = default_data_dir()
    from tradebot.app.logging import configure_logging, redact_text

    try:
        if args.command == "backtest":
            from tradebot.app.commands import cmd_backtest

            return cmd_backtest(args)
        if args.command == "db":
            configure_logging()
            from tradebot.app.commands import cmd_db_upgrade

            return cmd_db_upgrade(args)
        if args.command == "events":
            from tradebot.app.commands import cmd_events

            return cmd_events(args)
        if args.command == "runs":
            from tradebot.app.commands import cmd_runs

            return cmd_runs(args)
        if args.command == "exchange-sim":
            configure_logging()
            from tradebot.app.commands import cmd_exchange_sim

            return cmd_exchange_sim(args)
        if args.command == "download":
            configure_logging()
            from tradebot.app.research.download import cmd_download

            return cmd_download(args)
        if args.command == "optimize":
            from tradebot.app.research.optimize import cmd_optimize

            return cmd_optimize(args)
        if args.command == "walkforward":
            from tradebot.app.research.walkforward import cmd_walkforward

            return cmd_walkforward(args)
        if args.command == "ml":
            if args.ml_command == "train":
                from tradebot.app.ml.command import cmd_ml_train

                return cmd_ml_train(args)
            if args.ml_command == "evaluate":
                from tradebot.app.ml.command import cmd_ml_evaluate

                return cmd_ml_evaluate(args)
            from tradebot.app.ml.command import cmd_ml_dataset

            return cmd_ml_dataset(args)
        if args.command in ("run", "demo", "healthcheck", "status", "trades", "plot"):
            from tradebot.app import commands

            command: Callable[[argparse.Namespace], int] = getattr(commands, f"cmd_{args.command}")
            return command(args)
    except (ConfigError, DataError) as exc:
        _report_error(args.command, redact_text(str(exc)), exit_code=2)
        return 2
    except TradebotError as exc:
        _report_error(args.command, f"{type(exc).__name__}: {redact_text(str(exc))}", exit_code=1)
        return 1
    except KeyboardInterrupt:
        _report_error(args.command, "interrupted", exit_code=130)
        return 130
    return 0


def _report_error(command: str, message: str, *, exit_code: int) -> None:
    """Print why the command failed to stderr: ``error: <message>``, except for the long-running
    ``run`` and ``demo`` off a terminal (or with ``TRADEBOT_LOG_FORMAT=json``), whose stderr is a JSON
    log: there it is one more JSON line."""
    fmt = os.environ.get("TRADEBOT_LOG_FORMAT", "auto").strip().lower()
    logs_json = fmt == "json" or (fmt != "console" and not sys.stderr.isatty())
    if command not in ("run", "demo") or not logs_json:
        print(f"error: {message}" if exit_code != 130 else message, file=sys.stderr)
        return
    line = {
        "event": "command_failed" if exit_code != 130 else "interrupted",
        "level": "error",
        "error": message,
        "exit_code": exit_code,
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    print(json.dumps(line, ensure_ascii=False), file=sys.stderr)


def run_async(coro: Coroutine[Any, Any, object]) -> object:
    """Run a coroutine to completion (the CLI's single entry into asyncio)."""
    return asyncio.run(coro)
