"""Aggregation of closed base candles (1m, 5m, …) into UTC-aligned higher-timeframe candles.

Performance matters: a backtest pushes every base candle of every symbol through
:meth:`CandleAggregator.update`. A base candle that closes nothing costs one comparison and a few
attribute updates, and returns the shared empty tuple :data:`NO_CANDLES` (no allocation).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import reduce
from itertools import pairwise
from operator import add
from typing import Final

from tradebot.core.domain import Candle, Timeframe

__all__ = ["NO_CANDLES", "CandleAggregator"]

#: Returned by :meth:`CandleAggregator.update` when no candle closed. Shared: never mutate.
NO_CANDLES: Final[tuple[Candle, ...]] = ()


_TIMEFRAME_MS: Final[dict[str, int]] = {tf: tf.ms for tf in Timeframe}


def _timeframe_ms(candle: Candle) -> int:
    return _TIMEFRAME_MS[candle[1]]


class _Level:
    """One higher target timeframe fed by closed candles of the level below (the cascade)."""

    __slots__ = ("active", "c", "end", "expected", "h", "l", "ms", "next", "o", "present", "start", "tf", "v")

    def __init__(self, tf: Timeframe, base: Timeframe) -> None:
        self.tf = tf
        self.ms = tf.ms
        self.expected = tf.ms // base.ms
        self.next: _Level | None = None
        self.active = False
        self.start = self.end = self.present = 0
        self.o = self.h = self.l = self.c = self.v = 0.0

    def feed(self, child: Candle, child_end: int, present: int, symbol: str, out: list[Candle]) -> None:
        """Add a closed child candle (ending at ``child_end``, holding ``present`` base candles).

        Closes the period when the child is its last one.
        """
        if not self.active:
            start = child.open_time_ms - child.open_time_ms % self.ms
            self.start, self.end, self.active = start, start + self.ms, True
            self.o, self.h, self.l, self.c, self.v = (
                child.open,
                child.high,
                child.low,
                child.close,
                child.volume,
            )
            self.present = present
        else:
            if child.high > self.h:
                self.h = child.high
            if child.low < self.l:
                self.l = child.low
            self.c = child.close
            self.v += child.volume
            self.present += present
        if child_end == self.end:
            self.close(symbol, out)

    def close(self, symbol: str, out: list[Candle]) -> None:
        """Emit the current period into ``out`` and feed it to the next level."""
        candle = Candle(
            symbol, self.tf, self.start, self.o, self.h, self.l, self.c, self.v, self.expected - self.present
        )
        out.append(candle)
        self.active = False
        if self.next is not None:
            self.next.feed(candle, self.end, self.present, symbol, out)


def _check_targets(symbol: str, base: Timeframe, targets: Sequence[Timeframe]) -> list[Timeframe]:
    if not targets:
        raise ValueError(f"{symbol}: targets must name at least one timeframe, was {targets!r}")
    ordered = sorted((Timeframe.parse(str(t)) for t in targets), key=lambda t: t.ms)
    if len(set(ordered)) != len(ordered):
        raise ValueError(f"{symbol}: targets must not repeat a timeframe, were {[str(t) for t in targets]}")
    previous = base
    for tf in ordered:
        if tf.ms % base.ms:
            raise ValueError(f"{symbol}: base timeframe {base} does not divide target timeframe {tf}")
        if tf.ms % previous.ms:
            raise ValueError(
                f"{symbol}: target timeframes must nest (each divides the next), {previous} does not divide {tf}"
            )
        previous = tf
    return ordered


class CandleAggregator:
    """Aggregate one symbol's closed base candles into UTC-aligned higher-timeframe candles.

    Periods are aligned to the epoch, i.e. to UTC boundaries (4h at 00, 04, 08 … UTC; 1d at 00:00 UTC).
    A period closes when its last base candle arrives (``open_time_ms + base.ms == period end``).
    When that candle is missing (a gap), the period is closed by the first base candle of a later
    period. An emitted candle's ``missing`` is the number of base candles absent from its period
    (a gap inside it, a missing last candle, or data that starts mid-period). A period still open
    when the data ends is never emitted (it is not closed). Aggregation: open of the first, max of
    highs, min of lows, close of the last present base candle, sum of volumes.

    Targets are processed as a cascade (base → smallest target → next target …), so a base candle
    only touches the smallest target. A target equal to ``base`` passes base candles through unchanged.

    Parameters
    ----------
    symbol
        Symbol stamped on emitted candles (e.g. ``"BTC/USDT"``).
    base
        Timeframe of the input candles.
    targets
        Timeframes to emit, any order; each must be a multiple of ``base`` and of every smaller target.

    Raises
    ------
    ValueError
        If ``targets`` is empty or repeats a timeframe, if ``base`` does not divide a target, or if
        the targets do not nest (e.g. 3m and 5m), naming the timeframes.
    """

    __slots__ = (
        "_active",
        "_c",
        "_end",
        "_expected",
        "_fast_limit",
        "_h",
        "_l",
        "_last_open",
        "_level0_tf",
        "_levels",
        "_n",
        "_next",
        "_next_t",
        "_o",
        "_passthrough",
        "_start",
        "_v",
        "base",
        "base_ms",
        "quiet_before_ms",
        "symbol",
        "targets",
    )

    def __init__(self, symbol: str, base: Timeframe, targets: Sequence[Timeframe]) -> None:
        base = Timeframe.parse(str(base))
        ordered = _check_targets(symbol, base, targets)
        self.symbol = symbol
        self.base = base
        self.base_ms = base.ms
        self.targets: tuple[Timeframe, ...] = tuple(ordered)
        self._passthrough = ordered[0] is base
        buckets = [tf for tf in ordered if tf is not base]
        upper = [_Level(tf, base) for tf in buckets[1:]]
        for lower, higher in pairwise(upper):
            lower.next = higher
        # Level 0 (the smallest bucket target) lives flattened on self for the hot path; levels
        # above it are _Level objects fed by level 0.
        self._level0_tf: Timeframe | None = buckets[0] if buckets else None
        self._expected = buckets[0].ms // base.ms if buckets else 0
        self._next: _Level | None = upper[0] if upper else None
        self._levels: tuple[_Level, ...] = tuple(upper)
        self._active = False
        self._start = self._end = self._n = 0
        self._last_open = -1  # open time of the last base candle of the current level-0 period
        self._fast_limit = -1  # fast path iff t == next_t and t <= fast_limit; -1 disables it
        self._next_t = -(1 << 62)  # open time the next contiguous base candle must have
        self._o = self._h = self._l = self._c = self._v = 0.0
        #: Open time (ms UTC) before which the next contiguous base candles close nothing: the open
        #: time of the last base candle of the current period, or of the period the next contiguous
        #: candle opens; ``-1`` before the first candle and when base candles pass through unchanged.
        #: Base candles opening before it may go through :meth:`absorb`. Read-only; kept current by
        #: every update (a plain attribute: the backtest driver reads it once per quiet block).
        self.quiet_before_ms = -1

    def update(self, candle: Candle) -> Sequence[Candle]:
        """Add one closed base candle; return the target candles it closes.

        Returns
        -------
        Sequence[Candle]
            The closed target candles in ascending timeframe order (chronological within one
            timeframe), or the shared empty tuple :data:`NO_CANDLES`. Do not mutate the result.

        Raises
        ------
        ValueError
            If the candle's timeframe is not ``base``, its open time is not aligned to ``base``, or it
            is not later than the previous candle (backwards or duplicate); names symbol and times.
        """
        t = candle[2]
        if t == self._next_t and t <= self._fast_limit and candle[1] is self.base:
            # Hot path: the next contiguous base candle of the current period (fast_limit is the
            # open time of its last one, -1 when no period is open).
            self._next_t = t + self.base_ms
            if candle[4] > self._h:
                self._h = candle[4]
            if candle[5] < self._l:
                self._l = candle[5]
            self._c = candle[6]
            self._v += candle[7]
            self._n += 1
            if t < self._fast_limit:
                return NO_CANDLES
            # The period's last base candle: close it (and the levels it completes, in ascending
            # timeframe order by the cascade).
            out: list[Candle] = []
            self._close0(out)
            self._refresh_quiet()
            return out
        return self._update_slow(candle)

    def _refresh_quiet(self) -> None:
        # Recompute quiet_before_ms after anything but the hot path moved the period or next_t.
        if self._fast_limit >= 0 or self._level0_tf is None or self._passthrough or self._next_t < 0:
            self.quiet_before_ms = self._fast_limit
        else:
            self.quiet_before_ms = self._period_start(self._next_t) + (self._expected - 1) * self.base_ms

    def absorb(
        self,
        first_open_ms: int,
        last_open_ms: int,
        n: int,
        open_: float,
        high: float,
        low: float,
        close: float,
        volumes: Iterable[float],
    ) -> bool:
        """Add a run of ``n`` contiguous base candles that closes nothing, in one step.

        Equivalent to :meth:`update` on each candle in order (same open, high, low, close, and the
        volumes summed left to right, so the float sum is bit-identical), for the backtest's bulk
        replay of quiet stretches. The run may continue the current period or open the next one. The
        caller vouches that the run's candles are base candles with strictly increasing open times
        (the replay feed checks this on load).

        Parameters
        ----------
        first_open_ms, last_open_ms
            Open times (ms UTC) of the run's first and last candles.
        n
            Number of candles in the run (``>= 1``).
        open_, high, low, close
            Open of the first candle, max of the highs, min of the lows, close of the last (quote
            currency).
        volumes
            The candles' volumes in order (base units); consumed only if the run is absorbed.

        Returns
        -------
        bool
            ``True`` if absorbed; ``False``, with nothing changed, if the run does not follow the
            previous candle contiguously, reaches the last base candle of its period, or a period
            would have to close first.
        """
        if (
            n < 1
            or first_open_ms != self._next_t
            or last_open_ms - first_open_ms != (n - 1) * self.base_ms
            or last_open_ms >= self.quiet_before_ms
        ):
            return False
        if self._active:
            if high > self._h:
                self._h = high
            if low < self._l:
                self._l = low
            self._c = close
            self._v = reduce(add, volumes, self._v)
            self._n += n
        else:
            for level in self._levels:
                if level.active and first_open_ms >= level.end:
                    return False  # a higher period ends first (after a gap): closes are due
            self._open_period(first_open_ms, open_, high, low, close, reduce(add, volumes), n)
        self._next_t = last_open_ms + self.base_ms
        self._refresh_quiet()
        return True

    def _update_slow(self, candle: Candle) -> Sequence[Candle]:
        t = candle.open_time_ms
        self._check(candle)
        out: list[Candle] = [candle] if self._passthrough else []
        if self._level0_tf is not None:
            self._close_ended(t, out)
            if self._active:
                if candle.high > self._h:
                    self._h = candle.high
                if candle.low < self._l:
                    self._l = candle.low
                self._c = candle.close
                self._v += candle.volume
                self._n += 1
            else:
                self._open_period(t, *candle[3:8], 1)
            if t == self._last_open:
                self._close0(out)
        self._next_t = t + self.base_ms
        self._refresh_quiet()
        if not out:
            return NO_CANDLES
        if len(out) > 1:
            out.sort(key=_timeframe_ms)  # stable: chronological within a timeframe
        return out

    def _check(self, candle: Candle) -> None:
        t = candle.open_time_ms
        if candle.timeframe != self.base:
            raise ValueError(
                f"{self.symbol}: candle timeframe must be the base {self.base}, was {candle.timeframe!r} "
                f"(open_time_ms={t})"
            )
        if t % self.base_ms:
            raise ValueError(f"{self.symbol}: candle open_time_ms={t} is not aligned to {self.base}")
        prev = self._next_t - self.base_ms
        if t <= prev:
            kind = "duplicate" if t == prev else "backwards in time"
            raise ValueError(
                f"{self.symbol}: {self.base} candle open_time_ms={t} is {kind}; previous open_time_ms={prev}"
            )

    def _period_start(self, t: int) -> int:
        # Open time of the level-0 period holding open time t (UTC-aligned).
        return t - t % (self._expected * self.base_ms)

    def _open_period(self, t: int, o: float, h: float, low: float, c: float, v: float, n: int) -> None:
        # Open the level-0 period of open time t with the aggregate of its first n base candles.
        start = self._period_start(t)
        self._start, self._end, self._active = start, start + self._expected * self.base_ms, True
        self._last_open = self._end - self.base_ms
        self._o, self._h, self._l, self._c, self._v = o, h, low, c, v
        self._n = n
        self._fast_limit = -1 if self._passthrough else self._last_open

    def _close_ended(self, t: int, out: list[Candle]) -> None:
        """Close every period that ended at or before ``t`` without its last base candle (gaps)."""
        if self._active and t >= self._end:
            self._close0(out)
        for level in self._levels:
            if level.active and t >= level.end:
                level.close(self.symbol, out)

    def _close0(self, out: list[Candle]) -> None:
        assert self._level0_tf is not None
        candle = Candle(
            self.symbol,
            self._level0_tf,
            self._start,
            self._o,
            self._h,
            self._l,
            self._c,
            self._v,
            self._expected - self._n,
        )
        out.append(candle)
        self._active = False
        self._fast_limit = -1
        if self._next is not None:
            self._next.feed(candle, self._end, self._n, self.symbol, out)

    def __repr__(self) -> str:
        return (
            f"CandleAggregator(symbol={self.symbol!r}, base={self.base}, "
            f"targets={[str(t) for t in self.targets]}, next_open_time_ms={self._next_t})"
        )
