"""Time-slice replay of stored candles through the engine and the simulated exchange.

The backtest driver's synchronous core: :class:`Dispatcher` routes engine output to the simulated
exchange and its answers back; :func:`replay_into` replays a range of merged candles one time slice
at a time, and hands quiet stretches to the engine in bulk (:class:`ReplayStream`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter

from tradebot.adapters.venues.simulated import SimulatedExchange
from tradebot.core.domain import Candle, ExchangeOrderId, Fill, OrderStatus, OrderUpdate, PlaceOrder, Symbol
from tradebot.core.engine import Engine

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
            else:
                records.append(cmd)

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


_open_time = itemgetter(2)
_high = itemgetter(4)
_low = itemgetter(5)
_volume = itemgetter(7)


@dataclass(frozen=True, slots=True)
class ReplayStream:
    """Base candles merged in time order, plus each symbol's own list for the bulk replay of quiet runs.

    Attributes
    ----------
    candles
        Every base candle, sorted by open time (``merge_by_time``).
    by_symbol
        Per symbol, its candles in time order (the same objects).
    """

    candles: Sequence[Candle]
    by_symbol: tuple[tuple[Symbol, Sequence[Candle]], ...]

    @classmethod
    def build(
        cls, candles: Sequence[Candle], by_symbol: Mapping[Symbol, Sequence[Candle]] | None = None
    ) -> ReplayStream:
        """Wrap time-ordered base candles.

        ``by_symbol``, when given, must hold exactly ``candles`` split by symbol (as loaded); else
        they are split here.
        """
        if by_symbol is None:
            split: dict[str, list[Candle]] = {}
            for c in candles:
                split.setdefault(c[0], []).append(c)
            by_symbol = {Symbol(s): v for s, v in split.items()}
        return cls(candles, tuple(by_symbol.items()))

    def __len__(self) -> int:
        return len(self.candles)


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
    can only move marks) go to :meth:`Engine.on_quiet_run` as one run per symbol; the result is the
    same as candle by candle (``quiet_runs=False``), which the tests check.
    """
    rs = stream if isinstance(stream, ReplayStream) else ReplayStream.build(stream)
    candles = rs.candles
    engine, exchange = d.engine, d.exchange
    on_candle = engine.on_candle
    quiet_until = engine.quiet_until if quiet_runs else None
    venue_candle = exchange.on_candle
    dispatch = d.dispatch
    venue_events = d.on_venue_events
    i = lo
    after_block = -1  # open time right after the last quiet block: never quiet (it closes a period)
    cursors = [0] * len(rs.by_symbol)
    hi_ms = candles[hi][2] if hi < len(candles) else 1 << 62  # quiet blocks stop before candles[hi]
    while i < hi:
        t = candles[i][2]
        if (
            quiet_until is not None
            and t != after_block
            and (limit := quiet_until()) > t
            and not exchange.has_queued_orders()
        ):
            n_block = _quiet_block(
                engine, rs.by_symbol, cursors, t, min(limit, hi_ms), candles[i][1].ms, dispatch
            )
            after_block = limit
            if n_block:
                i += n_block
                continue
        j = i + 1
        while j < hi and candles[j][2] == t:
            j += 1
        group = candles[i:j]
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
    records, d.records = d.records, []
    return records


def _quiet_block(
    engine: Engine,
    by_symbol: Sequence[tuple[Symbol, Sequence[Candle]]],
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
    # block's first slice on.
    taken = 0
    for k, (symbol, own) in enumerate(by_symbol):
        n_own = len(own)
        a = cursors[k]
        steps = 0
        while a < n_own and own[a][2] < first_ms:
            a += 1
            steps += 1
            if steps > 4:
                a = bisect_left(own, first_ms, a, key=_open_time)
                break
        b = a + (end_ms - first_ms) // base_ms
        if b > n_own or own[b - 1][2] != end_ms - base_ms:  # a gap in the block, or the data ends in it
            b = bisect_left(own, end_ms, a, key=_open_time)
        cursors[k] = b
        if b == a:
            continue
        taken += b - a
        run = own[a:b]
        first, last = run[0], run[-1]
        if not engine.on_quiet_run(
            symbol,
            first[2],
            last[2],
            b - a,
            first[3],
            max(map(_high, run)),
            min(map(_low, run)),
            last[6],
            map(_volume, run),
        ):
            for candle in run:
                out = engine.on_candle(candle)
                if out:
                    dispatch(out)
    return taken
