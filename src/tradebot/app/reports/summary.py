"""Build the summary of a run (backtest, demo or daemon) from the engine's final state."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from decimal import Decimal
from typing import Any

from tradebot.app.reports.report import build_summary
from tradebot.core.domain import Candle, Symbol, Timeframe, TradeRecord, ms_to_datetime, to_decimal
from tradebot.core.engine import Engine
from tradebot.core.metrics import (
    StreamStats,
    buy_and_hold_curve,
    buy_and_hold_quantities,
    compute_metrics,
    group_metrics,
)


def build_run_summary(
    *,
    engine: Engine,
    trades: Sequence[TradeRecord],
    n_orders: int,
    run_id: str,
    base: Timeframe,
    n_candles: int,
    gaps: Mapping[Symbol, Sequence[Any]],
    label: str = "",
    mode: str = "backtest",
    entry_prices: Mapping[str, Decimal] | None = None,
    entry_ms: int | None = None,
) -> dict[str, Any]:
    """Return the summary dict (see :mod:`tradebot.app.reports.report`) of a finished run.

    Parameters
    ----------
    engine
        The engine after :meth:`Engine.finish`.
    trades
        Every trade record the run produced (later records of a position supersede earlier ones).
    n_orders
        Orders sent to the venue.
    run_id, base, n_candles, gaps, label, mode
        Run description for the report.
    entry_prices, entry_ms
        The buy-and-hold benchmark's entry: each symbol's first base candle's open (quote currency) and
        the earliest of those candles' open times (ms UTC), which the backtest driver knows. Without
        them (daemon, demo) the benchmark buys at the first recorded marks, and says so
        (``summary["buy_and_hold"]["entry"] == "first mark"``). See :func:`buy_and_hold_summary`.
    """
    latest: dict[str, TradeRecord] = {}
    for t in trades:
        latest[t.position_id] = t
    all_trades = list(latest.values())
    stats = engine.stats
    curve = stats.equity_curve
    span = curve[-1][0] - curve[0][0] if curve else 0
    # returns, drawdown and ratios are time-weighted: measured net of deposits and withdrawals
    metrics = compute_metrics(
        equity_curve=stats.flow_adjusted_curve(),
        trades=all_trades,
        fees_paid=stats.fees_quote,
        traded_notional=stats.traded_notional,
        n_orders=n_orders,
        exposure_ms=min(stats.exposure_ms, span),
    )
    if stats.unit_changes and curve:  # the equity figures stay the account's own
        metrics = dataclasses.replace(metrics, final_equity=curve[-1][1])
    per_asset: dict[str, Any] = {}
    for sym, ts in group_metrics(all_trades).items():
        row = ts.to_dict()
        row["fees_paid"] = stats.fees_by_symbol.get(sym, Decimal(0))
        row["traded_notional"] = stats.traded_notional_by_symbol.get(sym, Decimal(0))
        per_asset[sym] = row
    end = engine.last_time_ms
    start = curve[0][0] if curve else end
    marks = engine.marks_decimal()
    per_stream = []
    for sym, sids in engine.streams_by_symbol.items():
        mark = marks.get(sym)
        if mark is None:
            continue
        for sid in sids:
            pnl = engine.ledger.stream_pnl(sid, mark)
            time_in = stats.time_in_ms(sid, end) / (end - start) if end > start else 0.0
            per_stream.append(
                StreamStats(
                    stream=sid,
                    realized=pnl.realized,
                    fees=pnl.fees,
                    unrealized=pnl.unrealized,
                    total=pnl.realized - pnl.fees + pnl.unrealized,
                    time_in_fraction=min(1.0, max(0.0, time_in)),
                    flips=stats.flips.get(sid, 0),
                )
            )
    run_info = {
        "run_id": run_id,
        "mode": mode,
        "label": label,
        "quote": engine.config.quote,
        "base_timeframe": str(base),
        "candles": n_candles,
        "symbols": list(engine.symbols),
        "data_gaps": _gaps_text(gaps),
        "policy": engine.config.allocation.policy,
    }
    scale_ins = stats.event_counts.get("scale_in", 0)
    extras: dict[str, Any] = {
        "event_savings": dict(stats.event_amounts),
        "trading_state": str(engine.trading_state),
        "final_cash": engine.ledger.cash,
        "final_positions": {s: engine.ledger.position(s) for s in engine.symbols},
    }
    if stats.unit_changes:
        extras["net_cash_flows"] = stats.net_flows
        extras["returns"] = "time-weighted, net of deposits and withdrawals"
    if scale_ins:
        extras["scale_in_success_rate"] = _scale_in_success(all_trades, stats.scaled_in_positions)
    extras["buy_and_hold"] = buy_and_hold_summary(engine, entry_prices=entry_prices, entry_ms=entry_ms)
    return build_summary(
        run_info=run_info,
        metrics=metrics,
        per_asset=per_asset,
        per_stream=per_stream,
        event_counts=stats.event_counts,
        extras=extras,
    )


def first_opens(candles: Mapping[Symbol, Sequence[Candle]]) -> dict[str, Any]:
    """Return the buy-and-hold entry of a backtest: ``{"entry_prices": …, "entry_ms": …}``.

    ``entry_prices`` is each symbol's first base candle's open (quote currency, converted exactly
    with ``to_decimal`` like the engine's marks; symbols without candles are left out) and ``entry_ms`` the earliest of those candles' open times (ms UTC, ``None``
    without candles): the keyword arguments of :func:`build_run_summary` of the same name.
    """
    firsts = {str(s): c[0] for s, c in candles.items() if c}
    return {
        "entry_prices": {s: to_decimal(c.open, field=f"{s} open") for s, c in firsts.items()},
        "entry_ms": min((c.open_time_ms for c in firsts.values()), default=None),
    }


def _benchmark_entry(
    engine: Engine, entry_prices: Mapping[str, Decimal] | None, entry_ms: int | None
) -> tuple[dict[str, Decimal], int | None, str] | None:
    # (entry prices, entry time or None, "first open" | "first mark"); None when nothing was marked.
    if entry_prices is not None:
        return {s: entry_prices[s] for s in engine.symbols}, entry_ms, "first open"
    for _, marks in engine.stats.mark_curve:
        if all(s in marks for s in engine.symbols):
            return {s: marks[s] for s in engine.symbols}, None, "first mark"
    return None


def buy_and_hold_benchmark(
    engine: Engine,
    *,
    entry_prices: Mapping[str, Decimal] | None = None,
    entry_ms: int | None = None,
) -> tuple[list[tuple[int, Decimal]], dict[str, Any]] | None:
    """Return the buy-and-hold curve of the engine's assets and its description, or ``None``.

    Equal weight, the engine's initial cash, each instrument's taker fee, marked at the engine's
    equity-sample times (:func:`tradebot.core.metrics.buy_and_hold_curve`; quantities not rounded —
    a benchmark, not a plan). The entry is ``entry_prices`` at ``entry_ms`` (the curve then starts with
    the initial cash at ``entry_ms``) or, without them, the first sample whose marks cover every
    symbol (the curve then starts at that sample, after the entry fee). ``None`` when no sample has
    a mark of every symbol.

    Returns
    -------
    (curve, info)
        ``curve``: ``(time_ms, equity_quote)`` samples. ``info``: ``entry`` (``"first open"`` or
        ``"first mark"``), ``entry_ms`` (ms UTC or ``None``), ``entry_prices``, ``quantities`` (base
        units) and ``weights`` (fractions of the initial cash, summing to 1) per symbol.

    Raises
    ------
    KeyError
        If ``entry_prices`` lacks one of the engine's symbols.
    """
    entry = _benchmark_entry(engine, entry_prices, entry_ms)
    if entry is None:
        return None
    prices, start_ms, how = entry
    fees = {s: engine.instruments[s].taker_fee for s in prices}
    cash = Decimal(engine.config.initial_cash)
    marks = engine.stats.mark_curve
    if start_ms is not None and marks and start_ms >= marks[0][0]:
        start_ms = None  # resumed or unusual runs: no entry point before the first sample
    curve = buy_and_hold_curve(
        entry_prices=prices, marks=marks, initial_cash=cash, taker_fee=fees, entry_ms=start_ms
    )
    info = {
        "entry": how,
        "entry_ms": start_ms,
        "entry_prices": prices,
        "quantities": buy_and_hold_quantities(entry_prices=prices, initial_cash=cash, taker_fee=fees),
        "weights": {s: Decimal(1) / len(prices) for s in prices},
    }
    return curve, info


def buy_and_hold_curve_of(engine: Engine, summary: Mapping[str, Any]) -> list[tuple[int, Decimal]] | None:
    """Return the buy-and-hold curve described by ``summary["buy_and_hold"]`` (for the chart), or ``None``.

    Rebuilds :func:`buy_and_hold_benchmark` with the summary's entry (first open or first mark) over
    the engine's mark curve; ``None`` when the summary has no benchmark.
    """
    bench = summary.get("buy_and_hold")
    if not isinstance(bench, Mapping):
        return None
    if bench.get("entry") != "first open":
        result = buy_and_hold_benchmark(engine)
    else:
        prices = {str(s): Decimal(str(v)) for s, v in bench["entry_prices"].items()}
        result = buy_and_hold_benchmark(engine, entry_prices=prices, entry_ms=bench.get("entry_ms"))
    return None if result is None else result[0]


def buy_and_hold_summary(
    engine: Engine,
    *,
    entry_prices: Mapping[str, Decimal] | None = None,
    entry_ms: int | None = None,
) -> dict[str, Any] | None:
    """Return ``summary["buy_and_hold"]``: the benchmark's measures plus its entry, or ``None``.

    The measures are :func:`compute_metrics` of the curve of :func:`buy_and_hold_benchmark`, with the
    same keys as ``summary["overall"]``: no trades (trade statistics empty / ``None``), the entry
    buys as its orders, notional and fees, and exposure over the whole span. ``annualized_return``
    is ``None`` under 90 days, as for the strategy.
    """
    bench = buy_and_hold_benchmark(engine, entry_prices=entry_prices, entry_ms=entry_ms)
    if bench is None:
        return None
    curve, info = bench
    notional = sum((q * info["entry_prices"][s] for s, q in info["quantities"].items()), start=Decimal(0))
    fees = sum(
        (
            q * info["entry_prices"][s] * engine.instruments[s].taker_fee
            for s, q in info["quantities"].items()
        ),
        start=Decimal(0),
    )
    metrics = compute_metrics(
        equity_curve=curve,
        trades=[],
        fees_paid=fees,
        traded_notional=notional,
        n_orders=len(info["quantities"]),
        exposure_ms=curve[-1][0] - curve[0][0] if curve else None,
    )
    return {**metrics.to_dict(), **info}


def _scale_in_success(trades: Sequence[TradeRecord], ids: Collection[str]) -> float | None:
    # Fraction of closed trades that had a scale-in and ended with a positive net PnL.
    closed = [t for t in trades if t.position_id in ids and t.closed_ms is not None]
    if not closed:
        return None
    return sum(1 for t in closed if t.net_pnl > 0) / len(closed)


def _describe_gaps(gaps: Sequence[Any], shown: int = 3) -> str:
    # "1 gap, 80 bars: after 2023-03-24 12:39" — the largest few gaps of one symbol's base candles.
    if not gaps:
        return "none"
    total = sum(int(m) for _, m in gaps)
    largest = sorted(gaps, key=lambda g: -int(g[1]))[:shown]
    parts = ", ".join(
        f"{int(m)} after {ms_to_datetime(int(t)).strftime('%Y-%m-%d %H:%M')}" for t, m in largest
    )
    more = f", +{len(gaps) - shown} more" if len(gaps) > shown else ""
    return f"{len(gaps)} gap(s), {total} bars missing: {parts}{more}"


def _gaps_text(gaps: Mapping[Symbol, Sequence[Any]]) -> str:
    # One line for the run table: identical gaps of every symbol are said once.
    described = {s: _describe_gaps(g) for s, g in gaps.items()}
    if len(set(described.values())) == 1:
        return f"every symbol: {next(iter(described.values()))}"
    return "; ".join(f"{s}: {d}" for s, d in described.items())
