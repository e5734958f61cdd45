"""Small async helpers over the event store for the app and the CLI.

At ``app`` level because the backtest driver and the CLI commands (``runs``, ``events``) both use them.
"""

from __future__ import annotations

from dataclasses import dataclass

from tradebot.adapters.store.engine import require_existing
from tradebot.adapters.store.event_store import BatchingWriter, RunInfo, SqlEventStore
from tradebot.adapters.store.migrate import ensure_schema
from tradebot.core.domain import EquitySnapshot, Fill, PositionEvent, TradeRecord
from tradebot.errors import DataError


async def open_store_and_writer(url: str) -> tuple[SqlEventStore, BatchingWriter]:
    """Migrate ``url`` to head if needed, open the store and start its batching writer."""
    await ensure_schema(url)
    store = SqlEventStore(url)
    await store.open()
    writer = BatchingWriter(store)
    await writer.__aenter__()
    return store, writer


async def list_runs(url: str) -> list[RunInfo]:
    """Return the stored runs, newest first.

    Raises
    ------
    DataError
        If ``url`` is a SQLite file that does not exist (nothing is created).
    """
    require_existing(url)
    async with SqlEventStore(url) as store:
        return list(await store.list_runs())


async def query_events(
    url: str,
    *,
    run_id: str | None,
    symbols: tuple[str, ...] | None,
    types: tuple[str, ...] | None,
    start_ms: int | None,
    end_ms: int | None,
    limit: int,
) -> tuple[str, list[PositionEvent]]:
    """Return (run id, position events as dicts) filtered by symbols, types and time.

    ``run_id=None`` selects the latest run.

    Raises
    ------
    DataError
        If ``run_id`` names no stored run (the message lists the latest ones), or ``url`` is a
        SQLite file that does not exist (nothing is created).
    """
    require_existing(url)
    async with SqlEventStore(url) as store:
        runs = await store.list_runs()
        if run_id is None:
            if not runs:
                return "-", []
            run_id = runs[0].run_id
        elif run_id not in {r.run_id for r in runs}:
            latest = ", ".join(r.run_id for r in runs[:5]) or "none"
            raise DataError(f"--run: no run {run_id!r} in the database; latest runs: {latest}")
        rows: list[PositionEvent] = []
        for sym in symbols or (None,):
            rows.extend(
                await store.position_events(
                    run_id, symbol=sym, event_types=types, start_ms=start_ms, end_ms=end_ms
                )
            )
        rows.sort(key=lambda r: r.seq)
        return run_id, rows[:limit]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecords:
    """What ``tradebot trades`` and ``tradebot plot`` read of one run (each list in the store's order)."""

    run: RunInfo
    trades: list[TradeRecord]
    events: list[PositionEvent]
    fills: list[Fill]
    equity: list[EquitySnapshot]


async def load_run_records(url: str, *, run_id: str | None, symbols: tuple[str, ...] | None) -> RunRecords:
    """Return the trades, position events, fills and equity curve of run ``run_id`` (``None``: latest).

    ``symbols`` keeps the trades, events and fills of those symbols only (the equity curve is the
    whole portfolio's).

    Raises
    ------
    DataError
        If ``run_id`` names no stored run (the message lists the latest ones), the database holds no
        run, or ``url`` is a SQLite file that does not exist (nothing is created).
    """
    require_existing(url)
    async with SqlEventStore(url) as store:
        runs = await store.list_runs()
        latest = ", ".join(r.run_id for r in runs[:5]) or "none"
        run = runs[0] if run_id is None and runs else next((r for r in runs if r.run_id == run_id), None)
        if run is None:
            what = "no runs" if run_id is None else f"no run {run_id!r}"
            raise DataError(f"--run: {what} in the database; latest runs: {latest}")
        keep = set(symbols) if symbols else None
        trades = [t for t in await store.trades(run.run_id) if keep is None or t.symbol in keep]
        events = [e for e in await store.position_events(run.run_id) if keep is None or e.symbol in keep]
        fills = [f for f in await store.fills(run.run_id) if keep is None or f.symbol in keep]
        return RunRecords(
            run=run, trades=trades, events=events, fills=fills, equity=await store.equity_curve(run.run_id)
        )
