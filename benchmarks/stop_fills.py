"""Measure how far stop exits fill from their stop level, per base timeframe (issue 13's "before/after").

Runs the managed backtest (``config/managed.toml`` by default) on each base timeframe and, for every
``stop_exit`` position event, compares the volume-weighted fill price of the exit's orders with the
stop level the event names: ``(fill − stop) / stop`` in basis points (negative: filled below the stop,
worse for a long). Also counts the breakeven stop exits whose trade lost money.

    python benchmarks/stop_fills.py --data ../shared/data --timeframes 5m 1h
    python benchmarks/stop_fills.py --data ../shared/data --timeframes 1h --start 2024-03-01 --json out.json

With ``--stops-at-venue`` each timeframe runs twice: the engine's stops (a market exit at the next
candle's open) and stops resting at the venue (``stops_at_venue``: filled at the stop, or at the open
of a candle that gapped through it). Prints one table row per run (count, mean, percentiles, min, max in bps) and the figures as
JSON with ``--json``. The engine stops today live in the daemon: an exit is a market order at the open
of the candle after the one that closed beyond the stop.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

CHUNK = 200_000


def _utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def measure(data_dir: Path, timeframe: str, config: Path | None, start_ms: int | None, end_ms: int | None,
            progress: Progress, *, stops_at_venue: bool = False) -> dict[str, Any]:  # fmt: skip
    """Return the stop-exit figures of one managed backtest on ``timeframe`` candles (``stops_at_venue``:
    the stops rest at the simulated venue as STOP_MARKET orders)."""
    from tradebot.app.backtest.backtest import BacktestOptions, _prepare, load_data
    from tradebot.app.backtest.replay import Dispatcher, replay_into
    from tradebot.app.settings import load_settings
    from tradebot.core.domain import Fill, PositionEvent, PositionEventType, Timeframe, TradeRecord

    settings = load_settings(config)
    settings = settings.model_copy(update={"stops_at_venue": stops_at_venue})  # whatever the mode says
    options = BacktestOptions(
        data_dir=data_dir, timeframe=Timeframe(timeframe), start_ms=start_ms, end_ms=end_ms
    )
    data = load_data(settings, options)
    engine, exchange, stream, _ = _prepare(settings, data, f"stops-{timeframe}", None)
    d = Dispatcher(engine, exchange)
    stops: list[PositionEvent] = []
    fills: dict[str, list[Fill]] = defaultdict(list)
    trades: dict[str, TradeRecord] = {}
    task = progress.add_task(f"{timeframe} backtest", total=len(stream))
    t0 = time.perf_counter()
    lo = 0
    while lo < len(stream):
        hi = stream.slice_end(min(lo + CHUNK, len(stream)))
        for rec in replay_into(d, stream, lo, hi):
            kind = type(rec)
            if kind is PositionEvent and rec.event_type is PositionEventType.STOP_EXIT:  # type: ignore[union-attr]
                stops.append(rec)  # type: ignore[arg-type]
            elif kind is Fill:
                fills[rec.client_order_id].append(rec)  # type: ignore[union-attr]
            elif kind is TradeRecord:
                trades[rec.position_id] = rec  # type: ignore[union-attr]
        progress.update(task, completed=hi)
        lo = hi
    for rec in d.records + list(engine.finish()):
        if type(rec) is TradeRecord:
            trades[rec.position_id] = rec
    bps: list[float] = []
    by_kind: dict[str, list[float]] = defaultdict(list)
    breakeven_losses = breakeven = 0
    for ev in stops:
        exit_fills = [f for cid in ev.client_order_ids for f in fills.get(cid, ())]
        qty = sum((f.qty for f in exit_fills), Decimal(0))
        if not qty or not ev.price:
            continue
        vwap = sum((f.qty * f.price for f in exit_fills), Decimal(0)) / qty
        value = float((vwap - ev.price) / ev.price * 10_000)
        bps.append(value)
        reason = ev.trigger_reason
        kind = "raised_this_bar" if "raised this bar" in reason else next(
            (k for k in ("breakeven", "trailing", "initial") if f"({k}" in reason), "other")  # fmt: skip
        if reason.startswith("venue stop"):
            kind = f"venue_{kind}"  # filled at the venue (else: the engine's market exit)
        by_kind[kind].append(value)
        if kind.endswith("breakeven"):
            breakeven += 1
            trade = trades.get(ev.position_id or "")
            if trade is not None and trade.net_pnl < 0:
                breakeven_losses += 1
    return {
        "timeframe": timeframe,
        "stops_at_venue": stops_at_venue,
        "candles": len(stream),
        "engine_s": round(time.perf_counter() - t0, 1),
        "stop_exits": len(bps),
        "bps": _stats(bps),
        "by_stop_kind": {k: _stats(v) for k, v in sorted(by_kind.items())},
        "breakeven_exits": breakeven,
        "breakeven_exits_losing": breakeven_losses,
    }


def _stats(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    q = statistics.quantiles(values, n=20, method="inclusive") if len(values) > 1 else [values[0]] * 19
    return {
        "n": len(values),
        "mean": round(statistics.fmean(values), 2),
        "p5": round(q[0], 2),
        "p25": round(q[4], 2),
        "median": round(statistics.median(values), 2),
        "p75": round(q[14], 2),
        "p95": round(q[18], 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("data/sample"))
    p.add_argument("--timeframes", nargs="+", default=["5m", "1h"])
    p.add_argument("--config", type=Path, default=Path("config/managed.toml"))
    p.add_argument("--start", type=_utc_ms)
    p.add_argument("--end", type=_utc_ms)
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument(
        "--stops-at-venue", action="store_true", help="also measure with the stops resting at the venue"
    )
    args = p.parse_args(argv)
    from tradebot.app.logging import configure_logging

    configure_logging(level="warning")
    console = Console(stderr=True)
    results = []
    with Progress(console=console, transient=True) as progress:
        for tf in args.timeframes:
            for at_venue in (False, True) if args.stops_at_venue else (False,):
                results.append(
                    measure(
                        args.data, tf, args.config, args.start, args.end, progress, stops_at_venue=at_venue
                    )
                )
    table = Table(title="stop exits: (fill - stop) / stop, bps (negative = below the stop)")
    for col in ("base", "stops", "candles", "exits", "mean", "p5", "p25", "median", "p75", "p95", "min", "max",
                "breakeven exits losing"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in results:
        s = r["bps"]
        cells = [str(s.get(k, "-")) for k in ("mean", "p5", "p25", "median", "p75", "p95", "min", "max")]
        be = f"{r['breakeven_exits_losing']}/{r['breakeven_exits']}"
        table.add_row(
            r["timeframe"],
            "venue" if r["stops_at_venue"] else "engine",
            str(r["candles"]),
            str(r["stop_exits"]),
            *cells,
            be,
        )
    Console(width=160).print(table)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
