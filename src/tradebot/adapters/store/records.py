"""The one mapping between engine records (``tradebot.core.domain``) and table rows, both ways.

``to_row(record, run_id)`` turns a frozen record into ``(target, row dict)``: the target is the
table the row is inserted into (or upserted), or, for an :class:`MlPredictionOutcome`, the update
:data:`~tradebot.adapters.store.statements.ML_OUTCOMES` of its prediction's row. ``*_from_row``
rebuild the record from a row mapping, so what is written reads back equal (``==``). Times are
stored both as the exact int ms and as aware UTC datetimes; JSON payloads are made strict JSON
(``Decimal`` → decimal string, non-finite float → ``null``, tuple → list, enum → value).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from tradebot.adapters.store.statements import ML_OUTCOMES, WriteTarget
from tradebot.adapters.store.tables import (
    EquitySnapshotRow,
    FillRow,
    MlPositionPredictionRow,
    OrderRow,
    PositionEventRow,
    StreamSignalRow,
    TradeRow,
)
from tradebot.core.domain import (
    ClientOrderId,
    EquitySnapshot,
    ExchangeOrderId,
    Fill,
    OrderRecord,
    OrderStatus,
    OrderType,
    PositionEvent,
    PositionEventType,
    Side,
    StreamSignal,
    StreamState,
    Symbol,
    TradeId,
    TradeRecord,
)

# The ML records are the core's (tradebot.core.domain.ml: the engine emits them); re-exported here
# and by tradebot.adapters.store for the store's users.
from tradebot.core.domain import MlPositionPrediction as MlPositionPrediction
from tradebot.core.domain import MlPredictionOutcome as MlPredictionOutcome

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms_to_utc(ms: int) -> datetime:
    """Return the aware UTC datetime of ``ms`` (ms since the epoch), exactly (no float rounding)."""
    return _EPOCH + timedelta(milliseconds=ms)


def jsonable(value: Any) -> Any:
    """Return ``value`` as strict JSON data: Decimal → string (``f"{x:f}"``), non-finite float →
    ``None``, tuple/set → list, enum → its value, UUID → string; dict keys become strings.

    Raises
    ------
    TypeError
        If ``value`` holds an object with no JSON form; the message names its type.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return f"{value:f}" if value.is_finite() else None
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    raise TypeError(f"value of type {type(value).__name__} has no JSON form, was {value!r}")


def _decimal_map(data: Mapping[str, Any]) -> dict[str, Decimal]:
    return {k: Decimal(v) for k, v in data.items()}


def to_row(record: object, run_id: str) -> tuple[WriteTarget, dict[str, Any]]:
    """Return the write target and the row that persist ``record`` for run ``run_id``.

    The target is a table (the row maps column → value) or, for an :class:`MlPredictionOutcome`,
    :data:`~tradebot.adapters.store.statements.ML_OUTCOMES` (the row holds the update's
    ``b_``-prefixed bind values).

    Raises
    ------
    TypeError
        If ``record`` is not one of PositionEvent, OrderRecord, Fill, TradeRecord, EquitySnapshot,
        StreamSignal, MlPositionPrediction, MlPredictionOutcome.
    """
    mapper = _TO_ROW.get(type(record))
    if mapper is None:
        raise TypeError(f"the event store cannot persist a {type(record).__name__}, was {record!r}")
    table, fn = mapper
    return table, fn(record, run_id)


def _order_row(r: OrderRecord, run_id: str) -> dict[str, Any]:
    return {
        "client_order_id": r.client_order_id, "run_id": run_id, "symbol": r.symbol,
        "side": r.side.value, "order_type": r.order_type.value, "qty": r.qty,
        "status": r.status.value, "filled_qty": r.filled_qty, "avg_fill_price": r.avg_fill_price,
        "fees_quote": r.fees_quote, "ref_price": r.ref_price, "stop_price": r.stop_price,
        "limit_price": r.limit_price, "reason": r.reason,
        "intent_id": r.intent_id, "exchange_order_id": r.exchange_order_id,
        "status_reason": r.status_reason, "created_at": ms_to_utc(r.created_ms),
        "created_ms": r.created_ms, "updated_at": ms_to_utc(r.updated_ms), "updated_ms": r.updated_ms,
    }  # fmt: skip


def _fill_row(f: Fill, run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id, "venue": f.venue, "symbol": f.symbol, "trade_id": f.trade_id,
        "client_order_id": f.client_order_id, "exchange_order_id": f.exchange_order_id,
        "side": f.side.value, "qty": f.qty, "price": f.price, "fee": f.fee,
        "fee_currency": f.fee_currency, "fee_quote": f.fee_quote, "ts": ms_to_utc(f.ts_ms),
        "ts_ms": f.ts_ms,
    }  # fmt: skip


def _trade_row(t: TradeRecord, run_id: str) -> dict[str, Any]:
    return {
        "position_id": t.position_id, "run_id": run_id, "symbol": t.symbol,
        "opened_at": ms_to_utc(t.opened_ms), "opened_ms": t.opened_ms,
        "closed_at": None if t.closed_ms is None else ms_to_utc(t.closed_ms),
        "closed_ms": t.closed_ms, "entry_avg_price": t.entry_avg_price,
        "exit_avg_price": t.exit_avg_price, "max_qty": t.max_qty, "bought_qty": t.bought_qty,
        "sold_qty": t.sold_qty, "realized_pnl": t.realized_pnl, "fees": t.fees, "net_pnl": t.net_pnl,
        "initial_risk_per_unit": t.initial_risk_per_unit, "r_multiple": t.r_multiple,
        "mae_pct": t.mae_pct, "mfe_pct": t.mfe_pct, "mfe_quote": t.mfe_quote,
    }  # fmt: skip


def _position_event_row(e: PositionEvent, run_id: str) -> dict[str, Any]:
    return {
        "id": e.event_id, "run_id": run_id, "seq": e.seq, "trade_id": e.position_id,
        "event_type": e.event_type.value, "symbol": e.symbol, "stream": e.stream,
        "event_time": ms_to_utc(e.event_time_ms), "event_time_ms": e.event_time_ms,
        "price": e.price, "profit_pct": _finite_or_none(e.profit_pct),
        "r_multiple": _finite_or_none(e.r_multiple), "position_size": e.size_after,
        "size_before": e.size_before, "size_after": e.size_after,
        "trigger_reason": e.trigger_reason, "ml_prediction": jsonable(e.ml_prediction),
        "indicators": jsonable(e.indicators), "action_taken": e.action_taken,
        "amount_saved_or_gained": e.amount_saved_or_gained,
        "client_order_ids": list(e.client_order_ids),
    }  # fmt: skip


def _equity_row(s: EquitySnapshot, run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id, "ts": ms_to_utc(s.time_ms), "ts_ms": s.time_ms, "equity": s.equity,
        "cash": s.cash, "positions": jsonable(s.positions), "marks": jsonable(s.marks),
    }  # fmt: skip


def _signal_row(s: StreamSignal, run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id, "stream": s.stream, "symbol": s.symbol, "ts": ms_to_utc(s.time_ms),
        "ts_ms": s.time_ms, "state": s.state.value, "confidence": s.confidence,
        "flipped": s.flipped, "reason": s.reason, "indicators": jsonable(s.indicators),
    }  # fmt: skip


def _prediction_row(p: MlPositionPrediction, run_id: str) -> dict[str, Any]:
    return {
        "id": p.prediction_id, "position_event_id": p.position_event_id, "run_id": run_id,
        "trade_id": p.trade_id, "model_name": p.model_name, "model_version": p.model_version,
        "prediction": jsonable(p.prediction), "confidence": _finite_or_none(p.confidence),
        "features": jsonable(p.features), "symbol": p.symbol,
        "ts": None if p.time_ms is None else ms_to_utc(p.time_ms), "ts_ms": p.time_ms,
        "recommended_action": p.recommended_action, "action_taken": p.action_taken,
        "outcome": jsonable(p.outcome), "prediction_accuracy": p.prediction_accuracy,
        "outcome_ts_ms": p.outcome_time_ms,
    }  # fmt: skip


def _outcome_row(o: MlPredictionOutcome, run_id: str) -> dict[str, Any]:
    # bind values of statements.ML_OUTCOMES: the row (b_id, b_run_id) and what it is set to
    return {
        "b_id": o.prediction_id, "b_run_id": run_id, "b_trade_id": o.trade_id,
        "b_outcome": jsonable(o.outcome), "b_prediction_accuracy": o.prediction_accuracy,
        "b_outcome_ts_ms": o.outcome_time_ms,
    }  # fmt: skip


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


_TO_ROW: dict[type, tuple[WriteTarget, Any]] = {
    OrderRecord: (OrderRow.__table__, _order_row),  # type: ignore[dict-item]
    Fill: (FillRow.__table__, _fill_row),  # type: ignore[dict-item]
    TradeRecord: (TradeRow.__table__, _trade_row),  # type: ignore[dict-item]
    PositionEvent: (PositionEventRow.__table__, _position_event_row),  # type: ignore[dict-item]
    EquitySnapshot: (EquitySnapshotRow.__table__, _equity_row),  # type: ignore[dict-item]
    StreamSignal: (StreamSignalRow.__table__, _signal_row),  # type: ignore[dict-item]
    MlPositionPrediction: (MlPositionPredictionRow.__table__, _prediction_row),  # type: ignore[dict-item]
    MlPredictionOutcome: (ML_OUTCOMES, _outcome_row),
}


# ---- rows → records ---------------------------------------------------------------------------


def order_from_row(m: Mapping[str, Any]) -> OrderRecord:
    """Return the :class:`OrderRecord` stored in an ``orders`` row mapping."""
    return OrderRecord(
        client_order_id=ClientOrderId(m["client_order_id"]), symbol=Symbol(m["symbol"]),
        side=Side(m["side"]), order_type=OrderType(m["order_type"]), qty=m["qty"],
        status=OrderStatus(m["status"]), filled_qty=m["filled_qty"],
        avg_fill_price=m["avg_fill_price"], fees_quote=m["fees_quote"], reason=m["reason"],
        intent_id=m["intent_id"], created_ms=m["created_ms"], updated_ms=m["updated_ms"],
        ref_price=m["ref_price"], exchange_order_id=m["exchange_order_id"],
        status_reason=m["status_reason"], stop_price=m["stop_price"], limit_price=m["limit_price"],
    )  # fmt: skip


def fill_from_row(m: Mapping[str, Any]) -> Fill:
    """Return the :class:`Fill` stored in a ``fills`` row mapping."""
    eid = m["exchange_order_id"]
    return Fill(
        venue=m["venue"], symbol=Symbol(m["symbol"]), trade_id=TradeId(m["trade_id"]),
        client_order_id=ClientOrderId(m["client_order_id"]), side=Side(m["side"]), qty=m["qty"],
        price=m["price"], fee_quote=m["fee_quote"], ts_ms=m["ts_ms"],
        exchange_order_id=None if eid is None else ExchangeOrderId(eid), fee=m["fee"],
        fee_currency=m["fee_currency"],
    )  # fmt: skip


def trade_from_row(m: Mapping[str, Any]) -> TradeRecord:
    """Return the :class:`TradeRecord` stored in a ``trades`` row mapping."""
    return TradeRecord(
        position_id=m["position_id"], symbol=Symbol(m["symbol"]), opened_ms=m["opened_ms"],
        closed_ms=m["closed_ms"], entry_avg_price=m["entry_avg_price"],
        exit_avg_price=m["exit_avg_price"], max_qty=m["max_qty"], bought_qty=m["bought_qty"],
        sold_qty=m["sold_qty"], realized_pnl=m["realized_pnl"], fees=m["fees"],
        net_pnl=m["net_pnl"], initial_risk_per_unit=m["initial_risk_per_unit"],
        r_multiple=m["r_multiple"], mae_pct=m["mae_pct"], mfe_pct=m["mfe_pct"],
        mfe_quote=m["mfe_quote"],
    )  # fmt: skip


def position_event_from_row(m: Mapping[str, Any]) -> PositionEvent:
    """Return the :class:`PositionEvent` stored in a ``position_events`` row mapping."""
    return PositionEvent(
        event_id=m["id"], seq=m["seq"], position_id=m["trade_id"],
        event_type=PositionEventType(m["event_type"]), symbol=Symbol(m["symbol"]),
        event_time_ms=m["event_time_ms"], price=m["price"], size_before=m["size_before"],
        size_after=m["size_after"], trigger_reason=m["trigger_reason"],
        action_taken=m["action_taken"], stream=m["stream"], profit_pct=m["profit_pct"],
        r_multiple=m["r_multiple"], indicators=m["indicators"], ml_prediction=m["ml_prediction"],
        amount_saved_or_gained=m["amount_saved_or_gained"],
        client_order_ids=tuple(m["client_order_ids"]),
    )  # fmt: skip


def equity_from_row(m: Mapping[str, Any]) -> EquitySnapshot:
    """Return the :class:`EquitySnapshot` stored in an ``equity_snapshots`` row mapping."""
    return EquitySnapshot(
        time_ms=m["ts_ms"], equity=m["equity"], cash=m["cash"],
        positions=_decimal_map(m["positions"]), marks=_decimal_map(m["marks"]),
    )  # fmt: skip


def signal_from_row(m: Mapping[str, Any]) -> StreamSignal:
    """Return the :class:`StreamSignal` stored in a ``stream_signals`` row mapping."""
    return StreamSignal(
        stream=m["stream"], symbol=Symbol(m["symbol"]), time_ms=m["ts_ms"],
        state=StreamState(m["state"]), confidence=m["confidence"], flipped=bool(m["flipped"]),
        reason=m["reason"], indicators=m["indicators"],
    )  # fmt: skip


def prediction_from_row(m: Mapping[str, Any]) -> MlPositionPrediction:
    """Return the :class:`MlPositionPrediction` stored in an ``ml_position_predictions`` row mapping,
    with its outcome fields when the outcome was recorded."""
    return MlPositionPrediction(
        prediction_id=m["id"], model_name=m["model_name"], model_version=m["model_version"],
        prediction=m["prediction"], position_event_id=m["position_event_id"],
        trade_id=m["trade_id"], confidence=m["confidence"], features=m["features"],
        symbol=m["symbol"], time_ms=m["ts_ms"], recommended_action=m["recommended_action"],
        action_taken=m["action_taken"], outcome=m["outcome"],
        prediction_accuracy=m["prediction_accuracy"], outcome_time_ms=m["outcome_ts_ms"],
    )  # fmt: skip
