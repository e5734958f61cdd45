"""Contract suite of the SQL event store, run against SQLite and PostgreSQL (fixtures in conftest.py).

Every test gets a fresh database; values are written through the public API and read back
exactly (``==`` on Decimal, and the canonical decimal string).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from tradebot.adapters.store import (
    BatchingWriter,
    MlPositionPrediction,
    SqlEventStore,
    WriterQueueFull,
    check_current,
    current_revision,
    upgrade,
)
from tradebot.adapters.store.migrate import head_revision
from tradebot.adapters.store.tables import Base, FillRow, PositionEventRow
from tradebot.core.domain import (
    ClientOrderId,
    EquitySnapshot,
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
    position_event_id,
)
from tradebot.errors import ConfigError

RUN = "run-contract"
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
BTC = Symbol("BTC/USDT")


def fill(trade_id: str = "t1", **overrides: object) -> Fill:
    values: dict[str, object] = dict(
        venue="binance", symbol=BTC, trade_id=TradeId(trade_id), client_order_id=ClientOrderId("run-1-1"),
        side=Side.BUY, qty=Decimal("0.00001"), price=Decimal("24899.18"), fee_quote=Decimal("1E-12"),
        ts_ms=T0 + 123, fee=Decimal("123456789.123456789012"), fee_currency="BNB",
    )  # fmt: skip
    values.update(overrides)
    return Fill(**values)  # type: ignore[arg-type]


def event(seq: int, **overrides: object) -> PositionEvent:
    values: dict[str, object] = dict(
        event_id=position_event_id(RUN, seq), seq=seq, position_id="run-BTC/USDT-1",
        event_type=PositionEventType.ENTRY, symbol=BTC, event_time_ms=T0 + seq * 3_600_000,
        price=Decimal("24899.18"), size_before=Decimal("0"), size_after=Decimal("0.01500"),
        trigger_reason="ema20 > ema50", action_taken="buy 0.01500 BTC", stream="BTC:4h",
        profit_pct=2.5, r_multiple=None, indicators={"ema20": 24850.5, "atr": 312.25},
        ml_prediction=None, amount_saved_or_gained=Decimal("12.5"), client_order_ids=("run-1-1", "run-1-2"),
    )  # fmt: skip
    values.update(overrides)
    return PositionEvent(**values)  # type: ignore[arg-type]


def order(status: OrderStatus, updated_ms: int, **overrides: object) -> OrderRecord:
    values: dict[str, object] = dict(
        client_order_id=ClientOrderId("run-1-1"), symbol=BTC, side=Side.BUY, order_type=OrderType.MARKET,
        qty=Decimal("0.02"), status=status, filled_qty=Decimal("0"), avg_fill_price=Decimal("0"),
        fees_quote=Decimal("0"), reason="rebalance", intent_id="run-1", created_ms=T0,
        updated_ms=updated_ms, ref_price=Decimal("24899.18"),
    )  # fmt: skip
    values.update(overrides)
    return OrderRecord(**values)  # type: ignore[arg-type]


def trade(closed_ms: int | None, **overrides: object) -> TradeRecord:
    values: dict[str, object] = dict(
        position_id="run-BTC/USDT-1", symbol=BTC, opened_ms=T0, closed_ms=closed_ms,
        entry_avg_price=Decimal("24899.18"), exit_avg_price=Decimal("0"), max_qty=Decimal("0.015"),
        bought_qty=Decimal("0.015"), sold_qty=Decimal("0"), realized_pnl=Decimal("0"),
        fees=Decimal("0.37348770"), net_pnl=Decimal("-0.37348770"), initial_risk_per_unit=None,
        r_multiple=None, mae_pct=-1.25, mfe_pct=3.5, mfe_quote=Decimal("13.07"),
    )  # fmt: skip
    values.update(overrides)
    return TradeRecord(**values)  # type: ignore[arg-type]


def snapshot(time_ms: int, equity: str) -> EquitySnapshot:
    return EquitySnapshot(
        time_ms=time_ms, equity=Decimal(equity), cash=Decimal("100.5"),
        positions={"BTC/USDT": Decimal("0.01500")}, marks={"BTC/USDT": Decimal("24899.18")},
    )  # fmt: skip


@pytest.fixture
async def store(db_url: str):
    async with SqlEventStore(db_url) as s:
        await s.start_run(run_id=RUN, mode="backtest", config={"fee": Decimal("0.001")}, version="0.1.0",
                          started_ms=T0)  # fmt: skip
        yield s


# ---- migrations -------------------------------------------------------------------------------


async def test_upgrade_to_head_creates_the_schema_of_the_models(empty_db_url: str) -> None:
    assert await current_revision(empty_db_url) is None
    assert await check_current(empty_db_url) is False

    await upgrade(empty_db_url)

    assert await current_revision(empty_db_url) == head_revision() == "0004"
    assert await check_current(empty_db_url) is True
    async with SqlEventStore(empty_db_url) as s, s.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(
                MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata
            )
        )
    assert diff == []


async def test_open_refuses_a_database_below_head(empty_db_url: str) -> None:
    store = SqlEventStore(empty_db_url)
    with pytest.raises(ConfigError, match="tradebot db upgrade"):
        await store.open()


# ---- values -----------------------------------------------------------------------------------


async def test_decimals_round_trip_exactly(store: SqlEventStore) -> None:
    big = Decimal("999999999999999.123456789012345678")  # 1e15 with 18 decimals
    await store.write([fill(), fill("t2", price=big, qty=Decimal("24899.180000"))])

    first, second = await store.fills(RUN)
    assert first == fill()
    assert (str(first.price), str(first.qty), str(first.fee_quote), str(first.fee)) == (
        "24899.18", "0.00001", "1E-12", "123456789.123456789012",
    )  # fmt: skip
    assert second.price == big and str(second.price) == "999999999999999.123456789012345678"
    assert str(second.qty) == "24899.18"  # canonical: trailing zeros dropped, value unchanged


async def test_decimals_beyond_18_places_round_half_even_on_every_backend(store: SqlEventStore) -> None:
    await store.write([
        fill("t1", fee=Decimal("0.0000000000000000015")),  # 1.5e-18 → 2e-18
        fill("t2", fee=Decimal("0.0000000000000000025")),  # 2.5e-18 → 2e-18
        fill("t3", fee=Decimal("1.0000000000000000004")),  # → 1
    ])  # fmt: skip
    assert [f.fee for f in await store.fills(RUN)] == [Decimal("2E-18"), Decimal("2E-18"), Decimal("1")]


async def test_decimal_columns_refuse_floats_and_out_of_range_values(store: SqlEventStore) -> None:
    with pytest.raises(Exception, match="needs a Decimal, int or str, was float"):
        await store.write([trade(None, mfe_quote=13.07)])
    with pytest.raises(Exception, match="holds magnitudes below 100000000000000000000"):
        await store.write([trade(None, mfe_quote=Decimal("1E20"))])
    assert await store.trades(RUN) == []


async def test_times_are_aware_utc_and_ids_are_uuids(store: SqlEventStore) -> None:
    await store.write([event(1), fill()])

    async with store.engine.connect() as conn:
        row = (await conn.execute(select(PositionEventRow.id, PositionEventRow.event_time,
                                         PositionEventRow.created_at))).one()  # fmt: skip
        fill_ts = (await conn.execute(select(FillRow.ts))).scalar_one()
    assert isinstance(row.id, uuid.UUID) and row.id == position_event_id(RUN, 1)
    assert row.event_time == datetime(2023, 11, 14, 23, 13, 20, tzinfo=UTC)
    assert row.event_time.utcoffset() is not None and row.event_time.tzinfo == UTC
    assert row.created_at.tzinfo == UTC
    assert fill_ts == datetime(2023, 11, 14, 22, 13, 20, 123_000, tzinfo=UTC) and fill_ts.tzinfo == UTC
    run = await store.get_run(RUN)
    assert run is not None and run.started_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


# ---- idempotent writes ------------------------------------------------------------------------


async def test_reinserting_the_same_fill_or_event_adds_no_row_and_raises_nothing(
    store: SqlEventStore,
) -> None:
    await store.write([fill(), fill(), event(1), event(1)])
    await store.write([fill(), event(1)])
    # the same seq under another id is the same event slot: ignored too
    await store.write([event(1, event_id=uuid.UUID(int=7), trigger_reason="other")])

    assert await store.fills(RUN) == [fill()]
    assert await store.position_events(RUN) == [event(1)]


async def test_position_events_read_back_equal_and_filter(store: SqlEventStore) -> None:
    events = [
        event(1),
        event(2, event_type=PositionEventType.STOP_SET, symbol=Symbol("ETH/USDT"), ml_prediction={"p": 0.75}),
        event(3, event_type=PositionEventType.EXIT, profit_pct=None, r_multiple=1.75,
              amount_saved_or_gained=None, client_order_ids=(), indicators={}),
    ]  # fmt: skip
    await store.write(list(reversed(events)))

    assert await store.position_events(RUN) == events
    assert await store.position_events(RUN, symbol="BTC/USDT") == [events[0], events[2]]
    assert await store.position_events(RUN, event_types=["exit", PositionEventType.ENTRY]) == [
        events[0],
        events[2],
    ]
    start, end = events[1].event_time_ms, events[2].event_time_ms
    assert await store.position_events(RUN, start_ms=start, end_ms=end) == [events[1]]
    assert await store.position_events("another-run") == []


async def test_ml_prediction_links_to_its_position_event(store: SqlEventStore) -> None:
    prediction = MlPositionPrediction(
        prediction_id=uuid.UUID(int=42), model_name="exit-clf", model_version="3",
        prediction={"exit": 0.8}, position_event_id=position_event_id(RUN, 1), trade_id="run-BTC/USDT-1",
        confidence=0.8, features={"atr": 312.25},
    )  # fmt: skip
    await store.write([prediction, event(1)])  # the parent is written first whatever the order
    assert await store.ml_predictions(RUN) == [prediction]


async def test_order_upserts_progress_and_ignore_stale_updates(store: SqlEventStore) -> None:
    created = order(OrderStatus.PENDING_SUBMIT, T0)
    accepted = order(OrderStatus.ACCEPTED, T0 + 10, exchange_order_id="8391")
    partial = order(OrderStatus.PARTIALLY_FILLED, T0 + 20, exchange_order_id="8391", filled_qty=Decimal("0.01"),
                    avg_fill_price=Decimal("24899.18"), fees_quote=Decimal("0.2489918"))  # fmt: skip
    filled = order(OrderStatus.FILLED, T0 + 30, exchange_order_id="8391", filled_qty=Decimal("0.02"),
                   avg_fill_price=Decimal("24899.19"), fees_quote=Decimal("0.4979837"))  # fmt: skip

    await store.write([created])
    assert await store.orders(RUN) == [created]
    await store.write([accepted])
    assert await store.orders(RUN) == [accepted]
    await store.write([filled, partial])  # one batch, newest first: the newest wins
    assert await store.orders(RUN) == [filled]
    await store.write([accepted])  # a late report does not go back
    assert await store.orders(RUN) == [filled]


async def test_a_stop_order_keeps_its_type_and_trigger_price(store: SqlEventStore) -> None:
    stop = order(OrderStatus.ACCEPTED, T0 + 10, client_order_id=ClientOrderId("run-2-1"), side=Side.SELL,
                 order_type=OrderType.STOP_LIMIT, stop_price=Decimal("24150.37"), limit_price=Decimal("24050"),
                 reason="stop")  # fmt: skip
    plain = order(OrderStatus.FILLED, T0 + 20)
    await store.write([stop, plain])
    by_id = {o.client_order_id: o for o in await store.orders(RUN)}
    assert by_id == {"run-2-1": stop, "run-1-1": plain}
    assert (by_id["run-2-1"].order_type.value, str(by_id["run-2-1"].stop_price)) == ("stop_limit", "24150.37")
    assert str(by_id["run-2-1"].limit_price) == "24050"
    assert (by_id["run-1-1"].stop_price, by_id["run-1-1"].limit_price) == (None, None)


async def test_trades_upsert_by_position_id(store: SqlEventStore) -> None:
    opened = trade(None)
    closed = trade(T0 + 7_200_000, exit_avg_price=Decimal("25400.5"), sold_qty=Decimal("0.015"),
                   realized_pnl=Decimal("7.5198"), net_pnl=Decimal("7.14631230"), r_multiple=1.5,
                   initial_risk_per_unit=Decimal("310.12"))  # fmt: skip
    await store.write([opened])
    await store.write([closed])
    assert await store.trades(RUN) == [closed]


async def test_equity_curve_is_in_time_order_with_decimal_maps(store: SqlEventStore) -> None:
    snaps = [snapshot(T0 + 3 * 3_600_000, "1003.25"), snapshot(T0, "1000"), snapshot(T0 + 3_600_000, "999.5")]
    await store.write(snaps)
    await store.write([snapshot(T0, "5")])  # same (run, ts): ignored

    curve = await store.equity_curve(RUN)
    assert [s.time_ms for s in curve] == [T0, T0 + 3_600_000, T0 + 3 * 3_600_000]
    assert [s.equity for s in curve] == [Decimal("1000"), Decimal("999.5"), Decimal("1003.25")]
    assert curve[0] == snaps[1] and curve[0].positions == {"BTC/USDT": Decimal("0.015")}


async def test_stream_signals_round_trip_once_per_stream_and_time(store: SqlEventStore) -> None:
    sig = StreamSignal(stream="BTC:4h", symbol=BTC, time_ms=T0, state=StreamState.IN, confidence=0.625,
                       flipped=True, reason="ema20 > ema50", indicators={"ema20": 1.5, "nan": float("nan")})  # fmt: skip
    other = StreamSignal(stream="BTC:1d", symbol=BTC, time_ms=T0, state=StreamState.OUT, confidence=0.0,
                         flipped=False, reason="warming up: 12/50 candles", indicators={})  # fmt: skip
    await store.write([sig, other, sig])

    got = await store.stream_signals(RUN)
    assert [s.stream for s in got] == ["BTC:1d", "BTC:4h"]
    assert got[1].indicators == {"ema20": 1.5, "nan": None}  # non-finite floats are stored as null
    assert await store.stream_signals(RUN, stream="BTC:1d") == [other]


async def test_write_refuses_unknown_records_and_writes_nothing(store: SqlEventStore) -> None:
    with pytest.raises(TypeError, match="cannot persist a str"):
        await store.write([fill(), "not a record"])
    assert await store.fills(RUN) == []


# ---- runs and engine state --------------------------------------------------------------------


async def test_runs_start_finish_restart_and_list_newest_first(store: SqlEventStore) -> None:
    await store.start_run(run_id="later", mode="paper", config={}, version="0.1.0", started_ms=T0 + 1)
    await store.finish_run(run_id=RUN, status="completed", summary={"final_equity": "1003.25"},
                           finished_ms=T0 + 5_000)  # fmt: skip

    done = await store.get_run(RUN)
    assert done is not None and (done.status, done.finished_ms, done.summary) == (
        "completed", T0 + 5_000, {"final_equity": "1003.25"},
    )  # fmt: skip
    assert done.config == {"fee": "0.001"}
    assert [r.run_id for r in await store.list_runs()] == ["later", RUN]
    assert await store.get_run("missing") is None

    await store.start_run(run_id=RUN, mode="backtest", config={}, version="0.2.0", started_ms=T0 + 99)
    again = await store.get_run(RUN)
    assert again is not None and (again.status, again.started_ms, again.finished_ms, again.version) == (
        "running", T0, None, "0.2.0",
    )  # fmt: skip
    with pytest.raises(ValueError, match="was 'missing'"):
        await store.finish_run(run_id="missing", status="failed", summary={}, finished_ms=T0)
    with pytest.raises(ValueError, match="was 'done'"):
        await store.finish_run(run_id=RUN, status="done", summary={}, finished_ms=T0)


async def test_engine_state_saves_replaces_and_loads(store: SqlEventStore) -> None:
    assert await store.load_engine_state(RUN) is None
    await store.save_engine_state(RUN, {"cash": "1000.5", "positions": {"BTC/USDT": "0.015"}}, updated_ms=T0)
    await store.save_engine_state(RUN, {"cash": "999.25", "seq": 17}, updated_ms=T0 + 1)

    assert await store.load_engine_state(RUN) == {"cash": "999.25", "seq": 17}
    with pytest.raises(ValueError, match="not strict JSON"):
        await store.save_engine_state(RUN, {"cash": Decimal("1")})


async def test_commit_step_stores_the_records_and_the_state_in_one_transaction(store: SqlEventStore) -> None:
    await store.commit_step([event(1), fill("c1"), event(2)], run_id=RUN, state={"seq": 2}, updated_ms=T0)
    assert [e.seq for e in await store.position_events(RUN)] == [1, 2]
    assert [f.trade_id for f in await store.fills(RUN)] == ["c1"]
    assert await store.load_engine_state(RUN) == {"seq": 2}
    await store.commit_step([], run_id=RUN, state={"seq": 2, "t": 1}, updated_ms=T0 + 1)  # the state alone
    assert await store.load_engine_state(RUN) == {"seq": 2, "t": 1}

    # a record the database refuses (written after the fill and the event): nothing is kept
    with pytest.raises(Exception, match="holds magnitudes below 100000000000000000000"):
        await store.commit_step([fill("c2"), event(3), snapshot(T0, "1E20")],
                                run_id=RUN, state={"seq": 3}, updated_ms=T0 + 2)  # fmt: skip
    with pytest.raises(ValueError, match="not strict JSON"):
        await store.commit_step([event(3)], run_id=RUN, state={"seq": Decimal(3)}, updated_ms=T0 + 2)
    assert [e.seq for e in await store.position_events(RUN)] == [1, 2]
    assert [f.trade_id for f in await store.fills(RUN)] == ["c1"]
    assert await store.load_engine_state(RUN) == {"seq": 2, "t": 1}


# ---- batching writer --------------------------------------------------------------------------


async def _count_fills(store: SqlEventStore) -> int:
    async with store.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(FillRow))).scalar_one()


async def test_writer_flush_writes_everything_put_before(store: SqlEventStore) -> None:
    async with BatchingWriter(store, max_batch=7, max_delay_s=60) as writer:
        for i in range(20):
            await writer.put([fill(f"t{i}")])
        await writer.flush()
        assert await _count_fills(store) == 20
        assert writer.records_written == 20


async def test_writer_writes_after_max_delay_without_flush(store: SqlEventStore) -> None:
    async with BatchingWriter(store, max_batch=1000, max_delay_s=0.05) as writer:
        await writer.put([fill("t1"), event(1)])
        for _ in range(100):
            await asyncio.sleep(0.02)
            if writer.records_written == 2:
                break
        assert await store.fills(RUN) == [fill("t1")]


async def test_writer_close_drains_the_queue(store: SqlEventStore) -> None:
    async with BatchingWriter(store, max_batch=1000, max_delay_s=60) as writer:
        writer.put_nowait([fill(f"t{i}") for i in range(2500)])
        writer.put_nowait([event(1)])
    assert await _count_fills(store) == 2500
    assert len(await store.position_events(RUN)) == 1
    with pytest.raises(RuntimeError, match="not open"):
        await writer.put([fill("late")])


async def test_writer_reraises_a_store_failure_on_flush_put_and_close(store: SqlEventStore) -> None:
    store.bind_run("never-started")  # fills of an unknown run violate the foreign key
    writer = BatchingWriter(store, max_delay_s=60)
    with pytest.raises(IntegrityError):
        async with writer:
            await writer.put([fill("t1")])
            with pytest.raises(IntegrityError):
                await writer.flush()
            with pytest.raises(IntegrityError):
                await writer.put([fill("t2")])
    assert await _count_fills(store) == 0


async def test_writer_failure_is_noted_on_the_body_exception(store: SqlEventStore) -> None:
    store.bind_run("never-started")
    with pytest.raises(KeyError) as info:
        async with BatchingWriter(store, max_delay_s=60) as writer:
            await writer.put([fill("t1")])
            raise KeyError("body failed")
    assert "IntegrityError" in "".join(info.value.__notes__)


async def test_writer_put_nowait_reports_a_full_queue(store: SqlEventStore) -> None:
    async with BatchingWriter(store, max_queue=1) as writer:
        writer.put_nowait([fill("t1")])  # the writer task has not run yet: the queue holds one put
        with pytest.raises(WriterQueueFull):
            writer.put_nowait([fill("t2")])
    assert await store.fills(RUN) == [fill("t1")]
