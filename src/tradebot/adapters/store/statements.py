"""The write statements of the event store, built once per dialect (SQLite or PostgreSQL ``insert``).

Append-only tables get ``INSERT … ON CONFLICT DO NOTHING`` (a duplicate by any unique key is
ignored); ``orders`` are upserted by client order id but never back to an older ``updated_ms``;
``trades`` by position id; ``runs`` and ``engine_state`` by run id.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from tradebot.adapters.store.tables import (
    EngineStateRow,
    EquitySnapshotRow,
    FillRow,
    MlPositionPredictionRow,
    OrderRow,
    PositionEventRow,
    Run,
    StreamSignalRow,
    TradeRow,
)
from tradebot.errors import ConfigError

RUNS: Table = Run.__table__  # type: ignore[assignment]
ORDERS: Table = OrderRow.__table__  # type: ignore[assignment]
TRADES: Table = TradeRow.__table__  # type: ignore[assignment]
ENGINE_STATE: Table = EngineStateRow.__table__  # type: ignore[assignment]
APPEND_ONLY: tuple[Table, ...] = tuple(
    t.__table__  # type: ignore[misc]
    for t in (FillRow, PositionEventRow, MlPositionPredictionRow, EquitySnapshotRow, StreamSignalRow)
)
#: Order in which one batch is written: parents before children (predictions → position events).
WRITE_ORDER: tuple[Table, ...] = (ORDERS, TRADES, *APPEND_ONLY)

_UPSERT_KEYS = {ORDERS: "client_order_id", TRADES: "position_id"}


def prepare_statements(dialect: str) -> dict[Table, Any]:
    """Return the insert/upsert statement of every written table for ``dialect``.

    Raises
    ------
    ConfigError
        If ``dialect`` is neither ``sqlite`` nor ``postgresql``.
    """
    if dialect == "sqlite":
        insert: Any = sqlite.insert
    elif dialect == "postgresql":
        insert = postgresql.insert
    else:
        raise ConfigError(f"event store supports sqlite and postgresql, was {dialect!r}")
    statements: dict[Table, Any] = {t: insert(t).on_conflict_do_nothing() for t in APPEND_ONLY}
    orders = insert(ORDERS)
    keep = {"client_order_id", "run_id", "created_at", "created_ms"}
    statements[ORDERS] = orders.on_conflict_do_update(
        index_elements=["client_order_id"],
        set_={c.name: orders.excluded[c.name] for c in ORDERS.columns if c.name not in keep},
        where=ORDERS.c.updated_ms <= orders.excluded.updated_ms,
    )
    trades = insert(TRADES)
    statements[TRADES] = trades.on_conflict_do_update(
        index_elements=["position_id"],
        set_={
            c.name: trades.excluded[c.name] for c in TRADES.columns if c.name not in ("position_id", "run_id")
        },
    )
    runs = insert(RUNS)
    statements[RUNS] = runs.on_conflict_do_update(
        index_elements=["run_id"],
        set_={
            "mode": runs.excluded.mode, "config": runs.excluded.config, "version": runs.excluded.version,
            "status": "running", "finished_at": None, "finished_ms": None, "summary": None,
        },
    )  # fmt: skip
    state = insert(ENGINE_STATE)
    statements[ENGINE_STATE] = state.on_conflict_do_update(
        index_elements=["run_id"],
        set_={"updated_at": state.excluded.updated_at, "updated_ms": state.excluded.updated_ms,
              "state": state.excluded.state},
    )  # fmt: skip
    return statements


def one_row_per_key(table: Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return ``rows`` with one row per upsert key of ``table`` (all rows for append-only tables).

    One upsert statement must not touch a row twice (PostgreSQL refuses), so the last row per
    key is kept, except that an order never goes back to an older ``updated_ms``.
    """
    key = _UPSERT_KEYS.get(table)
    if key is None:
        return rows
    last: dict[Any, dict[str, Any]] = {}
    for row in rows:
        seen = last.get(row[key])
        if seen is None or table is not ORDERS or row["updated_ms"] >= seen["updated_ms"]:
            last[row[key]] = row
    return list(last.values())
