"""The write statements of the event store, built once per dialect (SQLite or PostgreSQL ``insert``).

Append-only tables get ``INSERT … ON CONFLICT DO NOTHING`` (a duplicate by any unique key is
ignored); ``orders`` are upserted by client order id but never back to an older ``updated_ms``;
``trades`` by position id; ``runs`` and ``engine_state`` by run id. ML predictions are inserted
like the append-only rows, and their outcomes are an ``UPDATE`` of the stored prediction by (id,
run) (:data:`ML_OUTCOMES`), written after every insert of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from sqlalchemy import Table, bindparam, func, update
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
ML_PREDICTIONS: Table = MlPositionPredictionRow.__table__  # type: ignore[assignment]
#: Tables written with ``INSERT … ON CONFLICT DO NOTHING`` (ML predictions are updated later too).
APPEND_ONLY: tuple[Table, ...] = tuple(
    t.__table__  # type: ignore[misc]
    for t in (FillRow, PositionEventRow, MlPositionPredictionRow, EquitySnapshotRow, StreamSignalRow)
)


@dataclass(frozen=True, slots=True)
class RowUpdate:
    """A write step that updates rows already stored (``UPDATE table … WHERE key``), not an insert.

    Its rows carry ``b_``-prefixed bind names (SQLAlchemy reserves the column names for the SET
    clause). Each row must match exactly one stored row (the event store checks the row count).
    """

    table: Table
    name: str


#: The outcome of an ML prediction: sets ``outcome``, ``prediction_accuracy`` and ``outcome_ts_ms``
#: (and a missing ``trade_id``) of the prediction ``b_id`` of run ``b_run_id``.
ML_OUTCOMES = RowUpdate(ML_PREDICTIONS, "outcome")
#: What one batch writes to: a table (insert or upsert) or a :class:`RowUpdate`.
WriteTarget: TypeAlias = Table | RowUpdate
#: Order in which one batch is written: parents before children (position events before the
#: predictions that refer to them), and every insert before the updates of the rows it adds.
WRITE_ORDER: tuple[WriteTarget, ...] = (ORDERS, TRADES, *APPEND_ONLY, ML_OUTCOMES)

_UPSERT_KEYS: dict[WriteTarget, str] = {ORDERS: "client_order_id", TRADES: "position_id"}


def prepare_statements(dialect: str) -> dict[WriteTarget, Any]:
    """Return the insert/upsert statement of every written table (and the updates) for ``dialect``.

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
    statements: dict[WriteTarget, Any] = {t: insert(t).on_conflict_do_nothing() for t in APPEND_ONLY}
    p = ML_PREDICTIONS.c
    statements[ML_OUTCOMES] = (
        update(ML_PREDICTIONS)
        .where(p.id == bindparam("b_id"), p.run_id == bindparam("b_run_id"))
        .values(
            outcome=bindparam("b_outcome"), prediction_accuracy=bindparam("b_prediction_accuracy"),
            outcome_ts_ms=bindparam("b_outcome_ts_ms"),
            trade_id=func.coalesce(p.trade_id, bindparam("b_trade_id")),
        )
    )  # fmt: skip
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


def one_row_per_key(table: WriteTarget, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return ``rows`` with one row per upsert key of ``table`` (all rows for append-only tables
    and updates).

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
