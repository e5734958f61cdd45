"""Queue-backed writer task that batches engine records off the hot path (after cryptofeed's BackendQueue).

The engine's driver calls ``await writer.put(records)`` after each event (it returns at once
unless the bounded queue is full: backpressure) or ``put_nowait``; one task
collects records into batches of at most ``max_batch`` records, waiting at most ``max_delay_s``
for a batch to fill, and hands each batch to ``store.write`` (one transaction). A failure of the
store is never swallowed: it is raised by the next ``put``/``flush`` and by the close.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self


class RecordSink(Protocol):
    """What the writer needs from a store: an idempotent batch write (``EventStore.write``)."""

    async def write(self, records: Sequence[object]) -> None:
        """Persist ``records`` in one transaction."""
        ...


class WriterQueueFull(RuntimeError):
    """:meth:`BatchingWriter.put_nowait` found the queue full: the database is slower than the engine."""


@dataclass(frozen=True, slots=True)
class _Flush:
    done: asyncio.Future[None]


class _Stop:
    pass


_STOP = _Stop()
_Item = list[object] | _Flush | _Stop


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class BatchingWriter:
    """Batch records into ``store.write`` calls from one background task.

    Use as ``async with BatchingWriter(store) as writer:``; the task starts on enter and, on exit,
    everything put before is written (drained) before the task ends. A writer cannot be reopened.

    Parameters
    ----------
    store
        Anything with ``async write(records)`` (an open :class:`SqlEventStore` with a bound run).
    max_batch
        Most records per ``store.write`` call, >= 1.
    max_delay_s
        Longest time, seconds, a record waits for its batch to fill before it is written, >= 0.
    max_queue
        Most ``put`` calls queued and not yet taken by the task, >= 1 (backpressure bound).

    Raises
    ------
    ValueError
        If a parameter is out of range (the message names it and its value).

    Notes
    -----
    After the store fails, the writer discards further records (the owner must stop: a lost
    batch is recovered by the startup reconciliation) and raises the store's exception from
    ``put``, ``put_nowait``, ``flush`` and the exit of the ``async with`` block.
    """

    def __init__(
        self, store: RecordSink, *, max_batch: int = 1000, max_delay_s: float = 0.5, max_queue: int = 10_000
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, was {max_batch!r}")
        if not max_delay_s >= 0:
            raise ValueError(f"max_delay_s must be >= 0, was {max_delay_s!r}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, was {max_queue!r}")
        self._store = store
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=max_queue)
        self._task: asyncio.Task[None] | None = None
        self._state = _State.UNOPENED
        self._error: BaseException | None = None
        self.records_written = 0
        """Records handed to ``store.write`` successfully so far."""

    async def __aenter__(self) -> Self:
        if self._state is not _State.UNOPENED:
            raise RuntimeError(f"BatchingWriter can be entered once, state was {self._state.value!r}")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="event-store-writer")
        self._state = _State.OPEN
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close(exc)

    async def close(self, pending_exc: BaseException | None = None) -> None:
        """Write everything queued, stop the task and raise the store's error if it failed.

        When ``pending_exc`` (the exception leaving the ``async with`` body) is given, a store
        error is attached to it as a note instead of replacing it.
        """
        if self._state is not _State.OPEN or self._task is None:
            return
        self._state = _State.CLOSED
        try:
            await self._queue.put(_STOP)
            await self._task
        except asyncio.CancelledError:
            self._task.cancel()
            raise
        if self._error is not None:
            if pending_exc is None:
                raise self._error
            pending_exc.add_note(f"the event store writer also failed: {self._error!r}")

    @property
    def pending(self) -> int:
        """Number of ``put`` calls queued and not yet taken by the writer task."""
        return self._queue.qsize()

    async def put(self, records: Iterable[object]) -> None:
        """Queue ``records`` for writing; returns at once unless the queue is full, then waits
        until the writer task makes room (backpressure).

        Raises
        ------
        Exception
            The store's exception, if an earlier batch failed.
        RuntimeError
            If the writer is not open.
        """
        self._check_usable()
        batch = list(records)
        if batch:
            await self._queue.put(batch)

    def put_nowait(self, records: Iterable[object]) -> None:
        """Queue ``records`` without ever waiting (for synchronous callers).

        Raises
        ------
        WriterQueueFull
            If ``max_queue`` puts are already waiting.
        Exception, RuntimeError
            As :meth:`put`.
        """
        self._check_usable()
        batch = list(records)
        if batch:
            try:
                self._queue.put_nowait(batch)
            except asyncio.QueueFull:
                raise WriterQueueFull(
                    f"event store writer queue is full ({self._queue.maxsize} puts waiting)"
                ) from None

    async def flush(self) -> None:
        """Return once every record put before this call is written.

        Raises
        ------
        Exception
            The store's exception, if a batch failed (now or before).
        RuntimeError
            If the writer is not open.
        """
        self._check_usable()
        assert self._task is not None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Flush(done))
        await asyncio.wait((done, self._task), return_when=asyncio.FIRST_COMPLETED)
        if not done.done():
            raise RuntimeError("event store writer task ended before the flush was served") from (
                self._task.exception() if not self._task.cancelled() else None
            )
        done.result()

    def _check_usable(self) -> None:
        if self._error is not None:
            raise self._error
        if self._state is not _State.OPEN:
            raise RuntimeError(f"BatchingWriter is not open, state was {self._state.value!r}")

    async def _run(self) -> None:
        while True:
            batch, flushes, stop = await self._collect(await self._queue.get())
            await self._write(batch)
            for done in flushes:
                if done.cancelled():
                    continue
                if self._error is not None:
                    done.set_exception(self._error)
                else:
                    done.set_result(None)
            if stop:
                return

    async def _collect(self, item: _Item) -> tuple[list[object], list[asyncio.Future[None]], bool]:
        # Gather queued items into one batch until max_batch records, max_delay_s, a flush or stop.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_delay_s
        batch: list[object] = []
        while True:
            if isinstance(item, _Stop):
                return batch, [], True
            if isinstance(item, _Flush):
                return batch, [item.done], False
            batch.extend(item)
            if len(batch) >= self._max_batch:
                return batch, [], False
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                try:
                    async with asyncio.timeout_at(deadline):
                        item = await self._queue.get()
                except TimeoutError:
                    return batch, [], False

    async def _write(self, batch: list[object]) -> None:
        if self._error is not None:
            return  # failed before: discard, the owner is told on put/flush/close
        for start in range(0, len(batch), self._max_batch):
            chunk = batch[start : start + self._max_batch]
            try:
                await self._store.write(chunk)
            except Exception as e:
                self._error = e
                return
            self.records_written += len(chunk)
