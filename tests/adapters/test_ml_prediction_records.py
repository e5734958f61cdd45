"""ML position predictions and their outcomes, through the event store on SQLite and PostgreSQL.

A run with two trades: BTC's (closed: its two predictions get outcomes) and ETH's (still open: its
prediction has none). The records go through the path a backtest uses (``BatchingWriter`` →
``SqlEventStore.write``), a batch is then retried as a whole, and the run is read back with
``ml_predictions``; the stored rows of both backends must be equal. Migration 0004 is checked on a
row written before it (its new columns are NULL) and for its downgrade.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import insert, pool, select
from sqlalchemy.engine import Connection

from tradebot.adapters.store import BatchingWriter, SqlEventStore, current_revision, upgrade
from tradebot.adapters.store import MlPositionPrediction as StoreMlPositionPrediction
from tradebot.adapters.store.engine import create_engine
from tradebot.adapters.store.migrate import alembic_config
from tradebot.adapters.store.tables import MlPositionPredictionRow
from tradebot.core.domain import (
    MlPositionPrediction,
    MlPredictionOutcome,
    PositionEvent,
    PositionEventType,
    Symbol,
    position_event_id,
)

RUN = "run-ml"
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z, a rebalance close
H = 3_600_000
TRADE_BTC = f"{RUN}-BTC/USDT-1"  # closed at T0 + 2h
TRADE_ETH = f"{RUN}-ETH/USDT-1"  # still open
_NS = uuid.UUID("3f0c2b7e-8d4a-4f7e-9c61-0b2a5d9e4c11")
TABLE = MlPositionPredictionRow.__table__


def pid(name: str) -> uuid.UUID:
    return uuid.uuid5(_NS, f"{RUN}:{name}")


ENTRY = PositionEvent(
    event_id=position_event_id(RUN, 1), seq=1, position_id=TRADE_BTC, event_type=PositionEventType.ENTRY,
    symbol=Symbol("BTC/USDT"), event_time_ms=T0, price=Decimal("24899.18"), size_before=Decimal("0"),
    size_after=Decimal("0.015"), trigger_reason="ema20 > ema50", action_taken="buy 0.015 BTC",
    stream="BTC:4h", indicators={"ema20": 24850.5},
)  # fmt: skip
P_BTC_1 = MlPositionPrediction(
    prediction_id=pid("btc-1"), model_name="exit-clf", model_version="3",
    prediction={"p_exit": 0.25, "horizon_h": 4}, position_event_id=ENTRY.event_id, trade_id=TRADE_BTC,
    confidence=0.75, features={"atr_fraction": 0.0125, "ema_gap": Decimal("12.5")}, symbol="BTC/USDT",
    time_ms=T0, recommended_action="hold", action_taken="kept 0.015 BTC",
)  # fmt: skip
P_ETH_1 = MlPositionPrediction(
    prediction_id=pid("eth-1"), model_name="exit-clf", model_version="3", prediction={"p_exit": 0.1},
    trade_id=TRADE_ETH, confidence=0.9, features={"atr_fraction": 0.02}, symbol="ETH/USDT", time_ms=T0,
    recommended_action="hold", action_taken="kept 0.4 ETH",
)  # fmt: skip
P_BTC_2 = MlPositionPrediction(
    prediction_id=pid("btc-2"), model_name="exit-clf", model_version="3", prediction={"p_exit": 0.85},
    trade_id=TRADE_BTC, confidence=float("nan"), symbol="BTC/USDT", time_ms=T0 + H,
    recommended_action="exit", action_taken="sold 0.015 BTC",
)  # fmt: skip
CLOSED_MS = T0 + 2 * H
O_BTC_1 = MlPredictionOutcome(
    prediction_id=P_BTC_1.prediction_id, trade_id=TRADE_BTC, outcome_time_ms=CLOSED_MS,
    outcome={"exited": True, "exit_price": Decimal("25400.50"), "r_multiple": 1.5}, prediction_accuracy=0.5,
)  # fmt: skip
O_BTC_2 = MlPredictionOutcome(
    prediction_id=P_BTC_2.prediction_id, trade_id=TRADE_BTC, outcome_time_ms=CLOSED_MS,
    outcome={"exited": True, "exit_price": Decimal("25400.50"), "r_multiple": 1.5}, prediction_accuracy=1.0,
)  # fmt: skip
BATCH_1 = [ENTRY, P_BTC_1, P_ETH_1]
BATCH_2 = [P_BTC_2, O_BTC_1, O_BTC_2]  # in engine order: each prediction before its outcome

STORED_OUTCOME = {"exited": True, "exit_price": "25400.50", "r_multiple": 1.5}  # Decimal → string
EXPECTED = sorted(
    [
        dataclasses.replace(
            P_BTC_1, features={"atr_fraction": 0.0125, "ema_gap": "12.5"}, outcome=STORED_OUTCOME,
            prediction_accuracy=0.5, outcome_time_ms=CLOSED_MS,
        ),
        P_ETH_1,  # its trade is open: no outcome
        dataclasses.replace(
            P_BTC_2, confidence=None, outcome=STORED_OUTCOME, prediction_accuracy=1.0,
            outcome_time_ms=CLOSED_MS,
        ),
    ],
    key=lambda p: (p.time_ms, p.prediction_id),  # two predictions at T0: the id decides
)  # fmt: skip


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each backend migrated to head (PostgreSQL: ``pg_url``, tests/conftest.py)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'events.db'}"
    return str(request.getfixturevalue("pg_url"))


async def _write_run(url: str) -> tuple[list[MlPositionPrediction], list[dict[str, Any]]]:
    # The scenario on one database; returns what ml_predictions reads and the stored rows.
    await upgrade(url)  # a no-op on the migrated PostgreSQL clone
    async with SqlEventStore(url) as store:
        await store.start_run(run_id=RUN, mode="backtest", config={}, version="0", started_ms=T0)
        async with BatchingWriter(store, max_batch=4, max_delay_s=60) as writer:
            await writer.put(BATCH_1)
            await writer.put(BATCH_2)  # 6 records in writes of 4: P_BTC_2 and its outcome split
        await store.write(BATCH_2)  # a retry of the whole batch (an ambiguous commit)
        await store.write(BATCH_1)  # the predictions again: ignored, their outcomes stay
        got = await store.ml_predictions(RUN)
        columns = [c for c in TABLE.columns if c.name != "created_at"]  # the server's clock
        async with store.engine.connect() as conn:
            rows = [dict(r) for r in (await conn.execute(select(*columns).order_by(TABLE.c.id))).mappings()]
    return got, rows


async def test_predictions_and_outcomes_read_back_with_real_values(store_url: str) -> None:
    got, rows = await _write_run(store_url)

    assert got == EXPECTED
    by_id = {p.prediction_id: p for p in got}
    btc_1, btc_2, eth = by_id[pid("btc-1")], by_id[pid("btc-2")], by_id[pid("eth-1")]
    assert (btc_1.outcome, btc_1.prediction_accuracy, btc_1.outcome_time_ms) == (
        {"exited": True, "exit_price": "25400.50", "r_multiple": 1.5}, 0.5, T0 + 2 * H,
    )  # fmt: skip
    assert (btc_2.prediction_accuracy, btc_2.recommended_action, btc_2.action_taken) == (
        1.0, "exit", "sold 0.015 BTC",
    )  # fmt: skip
    assert (eth.outcome, eth.prediction_accuracy, eth.outcome_time_ms) == (None, None, None)
    assert [p.time_ms for p in got] == [T0, T0, T0 + H]
    assert len(rows) == 3  # the retries added nothing
    assert {r["id"]: r["ts"].isoformat() for r in rows}[pid("btc-2")] == "2023-11-14T23:13:20+00:00"
    assert {r["id"]: r["ts_ms"] for r in rows}[pid("btc-2")] == T0 + H
    assert {r["id"]: r["outcome_ts_ms"] for r in rows}[pid("btc-1")] == CLOSED_MS


@pytest.mark.postgres
async def test_sqlite_and_postgresql_store_the_same_rows(tmp_path: Path, pg_url: str) -> None:
    lite = await _write_run(f"sqlite+aiosqlite:///{tmp_path / 'events.db'}")
    pg = await _write_run(pg_url)

    assert lite[0] == pg[0] == EXPECTED
    assert lite[1] == pg[1]
    assert len(pg[1]) == 3 and {r["symbol"] for r in pg[1]} == {"BTC/USDT", "ETH/USDT"}


async def test_outcome_fills_a_missing_trade_id_and_a_later_outcome_replaces(store_url: str) -> None:
    await upgrade(store_url)
    flat = MlPositionPrediction(
        prediction_id=pid("entry"), model_name="entry-clf", model_version="1", prediction={"p_up": 0.7},
        symbol="BTC/USDT", time_ms=T0, recommended_action="enter",
    )  # fmt: skip
    first = MlPredictionOutcome(prediction_id=flat.prediction_id, trade_id=TRADE_BTC,
                                outcome_time_ms=CLOSED_MS, outcome={"up": False}, prediction_accuracy=0.0)  # fmt: skip
    later = dataclasses.replace(first, trade_id="other", outcome={"up": True}, prediction_accuracy=1.0)
    async with SqlEventStore(store_url) as store:
        await store.start_run(run_id=RUN, mode="backtest", config={}, version="0", started_ms=T0)
        await store.write([first, flat])  # one batch: the insert is written before the update
        await store.write([later])

        (got,) = await store.ml_predictions(RUN)
    assert got == dataclasses.replace(
        flat, trade_id=TRADE_BTC, outcome={"up": True}, prediction_accuracy=1.0, outcome_time_ms=CLOSED_MS
    )  # the first outcome's trade id was kept: a trade id, once set, is never replaced


async def test_an_outcome_without_its_prediction_fails_and_writes_nothing(store_url: str) -> None:
    await upgrade(store_url)
    async with SqlEventStore(store_url) as store:
        await store.start_run(run_id=RUN, mode="backtest", config={}, version="0", started_ms=T0)
        await store.start_run(run_id="other-run", mode="backtest", config={}, version="0", started_ms=T0)
        store.bind_run(RUN)
        with pytest.raises(ValueError, match=f"row {P_BTC_2.prediction_id} of run 'run-ml' matched 0 rows"):
            await store.write([P_ETH_1, O_BTC_2])
        assert await store.ml_predictions(RUN) == []

        await store.write([P_BTC_2], run_id="other-run")  # the prediction of another run
        with pytest.raises(ValueError, match="matched 0 rows"):
            await store.write([O_BTC_2])
        assert [p.outcome for p in await store.ml_predictions("other-run")] == [None]


async def test_migration_0004_keeps_older_rows_and_downgrades(store_url: str) -> None:
    # an empty database (the PostgreSQL clone is at head: downgrade it first)
    await _downgrade(store_url, "base")
    await upgrade(store_url, "0003")
    old_id = uuid.UUID(int=7)
    engine = create_engine(store_url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(TABLE.metadata.tables["runs"]).values(
                run_id=RUN, mode="backtest", status="running", config={}, version="0",
                started_at=datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC), started_ms=T0,
            ))  # fmt: skip
            await conn.execute(insert(TABLE).values(  # the columns of revision 0003 only
                id=old_id, run_id=RUN, model_name="old", model_version="0", prediction={"p": 1},
            ))  # fmt: skip
    finally:
        await engine.dispose()
    await upgrade(store_url)
    async with SqlEventStore(store_url) as store:
        store.bind_run(RUN)
        await store.write([P_BTC_2])
        got = await store.ml_predictions(RUN)
    legacy = StoreMlPositionPrediction(
        prediction_id=old_id, model_name="old", model_version="0", prediction={"p": 1}
    )
    assert got == [dataclasses.replace(P_BTC_2, confidence=None), legacy]  # no time: last

    await _downgrade(store_url, "0003")
    assert await current_revision(store_url) == "0003"
    await upgrade(store_url)
    assert await current_revision(store_url) == "0004"


async def _downgrade(url: str, revision: str) -> None:
    config = alembic_config()

    def _run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    engine = create_engine(url, sqlite_pragmas=False, poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("accuracy", [-0.01, 1.5, float("nan")])
def test_accuracy_must_be_a_fraction(accuracy: float) -> None:
    with pytest.raises(ValueError, match="prediction_accuracy must be a fraction in \\[0, 1\\]"):
        dataclasses.replace(O_BTC_1, prediction_accuracy=accuracy)
    with pytest.raises(ValueError, match="prediction_accuracy must be a fraction"):
        dataclasses.replace(P_BTC_1, prediction_accuracy=accuracy)


def test_the_store_exports_the_core_records() -> None:
    from tradebot.adapters import store

    assert store.MlPositionPrediction is MlPositionPrediction
    assert store.MlPredictionOutcome is MlPredictionOutcome
