"""SQL implementation of :class:`tradebot.ports.EventStore` (SQLAlchemy Core on an async engine).

Writes are idempotent batches, one transaction per :meth:`SqlEventStore.write` call (and per
:meth:`~SqlEventStore.commit_step`, which adds the engine state that covers the records):
``INSERT … ON CONFLICT DO NOTHING`` for the append-only tables (fills, position events, equity
snapshots, stream signals, ML predictions), upserts for orders (by client order id, never
going back to an older ``updated_ms``) and trades (by position id), and an ``UPDATE`` of its
stored prediction for an ML prediction's outcome (after the batch's inserts). The dialect's own ``insert``
(SQLite or PostgreSQL) is chosen once at :meth:`~SqlEventStore.open`. Reads return the domain
records that were written (``==``), so state can be rebuilt by replay.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Select, select, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tradebot.adapters.store import migrate
from tradebot.adapters.store.engine import create_engine, parse_database_url
from tradebot.adapters.store.records import (
    equity_from_row,
    fill_from_row,
    jsonable,
    ms_to_utc,
    order_from_row,
    position_event_from_row,
    prediction_from_row,
    signal_from_row,
    to_row,
    trade_from_row,
)
from tradebot.adapters.store.statements import (
    ENGINE_STATE,
    ORDERS,
    RUNS,
    TRADES,
    WRITE_ORDER,
    RowUpdate,
    WriteTarget,
    one_row_per_key,
    prepare_statements,
)
from tradebot.adapters.store.tables import (
    EquitySnapshotRow,
    FillRow,
    MlPositionPredictionRow,
    PositionEventRow,
    StreamSignalRow,
)
from tradebot.adapters.store.writer import BatchingWriter, WriterQueueFull
from tradebot.core.domain import (
    EquitySnapshot,
    Fill,
    MlPositionPrediction,
    OrderRecord,
    PositionEvent,
    PositionEventType,
    StreamSignal,
    TradeRecord,
)
from tradebot.errors import ConfigError

#: Ids per query when an update checks that its rows exist (well under SQLite's variable limit).
_ID_CHUNK = 500

__all__ = ["BatchingWriter", "RunInfo", "SqlEventStore", "WriterQueueFull"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInfo:
    """One ``runs`` row: ``status`` is running / completed / failed; times are ms UTC."""

    run_id: str
    mode: str
    status: str
    config: dict[str, Any]
    version: str
    started_ms: int
    finished_ms: int | None
    summary: dict[str, Any] | None
    #: Wall clock of the run's first start, ms UTC (``None`` for runs recorded before revision 0002).
    created_ms: int | None = None

    @property
    def started_at(self) -> datetime:
        """Start time, aware UTC."""
        return ms_to_utc(self.started_ms)

    @property
    def finished_at(self) -> datetime | None:
        """Finish time, aware UTC, or ``None`` while running."""
        return None if self.finished_ms is None else ms_to_utc(self.finished_ms)


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SqlEventStore:
    """Event store on PostgreSQL (asyncpg) or SQLite (aiosqlite).

    Use ``async with SqlEventStore(url) as store:`` (or :meth:`open` / :meth:`close`); a closed
    store cannot be reopened. The schema must be at the Alembic head (``tradebot db upgrade``);
    :meth:`open` checks it unless ``verify_schema`` is False.

    Parameters
    ----------
    url
        ``sqlite+aiosqlite:///tradebot.db`` or ``postgresql+asyncpg://user@host/db``.
    verify_schema
        Refuse to open a database that is not at the head revision.
    engine_options
        Extra keyword arguments of ``create_async_engine`` (pool sizes, ``echo``).

    Raises
    ------
    ConfigError
        If the URL is invalid (at construction) or the schema is not at head (at :meth:`open`).
    """

    def __init__(self, url: str | URL, *, verify_schema: bool = True, **engine_options: Any) -> None:
        self._url = parse_database_url(url)
        self._verify_schema = verify_schema
        self._engine_options = engine_options
        self._engine_or_none: AsyncEngine | None = None
        self._state = _State.UNOPENED
        self._statements: dict[WriteTarget, Any] = {}
        self._run_id: str | None = None

    # ---- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the engine, check the schema revision and prepare the dialect's statements.

        Raises
        ------
        RuntimeError
            If the store was already opened.
        ConfigError
            If the database is not at the head revision (run ``tradebot db upgrade``).
        """
        if self._state is not _State.UNOPENED:
            raise RuntimeError(f"SqlEventStore can be opened once, state was {self._state.value!r}")
        engine = create_engine(self._url, **self._engine_options)
        try:
            if self._verify_schema:
                await self._check_revision(engine)
        except BaseException:
            await engine.dispose()
            raise
        self._engine_or_none = engine
        self._statements = prepare_statements(engine.dialect.name)
        self._state = _State.OPEN

    async def _check_revision(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            current = await conn.run_sync(migrate.revision_of)
        if current != (head := migrate.head_revision()):
            raise ConfigError(
                f"database {self._url.render_as_string(hide_password=True)!r} is at revision "
                f"{current!r}, not at head {head!r}: run `tradebot db upgrade`"
            )

    async def close(self) -> None:
        """Release the connections. Idempotent."""
        if self._engine_or_none is not None:
            await self._engine_or_none.dispose()
            self._engine_or_none = None
        self._state = _State.CLOSED

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._url.get_backend_name()

    @property
    def engine(self) -> AsyncEngine:
        """The async engine (for tests and audits). Raises ``RuntimeError`` unless open."""
        if self._engine_or_none is None:
            raise RuntimeError(f"SqlEventStore is not open, state was {self._state.value!r}")
        return self._engine_or_none

    # ---- runs ----------------------------------------------------------------------------------

    def bind_run(self, run_id: str) -> None:
        """Attribute later :meth:`write` calls without ``run_id`` to ``run_id`` (set by :meth:`start_run`)."""
        self._run_id = run_id

    async def start_run(
        self, *, run_id: str, mode: str, config: dict[str, Any], version: str, started_ms: int
    ) -> None:
        """Record run ``run_id`` as running and bind it for :meth:`write`.

        Starting a run id that exists again (a daemon restart resuming its run) keeps its
        ``started_ms``, replaces mode, config and version, and clears the finish fields.
        ``config`` is stored as JSON (Decimals as strings).
        """
        row = {
            "run_id": run_id, "mode": mode, "status": "running", "config": jsonable(config),
            "version": version, "started_at": ms_to_utc(started_ms), "started_ms": started_ms,
            "finished_at": None, "finished_ms": None, "summary": None, "created_ms": _now_ms(),
        }  # fmt: skip
        async with self.engine.begin() as conn:
            await conn.execute(self._statements[RUNS], row)
        self._run_id = run_id

    async def finish_run(
        self, *, run_id: str, status: str, summary: dict[str, Any], finished_ms: int
    ) -> None:
        """Mark run ``run_id`` ``completed`` or ``failed`` with its ``summary`` (JSON) at ``finished_ms``.

        Raises
        ------
        ValueError
            If ``status`` is not ``completed`` / ``failed`` or the run was never started.
        """
        if status not in ("completed", "failed"):
            raise ValueError(f"finish_run: status must be 'completed' or 'failed', was {status!r}")
        stmt = (
            update(RUNS)
            .where(RUNS.c.run_id == run_id)
            .values(status=status, summary=jsonable(summary), finished_ms=finished_ms,
                    finished_at=ms_to_utc(finished_ms))
        )  # fmt: skip
        async with self.engine.begin() as conn:
            result = await conn.execute(stmt)
        if result.rowcount != 1:
            raise ValueError(f"finish_run: run_id was never started, was {run_id!r}")

    async def get_run(self, run_id: str) -> RunInfo | None:
        """Return run ``run_id``, or ``None`` if unknown."""
        rows = await self._fetch(select(RUNS).where(RUNS.c.run_id == run_id))
        return _run_info(rows[0]) if rows else None

    async def list_runs(self) -> list[RunInfo]:
        """Return every run, most recently created first (``list_runs()[0]`` is the latest run).

        Ordered by the wall-clock ``created_ms`` (runs from before it was recorded last), then by
        ``started_ms`` (the engine time of the first candle, shared by runs of the same data).
        """
        rows = await self._fetch(
            select(RUNS).order_by(
                RUNS.c.created_ms.desc().nulls_last(), RUNS.c.started_ms.desc(), RUNS.c.run_id.desc()
            )
        )
        return [_run_info(r) for r in rows]

    # ---- writes --------------------------------------------------------------------------------

    async def write(self, records: Sequence[object], *, run_id: str | None = None) -> None:
        """Persist ``records`` idempotently in one transaction.

        Parameters
        ----------
        records
            PositionEvent, OrderRecord, Fill, TradeRecord, EquitySnapshot, StreamSignal,
            MlPositionPrediction or MlPredictionOutcome, in engine order. Duplicates by unique key
            (a fill's (venue, symbol, trade id), an event's (run, seq) or id, a snapshot's
            (run, ts), a signal's (run, stream, ts), a prediction's id) are ignored; orders and
            trades are upserted. An outcome updates its prediction's row (stored before, or in
            this batch: every insert of a batch is written before its outcomes); the same outcome
            again sets the same values, a later one replaces it.
        run_id
            Run the records belong to; default the run of :meth:`start_run` / :meth:`bind_run`.

        Raises
        ------
        TypeError
            If a record has another type (nothing is written).
        ValueError
            If an outcome names a prediction that is not stored for the run (nothing is written).
        RuntimeError
            If no run is given or bound, or the store is not open.
        """
        run = run_id or self._run_id
        if run is None:
            raise RuntimeError("SqlEventStore.write: no run; call start_run()/bind_run() or pass run_id")
        grouped = _grouped(records, run)
        if not grouped:
            return
        async with self.engine.begin() as conn:
            await self._insert(conn, grouped)

    async def commit_step(
        self,
        records: Sequence[object],
        *,
        run_id: str,
        state: dict[str, Any],
        updated_ms: int | None = None,
    ) -> None:
        """Persist ``records`` and the engine state that covers them in one transaction.

        The daemon's checkpoint: a crash leaves either both (the restart resumes after the step)
        or neither (the restart replays the step and numbers its position events again from the
        previous state's sequence), never records without the state that counted them.

        Parameters
        ----------
        records
            As :meth:`write`, attributed to ``run_id`` (may be empty: the state alone is saved).
        run_id
            The run of the records and of the state.
        state, updated_ms
            As :meth:`save_engine_state`.

        Raises
        ------
        TypeError
            If a record has another type (nothing is written).
        ValueError
            If ``state`` is not strict JSON data, or an outcome names a prediction that is not
            stored for the run (nothing is written).
        """
        grouped = _grouped(records, run_id)
        row = _state_row(run_id, state, updated_ms)
        async with self.engine.begin() as conn:
            await self._insert(conn, grouped)
            await conn.execute(self._statements[ENGINE_STATE], row)

    async def _insert(self, conn: AsyncConnection, grouped: dict[WriteTarget, list[dict[str, Any]]]) -> None:
        for target in WRITE_ORDER:
            rows = grouped.get(target)
            if not rows:
                continue
            if isinstance(target, RowUpdate):
                await self._update(conn, target, rows)
            else:
                await conn.execute(self._statements[target], one_row_per_key(target, rows))

    async def _update(self, conn: AsyncConnection, target: RowUpdate, rows: list[dict[str, Any]]) -> None:
        # Every row must match a stored row of its run: checked first with a count per chunk of ids
        # (executemany row counts are not reliable on every driver), then one executemany in record
        # order (a later outcome of the same row wins). A backtest records one outcome per prediction.
        table = target.table
        by_run: dict[str, set[Any]] = {}
        for row in rows:
            by_run.setdefault(row["b_run_id"], set()).add(row["b_id"])
        for run, ids in by_run.items():
            wanted = sorted(ids, key=str)
            found: set[Any] = set()
            for lo in range(0, len(wanted), _ID_CHUNK):
                chunk = wanted[lo : lo + _ID_CHUNK]
                query = select(table.c.id).where(table.c.run_id == run, table.c.id.in_(chunk))
                found.update((await conn.execute(query)).scalars())
            missing = [i for i in wanted if i not in found]
            if missing:
                raise ValueError(
                    f"SqlEventStore.write: {target.name} of {target.table.name} row {missing[0]} of run "
                    f"{run!r} matched 0 rows, not 1 (its record must be written first, in this batch or "
                    f"before; {len(missing)} such row(s))"
                )
        await conn.execute(self._statements[target], rows)

    async def save_engine_state(
        self, run_id: str, state: dict[str, Any], *, updated_ms: int | None = None
    ) -> None:
        """Store (replace) the engine state of run ``run_id`` for resume.

        ``state`` must be strict JSON data (encode Decimals as strings); ``updated_ms`` defaults
        to the wall clock.

        Raises
        ------
        ValueError
            If ``state`` is not JSON-serialisable (the message names the reason).
        """
        row = _state_row(run_id, state, updated_ms)
        async with self.engine.begin() as conn:
            await conn.execute(self._statements[ENGINE_STATE], row)

    async def load_engine_state(self, run_id: str) -> dict[str, Any] | None:
        """Return the last saved engine state of run ``run_id``, or ``None``."""
        rows = await self._fetch(select(ENGINE_STATE.c.state).where(ENGINE_STATE.c.run_id == run_id))
        return rows[0]["state"] if rows else None

    # ---- reads ---------------------------------------------------------------------------------

    async def position_events(
        self,
        run_id: str,
        symbol: str | None = None,
        event_types: Iterable[PositionEventType | str] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[PositionEvent]:
        """Return the position events of ``run_id`` in ``seq`` order.

        Filters: ``symbol``; ``event_types``; event time ``start_ms <= t < end_ms`` (ms UTC).
        """
        t = PositionEventRow.__table__.c
        stmt = select(PositionEventRow.__table__).where(t.run_id == run_id)
        if symbol is not None:
            stmt = stmt.where(t.symbol == symbol)
        if event_types is not None:
            stmt = stmt.where(t.event_type.in_([PositionEventType(e).value for e in event_types]))
        if start_ms is not None:
            stmt = stmt.where(t.event_time >= ms_to_utc(start_ms))
        if end_ms is not None:
            stmt = stmt.where(t.event_time < ms_to_utc(end_ms))
        return [position_event_from_row(r) for r in await self._fetch(stmt.order_by(t.seq))]

    async def orders(self, run_id: str) -> list[OrderRecord]:
        """Return the latest state of every order of ``run_id``, by creation time then id."""
        c = ORDERS.c
        stmt = select(ORDERS).where(c.run_id == run_id).order_by(c.created_ms, c.client_order_id)
        return [order_from_row(r) for r in await self._fetch(stmt)]

    async def fills(self, run_id: str) -> list[Fill]:
        """Return the fills of ``run_id`` by fill time, then insertion order."""
        c = FillRow.__table__.c
        stmt = select(FillRow.__table__).where(c.run_id == run_id).order_by(c.ts_ms, c.id)
        return [fill_from_row(r) for r in await self._fetch(stmt)]

    async def trades(self, run_id: str) -> list[TradeRecord]:
        """Return the trades (position lifecycles) of ``run_id`` by open time, then position id."""
        c = TRADES.c
        stmt = select(TRADES).where(c.run_id == run_id).order_by(c.opened_ms, c.position_id)
        return [trade_from_row(r) for r in await self._fetch(stmt)]

    async def equity_curve(self, run_id: str) -> list[EquitySnapshot]:
        """Return the equity snapshots of ``run_id`` in time order."""
        c = EquitySnapshotRow.__table__.c
        stmt = select(EquitySnapshotRow.__table__).where(c.run_id == run_id).order_by(c.ts)
        return [equity_from_row(r) for r in await self._fetch(stmt)]

    async def stream_signals(self, run_id: str, stream: str | None = None) -> list[StreamSignal]:
        """Return the stream signals of ``run_id`` (optionally one ``stream``) by time, then stream."""
        c = StreamSignalRow.__table__.c
        stmt = select(StreamSignalRow.__table__).where(c.run_id == run_id)
        if stream is not None:
            stmt = stmt.where(c.stream == stream)
        return [signal_from_row(r) for r in await self._fetch(stmt.order_by(c.ts, c.stream))]

    async def ml_predictions(self, run_id: str) -> list[MlPositionPrediction]:
        """Return the ML predictions recorded for ``run_id``, each with its outcome once recorded.

        Ordered by prediction time (``time_ms``; predictions without one last), then by id: the
        same order on every backend, whatever the batches they were written in.
        """
        c = MlPositionPredictionRow.__table__.c
        stmt = (
            select(MlPositionPredictionRow.__table__)
            .where(c.run_id == run_id)
            .order_by(c.ts_ms.asc().nulls_last(), c.id)
        )
        return [prediction_from_row(r) for r in await self._fetch(stmt)]

    async def _fetch(self, stmt: Select[Any]) -> list[Any]:
        async with self.engine.connect() as conn:
            result = await conn.execute(stmt)
            return list(result.mappings())


def _grouped(records: Iterable[object], run_id: str) -> dict[WriteTarget, list[dict[str, Any]]]:
    # rows per write target, in record order (raises TypeError before anything is written)
    grouped: dict[WriteTarget, list[dict[str, Any]]] = {}
    for record in records:
        table, row = to_row(record, run_id)
        grouped.setdefault(table, []).append(row)
    return grouped


def _state_row(run_id: str, state: dict[str, Any], updated_ms: int | None) -> dict[str, Any]:
    try:
        json.dumps(state, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"save_engine_state: state of run {run_id!r} is not strict JSON: {e}") from e
    ms = _now_ms() if updated_ms is None else updated_ms
    return {"run_id": run_id, "updated_at": ms_to_utc(ms), "updated_ms": ms, "state": state}


def _run_info(m: Any) -> RunInfo:
    return RunInfo(
        run_id=m["run_id"], mode=m["mode"], status=m["status"], config=m["config"],
        version=m["version"], started_ms=m["started_ms"], finished_ms=m["finished_ms"],
        summary=m["summary"], created_ms=m["created_ms"],
    )  # fmt: skip
