"""Small async helpers over the event store for the app and the CLI.

At ``app`` level because the backtest driver and the CLI commands (``runs``, ``events``) both use them.
"""

from __future__ import annotations

from tradebot.adapters.store.engine import require_existing
from tradebot.adapters.store.event_store import BatchingWriter, RunInfo, SqlEventStore
from tradebot.adapters.store.migrate import ensure_schema
from tradebot.core.domain import PositionEvent
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
