"""``tradebot status``: what a running or stopped daemon holds, from its database and health file.

The database gives the truth of record: the run, the last checkpoint of the engine (ledger, stops,
trading state, marks), the orders still open, the last fills and position events. The health file
(rewritten by a running daemon every ``status_interval_s``) adds what only the live process knows:
feed lag, the last reconciliation, the time of the last line. A health file is used only when it
belongs to the run shown.

:func:`read_status` gathers one JSON-able report; :func:`render_status` draws it with rich.
Decimal values are strings in the report (quote currency unless the key says ``_base``), times are
ms UTC.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from tradebot.adapters.store.engine import require_existing
from tradebot.adapters.store.event_store import SqlEventStore
from tradebot.app.daemon.status import pnl_totals
from tradebot.core.domain import OrderStatus, ms_to_datetime
from tradebot.core.portfolio.ledger import Ledger
from tradebot.errors import DataError

#: Orders that may still fill (shown as open orders).
OPEN_STATUSES = frozenset(
    {OrderStatus.PENDING_SUBMIT, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED, OrderStatus.UNKNOWN}
)


def _read_health(paths: list[Path], run_id: str) -> dict[str, Any] | None:
    for path in paths:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(report, dict) and report.get("run_id") == run_id:
            report["path"] = str(path)
            return report
    return None


def _q(value: Decimal, places: str = "0.01") -> str:
    return str(value.quantize(Decimal(places)))


def _positions(
    engine_state: dict[str, Any], ledger: Ledger
) -> tuple[list[dict[str, Any]], dict[str, Decimal]]:
    """Positions of the checkpointed ledger with marks, unrealized PnL, R and the overlay's stop."""
    symbols_state: dict[str, Any] = engine_state.get("symbols", {})
    managers: dict[str, Any] = engine_state.get("overlay", {}).get("managers", {})
    marks: dict[str, Decimal] = {}
    rows: list[dict[str, Any]] = []
    for symbol, qty in ledger.positions().items():
        mark_f = symbols_state.get(symbol, {}).get("mark")
        mark = Decimal(str(mark_f)) if mark_f else None
        if mark is not None:
            marks[symbol] = mark
        if qty == 0:
            continue
        avg = ledger.avg_entry(symbol)
        pos = managers.get(symbol, {}).get("position", {})
        stop, risk = pos.get("stop"), pos.get("risk")
        unrealized = None if mark is None else ledger.unrealized(symbol, mark)
        r_multiple = (
            None
            if mark is None or not risk or not pos.get("open")
            else round((float(mark) - float(pos.get("entry") or avg)) / float(risk), 2)
        )
        rows.append(
            {
                "symbol": symbol,
                "qty_base": str(qty),
                "avg_entry_quote": _q(avg, "0.0001"),
                "mark_quote": None if mark is None else str(mark),
                "notional_quote": None if mark is None else _q(qty * mark),
                "unrealized_pnl_quote": None if unrealized is None else _q(unrealized),
                "unrealized_pct": None
                if mark is None or avg == 0
                else round(float((mark - avg) / avg * 100), 2),
                "r_multiple": r_multiple,
                "stop_quote": None if stop is None else round(float(stop), 8),
                "stop_kind": pos.get("stop_kind"),
                "trailing": bool(pos.get("trailing")),
            }
        )
    return rows, marks


async def read_status(
    url: str, *, run_id: str | None = None, health_files: list[Path] | None = None, n_recent: int = 10
) -> dict[str, Any]:
    """Return the status report of ``run_id`` (default: the latest run) in the database at ``url``.

    Returns
    -------
    dict
        ``run`` (id, mode, status, started/finished ms), ``equity_quote``, ``cash_quote``,
        ``realized_pnl_quote``, ``unrealized_pnl_quote``, ``fees_quote``, ``positions`` (list of
        symbol, ``qty_base``, ``avg_entry_quote``, ``mark_quote``, ``unrealized_pnl_quote``,
        ``unrealized_pct``, ``r_multiple``, ``stop_quote``, ``stop_kind``, ``trailing``),
        ``open_orders``, ``streams`` (stream id → in/out), ``trading_state`` and ``halt_reason``,
        ``checkpoint_ms``, ``daemon`` (the health file's report when it belongs to this run, with
        ``age_s``; else ``None``), ``recent_fills`` and ``recent_events`` (newest last).

    Raises
    ------
    DataError
        If the database file does not exist, holds no run, or ``run_id`` names no stored run.
    """
    require_existing(url)
    async with SqlEventStore(url) as store:
        runs = await store.list_runs()
        if not runs:
            raise DataError("the database holds no run yet: start `tradebot run` or `tradebot demo` first")
        if run_id is None:
            run = runs[0]
        else:
            found = [r for r in runs if r.run_id == run_id]
            if not found:
                latest = ", ".join(r.run_id for r in runs[:5])
                raise DataError(f"--run: no run {run_id!r} in the database; latest runs: {latest}")
            run = found[0]
        state = await store.load_engine_state(run.run_id)
        orders = await store.orders(run.run_id)
        fills = await store.fills(run.run_id)
        events = await store.position_events(run.run_id)

    report: dict[str, Any] = {
        "run": {
            "run_id": run.run_id,
            "mode": run.mode,
            "status": run.status,
            "started_ms": run.started_ms,
            "finished_ms": run.finished_ms,
        },
        "checkpoint_ms": None,
        "equity_quote": None,
        "cash_quote": None,
        "realized_pnl_quote": None,
        "unrealized_pnl_quote": None,
        "fees_quote": None,
        "positions": [],
        "streams": {},
        "trading_state": None,
        "halt_reason": None,
    }
    engine_state = (state or {}).get("engine")
    if engine_state:
        ledger = Ledger.restore(engine_state["ledger"])
        positions, marks = _positions(engine_state, ledger)
        realized, fees, unrealized, complete = pnl_totals(ledger, marks)
        risk = engine_state.get("overlay", {}).get("risk", {})
        report.update(
            checkpoint_ms=engine_state.get("counters", {}).get("last_time_ms"),
            equity_quote=_q(ledger.equity(marks)) if complete else None,
            cash_quote=_q(ledger.cash),
            realized_pnl_quote=_q(realized),
            unrealized_pnl_quote=_q(unrealized) if complete else None,
            fees_quote=_q(fees),
            positions=positions,
            streams=dict(engine_state.get("stats", {}).get("state", {})),
            trading_state=risk.get("state"),
            halt_reason=risk.get("halt_reason") or None,
        )
    elif run.summary:
        report["equity_quote"] = run.summary.get("final_equity")
    report["open_orders"] = [
        {
            "client_order_id": o.client_order_id,
            "symbol": o.symbol,
            "side": str(o.side),
            "type": str(o.order_type),
            "qty_base": str(o.qty),
            "filled_base": str(o.filled_qty),
            "status": str(o.status),
            "created_ms": o.created_ms,
        }
        for o in orders
        if o.status in OPEN_STATUSES
    ]
    report["recent_fills"] = [
        {
            "time_ms": f.ts_ms,
            "symbol": f.symbol,
            "side": str(f.side),
            "qty_base": str(f.qty),
            "price_quote": str(f.price),
            "fee_quote": str(f.fee_quote),
        }
        for f in sorted(fills, key=lambda f: (f.ts_ms, f.trade_id))[-n_recent:]
    ]
    report["recent_events"] = [
        {
            "time_ms": e.event_time_ms,
            "symbol": e.symbol,
            "type": str(e.event_type),
            "price_quote": str(e.price),
            "trigger": e.trigger_reason,
            "action": e.action_taken,
        }
        for e in sorted(events, key=lambda e: e.seq)[-n_recent:]
    ]
    health = _read_health(health_files or [], run.run_id)
    if health is not None:
        written = int(health.get("written_wall_ms") or 0)
        health["age_s"] = round((time.time_ns() // 1_000_000 - written) / 1000, 1)
        report["trading_state"] = health.get("trading_state") or report["trading_state"]
    report["daemon"] = health
    return report


def _time(ms: int | None) -> str:
    return "-" if ms is None else ms_to_datetime(ms).strftime("%Y-%m-%d %H:%M")


def _pnl(text: str | None) -> Text:
    if text is None:
        return Text("n/a")
    return Text(text, style="green" if not text.startswith("-") else "red")


def render_status(report: dict[str, Any], console: Console) -> None:
    """Print ``report`` (:func:`read_status`) as rich tables: account, positions, open orders, feed and
    state, the last fills and events."""
    run = report["run"]
    daemon = report.get("daemon")
    head = Table(title=f"run {run['run_id']} ({run['mode']}, {run['status']})", show_header=False)
    head.add_column("", style="bold")
    head.add_column("")
    state = report.get("trading_state") or "n/a"
    if report.get("halt_reason"):
        state += f" ({report['halt_reason']})"
    for label, value in (
        ("equity (quote)", report.get("equity_quote") or "n/a"),
        ("cash (quote)", report.get("cash_quote") or "n/a"),
        ("realized PnL", report.get("realized_pnl_quote") or "n/a"),
        ("unrealized PnL", report.get("unrealized_pnl_quote") or "n/a"),
        ("fees", report.get("fees_quote") or "n/a"),
        ("trading state", state),
        ("started (UTC)", _time(run["started_ms"])),
        ("last checkpoint (UTC)", _time(report.get("checkpoint_ms"))),
    ):
        head.add_row(label, str(value))
    if daemon is not None:
        lag = daemon.get("feed_lag_ms")
        head.add_row("feed lag", "n/a" if lag is None else f"{lag / 1000:.1f} s")
        head.add_row("last reconciliation (UTC)", _time(daemon.get("last_reconciliation_ms")))
        head.add_row("health file", f"{daemon['path']} ({daemon['age_s']} s old)")
    else:
        head.add_row("daemon", "no health file of this run (stopped, or another host)")
    streams = report.get("streams") or {}
    if streams:
        head.add_row("streams", "  ".join(f"{k}={v}" for k, v in sorted(streams.items())))

    pos = Table(title="positions")
    for col in ("symbol", "qty", "avg entry", "mark", "notional", "unrealized", "%", "R", "stop", "trail"):
        pos.add_column(col, justify="left" if col == "symbol" else "right")
    for p in report["positions"]:
        pos.add_row(
            p["symbol"],
            p["qty_base"],
            p["avg_entry_quote"],
            p["mark_quote"] or "n/a",
            p["notional_quote"] or "n/a",
            _pnl(p["unrealized_pnl_quote"]),
            "n/a" if p["unrealized_pct"] is None else f"{p['unrealized_pct']:+.2f}",
            "n/a" if p["r_multiple"] is None else f"{p['r_multiple']:+.2f}",
            "-" if p["stop_quote"] is None else f"{p['stop_quote']:g} ({p['stop_kind'] or 'stop'})",
            "yes" if p["trailing"] else "no",
        )
    parts: list[Any] = [head, pos]
    if report["open_orders"]:
        oo = Table(
            "client order id", "symbol", "side", "type", "qty", "filled", "status", title="open orders"
        )
        for o in report["open_orders"]:
            oo.add_row(
                o["client_order_id"],
                o["symbol"],
                o["side"],
                o["type"],
                o["qty_base"],
                o["filled_base"],
                o["status"],
            )
        parts.append(oo)
    fills = Table("time (UTC)", "symbol", "side", "qty", "price", "fee", title="last fills")
    for f in report["recent_fills"]:
        fills.add_row(
            _time(f["time_ms"]), f["symbol"], f["side"], f["qty_base"], f["price_quote"], f["fee_quote"]
        )
    events = Table("time (UTC)", "symbol", "type", "price", "trigger", title="last position events")
    for e in report["recent_events"]:
        events.add_row(_time(e["time_ms"]), e["symbol"] or "-", e["type"], e["price_quote"], e["trigger"])
    parts += [fills, events]
    console.print(Group(*parts))
