"""Implementations of the CLI commands (the CLI only parses arguments).

At ``app`` level, above the groups: the commands start the backtest, the daemon and the demo, so
this module is the one part of ``app`` that imports all of them (checked by import-linter).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from tradebot.app.backtest.backtest import BacktestOptions, BacktestResult, run_backtest
from tradebot.app.logging import bind_run, configure_logging, redact_text
from tradebot.app.reports.report import write_summary_json
from tradebot.app.reports.summary import buy_and_hold_curve_of
from tradebot.app.reports.tables import render_comparison, render_summary
from tradebot.app.settings import Settings, load_settings
from tradebot.core.domain import PositionEventType, Timeframe, ms_to_datetime
from tradebot.core.metrics import EquityCurve
from tradebot.errors import ConfigError, TradebotError


def _console() -> Console:
    return Console(width=max(170, Console().width))


class _Progress:
    """Progress of a long job: a rich bar on a terminal, a line every ~10 % on stdout otherwise."""

    def __init__(self, console: Console, label: str) -> None:
        self.console = console
        self.label = label
        self.tty = console.is_terminal
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._last_pct = -10

    def __enter__(self) -> _Progress:
        if self.tty:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("candles"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=None)
        return self

    def __call__(self, done: int, total: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, total=total)
            return
        pct = int(done * 100 / total) if total else 100
        if pct >= self._last_pct + 10 or done == total:
            self._last_pct = pct
            # stdout, beside the summary: stderr carries only log lines (JSON off a terminal)
            print(f"{self.label}: {done:,}/{total:,} candles ({pct}%)", flush=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)


def _options(args: Any, settings: Settings, label: str = "") -> BacktestOptions:
    db_url = None if args.no_db else (args.db or settings.database_url.get_secret_value())
    try:
        timeframe = Timeframe.parse(args.timeframe) if args.timeframe else None
    except ValueError as exc:
        raise ConfigError(f"--timeframe: {exc}") from None
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out must be a folder, was the file {str(args.out)!r}")
    return BacktestOptions(
        data_dir=args.data,
        timeframe=timeframe,
        symbols=args.symbols,
        start_ms=args.start,
        end_ms=args.end,
        db_url=db_url,
        out_dir=args.out,
        label=label,
    )


def _run_one(settings: Settings, options: BacktestOptions, console: Console, label: str) -> BacktestResult:
    with _Progress(console, f"backtest {label}".strip()) as progress:
        return asyncio.run(run_backtest(settings, options, progress=progress))


def cmd_backtest(args: Any) -> int:
    """``tradebot backtest``: one run (or ``--compare`` several) with a summary at the end."""
    console = _console()
    if args.compare:
        configure_logging(level="warning")
        results = []
        for path in args.compare:
            settings = load_settings(path)
            label = Path(path).stem
            result = _run_one(settings, _options(args, settings, label), console, label)
            _write_outputs(result, args.out, console, quiet=True)
            results.append((label, result.summary))
        render_comparison(results, Console(width=max(console.width, 40 + 19 * (len(results) + 1))))
        return 0
    settings = load_settings(args.config)
    configure_logging(
        level="warning" if settings.log_level == "info" else settings.log_level, fmt=settings.log_format
    )
    options = _options(args, settings)
    result = _run_one(settings, options, console, "")
    bind_run(run_id=result.summary["run"]["run_id"], mode="backtest")
    render_summary(result.summary, console)
    _write_outputs(result, args.out, console)
    console.print(
        f"{result.n_candles:,} candles in {result.elapsed_s:.1f} s "
        f"(engine {result.n_candles / max(result.engine_s, 1e-9):,.0f} candles/s)"
    )
    return 0


def _write_chart(equity_curve: EquityCurve, path: Path, benchmark: EquityCurve | None = None) -> None:
    # matplotlib takes most of a second to import: load it only when a chart is drawn.
    from tradebot.app.reports.chart import write_equity_chart

    write_equity_chart(equity_curve, path, benchmark_curve=benchmark)


def _write_outputs(result: BacktestResult, out: Path | None, console: Console, quiet: bool = False) -> None:
    if out is None:
        return
    run_id = result.summary["run"]["run_id"]
    folder = out / run_id
    folder.mkdir(parents=True, exist_ok=True)
    write_summary_json(result.summary, folder / "summary.json")
    bench = buy_and_hold_curve_of(result.engine, result.summary)
    _write_chart(result.engine.stats.equity_curve, folder / "equity.png", bench)
    if not quiet:
        console.print(f"summary: {folder / 'summary.json'}   chart: {folder / 'equity.png'}")


def cmd_db_upgrade(args: Any) -> int:
    """``tradebot db upgrade``: migrate the database to the newest revision."""
    from tradebot.adapters.store.migrate import upgrade

    url = args.db or load_settings().database_url.get_secret_value()
    asyncio.run(upgrade(url))
    print("database upgraded to head")
    return 0


def cmd_runs(args: Any) -> int:
    """``tradebot runs``: list stored runs, most recently created first.

    ``created`` is the wall clock of the run's first start; ``candles from → to`` is the engine time
    of its first and last candle (the same for every run of the same data); final equity in quote
    currency, rounded to cents, with the total return.
    """
    from decimal import Decimal, InvalidOperation

    from tradebot.app.storage import list_runs

    url = args.db or load_settings().database_url.get_secret_value()
    runs = asyncio.run(list_runs(url))

    def when(ms: int | None) -> str:
        return "" if ms is None else ms_to_datetime(ms).strftime("%Y-%m-%d %H:%M")

    table = Table(
        "run id", "mode", "status", "created (UTC)", "candles from → to (UTC)", "final equity", "return"
    )
    for r in runs:
        summary = r.summary or {}
        try:
            final = Decimal(str(summary.get("final_equity")))
            initial = Decimal(str(summary.get("initial_equity")))
            equity = f"{final:,.2f}"
            ret = f"{(final / initial - 1) * 100:+.2f} %" if initial else ""
        except (InvalidOperation, ValueError):
            equity, ret = "", ""
        table.add_row(
            r.run_id,
            r.mode,
            r.status,
            when(r.created_ms),
            f"{when(r.started_ms)} → {when(r.finished_ms)}" if r.finished_ms else f"{when(r.started_ms)} →",
            equity,
            ret,
        )
    _console().print(table)
    return 0


def _event_types(text: str | None) -> tuple[str, ...] | None:
    # ``--type a,b``: every name must be a position event type (ConfigError naming it otherwise).
    if not text:
        return None
    known = {str(t.value) for t in PositionEventType}
    types = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in types if t not in known]
    if unknown or not types:
        raise ConfigError(
            f"--type: unknown event type(s) {unknown or [text]}; known: {', '.join(sorted(known))}"
        )
    return types


def cmd_events(args: Any) -> int:
    """``tradebot events``: the position events of a run, filterable by symbol, type and time."""
    from tradebot.app.storage import query_events

    url = args.db or load_settings().database_url.get_secret_value()
    types = _event_types(args.types)
    run_id, rows = asyncio.run(
        query_events(
            url,
            run_id=args.run,
            symbols=args.symbol,
            types=types,
            start_ms=args.start,
            end_ms=args.end,
            limit=args.limit,
        )
    )
    table = Table(
        "time (UTC)",
        "symbol",
        "type",
        "price",
        "size before → after",
        "profit %",
        "R",
        "trigger",
        "action",
        title=f"position events of run {run_id} ({len(rows)} shown)",
    )
    for e in rows:
        when = ms_to_datetime(e.event_time_ms).strftime("%Y-%m-%d %H:%M")
        pct, r = e.profit_pct, e.r_multiple
        table.add_row(
            when,
            e.symbol,
            str(e.event_type),
            f"{e.price}",
            f"{e.size_before} → {e.size_after}",
            "" if pct is None else f"{pct:+.2f}",
            "" if r is None else f"{r:+.2f}",
            e.trigger_reason,  # whole: rich wraps long texts at word boundaries
            e.action_taken,
        )
    _console().print(table)
    return 0


def cmd_exchange_sim(args: Any) -> int:
    """``tradebot exchange-sim``: serve the local exchange simulator until its data ends."""
    from tradebot.exchange_sim.server import main as sim_main

    return asyncio.run(sim_main(args)) or 0


def _daemon_logging(settings: Settings) -> None:
    from tradebot.app.daemon.bootstrap import secrets_of
    from tradebot.app.logging import register_secrets

    register_secrets(secrets_of(settings))
    configure_logging(level=settings.log_level, fmt=settings.log_format)


def _metrics_override(args: Any) -> dict[str, Any]:
    """``--metrics-port`` over ``TRADEBOT_METRICS__PORT`` (the host stays the environment's/file's)."""
    port = getattr(args, "metrics_port", None)
    return {} if port is None else {"metrics": {"port": port}}


def cmd_run(args: Any) -> int:
    """``tradebot run``: the daemon until SIGTERM/SIGINT (exit 0), a refused start (2) or a failure (1)."""
    from tradebot.app.daemon.bootstrap import DaemonOptions
    from tradebot.app.daemon.daemon import run_daemon
    from tradebot.app.logging import redact_text

    settings = load_settings(args.config, **_metrics_override(args))
    _daemon_logging(settings)
    try:
        return asyncio.run(run_daemon(settings, DaemonOptions(migrate=args.migrate)))
    except BaseExceptionGroup as group:
        errors = list(group.exceptions)
        if len(errors) == 1 and isinstance(errors[0], TradebotError):
            raise errors[0] from None  # printed by the CLI (exit 2 for a refused start)
        import structlog

        structlog.get_logger("tradebot.daemon").error(
            "daemon_failed", errors=[redact_text(repr(e)) for e in errors]
        )
        return 1


def cmd_demo(args: Any) -> int:
    """``tradebot demo``: the daemon against the local simulator; ends with the backtest summary."""
    from tradebot.app.demo.demo import DemoOptions, run_demo

    settings = load_settings(args.config, **_metrics_override(args))
    configure_logging(
        level="warning" if settings.log_level == "info" else settings.log_level, fmt=settings.log_format
    )
    console = _console()
    paper = bool(getattr(args, "paper", False))
    db_url = args.db or settings.database_url.get_secret_value()
    options = DemoOptions(
        data_dir=args.data, days=args.days, minute_wall_s=args.minute_wall_s, db_url=db_url, paper=paper
    )
    how = "paper mode" if paper else "testnet mode, orders through ccxt to the simulator's order engine"
    console.print(
        f"demo: exchange simulator on 127.0.0.1 replaying {args.data} ({args.days:g} days), "
        f"daemon in {how}, database {redact_text(db_url)}"
    )
    with _Progress(console, "demo (simulated minutes)") as progress:
        result = asyncio.run(run_demo(settings, options, progress=progress))
    render_summary(result.summary, console)
    if args.out is not None:
        folder = args.out / result.summary["run"]["run_id"]
        folder.mkdir(parents=True, exist_ok=True)
        write_summary_json(result.summary, folder / "summary.json")
        components = result.daemon.c
        assert components is not None  # set by the daemon's start, which run_demo awaited
        bench = buy_and_hold_curve_of(components.engine, result.summary)
        _write_chart(components.engine.stats.equity_curve, folder / "equity.png", bench)
        console.print(f"summary: {folder / 'summary.json'}   chart: {folder / 'equity.png'}")
    return 0


def cmd_status(args: Any) -> int:
    """``tradebot status``: the positions, orders, state and feed of a running or stopped daemon
    (``--json`` for scripts, ``--watch S`` to redraw every S seconds until Ctrl-C)."""
    import json
    import time

    from tradebot.app.daemon.status_report import read_status, render_status

    settings = load_settings()
    url = args.db or settings.database_url.get_secret_value()
    health_file = Path(args.health or settings.daemon.health_file)
    health_files = [health_file, health_file.with_name("demo-health.json")]
    console = _console()
    while True:
        report = asyncio.run(read_status(url, run_id=args.run, health_files=health_files))
        if args.json:
            print(json.dumps(report, sort_keys=True, default=str), flush=True)
        else:
            if args.watch and console.is_terminal:
                console.clear()
            render_status(report, console)
        if not args.watch:
            return 0
        time.sleep(args.watch)


def cmd_healthcheck(args: Any) -> int:
    """``tradebot healthcheck``: 0 when the daemon's health file is fresh and the feed lag is small."""
    from tradebot.app.daemon.health import check_health

    daemon = load_settings().daemon
    healthy, line = check_health(
        args.file or daemon.health_file,
        max_age_s=daemon.health_max_age_s,
        max_feed_lag_s=daemon.health_max_feed_lag_s,
        max_reconcile_age_s=daemon.health_max_reconcile_age_s,
    )
    print(line)
    return 0 if healthy else 1


def cmd_trades(args: Any) -> int:
    """``tradebot trades``: every trade of a run as a table, CSV or JSON (to ``--out`` or stdout)."""
    from tradebot.app.reports.export import render_trades, to_csv, to_json, trade_rows
    from tradebot.app.storage import load_run_records

    url = args.db or load_settings().database_url.get_secret_value()
    rec = asyncio.run(load_run_records(url, run_id=args.run, symbols=args.symbol))
    rows = trade_rows(rec.trades, rec.events, rec.fills, rec.equity)
    if args.format == "table":
        n_open = sum(r["status"] == "open" for r in rows)
        title = f"trades of run {rec.run.run_id} ({len(rows)}, {n_open} open)"
        render_trades(rows, _console(), run_id=rec.run.run_id, title=title)
        return 0
    text = to_json(rows, run_id=rec.run.run_id) + "\n" if args.format == "json" else to_csv(rows)
    if args.out is None:
        print(text, end="")
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"{len(rows)} trades of run {rec.run.run_id}: {args.out}")
    return 0


def cmd_plot(args: Any) -> int:
    """``tradebot plot``: per asset a price PNG with the trades marked, and the equity/drawdown PNG
    against buy-and-hold, under ``--out/<run id>/``; prints the written paths."""
    from tradebot.app.reports.chart import write_equity_chart
    from tradebot.app.reports.plots import buy_and_hold_of_run, load_closes, write_price_chart
    from tradebot.app.storage import load_run_records

    url = args.db or load_settings().database_url.get_secret_value()
    rec = asyncio.run(load_run_records(url, run_id=args.run, symbols=args.symbol))
    run, summary = rec.run, rec.run.summary or {}
    info = summary.get("run") or {}
    symbols = list(args.symbol or info.get("symbols") or rec.run.config.get("symbols") or [])
    times = [s.time_ms for s in rec.equity] + [e.event_time_ms for e in rec.events]
    end_ms = run.finished_ms or max(times, default=run.started_ms)
    base = info.get("base_timeframe")
    closes, notes = load_closes(
        args.data,
        symbols,
        start_ms=run.started_ms,
        end_ms=end_ms + 1,
        timeframe=Timeframe(str(base)) if base in Timeframe._value2member_map_ else None,
    )
    folder = args.out / run.run_id
    for note in notes:
        print(f"note: {note}")
    written = []
    for sym in symbols:
        written.append(
            write_price_chart(
                folder / f"price_{sym.replace('/', '')}.png",
                sym,
                closes.get(sym),
                rec.trades,
                rec.events,
                rec.fills,
                title=f"{sym} — run {run.run_id}",
                end_ms=end_ms,
                note=None if sym in closes else "no candles for the run's window: fills and events only",
            )
        )
    curve = [(s.time_ms, s.equity) for s in rec.equity]
    bench = buy_and_hold_of_run(summary, run.config, rec.equity)
    equity_png = folder / "equity_drawdown.png"
    quote = str(info.get("quote") or rec.run.config.get("quote") or "quote")
    title = f"run {run.run_id}: equity and drawdown" + (" vs buy & hold" if bench else "")
    write_equity_chart(curve, equity_png, benchmark_curve=bench, title=title, quote=quote)
    written.append(equity_png)
    for path in written:
        print(path)
    return 0
