"""Time-slice replay of stored candles through the engine and the simulated exchange.

The backtest driver's synchronous core: :class:`Dispatcher` routes engine output to the simulated
exchange and its answers back; :func:`replay_into` replays a range of merged candles one time slice
at a time, and hands quiet stretches to the engine in bulk (:class:`ReplayStream`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tradebot.adapters.feeds.columns import CandleColumns
from tradebot.adapters.venues.simulated import SimulatedExchange
from tradebot.core.domain import (
    CancelOrder,
    Candle,
    ExchangeOrderId,
    Fill,
    OrderStatus,
    OrderUpdate,
    PlaceOrder,
    Symbol,
    Timeframe,
)
from tradebot.core.engine import Engine
from tradebot.errors import OrderRejected

__all__ = ["Dispatcher", "ReplayStream", "replay_into", "slice_end"]

#: Venue passes over one slice's opens: fills → follow-up orders → their fills (sells, then deferred buys).
_MAX_OPEN_PASSES = 4


class Dispatcher:
    """Routes engine output: orders to the simulated exchange (and its answers back), records to a list."""

    def __init__(self, engine: Engine, exchange: SimulatedExchange) -> None:
        self.engine = engine
        self.exchange = exchange
        self.records: list[object] = []
        self.n_orders = 0

    def dispatch(self, commands: Sequence[object]) -> None:
        """Act on engine output (recursively for the engine's answers to venue reports)."""
        records = self.records
        for cmd in commands:
            if type(cmd) is PlaceOrder:
                self.n_orders += 1
                report = self.exchange.submit(cmd, cmd.created_ms)
                update = OrderUpdate(
                    client_order_id=cmd.client_order_id,
                    symbol=cmd.symbol,
                    status=report.status,
                    ts_ms=cmd.created_ms,
                    exchange_order_id=None
                    if report.exchange_order_id is None
                    else ExchangeOrderId(report.exchange_order_id),
                    reason=report.reason,
                )
                if report.status is not OrderStatus.PENDING_SUBMIT:
                    self.dispatch(self.engine.on_order_update(update))
            elif type(cmd) is CancelOrder:
                self._cancel(cmd)
            else:
                records.append(cmd)

    def _cancel(self, cmd: CancelOrder) -> None:
        # Cancel at the venue now (the engine's time); an order no longer open answers its final state.
        t = self.engine.last_time_ms
        try:
            report = self.exchange.cancel(cmd.client_order_id, t)
        except OrderRejected:
            found = self.exchange.fetch_order(cmd.client_order_id)
            if found is None:
                return
            report = found
        update = OrderUpdate(
            client_order_id=cmd.client_order_id,
            symbol=cmd.symbol,
            status=report.status,
            ts_ms=t,
            reason=cmd.reason,
        )
        self.dispatch(self.engine.on_order_update(update))

    def on_venue_events(self, events: Sequence[Fill | OrderUpdate]) -> None:
        """Feed fills and order updates from the simulated exchange to the engine."""
        engine = self.engine
        for ev in events:
            if isinstance(ev, Fill):
                self.dispatch(engine.on_fill(ev))
            else:
                self.dispatch(engine.on_order_update(ev))


def slice_end(stream: Sequence[Candle], i: int) -> int:
    """Return the first index >= ``i`` that starts a new time slice (candles of one open time)."""
    n = len(stream)
    while 0 < i < n and stream[i].open_time_ms == stream[i - 1].open_time_ms:
        i += 1
    return i


#: Merged candles per replay window: each window's rows are read into Python lists (fast per-candle
#: access) and dropped after it, so a long history costs its columns, not millions of objects.
WINDOW = 8_192


@dataclass(frozen=True, slots=True)
class ReplayStream:
    """Base candles of every symbol merged in time order, as columns, for :func:`replay_into`.

    The merge is an index over each symbol's :class:`CandleColumns`: merged candle ``i`` is row
    ``rows[i]`` of ``by_symbol[symbol_index[i]]``, opening at ``times[i]``. Equal open times come in
    ``by_symbol`` order (as :func:`~tradebot.adapters.feeds.replay.merge_by_time`). Built once per
    set of loaded candles and shared by every run on them (nothing here changes during a run).

    Attributes
    ----------
    by_symbol
        Each symbol's candles, in the loaded order (a symbol may have none).
    times
        Open time of each merged candle, ms UTC (``int64``), ascending.
    symbol_index, rows
        Where each merged candle lives in ``by_symbol``.
    """

    by_symbol: tuple[CandleColumns, ...]
    times: npt.NDArray[np.int64]
    symbol_index: npt.NDArray[np.int16]
    rows: npt.NDArray[np.int32]

    @classmethod
    def from_columns(cls, candles_by_symbol: Mapping[Symbol, Sequence[Candle]]) -> ReplayStream:
        """Merge each symbol's ascending base candles (columns, or any sequence of candles) by open
        time, ties in the mapping's order (a stable sort of the concatenated open times)."""
        cols = _as_columns(candles_by_symbol)
        times = np.concatenate([c.open_time_ms for c in cols]) if cols else np.zeros(0, np.int64)
        order = np.argsort(times, kind="stable")
        index = np.concatenate([np.full(len(c), k, dtype=np.int16) for k, c in enumerate(cols)])
        rows = np.concatenate([np.arange(len(c), dtype=np.int32) for c in cols])
        return cls(cols, times[order], index[order], rows[order])

    @classmethod
    def build(
        cls, candles: Sequence[Candle], by_symbol: Mapping[Symbol, Sequence[Candle]] | None = None
    ) -> ReplayStream:
        """Wrap time-ordered base candles, in their given order.

        ``by_symbol``, when given, must hold exactly ``candles`` split by symbol (as loaded); else
        they are split here.

        Raises
        ------
        ValueError
            If ``by_symbol`` does not hold as many candles as ``candles``, or names no symbol of one.
        """
        if by_symbol is None:
            split: dict[str, list[Candle]] = {}
            for c in candles:
                split.setdefault(c[0], []).append(c)
            by_symbol = {Symbol(s): v for s, v in split.items()}
        cols = _as_columns(by_symbol)
        if sum(len(c) for c in cols) != len(candles):
            raise ValueError(
                f"by_symbol holds {sum(len(c) for c in cols)} candles, the stream {len(candles)}"
            )
        where = {c.symbol: k for k, c in enumerate(cols)}
        seen = [0] * len(cols)
        index: list[int] = []
        rows: list[int] = []
        for c in candles:
            k = where.get(c[0])
            if k is None:
                raise ValueError(f"by_symbol has no candles of {c[0]!r}, was {list(where)}")
            index.append(k)
            rows.append(seen[k])
            seen[k] += 1
        times = np.array([c[2] for c in candles], dtype=np.int64)
        return cls(cols, times, np.array(index, dtype=np.int16), np.array(rows, dtype=np.int32))

    def __len__(self) -> int:
        return len(self.times)

    def open_time_ms(self, i: int) -> int:
        """Open time (ms UTC) of merged candle ``i``."""
        return int(self.times[i])

    def slice_end(self, i: int) -> int:
        """Return the first index >= ``i`` that starts a new time slice (as :func:`slice_end`)."""
        times = self.times
        if 0 < i < len(times) and times[i] == times[i - 1]:
            return int(np.searchsorted(times, times[i - 1], "right"))
        return i


def _as_columns(candles_by_symbol: Mapping[Symbol, Sequence[Candle]]) -> tuple[CandleColumns, ...]:
    # Each symbol's candles as columns (loaded columns as they are); one timeframe for all.
    tf = next((c[0][1] for c in candles_by_symbol.values() if len(c)), None)
    out = []
    for s, c in candles_by_symbol.items():
        if isinstance(c, CandleColumns):
            out.append(c)
        else:
            out.append(CandleColumns.from_candles(str(s), c[0][1] if c else tf or Timeframe.M1, c))
    return tuple(out)


class _Rows:
    """One symbol's candles of a replay window as Python lists (cheap to index per candle)."""

    __slots__ = ("c", "h", "l", "o", "symbol", "t", "tf", "v")

    def __init__(self, cols: CandleColumns, lo: int, hi: int) -> None:
        self.symbol = cols.symbol
        self.tf = cols.timeframe
        self.t, self.o, self.h, self.l, self.c, self.v = (a[lo:hi].tolist() for a in cols.columns())

    def candle(self, r: int) -> Candle:
        return Candle(self.symbol, self.tf, self.t[r], self.o[r], self.h[r], self.l[r], self.c[r], self.v[r])


def replay_into(
    d: Dispatcher, stream: Sequence[Candle] | ReplayStream, lo: int, hi: int, *, quiet_runs: bool = True
) -> list[object]:
    """Replay ``stream[lo:hi]`` through the dispatcher's engine; return the records produced.

    Candles are taken one time slice (one open time, every symbol) at a time, as the daemon sees
    them: first the venue fills the orders queued for each symbol at the slice's opens and the engine
    learns of those fills at once; orders it decides on them (the buys a rebalance deferred until its
    sells filled) are filled at the same opens, as a live venue fills a market order sent right after
    the open; then the engine gets the slice's closed candles. ``lo`` and ``hi`` should be slice
    boundaries (see :func:`slice_end`).

    Quiet stretches (no order waiting at the venue, and :meth:`Engine.quiet_until` says the candles
    can only move marks) go to :meth:`Engine.on_quiet_run` as one run per symbol, read straight from
    the columns; the result is the same as candle by candle (``quiet_runs=False``), which the tests
    check. Candles are built only for the slices fed one by one. The range is replayed in windows of
    about :data:`WINDOW` candles (whole slices), like consecutive calls.
    """
    rs = stream if isinstance(stream, ReplayStream) else ReplayStream.build(stream)
    i = lo
    while i < hi:
        j = rs.slice_end(min(i + WINDOW, hi))
        _replay_window(d, rs, i, j, quiet_runs)
        i = j
    records, d.records = d.records, []
    return records


def _replay_window(d: Dispatcher, rs: ReplayStream, lo: int, hi: int, quiet_runs: bool) -> None:
    # replay_into over one window [lo, hi) of slice boundaries, on the window's rows as lists.
    engine, exchange = d.engine, d.exchange
    on_candle = engine.on_candle
    quiet_until = engine.quiet_until if quiet_runs else None
    venue_candle = exchange.on_candle
    dispatch = d.dispatch
    venue_events = d.on_venue_events
    hi_ms = rs.open_time_ms(hi) if hi < len(rs) else 1 << 62  # quiet blocks stop before candle hi
    first = [int(np.searchsorted(c.open_time_ms, rs.times[lo], "left")) for c in rs.by_symbol]
    owns = [
        _Rows(c, a, int(np.searchsorted(c.open_time_ms, hi_ms, "left")))
        for c, a in zip(rs.by_symbol, first, strict=True)
    ]
    index = rs.symbol_index[lo:hi]
    times: list[int] = rs.times[lo:hi].tolist()
    syms: list[int] = index.tolist()
    rows: list[int] = (rs.rows[lo:hi] - np.asarray(first, dtype=np.int32)[index]).tolist()
    n = hi - lo
    i = 0
    after_block = -1  # open time right after the last quiet block: never quiet (it closes a period)
    cursors = [0] * len(owns)
    while i < n:
        t = times[i]
        if (
            quiet_until is not None
            and t != after_block
            and (limit := quiet_until()) > t
            and not exchange.has_queued_orders()
        ):
            base_ms = owns[syms[i]].tf.ms
            n_block = _quiet_block(engine, owns, cursors, t, min(limit, hi_ms), base_ms, dispatch)
            after_block = limit
            if n_block:
                i += n_block
                continue
        j = i + 1
        while j < n and times[j] == t:
            j += 1
        group = [owns[syms[p]].candle(rows[p]) for p in range(i, j)]
        if exchange.has_queued_orders():
            for _pass in range(_MAX_OPEN_PASSES):
                placed = d.n_orders
                for candle in group:
                    events = venue_candle(candle)
                    if events:
                        venue_events(events)
                if d.n_orders == placed:
                    break
        for candle in group:
            out = on_candle(candle)
            if out:
                dispatch(out)
        i = j


def _quiet_block(
    engine: Engine,
    owns: Sequence[_Rows],
    cursors: list[int],
    first_ms: int,
    end_ms: int,
    base_ms: int,
    dispatch: Callable[[Sequence[object]], None],
) -> int:
    # Each symbol's candles with first_ms <= open < end_ms as one run; candle by candle if the
    # engine declines the run (a gap in it, say). The candles move marks only, so order across
    # symbols does not matter. cursors[k] is where the previous block of symbol k ended: the next
    # one starts a slice or two later, and without a gap it ends (end - first) / base further.
    # Returns the number of candles taken: the merged stream holds exactly these candles from the
    # block's first slice on. The run's open, extremes, close and volumes come from the window's
    # columns (volumes in order: the aggregator sums them left to right).
    taken = 0
    for k, own in enumerate(owns):
        ts = own.t
        n_own = len(ts)
        a = cursors[k]
        steps = 0
        while a < n_own and ts[a] < first_ms:
            a += 1
            steps += 1
            if steps > 4:
                a = bisect_left(ts, first_ms, a)
                break
        b = a + (end_ms - first_ms) // base_ms
        if b > n_own or ts[b - 1] != end_ms - base_ms:  # a gap in the block, or the data ends in it
            b = bisect_left(ts, end_ms, a)
        cursors[k] = b
        if b == a:
            continue
        taken += b - a
        if not engine.on_quiet_run(
            own.symbol,
            ts[a],
            ts[b - 1],
            b - a,
            own.o[a],
            max(own.h[a:b]),
            min(own.l[a:b]),
            own.c[b - 1],
            own.v[a:b],
        ):
            for r in range(a, b):
                out = engine.on_candle(own.candle(r))
                if out:
                    dispatch(out)
    return taken
