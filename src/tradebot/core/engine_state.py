"""Snapshot and restore of the engine's state, for a daemon that restarts.

The snapshot is plain JSON-able data (Decimals as strings): the ledger (positions, average entries,
stream attribution, seen fill ids, open trades), the overlay (trailing peaks, ladder levels, locks, the
daily-loss halt), the orders still open, the sequence counters and the run statistics.

The signal book is *not* in the snapshot: a restarting daemon rebuilds it from history the same way a
fresh one does — :meth:`Engine.warm_up` with native candles of each stream timeframe up to the last
closed period, then :meth:`Engine.prime` with the base candles of the periods still open — which gives
the same stream states as an uninterrupted run because aggregation is exact and deterministic.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradebot.core.domain import (
    ClientOrderId,
    ExchangeOrderId,
    Order,
    OrderStatus,
    OrderType,
    Side,
    StreamState,
    Symbol,
)
from tradebot.core.portfolio.ledger import Ledger

if TYPE_CHECKING:
    from tradebot.core.engine import Engine

SNAPSHOT_VERSION = 1


def snapshot(engine: Engine) -> dict[str, Any]:
    """Return the engine's state as JSON-able data (see the module docstring for what is in it)."""
    stats = engine.stats
    return {
        "version": SNAPSHOT_VERSION,
        "run_id": engine.config.run_id,
        "ledger": engine.ledger.snapshot(),
        "overlay": {
            "managers": {s: m.state() for s, m in engine.overlay.managers.items()},
            "risk": engine.overlay.risk.state(),
            "blocks": sorted([list(k) for k in engine.overlay._blocks], key=repr),
            "ref_units": {k: str(v) for k, v in engine.overlay._ref_units.items()},
            "reallocate": engine.overlay.reallocate,
        },
        "orders": {cid: _order_dict(engine.orders[cid]) for cid in sorted(engine.in_flight)},
        "counters": {
            "intent_seq": engine._intent_seq,
            "event_seq": engine._event_seq,
            "replan": engine._replan,
            "dirty": engine._dirty,
            "blackout": engine._blackout,
            "force": sorted(engine._force),
            "force_reason": engine._force_reason,
            "stale": sorted(engine._stale),
            "weights": engine._weights,
            "due_ms": engine._due_ms,
            "last_time_ms": engine.last_time_ms,
        },
        "symbols": {
            s: {
                "mark": st.mark,
                "time": st.time,
                "qty": st.qty,
                "open": st.open,
                "hi": _finite(st.hi),
                "lo": _finite(st.lo),
            }
            for s, st in engine._sym.items()
        },
        "stats": {
            "n_fills": stats.n_fills,
            "fees_quote": str(stats.fees_quote),
            "traded_notional": str(stats.traded_notional),
            "traded_notional_by_symbol": {k: str(v) for k, v in stats.traded_notional_by_symbol.items()},
            "fees_by_symbol": {k: str(v) for k, v in stats.fees_by_symbol.items()},
            "flips": stats.flips,
            "in_since": stats.in_since,
            "in_ms": stats.in_ms,
            "state": {k: v.value for k, v in stats.state.items()},
            "event_counts": stats.event_counts,
            "event_amounts": {k: str(v) for k, v in stats.event_amounts.items()},
            "equity_curve": [[t, str(v)] for t, v in stats.equity_curve],
            "exposure_ms": stats.exposure_ms,
            "last_equity_ms": stats._last_equity_ms,
            "last_exposed": stats._last_exposed,
            "scaled_in_positions": sorted(stats.scaled_in_positions),
        },
    }


def restore(engine: Engine, data: dict[str, Any]) -> None:
    """Load a :func:`snapshot` into a freshly built engine of the same configuration.

    Raises
    ------
    ValueError
        If the snapshot's version or run id does not match the engine, naming both values.
    """
    if data.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"engine snapshot version must be {SNAPSHOT_VERSION}, was {data.get('version')!r}")
    if data.get("run_id") != engine.config.run_id:
        raise ValueError(
            f"engine snapshot is of run {data.get('run_id')!r}, engine runs {engine.config.run_id!r}"
        )
    engine.ledger = Ledger.restore(data["ledger"])
    ov = data["overlay"]
    for sym, state in ov["managers"].items():
        engine.overlay.managers[sym].restore(state)
    engine.overlay.risk.restore(ov["risk"])
    engine.overlay._blocks = {tuple(k) for k in ov["blocks"]}
    engine.overlay._ref_units = {k: Decimal(v) for k, v in ov["ref_units"].items()}
    engine.overlay.reallocate = ov["reallocate"]
    engine.orders = {ClientOrderId(cid): _order_from(o) for cid, o in data["orders"].items()}
    engine.in_flight = set(engine.orders)
    c = data["counters"]
    engine._intent_seq = c["intent_seq"]
    engine._event_seq = c["event_seq"]
    engine._replan = c["replan"]
    engine._dirty = c["dirty"]
    engine._blackout = c["blackout"]
    engine._force = set(c["force"])
    engine._force_reason = dict(c["force_reason"])
    engine._stale = set(c["stale"])
    engine._weights = c["weights"]
    engine._due_ms = c["due_ms"]
    engine.last_time_ms = c["last_time_ms"]
    for sym, s in data["symbols"].items():
        st = engine._sym[sym]
        st.mark, st.time, st.qty, st.open = s["mark"], s["time"], s["qty"], s["open"]
        st.hi = float("-inf") if s["hi"] is None else s["hi"]
        st.lo = float("inf") if s["lo"] is None else s["lo"]
    _restore_stats(engine, data["stats"])


def _restore_stats(engine: Engine, s: dict[str, Any]) -> None:
    stats = engine.stats
    stats.n_fills = s["n_fills"]
    stats.fees_quote = Decimal(s["fees_quote"])
    stats.traded_notional = Decimal(s["traded_notional"])
    stats.traded_notional_by_symbol = {k: Decimal(v) for k, v in s["traded_notional_by_symbol"].items()}
    stats.fees_by_symbol = {k: Decimal(v) for k, v in s["fees_by_symbol"].items()}
    stats.flips = dict(s["flips"])
    stats.in_since = dict(s["in_since"])
    stats.in_ms = dict(s["in_ms"])
    stats.state = {k: StreamState(v) for k, v in s["state"].items()}
    stats.event_counts = dict(s["event_counts"])
    stats.event_amounts = {k: Decimal(v) for k, v in s["event_amounts"].items()}
    stats.equity_curve = [(int(t), Decimal(v)) for t, v in s["equity_curve"]]
    stats.exposure_ms = s["exposure_ms"]
    stats._last_equity_ms = s["last_equity_ms"]
    stats._last_exposed = s["last_exposed"]
    stats.scaled_in_positions = set(s["scaled_in_positions"])


def _finite(x: float) -> float | None:
    return x if x not in (float("inf"), float("-inf")) else None


def _order_dict(o: Order) -> dict[str, Any]:
    return {
        "client_order_id": o.client_order_id,
        "symbol": o.symbol,
        "side": o.side.value,
        "qty": str(o.qty),
        "order_type": o.order_type.value,
        "limit_price": None if o.limit_price is None else str(o.limit_price),
        "status": o.status.value,
        "filled_qty": str(o.filled_qty),
        "avg_fill_price": str(o.avg_fill_price),
        "fees_quote": str(o.fees_quote),
        "exchange_order_id": o.exchange_order_id,
        "reason": o.reason,
        "created_ms": o.created_ms,
        "fill_ids": sorted(o.fill_ids),
    }


def _order_from(d: dict[str, Any]) -> Order:
    return Order(
        client_order_id=ClientOrderId(d["client_order_id"]),
        symbol=Symbol(d["symbol"]),
        side=Side(d["side"]),
        qty=Decimal(d["qty"]),
        order_type=OrderType(d["order_type"]),
        limit_price=None if d["limit_price"] is None else Decimal(d["limit_price"]),
        status=OrderStatus(d["status"]),
        filled_qty=Decimal(d["filled_qty"]),
        avg_fill_price=Decimal(d["avg_fill_price"]),
        fees_quote=Decimal(d["fees_quote"]),
        exchange_order_id=None if d["exchange_order_id"] is None else ExchangeOrderId(d["exchange_order_id"]),
        reason=d["reason"],
        created_ms=d["created_ms"],
        fill_ids=set(d["fill_ids"]),
    )
