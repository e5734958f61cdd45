"""Bulk replay of quiet stretches: the backtest's way of keeping the per-candle path lean.

Between stream closes, when no overlay rule watches a position bar by bar and no plan is waiting, a
base candle can only move marks and running aggregates. :meth:`QuietReplayer.until` says how far
that holds for the symbols' own state, and :meth:`QuietReplayer.apply` takes a symbol's candles up to
there in one step, with the same result as :meth:`~tradebot.core.engine.Engine.on_candle` on each.
The engine adds its own condition (no clock tick or forced plan pending) before asking. Pure, like
the rest of the core.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tradebot.core.engine.symbols import SymState

_FAR = 1 << 62


def next_clock_close(close_ms: int, clock_ms: int) -> int:
    """The first rebalance-clock boundary at or after ``close_ms`` (both ms UTC)."""
    return -(-close_ms // clock_ms) * clock_ms


class QuietReplayer:
    """Quiet-run bounds and bulk application over the engine's per-symbol state.

    Parameters
    ----------
    symbols
        The engine's per-symbol state (marks, times, aggregators), updated in place by :meth:`apply`.
    base_ms, clock_ms
        Length of the base timeframe and of the rebalance timeframe, ms.
    """

    def __init__(self, symbols: Mapping[str, SymState], base_ms: int, clock_ms: int) -> None:
        self._sym = symbols
        self._states = tuple(symbols.values())
        self._base_ms = base_ms
        self._clock_ms = clock_ms

    def until(self) -> int:
        """Open time (ms UTC) before which no symbol's candle closes a stream period or the rebalance
        clock; ``0`` when a managed position is open (its rules watch every bar)."""
        limit = _FAR
        earliest = _FAR
        for st in self._states:
            if st.open and st.managed:
                return 0
            agg_limit = st.agg.quiet_before_ms
            if agg_limit < limit:
                limit = agg_limit
            if st.time < earliest:
                earliest = st.time
        if limit <= 0:
            return 0
        # Open time of the candle whose close is the next rebalance-clock boundary (the earliest
        # symbol's: the boundary only moves forward with time).
        base = self._base_ms
        clock_limit = next_clock_close(earliest + base, self._clock_ms) - base
        return limit if limit < clock_limit else clock_limit

    def apply(
        self,
        symbol: str,
        first_open_ms: int,
        last_open_ms: int,
        n: int,
        open_: float,
        high: float,
        low: float,
        close: float,
        volumes: Iterable[float],
    ) -> int:
        """Apply a run of ``n`` contiguous closed base candles of ``symbol`` that change only marks.

        The same state results as feeding the candles one by one to the engine's ``on_candle``.

        Parameters
        ----------
        symbol
            ccxt symbol of the run.
        first_open_ms, last_open_ms
            Open times (ms UTC) of its first and last candles (strictly increasing, base timeframe).
        n
            Number of candles.
        open_, high, low, close
            First open, max high, min low and last close of the run (quote currency).
        volumes
            The candles' volumes in order (base units).

        Returns
        -------
        int
            The run's close time (ms UTC) if applied; ``0``, with nothing changed, if the run is not
            quiet (a gap, a period or clock close inside it, a bar-by-bar overlay rule).
        """
        st = self._sym[symbol]
        t = last_open_ms + self._base_ms
        if (
            (st.open and st.managed)
            or next_clock_close(first_open_ms + self._base_ms, self._clock_ms) <= t
            or not st.agg.absorb(first_open_ms, last_open_ms, n, open_, high, low, close, volumes)
        ):
            return 0
        st.mark = close
        st.time = t
        if st.open:
            if high > st.hi:
                st.hi = high
            if low < st.lo:
                st.lo = low
        return t
