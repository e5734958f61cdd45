"""SQLAlchemy 2.0 typed models of the event store (the schema ``alembic/versions`` creates).

Money and quantities are :class:`~tradebot.adapters.store.types.DecimalType` (quote currency or
base units as named), times are aware UTC datetimes (:class:`UTCDateTime`) plus the exact int ms
where the engine reasons in ms. Append-only tables: ``fills``, ``position_events``,
``equity_snapshots``, ``stream_signals``. ``ml_position_predictions`` is inserted, then updated
once with the prediction's outcome (by id). Upserted tables: ``runs``, ``orders`` (by
``client_order_id``), ``trades`` (by ``position_id``), ``engine_state`` (by run).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tradebot.adapters.store.types import DecimalType, JSONType, UTCDateTime

#: Deterministic constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Surrogate integer key: BIGINT on PostgreSQL, INTEGER (rowid alias, autoincrementing) on SQLite.
SurrogateKey = BigInteger().with_variant(Integer(), "sqlite")

_ID = 64  # length of run ids, client order ids, position ids
_SYMBOL = 32


class Base(DeclarativeBase):
    """Declarative base with the project's naming convention and type map."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads it as a class attribute)
        Decimal: DecimalType(),
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
        uuid.UUID: Uuid(),
        float: Double(),
        str: Text(),
    }


def _run_fk() -> Mapped[str]:
    return mapped_column(String(_ID), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False)


class Run(Base):
    """One run of the engine (backtest, paper, testnet or live session series)."""

    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # running | completed | failed
    config: Mapped[dict[str, Any]]
    version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    started_ms: Mapped[int] = mapped_column(BigInteger)
    finished_at: Mapped[datetime | None]
    finished_ms: Mapped[int | None] = mapped_column(BigInteger)
    summary: Mapped[dict[str, Any] | None]
    #: Wall clock of the first start (ms UTC; revision 0002): orders runs that share ``started_ms``.
    created_ms: Mapped[int | None] = mapped_column(BigInteger)


class OrderRow(Base):
    """Latest known state of one order; inserted when planned, then upserted on every update."""

    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_run_id_symbol", "run_id", "symbol"),)

    client_order_id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    run_id: Mapped[str] = _run_fk()
    symbol: Mapped[str] = mapped_column(String(_SYMBOL))
    side: Mapped[str] = mapped_column(String(8))
    order_type: Mapped[str] = mapped_column(String(16))
    qty: Mapped[Decimal]  # base units
    status: Mapped[str] = mapped_column(String(24))
    filled_qty: Mapped[Decimal]  # base units
    avg_fill_price: Mapped[Decimal]  # quote currency
    fees_quote: Mapped[Decimal]
    ref_price: Mapped[Decimal]  # quote currency
    #: Trigger price of a stop order, quote currency; NULL for other types (revision 0003).
    stop_price: Mapped[Decimal | None]
    #: Limit price of a limit or stop-limit order, quote currency; NULL for others (revision 0003).
    limit_price: Mapped[Decimal | None]
    reason: Mapped[str]
    intent_id: Mapped[str] = mapped_column(String(_ID))
    exchange_order_id: Mapped[str | None] = mapped_column(String(_ID))
    status_reason: Mapped[str]
    created_at: Mapped[datetime]
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class FillRow(Base):
    """One execution, unique per (venue, symbol, trade id). Insert-only."""

    __tablename__ = "fills"
    __table_args__ = (
        UniqueConstraint("venue", "symbol", "trade_id"),
        Index("ix_fills_run_id_ts", "run_id", "ts"),
        Index("ix_fills_client_order_id", "client_order_id"),
    )

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = _run_fk()
    venue: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(_SYMBOL))
    trade_id: Mapped[str] = mapped_column(String(_ID))
    client_order_id: Mapped[str] = mapped_column(String(_ID))
    exchange_order_id: Mapped[str | None] = mapped_column(String(_ID))
    side: Mapped[str] = mapped_column(String(8))
    qty: Mapped[Decimal]  # base units
    price: Mapped[Decimal]  # quote currency
    fee: Mapped[Decimal]  # in fee_currency
    fee_currency: Mapped[str] = mapped_column(String(16))
    fee_quote: Mapped[Decimal]
    ts: Mapped[datetime]
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class TradeRow(Base):
    """One position lifecycle (flat → open → flat) of one asset; upserted by position id."""

    __tablename__ = "trades"
    __table_args__ = (Index("ix_trades_run_id_symbol", "run_id", "symbol"),)

    position_id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    run_id: Mapped[str] = _run_fk()
    symbol: Mapped[str] = mapped_column(String(_SYMBOL))
    opened_at: Mapped[datetime]
    opened_ms: Mapped[int] = mapped_column(BigInteger)
    closed_at: Mapped[datetime | None]
    closed_ms: Mapped[int | None] = mapped_column(BigInteger)
    entry_avg_price: Mapped[Decimal]
    exit_avg_price: Mapped[Decimal]
    max_qty: Mapped[Decimal]
    bought_qty: Mapped[Decimal]
    sold_qty: Mapped[Decimal]
    realized_pnl: Mapped[Decimal]
    fees: Mapped[Decimal]
    net_pnl: Mapped[Decimal]
    initial_risk_per_unit: Mapped[Decimal | None]
    r_multiple: Mapped[float | None]
    mae_pct: Mapped[float]  # percent
    mfe_pct: Mapped[float]  # percent
    mfe_quote: Mapped[Decimal]


class PositionEventRow(Base):
    """One position decision (STRATEGY.md §6). Insert-only; the seed schema's columns plus run scoping."""

    __tablename__ = "position_events"
    __table_args__ = (
        UniqueConstraint("run_id", "seq"),
        Index("ix_position_events_run_id_symbol_event_time", "run_id", "symbol", "event_time"),
        Index("ix_position_events_trade_id", "trade_id"),
        Index("ix_position_events_run_id_event_type", "run_id", "event_type"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    run_id: Mapped[str] = _run_fk()
    seq: Mapped[int] = mapped_column(BigInteger)
    trade_id: Mapped[str | None] = mapped_column(String(_ID))  # the position id
    event_type: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(_SYMBOL))
    stream: Mapped[str | None] = mapped_column(String(32))
    event_time: Mapped[datetime]
    event_time_ms: Mapped[int] = mapped_column(BigInteger)
    price: Mapped[Decimal]  # quote currency
    profit_pct: Mapped[float | None]  # percent of average entry
    r_multiple: Mapped[float | None]
    position_size: Mapped[Decimal]  # = size_after, base units
    size_before: Mapped[Decimal]
    size_after: Mapped[Decimal]
    trigger_reason: Mapped[str]
    ml_prediction: Mapped[dict[str, Any] | None]
    indicators: Mapped[dict[str, Any]]
    action_taken: Mapped[str]
    amount_saved_or_gained: Mapped[Decimal | None]  # quote currency
    client_order_ids: Mapped[list[Any]]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class MlPositionPredictionRow(Base):
    """A model's prediction about a position (seed schema, extended in revision 0004).

    Inserted once (a duplicate id is ignored), then updated once with the outcome (``outcome``,
    ``prediction_accuracy``, ``outcome_ts_ms``) when the trade it was about has closed.
    """

    __tablename__ = "ml_position_predictions"
    __table_args__ = (Index("ix_ml_position_predictions_trade_id", "trade_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    position_event_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("position_events.id", ondelete="SET NULL")
    )
    run_id: Mapped[str | None] = mapped_column(String(_ID), ForeignKey("runs.run_id", ondelete="CASCADE"))
    trade_id: Mapped[str | None] = mapped_column(String(_ID))
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    prediction: Mapped[dict[str, Any]]
    confidence: Mapped[float | None]
    features: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # revision 0004: where and when the prediction was made, and what came of it (all nullable)
    symbol: Mapped[str | None] = mapped_column(String(_SYMBOL))
    ts: Mapped[datetime | None]  # the rebalance-clock close the prediction was made at
    ts_ms: Mapped[int | None] = mapped_column(BigInteger)  # = ts, ms UTC
    recommended_action: Mapped[str | None] = mapped_column(String(32))
    action_taken: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[dict[str, Any] | None]  # the actual values, set by the outcome update
    prediction_accuracy: Mapped[float | None]  # fraction in [0, 1]
    outcome_ts_ms: Mapped[int | None] = mapped_column(BigInteger)  # when the trade closed, ms UTC


class EquitySnapshotRow(Base):
    """Portfolio value at an event time. Insert-only, one per (run, ts)."""

    __tablename__ = "equity_snapshots"
    __table_args__ = (UniqueConstraint("run_id", "ts"),)

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = _run_fk()
    ts: Mapped[datetime]
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    equity: Mapped[Decimal]  # quote currency
    cash: Mapped[Decimal]  # quote currency
    positions: Mapped[dict[str, Any]]  # symbol -> base qty as decimal string
    marks: Mapped[dict[str, Any]]  # symbol -> mark price as decimal string


class StreamSignalRow(Base):
    """A trend stream's state at one of its candle closes. Insert-only, one per (run, stream, ts)."""

    __tablename__ = "stream_signals"
    __table_args__ = (
        UniqueConstraint("run_id", "stream", "ts"),
        Index("ix_stream_signals_run_id_symbol_ts", "run_id", "symbol", "ts"),
    )

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = _run_fk()
    stream: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(_SYMBOL))
    ts: Mapped[datetime]
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(8))
    confidence: Mapped[float]
    flipped: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str]
    indicators: Mapped[dict[str, Any]]


class EngineStateRow(Base):
    """The daemon's last persisted engine state (JSON), one row per run, for resume."""

    __tablename__ = "engine_state"

    run_id: Mapped[str] = mapped_column(
        String(_ID), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    updated_at: Mapped[datetime]
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[dict[str, Any]]
