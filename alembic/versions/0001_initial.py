"""Initial schema: runs, orders, fills, trades, position_events, ml_position_predictions,
equity_snapshots, stream_signals, engine_state.

Written out explicitly (no imports from tradebot), so later model changes cannot alter it.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 16:06:23.176166
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

#: Lossless decimals: NUMERIC(38, 18) on PostgreSQL, decimal text on SQLite (types.DecimalType).
DECIMAL = sa.Numeric(38, 18).with_variant(sa.Text(), "sqlite")
#: Aware UTC timestamps (types.UTCDateTime); SQLite keeps the UTC wall time as text.
TIMESTAMP = sa.DateTime(timezone=True)
#: JSONB on PostgreSQL, JSON elsewhere.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
#: BIGINT identity on PostgreSQL, INTEGER rowid alias on SQLite.
SURROGATE_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "config",
            JSON,
            nullable=False,
        ),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("finished_ms", sa.BigInteger(), nullable=True),
        sa.Column(
            "summary",
            JSON,
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_runs")),
    )
    op.create_table(
        "engine_state",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column(
            "state",
            JSON,
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_engine_state_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_engine_state")),
    )
    op.create_table(
        "equity_snapshots",
        sa.Column("id", SURROGATE_KEY, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("ts", TIMESTAMP, nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("equity", DECIMAL, nullable=False),
        sa.Column("cash", DECIMAL, nullable=False),
        sa.Column(
            "positions",
            JSON,
            nullable=False,
        ),
        sa.Column(
            "marks",
            JSON,
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_equity_snapshots_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_equity_snapshots")),
        sa.UniqueConstraint("run_id", "ts", name=op.f("uq_equity_snapshots_run_id_ts")),
    )
    op.create_table(
        "fills",
        sa.Column("id", SURROGATE_KEY, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("venue", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("trade_id", sa.String(length=64), nullable=False),
        sa.Column("client_order_id", sa.String(length=64), nullable=False),
        sa.Column("exchange_order_id", sa.String(length=64), nullable=True),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("qty", DECIMAL, nullable=False),
        sa.Column("price", DECIMAL, nullable=False),
        sa.Column("fee", DECIMAL, nullable=False),
        sa.Column("fee_currency", sa.String(length=16), nullable=False),
        sa.Column("fee_quote", DECIMAL, nullable=False),
        sa.Column("ts", TIMESTAMP, nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            TIMESTAMP,
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_fills_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
        sa.UniqueConstraint("venue", "symbol", "trade_id", name=op.f("uq_fills_venue_symbol_trade_id")),
    )
    op.create_index("ix_fills_client_order_id", "fills", ["client_order_id"], unique=False)
    op.create_index("ix_fills_run_id_ts", "fills", ["run_id", "ts"], unique=False)

    op.create_table(
        "orders",
        sa.Column("client_order_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("order_type", sa.String(length=16), nullable=False),
        sa.Column("qty", DECIMAL, nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("filled_qty", DECIMAL, nullable=False),
        sa.Column(
            "avg_fill_price",
            DECIMAL,
            nullable=False,
        ),
        sa.Column("fees_quote", DECIMAL, nullable=False),
        sa.Column("ref_price", DECIMAL, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("intent_id", sa.String(length=64), nullable=False),
        sa.Column("exchange_order_id", sa.String(length=64), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_orders_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("client_order_id", name=op.f("pk_orders")),
    )
    op.create_index("ix_orders_run_id_symbol", "orders", ["run_id", "symbol"], unique=False)

    op.create_table(
        "position_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("trade_id", sa.String(length=64), nullable=True),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("stream", sa.String(length=32), nullable=True),
        sa.Column("event_time", TIMESTAMP, nullable=False),
        sa.Column("event_time_ms", sa.BigInteger(), nullable=False),
        sa.Column("price", DECIMAL, nullable=False),
        sa.Column("profit_pct", sa.Double(), nullable=True),
        sa.Column("r_multiple", sa.Double(), nullable=True),
        sa.Column("position_size", DECIMAL, nullable=False),
        sa.Column("size_before", DECIMAL, nullable=False),
        sa.Column("size_after", DECIMAL, nullable=False),
        sa.Column("trigger_reason", sa.Text(), nullable=False),
        sa.Column(
            "ml_prediction",
            JSON,
            nullable=True,
        ),
        sa.Column(
            "indicators",
            JSON,
            nullable=False,
        ),
        sa.Column("action_taken", sa.Text(), nullable=False),
        sa.Column(
            "amount_saved_or_gained",
            DECIMAL,
            nullable=True,
        ),
        sa.Column(
            "client_order_ids",
            JSON,
            nullable=False,
        ),
        sa.Column(
            "created_at",
            TIMESTAMP,
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_position_events_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_position_events")),
        sa.UniqueConstraint("run_id", "seq", name=op.f("uq_position_events_run_id_seq")),
    )
    op.create_index(
        "ix_position_events_run_id_event_type", "position_events", ["run_id", "event_type"], unique=False
    )
    op.create_index(
        "ix_position_events_run_id_symbol_event_time",
        "position_events",
        ["run_id", "symbol", "event_time"],
        unique=False,
    )
    op.create_index("ix_position_events_trade_id", "position_events", ["trade_id"], unique=False)

    op.create_table(
        "stream_signals",
        sa.Column("id", SURROGATE_KEY, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("ts", TIMESTAMP, nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("flipped", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "indicators",
            JSON,
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_stream_signals_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream_signals")),
        sa.UniqueConstraint("run_id", "stream", "ts", name=op.f("uq_stream_signals_run_id_stream_ts")),
    )
    op.create_index(
        "ix_stream_signals_run_id_symbol_ts", "stream_signals", ["run_id", "symbol", "ts"], unique=False
    )

    op.create_table(
        "trades",
        sa.Column("position_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("opened_at", TIMESTAMP, nullable=False),
        sa.Column("opened_ms", sa.BigInteger(), nullable=False),
        sa.Column("closed_at", TIMESTAMP, nullable=True),
        sa.Column("closed_ms", sa.BigInteger(), nullable=True),
        sa.Column(
            "entry_avg_price",
            DECIMAL,
            nullable=False,
        ),
        sa.Column(
            "exit_avg_price",
            DECIMAL,
            nullable=False,
        ),
        sa.Column("max_qty", DECIMAL, nullable=False),
        sa.Column("bought_qty", DECIMAL, nullable=False),
        sa.Column("sold_qty", DECIMAL, nullable=False),
        sa.Column("realized_pnl", DECIMAL, nullable=False),
        sa.Column("fees", DECIMAL, nullable=False),
        sa.Column("net_pnl", DECIMAL, nullable=False),
        sa.Column(
            "initial_risk_per_unit",
            DECIMAL,
            nullable=True,
        ),
        sa.Column("r_multiple", sa.Double(), nullable=True),
        sa.Column("mae_pct", sa.Double(), nullable=False),
        sa.Column("mfe_pct", sa.Double(), nullable=False),
        sa.Column("mfe_quote", DECIMAL, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_trades_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("position_id", name=op.f("pk_trades")),
    )
    op.create_index("ix_trades_run_id_symbol", "trades", ["run_id", "symbol"], unique=False)

    op.create_table(
        "ml_position_predictions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("position_event_id", sa.Uuid(), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("trade_id", sa.String(length=64), nullable=True),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column(
            "prediction",
            JSON,
            nullable=False,
        ),
        sa.Column("confidence", sa.Double(), nullable=True),
        sa.Column(
            "features",
            JSON,
            nullable=True,
        ),
        sa.Column(
            "created_at",
            TIMESTAMP,
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["position_event_id"],
            ["position_events.id"],
            name=op.f("fk_ml_position_predictions_position_event_id_position_events"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.run_id"],
            name=op.f("fk_ml_position_predictions_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ml_position_predictions")),
    )
    op.create_index(
        "ix_ml_position_predictions_trade_id", "ml_position_predictions", ["trade_id"], unique=False
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_ml_position_predictions_trade_id", table_name="ml_position_predictions")
    op.drop_table("ml_position_predictions")
    op.drop_index("ix_trades_run_id_symbol", table_name="trades")
    op.drop_table("trades")
    op.drop_index("ix_stream_signals_run_id_symbol_ts", table_name="stream_signals")
    op.drop_table("stream_signals")
    op.drop_index("ix_position_events_trade_id", table_name="position_events")
    op.drop_index("ix_position_events_run_id_symbol_event_time", table_name="position_events")
    op.drop_index("ix_position_events_run_id_event_type", table_name="position_events")
    op.drop_table("position_events")
    op.drop_index("ix_orders_run_id_symbol", table_name="orders")
    op.drop_table("orders")
    op.drop_index("ix_fills_run_id_ts", table_name="fills")
    op.drop_index("ix_fills_client_order_id", table_name="fills")
    op.drop_table("fills")
    op.drop_table("equity_snapshots")
    op.drop_table("engine_state")
    op.drop_table("runs")
