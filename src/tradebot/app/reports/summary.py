"""Build the summary of a run (backtest, demo or daemon) from the engine's final state."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from decimal import Decimal
from typing import Any

from tradebot.app.reports.report import build_summary
from tradebot.core.domain import Symbol, Timeframe, TradeRecord, ms_to_datetime
from tradebot.core.engine import Engine
from tradebot.core.metrics import StreamStats, compute_metrics, group_metrics


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
    """
    latest: dict[str, TradeRecord] = {}
    for t in trades:
        latest[t.position_id] = t
    all_trades = list(latest.values())
    stats = engine.stats
    curve = stats.equity_curve
    span = curve[-1][0] - curve[0][0] if curve else 0
    metrics = compute_metrics(
        equity_curve=curve,
        trades=all_trades,
        fees_paid=stats.fees_quote,
        traded_notional=stats.traded_notional,
        n_orders=n_orders,
        exposure_ms=min(stats.exposure_ms, span),
    )
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
    if scale_ins:
        extras["scale_in_success_rate"] = _scale_in_success(all_trades, stats.scaled_in_positions)
    return build_summary(
        run_info=run_info,
        metrics=metrics,
        per_asset=per_asset,
        per_stream=per_stream,
        event_counts=stats.event_counts,
        extras=extras,
    )


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
