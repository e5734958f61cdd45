"""The engine snapshot's format: what a daemon that restarts reloads, and how it is checked.

The snapshot is plain JSON-able data (Decimals as strings), one section per part of the engine, each
written by the part's own ``state()`` / ``snapshot()`` and read back by its ``restore()``:

- ``ledger``: positions, average entries, stream attribution, seen fill ids, open trades;
- ``overlay``: trailing peaks, ladder levels, locks, the daily-loss halt, reference sizes;
- ``orders``: the orders still in flight (:func:`order_state`);
- ``counters``: the engine's plan triggers and sequence numbers;
- ``symbols``: marks, times and the open positions' running high/low;
- ``stats``: the run statistics.

The signal book is *not* in the snapshot: a restarting daemon rebuilds it from history the same way a
fresh one does — :meth:`Engine.warm_up` with native candles of each stream timeframe up to the last
closed period, then :meth:`Engine.prime` with the base candles of the periods still open — which gives
the same stream states as an uninterrupted run because aggregation is exact and deterministic.
Pure, like the rest of the core.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tradebot.core.domain import (
    ClientOrderId,
    ExchangeOrderId,
    Order,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
)

SNAPSHOT_VERSION = 1


def check_snapshot(data: dict[str, Any], run_id: str) -> None:
    """Refuse a snapshot of another format version or of another run.

    Raises
    ------
    ValueError
        If the snapshot's version or run id does not match, naming both values.
    """
    if data.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"engine snapshot version must be {SNAPSHOT_VERSION}, was {data.get('version')!r}")
    if data.get("run_id") != run_id:
        raise ValueError(f"engine snapshot is of run {data.get('run_id')!r}, engine runs {run_id!r}")


def order_state(o: Order) -> dict[str, Any]:
    """Return an in-flight order as JSON-able data (Decimals as strings)."""
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
        # a stop order's own fields (absent for the others: their snapshots stay as they were)
        **(
            {"stop_price": str(o.stop_price), "reduce_only": o.reduce_only}
            if o.stop_price is not None
            else {}
        ),
    }


def order_from_state(d: dict[str, Any]) -> Order:
    """Rebuild an order from :func:`order_state` data."""
    return Order(
        client_order_id=ClientOrderId(d["client_order_id"]),
        symbol=Symbol(d["symbol"]),
        side=Side(d["side"]),
        qty=Decimal(d["qty"]),
        order_type=OrderType(d["order_type"]),
        limit_price=None if d["limit_price"] is None else Decimal(d["limit_price"]),
        stop_price=None if d.get("stop_price") is None else Decimal(d["stop_price"]),
        reduce_only=bool(d.get("reduce_only", False)),
        status=OrderStatus(d["status"]),
        filled_qty=Decimal(d["filled_qty"]),
        avg_fill_price=Decimal(d["avg_fill_price"]),
        fees_quote=Decimal(d["fees_quote"]),
        exchange_order_id=None if d["exchange_order_id"] is None else ExchangeOrderId(d["exchange_order_id"]),
        reason=d["reason"],
        created_ms=d["created_ms"],
        fill_ids=set(d["fill_ids"]),
    )
