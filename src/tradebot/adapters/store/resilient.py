"""The daemon's event store through database outages: transient errors are retried with back-off.

A PostgreSQL restart or a full SQLite disk must not stop the daemon. :class:`ResilientStore` wraps
an open :class:`~tradebot.adapters.store.event_store.SqlEventStore` and retries every call the
daemon makes at runtime (``write``, ``commit_step``, ``finish_run``, ``start_run``, the state and
the reads) while the failure is *transient* (:func:`is_transient`): the caller waits, so trading
pauses — the executor commits an order's ``PENDING_SUBMIT`` row and the daemon its checkpoint
before an order is sent, so nothing is sent that the store has not recorded. Retries wait
``initial_s`` doubling to ``max_s``; the first success ends the outage and the waiting calls go on
with their records, so nothing is lost. Once an outage lasts ``grace_s`` (or a stop is requested
during one) every call raises :class:`~tradebot.errors.StoreUnavailable` and the daemon exits 1.

Retrying is safe even after an ambiguous commit (the connection dropped while ``COMMIT`` was on
the wire, so the first attempt may have committed): every write is idempotent under keys the
records carry — fills by (venue, symbol, trade id), position events by (run, seq) and their uuid5
id, equity snapshots by (run, time), stream signals by (run, stream, time) and ML predictions by
their id are ``INSERT … ON CONFLICT DO NOTHING``; orders are upserted by client order id (``updated_ms
<=`` lets the same row through again), trades by position id, the engine state and the run by run
id; ``finish_run`` and an ML prediction's outcome are an ``UPDATE`` to the same values (the outcome's
by prediction id and run). A retry sends the same arguments.

Outages are logged as structlog events ``store_unavailable`` (the first failure: operation, error),
``store_retry`` (each wait: attempt, delay_s, error), ``store_recovered`` (outage_s, retries) and
``store_outage_exceeded_grace`` (error level, when the daemon gives up); :class:`StoreHealth` holds
the outage state for the health file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]  # no stubs; only its exception classes are used
import structlog
from sqlalchemy import exc as sa_exc

from tradebot.adapters.store.event_store import RunInfo, SqlEventStore
from tradebot.core.domain import Fill, MlPositionPrediction, OrderRecord, PositionEvent, TradeRecord
from tradebot.errors import StoreUnavailable

log = structlog.get_logger("tradebot.store")

T = TypeVar("T")

#: SQLite errors of the medium, not of the statement (an ``OperationalError`` such as "no such table"
#: is a bug or a wrong schema and is not retried).
SQLITE_TRANSIENT = (
    "database or disk is full",
    "disk i/o error",
    "database is locked",
    "unable to open database file",
)
#: PostgreSQL SQLSTATE classes and codes worth retrying: connection exception (08), insufficient
#: resources (53: disk full, out of memory, too many connections), operator intervention (57: admin
#: shutdown, cannot connect now), system error (58), serialization failure and deadlock.
PG_TRANSIENT_CLASSES = ("08", "53", "57", "58")
PG_TRANSIENT_CODES = ("40001", "40P01")
#: Errors of a bug or of bad data: never retried, whatever they wrap.
_NEVER = (
    sa_exc.IntegrityError,
    sa_exc.ProgrammingError,
    sa_exc.DataError,
    sa_exc.NotSupportedError,
    sa_exc.ArgumentError,
    sa_exc.CompileError,
    TypeError,
    ValueError,
    KeyError,
    AttributeError,
)


def is_transient(exc: BaseException) -> bool:
    """Return True when ``exc`` is a failure of the database's reachability or medium, not of the
    statement: worth waiting out and retrying with the same arguments.

    Transient: a SQLAlchemy error whose connection was invalidated (a disconnect), SQLAlchemy
    ``OperationalError`` / ``InterfaceError`` / ``DisconnectionError`` / pool ``TimeoutError``;
    ``OSError`` (``ConnectionError``, refused, reset) and ``TimeoutError``; asyncpg connection errors
    and the PostgreSQL SQLSTATEs of :data:`PG_TRANSIENT_CLASSES` / :data:`PG_TRANSIENT_CODES`;
    SQLite's "database or disk is full", "disk I/O error", "database is locked" and "unable to open
    database file". Everything else — an ``IntegrityError`` (a bug: writes are idempotent), a
    ``ProgrammingError``, a ``TypeError``, a SQLite "no such table" — is not. The wrapped driver
    error (``.orig``) and the ``__cause__`` chain are looked at.
    """
    return _verdict(exc, set()) is True


def _verdict(e: BaseException, seen: set[int]) -> bool | None:
    # True / False when ``e`` or what it wraps decides; None when nothing in it is known
    if id(e) in seen:
        return None
    seen.add(id(e))
    if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
        return True
    if isinstance(e, sqlite3.Error):
        return isinstance(e, sqlite3.OperationalError) and _sqlite_transient(e)
    if isinstance(e, _NEVER):
        return False
    if isinstance(e, (sa_exc.DisconnectionError, sa_exc.TimeoutError, OSError, TimeoutError)):
        return True
    if isinstance(e, asyncpg.PostgresError):
        state = str(getattr(e, "sqlstate", "") or "")
        return state[:2] in PG_TRANSIENT_CLASSES or state in PG_TRANSIENT_CODES
    if isinstance(e, asyncpg.InterfaceError):
        return "closed" in str(e).lower()  # "connection is closed" (a bug's "another operation" is not)
    orig = getattr(e, "orig", None) if isinstance(e, sa_exc.DBAPIError) else None
    for inner in (orig, e.__cause__):  # the driver's error decides when it is known
        if inner is not None and (verdict := _verdict(inner, seen)) is not None:
            return verdict
    if isinstance(e, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        return True
    return None


def _sqlite_transient(e: BaseException) -> bool:
    text = str(e).lower()
    return any(m in text for m in SQLITE_TRANSIENT)


def _describe(exc: BaseException) -> str:
    # one line: the type and the driver's first line (SQLAlchemy appends the SQL and parameters)
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class StoreHealth:
    """The store's outage state, shared by every caller (and read by the health file).

    Attributes
    ----------
    down_since_ms
        Wall clock (ms UTC) of the first failure of the current outage; ``None`` while the store works.
    last_error
        The last transient error, one line (kept after a recovery, for the report).
    outages
        Outages so far (a recovery ends one).
    retries
        Failed attempts that were retried, over all outages.
    last_outage_s
        Duration of the last outage that ended, seconds.
    gave_up
        An outage lasted past the grace period (or a stop came during one): calls now fail at once.
    """

    down_since_ms: int | None = None
    last_error: str | None = None
    outages: int = 0
    retries: int = 0
    last_outage_s: float | None = None
    gave_up: bool = False
    _down_since_mono: float | None = field(default=None, repr=False)
    #: Set on every change of state (outage began, ended, gave up): the status loop reports at once.
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def down(self) -> bool:
        """Whether the store is failing now."""
        return self.down_since_ms is not None

    def report(self) -> dict[str, Any]:
        """The health file's store fields: ``store_unavailable_since_ms`` (wall clock, ms UTC, or
        ``None``), ``store_error`` (the current outage's last error, or ``None``) and ``store_outages``."""
        return {
            "store_unavailable_since_ms": self.down_since_ms,
            "store_error": self.last_error if self.down else None,
            "store_outages": self.outages,
        }


class ResilientStore:
    """An open :class:`SqlEventStore` whose calls wait out transient failures (see the module docstring).

    Parameters
    ----------
    store
        The open store (closed by its owner, not by this wrapper).
    grace_s
        Longest outage waited out, seconds (from its first failure); then calls raise
        :class:`~tradebot.errors.StoreUnavailable`.
    initial_s, max_s
        First wait between attempts, doubling up to ``max_s``, seconds.
    health
        Shared outage state (a new one by default).
    monotonic, sleep
        Clock and sleep of the retry loop (tests); by default :func:`time.monotonic` and a wait that
        :meth:`interrupt` ends early.

    Raises
    ------
    ValueError
        If a duration is not positive or ``max_s < initial_s``.
    """

    def __init__(
        self,
        store: SqlEventStore,
        *,
        grace_s: float,
        initial_s: float = 0.5,
        max_s: float = 10.0,
        health: StoreHealth | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        if not grace_s > 0:
            raise ValueError(f"grace_s must be > 0, was {grace_s!r}")
        if not 0 < initial_s <= max_s:
            raise ValueError(f"need 0 < initial_s <= max_s, were {initial_s!r} and {max_s!r}")
        self.inner = store
        self.grace_s = grace_s
        self.initial_s = initial_s
        self.max_s = max_s
        self.health = health if health is not None else StoreHealth()
        self._monotonic = monotonic
        self._sleep = sleep
        self._stop = asyncio.Event()  # a stop was requested (interrupt)
        self._wake = asyncio.Event()  # end every wait now: a stop, or another caller gave up
        self._stop_reason = ""

    # ---- what the daemon calls ------------------------------------------------------------------

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.inner.dialect

    def bind_run(self, run_id: str) -> None:
        """As :meth:`SqlEventStore.bind_run` (no I/O)."""
        self.inner.bind_run(run_id)

    async def write(self, records: Sequence[object], *, run_id: str | None = None) -> None:
        """:meth:`SqlEventStore.write`, retried through an outage."""
        await self._call("write", lambda: self.inner.write(records, run_id=run_id))

    async def commit_step(
        self, records: Sequence[object], *, run_id: str, state: dict[str, Any], updated_ms: int | None = None
    ) -> None:
        """:meth:`SqlEventStore.commit_step`, retried through an outage (the same state and records)."""
        await self._call(
            "commit_step",
            lambda: self.inner.commit_step(records, run_id=run_id, state=state, updated_ms=updated_ms),
        )

    async def start_run(
        self, *, run_id: str, mode: str, config: dict[str, Any], version: str, started_ms: int
    ) -> None:
        """:meth:`SqlEventStore.start_run`, retried through an outage."""
        await self._call(
            "start_run",
            lambda: self.inner.start_run(
                run_id=run_id, mode=mode, config=config, version=version, started_ms=started_ms
            ),
        )

    async def finish_run(
        self, *, run_id: str, status: str, summary: dict[str, Any], finished_ms: int
    ) -> None:
        """:meth:`SqlEventStore.finish_run`, retried through an outage."""
        await self._call(
            "finish_run",
            lambda: self.inner.finish_run(
                run_id=run_id, status=status, summary=summary, finished_ms=finished_ms
            ),
        )

    async def save_engine_state(
        self, run_id: str, state: dict[str, Any], *, updated_ms: int | None = None
    ) -> None:
        """:meth:`SqlEventStore.save_engine_state`, retried through an outage."""
        await self._call(
            "save_engine_state", lambda: self.inner.save_engine_state(run_id, state, updated_ms=updated_ms)
        )

    async def load_engine_state(self, run_id: str) -> dict[str, Any] | None:
        """:meth:`SqlEventStore.load_engine_state`, retried through an outage."""
        return await self._call("load_engine_state", lambda: self.inner.load_engine_state(run_id))

    async def get_run(self, run_id: str) -> RunInfo | None:
        """:meth:`SqlEventStore.get_run`, retried through an outage."""
        return await self._call("get_run", lambda: self.inner.get_run(run_id))

    async def orders(self, run_id: str) -> list[OrderRecord]:
        """:meth:`SqlEventStore.orders`, retried through an outage."""
        return await self._call("orders", lambda: self.inner.orders(run_id))

    async def fills(self, run_id: str) -> list[Fill]:
        """:meth:`SqlEventStore.fills`, retried through an outage."""
        return await self._call("fills", lambda: self.inner.fills(run_id))

    async def trades(self, run_id: str) -> list[TradeRecord]:
        """:meth:`SqlEventStore.trades`, retried through an outage."""
        return await self._call("trades", lambda: self.inner.trades(run_id))

    async def position_events(self, run_id: str) -> list[PositionEvent]:
        """:meth:`SqlEventStore.position_events` of the whole run, retried through an outage."""
        return await self._call("position_events", lambda: self.inner.position_events(run_id))

    async def ml_predictions(self, run_id: str) -> list[MlPositionPrediction]:
        """:meth:`SqlEventStore.ml_predictions`, retried through an outage."""
        return await self._call("ml_predictions", lambda: self.inner.ml_predictions(run_id))

    def interrupt(self, reason: str) -> None:
        """Stop waiting out outages (a shutdown was requested): a call failing now or later raises
        :class:`~tradebot.errors.StoreUnavailable` at once instead of retrying; working calls go on."""
        self._stop_reason = reason
        self._stop.set()
        self._wake.set()

    # ---- the retry loop -------------------------------------------------------------------------

    async def _call(self, operation: str, attempt: Callable[[], Awaitable[T]]) -> T:
        h = self.health
        delay = self.initial_s
        tries = 0
        while True:
            if h.gave_up:
                raise StoreUnavailable(
                    f"event store unavailable, gave up ({h.last_error}); {operation} not done"
                )
            try:
                result = await attempt()
            except Exception as e:
                if not is_transient(e):
                    raise
                tries += 1
                wait = self._failed(operation, e, tries, delay)
                if wait is None:
                    raise StoreUnavailable(
                        f"event store unavailable for {self._outage_s():.1f} s "
                        f"(grace {self.grace_s:g} s{self._why_stopped()}): {h.last_error}"
                    ) from e
                await self._wait(wait)
                delay = min(delay * 2, self.max_s)
                continue
            if h.down:
                self._recovered(operation)
            return result

    def _outage_s(self) -> float:
        since = self.health._down_since_mono
        return 0.0 if since is None else self._monotonic() - since

    def _why_stopped(self) -> str:
        return f", stop requested: {self._stop_reason}" if self._stop.is_set() else ""

    def _failed(self, operation: str, exc: BaseException, tries: int, delay: float) -> float | None:
        # record the failure; return how long to wait before the next attempt, or None: give up
        h = self.health
        h.last_error = _describe(exc)
        if not h.down:
            h.down_since_ms = _wall_ms()
            h._down_since_mono = self._monotonic()
            h.outages += 1
            h.changed.set()
            log.warning(
                "store_unavailable",
                operation=operation,
                error=h.last_error,
                dialect=self.inner.dialect,
                grace_s=self.grace_s,
            )
        outage = self._outage_s()
        left = self.grace_s - outage
        if left <= 0 or self._stop.is_set():
            if not h.gave_up:
                h.gave_up = True
                h.changed.set()
                self._wake.set()  # the other waiting callers give up now, not after their wait
                log.error(
                    "store_outage_exceeded_grace" if left <= 0 else "store_outage_stop_requested",
                    operation=operation,
                    error=h.last_error,
                    outage_s=round(outage, 3),
                    grace_s=self.grace_s,
                    retries=h.retries,
                    reason=self._stop_reason or None,
                )
            return None
        h.retries += 1
        wait = min(delay, left)
        log.info(
            "store_retry", operation=operation, attempt=tries, delay_s=round(wait, 3), error=h.last_error
        )
        return wait

    def _recovered(self, operation: str) -> None:
        h = self.health
        outage = self._outage_s()
        h.last_outage_s = outage
        h.down_since_ms = None
        h._down_since_mono = None
        h.changed.set()
        log.warning(
            "store_recovered",
            operation=operation,
            outage_s=round(outage, 3),
            retries=h.retries,
            outages=h.outages,
            last_error=h.last_error,
        )

    async def _wait(self, seconds: float) -> None:
        if self._sleep is not None:
            await self._sleep(seconds)
            return
        with suppress(TimeoutError):  # a stop request or a give-up ends the wait early
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)


__all__ = ["ResilientStore", "StoreHealth", "is_transient"]
