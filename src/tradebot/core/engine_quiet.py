"""Bulk replay of quiet stretches: the backtest's way of keeping the per-candle path lean.

A mixin of :class:`~tradebot.core.engine.Engine` (it shares the engine's state). Between stream
closes, when no overlay rule watches a position bar by bar and no plan is waiting, a base candle can
only move marks and running aggregates. :meth:`QuietRuns.quiet_until` says how far that holds, and
:meth:`QuietRuns.on_quiet_run` applies a symbol's candles up to there in one step, with the same
result as :meth:`Engine.on_candle` on each. Pure, like the rest of the core.
"""

from __future__ import annotations

from collections.abc import Iterable


def _next_clock_close(close_ms: int, clock_ms: int) -> int:
    # The first rebalance-clock boundary at or after close_ms (ms UTC).
    return -(-close_ms // clock_ms) * clock_ms


class QuietRuns:
    """Quiet-run methods of the engine (every attribute used here is set by ``Engine``)."""

    def quiet_until(self) -> int:
        """Open time (ms UTC) before which base candles, of every symbol, can only move marks.

        Until then no candle closes a stream period or the rebalance clock, no overlay rule watches
        an open position bar by bar, and no plan is waiting, so :meth:`on_quiet_run` may take each
        symbol's candles as one run. Returns ``0`` when that is not the case now. A driver must also
        know that its venue has no order waiting to fill at those candles' opens.
        """
        if self._due_ms is not None or self._force:
            return 0
        limit = 1 << 62
        earliest = limit
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
        clock_limit = _next_clock_close(earliest + base, self._clock_ms) - base
        return limit if limit < clock_limit else clock_limit

    def on_quiet_run(
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
    ) -> bool:
        """Apply a run of ``n`` contiguous closed base candles of ``symbol`` that change only marks.

        The bulk form of :meth:`on_candle` for a backtest's quiet stretches (see :meth:`quiet_until`):
        the same state results as feeding the candles one by one, and nothing is returned because
        such candles produce nothing.

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
        bool
            ``True`` if applied; ``False``, with nothing changed, if the run is not quiet (a gap, a
            period or clock close inside it, a bar-by-bar overlay rule, a pending plan): feed its
            candles to :meth:`on_candle` instead.
        """
        st = self._sym[symbol]
        t = last_open_ms + self._base_ms
        if (
            self._due_ms is not None
            or self._force
            or (st.open and st.managed)
            or _next_clock_close(first_open_ms + self._base_ms, self._clock_ms) <= t
            or not st.agg.absorb(first_open_ms, last_open_ms, n, open_, high, low, close, volumes)
        ):
            return False
        st.mark = close
        st.time = t
        if t > self.last_time_ms:
            self.last_time_ms = t
        if st.open:
            if high > st.hi:
                st.hi = high
            if low < st.lo:
                st.lo = low
        return True
