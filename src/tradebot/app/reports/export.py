"""The trades of a run as rows: a rich table, CSV or JSON text (``tradebot trades``).

Pure formatting over stored records (:class:`TradeRecord`, :class:`PositionEvent`, :class:`Fill`,
:class:`EquitySnapshot`); the command reads them with :func:`tradebot.app.storage.load_run_records`.

A trade's events are the position events that carry its position id plus the events without one
that name one of its orders (the order that opened it and the fill that closed it, which the engine
records after the position is flat). Its fills are the fills of those orders.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from tradebot.core.domain import (
    EquitySnapshot,
    Fill,
    PositionEvent,
    PositionEventType,
    TradeRecord,
    ms_to_datetime,
)

__all__ = [
    "CSV_COLUMNS",
    "events_by_trade",
    "exit_reason",
    "render_trades",
    "to_csv",
    "to_json",
    "trade_rows",
]

_ET = PositionEventType

#: The columns of the CSV export, in order (``events`` is a count there, ``event_types`` joined by ``;``).
CSV_COLUMNS = (
    "trade_id", "symbol", "status",
    "entry_time", "entry_time_ms", "entry_avg_price", "exit_time", "exit_time_ms", "exit_avg_price",
    "max_qty", "bought_qty", "sold_qty", "open_qty",
    "realized_pnl_quote", "fees_quote", "net_pnl_quote", "pnl_pct",
    "initial_risk_per_unit", "r_multiple", "mae_pct", "mfe_pct", "mfe_quote",
    "mark_price", "unrealized_pnl_quote", "exit_reason", "fills", "events", "event_types",
)  # fmt: skip


def _iso(ms: int | None) -> str | None:
    # ISO 8601 UTC with milliseconds and a Z, e.g. 2023-03-17T01:00:00.000Z.
    return (
        None if ms is None else ms_to_datetime(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _dec(x: Decimal | None) -> str | None:
    return None if x is None else f"{x:f}"


def events_by_trade(
    trades: Sequence[TradeRecord], events: Iterable[PositionEvent]
) -> dict[str, list[PositionEvent]]:
    """Return each trade's events in ``seq`` order, keyed by position id (see the module docstring)."""
    out: dict[str, list[PositionEvent]] = {t.position_id: [] for t in trades}
    loose: list[PositionEvent] = []
    for e in events:
        if e.position_id in out:
            out[e.position_id].append(e)
        elif e.position_id is None and e.client_order_ids:
            loose.append(e)
    owner = {oid: pid for pid, evs in out.items() for e in evs for oid in e.client_order_ids}
    for e in loose:
        pid = next((owner[o] for o in e.client_order_ids if o in owner), None)
        if pid is not None:
            out[pid].append(e)
    for evs in out.values():
        evs.sort(key=lambda e: e.seq)
    return out


def exit_reason(trade: TradeRecord, events: Sequence[PositionEvent]) -> str:
    """Return why a closed trade ended: the cause of the last order that took it flat.

    That order's event (``rebalance_sell`` with size after 0) names its trigger, e.g. ``stop_exit``,
    ``early_exit``, ``time_exit`` or ``rebalance`` (the streams' target went to zero); failing that,
    the type of the last decision that took it flat. ``""`` while the trade is open.
    """
    if trade.closed_ms is None:
        return ""
    flat = [e for e in events if e.size_after == 0 and e.event_type not in (_ET.ENTRY, _ET.EXIT)]
    for e in reversed(flat):
        if e.event_type is _ET.REBALANCE_SELL and e.trigger_reason:
            return e.trigger_reason
    return str(flat[-1].event_type) if flat else "exit"


def _event_dict(e: PositionEvent) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "time": _iso(e.event_time_ms),
        "time_ms": e.event_time_ms,
        "type": str(e.event_type),
        "price": _dec(e.price),
        "size_before": _dec(e.size_before),
        "size_after": _dec(e.size_after),
        "trigger": e.trigger_reason,
        "action": e.action_taken,
    }


def trade_rows(
    trades: Sequence[TradeRecord],
    events: Iterable[PositionEvent],
    fills: Iterable[Fill] = (),
    equity: Sequence[EquitySnapshot] = (),
) -> list[dict[str, Any]]:
    """Return one JSON-ready dict per trade, in the order of ``trades``.

    Decimals are strings (``f"{x:f}"``, lossless), times ISO UTC (``…Z``) beside ``*_ms`` integers,
    ``pnl_pct = net_pnl / (entry_avg_price × bought_qty) × 100`` (percent of what was bought). An open
    trade has no exit time, ``open_qty > 0`` and, from the last equity snapshot's mark,
    ``mark_price`` and ``unrealized_pnl_quote = (mark − entry_avg_price) × open_qty``; both are
    ``None`` for a closed trade. ``fills`` counts the fills of the trade's orders; ``events`` is the
    list of :func:`events_by_trade` (time, type, price, sizes, trigger, action).
    """
    by_trade = events_by_trade(trades, events)
    fills_by_order: dict[str, int] = {}
    for f in fills:
        fills_by_order[f.client_order_id] = fills_by_order.get(f.client_order_id, 0) + 1
    marks: Mapping[str, Decimal] = equity[-1].marks if equity else {}
    rows = []
    for t in trades:
        evs = by_trade[t.position_id]
        orders = {o for e in evs for o in e.client_order_ids}
        open_qty = t.bought_qty - t.sold_qty
        mark = marks.get(t.symbol) if t.closed_ms is None else None
        cost = t.entry_avg_price * t.bought_qty
        rows.append(
            {
                "trade_id": t.position_id,
                "symbol": str(t.symbol),
                "status": "open" if t.closed_ms is None else "closed",
                "entry_time": _iso(t.opened_ms),
                "entry_time_ms": t.opened_ms,
                "entry_avg_price": _dec(t.entry_avg_price),
                "exit_time": _iso(t.closed_ms),
                "exit_time_ms": t.closed_ms,
                "exit_avg_price": _dec(t.exit_avg_price) if t.sold_qty else None,
                "max_qty": _dec(t.max_qty),
                "bought_qty": _dec(t.bought_qty),
                "sold_qty": _dec(t.sold_qty),
                "open_qty": _dec(open_qty),
                "realized_pnl_quote": _dec(t.realized_pnl),
                "fees_quote": _dec(t.fees),
                "net_pnl_quote": _dec(t.net_pnl),
                "pnl_pct": float(t.net_pnl / cost * 100) if cost else None,
                "initial_risk_per_unit": _dec(t.initial_risk_per_unit),
                "r_multiple": t.r_multiple,
                "mae_pct": t.mae_pct,
                "mfe_pct": t.mfe_pct,
                "mfe_quote": _dec(t.mfe_quote),
                "mark_price": _dec(mark),
                "unrealized_pnl_quote": _dec(None if mark is None else (mark - t.entry_avg_price) * open_qty),
                "exit_reason": exit_reason(t, evs),
                "fills": sum(fills_by_order.get(o, 0) for o in orders),
                "events": [_event_dict(e) for e in evs],
            }
        )
    return rows


def to_json(rows: Sequence[Mapping[str, Any]], *, run_id: str) -> str:
    """Return ``{"run_id", "n_trades", "trades": rows}`` as indented JSON (strict: no NaN)."""
    return json.dumps(
        {"run_id": run_id, "n_trades": len(rows), "trades": list(rows)}, indent=2, allow_nan=False
    )


def to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """Return the rows as CSV with a header of :data:`CSV_COLUMNS`; ``None`` is an empty cell."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        flat = dict(row)
        events = flat["events"]
        flat["events"] = len(events)
        flat["event_types"] = ";".join(e["type"] for e in events)
        writer.writerow(["" if flat[c] is None else flat[c] for c in CSV_COLUMNS])
    return buf.getvalue()


_LEFT = {"trade", "entry (UTC)", "exit (UTC)", "exit reason"}


def _num(text: str | None, fmt: str) -> str:
    return "" if text is None else format(Decimal(text), fmt)


def render_trades(rows: Sequence[Mapping[str, Any]], console: Console, *, run_id: str, title: str) -> None:
    """Print the rows as a table: trade ids without the ``<run_id>-`` prefix (``BTCUSDT-1``), times to the minute,
    prices and money rounded for reading; ``unreal.`` is an open trade's unrealized PnL at the last mark."""
    table = Table(title=title)
    for name in ("trade", "entry (UTC)", "avg entry", "exit (UTC)", "exit", "qty", "realized PnL",
                 "unreal.", "net %", "fees", "R", "MAE/MFE %", "exit reason", "events"):  # fmt: skip
        table.add_column(name, no_wrap=name.endswith("(UTC)"), justify="left" if name in _LEFT else "right")
    for r in rows:
        r_mult, pct = r["r_multiple"], r["pnl_pct"]
        table.add_row(
            r["trade_id"].removeprefix(f"{run_id}-"),
            (r["entry_time"] or "")[:16].replace("T", " "),
            _num(r["entry_avg_price"], ",.2f"),
            (r["exit_time"] or "open")[:16].replace("T", " "),
            _num(r["exit_avg_price"], ",.2f"),
            _num(r["max_qty"], "f"),
            _num(r["realized_pnl_quote"], ",.2f"),
            _num(r["unrealized_pnl_quote"], ",.2f"),
            "" if pct is None else f"{pct:+.2f}",
            _num(r["fees_quote"], ",.2f"),
            "" if r_mult is None else f"{r_mult:+.2f}",
            f"{r['mae_pct']:.2f}/{r['mfe_pct']:.2f}",
            r["exit_reason"],
            str(len(r["events"])),
        )
    console.print(table)
