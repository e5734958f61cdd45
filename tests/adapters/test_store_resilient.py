"""The resilient store's error classification and retry loop (fake clock, no real waiting).

The classification is checked on the exceptions the drivers raise (sqlite3, asyncpg) as SQLAlchemy
wraps them; the retry loop on a small in-memory sink whose ``write`` fails as told, with the waits
recorded and a fake monotonic clock advanced by them. The database side is covered for real by
``tests/integration/test_store_outage.py``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc
from structlog.testing import capture_logs

from tradebot.adapters.store.resilient import ResilientStore, StoreHealth, is_transient
from tradebot.errors import StoreUnavailable


def _wrapped(cls: type[sa_exc.DBAPIError], orig: BaseException, **kw: Any) -> sa_exc.DBAPIError:
    return cls("INSERT INTO fills ...", {}, orig, **kw)  # type: ignore[arg-type]


def _chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


TRANSIENT = {
    "sqlite disk full": _wrapped(
        sa_exc.OperationalError, sqlite3.OperationalError("database or disk is full")
    ),
    "sqlite disk I/O": _wrapped(sa_exc.OperationalError, sqlite3.OperationalError("disk I/O error")),
    "sqlite locked": _wrapped(sa_exc.OperationalError, sqlite3.OperationalError("database is locked")),
    "refused": ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
    "reset": ConnectionResetError(104, "Connection reset by peer"),
    "timeout": TimeoutError(),
    "invalidated": _wrapped(sa_exc.DBAPIError, Exception("server closed"), connection_invalidated=True),
    "sa interface closed": _wrapped(sa_exc.InterfaceError, asyncpg.InterfaceError("connection is closed")),
    "pg starting up": _wrapped(
        sa_exc.DBAPIError,
        _chained(
            Exception("translated"), asyncpg.CannotConnectNowError("the database system is starting up")
        ),
    ),
    "pg admin shutdown": asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    "pg disk full": asyncpg.DiskFullError("could not extend file"),
    "pg connection lost": asyncpg.ConnectionDoesNotExistError(
        "connection was closed in the middle of operation"
    ),
    "pg deadlock": asyncpg.DeadlockDetectedError("deadlock detected"),
    "pool timeout": sa_exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),
    "sa operational (pg)": _wrapped(sa_exc.OperationalError, Exception("server closed the connection")),
}
PERMANENT = {
    "integrity (a bug)": _wrapped(sa_exc.IntegrityError, sqlite3.IntegrityError("UNIQUE constraint failed")),
    "pg unique violation": _wrapped(
        sa_exc.IntegrityError,
        _chained(Exception("translated"), asyncpg.UniqueViolationError("duplicate key")),
    ),
    "sqlite no such table": _wrapped(
        sa_exc.OperationalError, sqlite3.OperationalError("no such table: fills")
    ),
    "programming": _wrapped(
        sa_exc.ProgrammingError, asyncpg.UndefinedTableError('relation "x" does not exist')
    ),
    "type error": TypeError("unsupported record type dict"),
    "value error": ValueError("state is not strict JSON"),
    "runtime error": RuntimeError("SqlEventStore is not open"),
    "pg another operation": asyncpg.InterfaceError(
        "cannot perform operation: another operation is in progress"
    ),
    "type error caused by OSError": _chained(TypeError("bad"), OSError("unrelated")),
}


@pytest.mark.parametrize("name", TRANSIENT)
def test_outages_of_the_database_are_transient(name: str) -> None:
    assert is_transient(TRANSIENT[name])


@pytest.mark.parametrize("name", PERMANENT)
def test_errors_of_a_statement_or_a_bug_are_not_retried(name: str) -> None:
    assert not is_transient(PERMANENT[name])


class FlakySink:
    """An in-memory store whose calls fail with ``errors`` (popped in order) before they succeed."""

    dialect = "sqlite"

    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = errors
        self.attempts = 0
        self.rows: list[object] = []

    async def write(self, records: Sequence[object], *, run_id: str | None = None) -> None:
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)
        self.rows.extend(records)


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def _store(sink: FlakySink, clock: FakeTime, grace_s: float = 300.0) -> ResilientStore:
    return ResilientStore(
        sink,  # type: ignore[arg-type]
        grace_s=grace_s,
        initial_s=0.5,
        max_s=10.0,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
    )


def _disk_full() -> BaseException:
    return _wrapped(sa_exc.OperationalError, sqlite3.OperationalError("database or disk is full"))


async def test_retries_back_off_from_half_a_second_doubling_to_ten_then_resume_with_the_records() -> None:
    sink, clock = FlakySink([_disk_full() for _ in range(8)]), FakeTime()
    store = _store(sink, clock)
    with capture_logs() as logs:
        await store.write(["a", "b"])
    assert sink.rows == ["a", "b"] and sink.attempts == 9
    assert clock.waits == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    h = store.health
    assert (h.down, h.outages, h.retries, h.last_outage_s, h.gave_up) == (False, 1, 8, 45.5, False)
    names = [e["event"] for e in logs]
    assert names == ["store_unavailable", *["store_retry"] * 8, "store_recovered"]
    assert logs[0]["error"] == "OperationalError: database or disk is full"
    assert logs[-1]["outage_s"] == 45.5 and logs[-1]["retries"] == 8
    assert h.report() == {"store_unavailable_since_ms": None, "store_error": None, "store_outages": 1}


async def test_an_error_of_a_bug_is_raised_at_once_without_an_outage() -> None:
    bug = _wrapped(sa_exc.IntegrityError, sqlite3.IntegrityError("NOT NULL constraint failed"))
    sink, clock = FlakySink([bug]), FakeTime()
    store = _store(sink, clock)
    with pytest.raises(sa_exc.IntegrityError):
        await store.write(["a"])
    assert sink.attempts == 1 and clock.waits == [] and not store.health.down and store.health.outages == 0


async def test_an_outage_past_the_grace_period_gives_up_and_later_calls_fail_at_once() -> None:
    sink, clock = FlakySink([_disk_full() for _ in range(100)]), FakeTime()
    store = _store(sink, clock, grace_s=20.0)
    with (
        capture_logs() as logs,
        pytest.raises(StoreUnavailable, match=r"grace 20 s.*database or disk is full"),
    ):
        await store.write(["a"])
    assert clock.waits == [0.5, 1.0, 2.0, 4.0, 8.0, 4.5]  # the last wait ends at the grace period
    assert sum(clock.waits) == 20.0 and sink.rows == []
    gave_up = [e for e in logs if e["event"] == "store_outage_exceeded_grace"]
    assert len(gave_up) == 1 and gave_up[0]["log_level"] == "error" and gave_up[0]["outage_s"] == 20.0
    assert store.health.gave_up and store.health.down
    attempts = sink.attempts
    with pytest.raises(StoreUnavailable, match="gave up"):
        await store.commit_step([], run_id="r", state={})
    assert sink.attempts == attempts  # not even tried
    report = store.health.report()
    assert report["store_unavailable_since_ms"] is not None and "disk is full" in report["store_error"]


async def test_a_stop_during_an_outage_ends_the_wait_and_gives_up() -> None:
    sink = FlakySink([_disk_full() for _ in range(100)])
    store = ResilientStore(sink, grace_s=300.0, initial_s=5.0, max_s=10.0)  # type: ignore[arg-type]
    call = asyncio.create_task(store.write(["a"]))
    while not store.health.down:  # noqa: ASYNC110 - one failed attempt, then the wait
        await asyncio.sleep(0)
    store.interrupt("SIGTERM")
    async with asyncio.timeout(1.0):  # well before the 5 s wait would end
        with pytest.raises(StoreUnavailable, match="stop requested: SIGTERM"):
            await call


async def test_callers_share_one_outage() -> None:
    health = StoreHealth()
    clock = FakeTime()
    first, second = FlakySink([_disk_full()]), FlakySink([_disk_full(), _disk_full()])
    a, b = (
        ResilientStore(s, grace_s=60, health=health, monotonic=clock.monotonic, sleep=clock.sleep)  # type: ignore[arg-type]
        for s in (first, second)
    )
    await asyncio.gather(a.write(["x"]), b.write(["y"]))
    assert health.outages >= 1 and not health.down and first.rows == ["x"] and second.rows == ["y"]


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="grace_s"):
        ResilientStore(FlakySink([]), grace_s=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="initial_s"):
        ResilientStore(FlakySink([]), grace_s=1, initial_s=5, max_s=1)  # type: ignore[arg-type]
