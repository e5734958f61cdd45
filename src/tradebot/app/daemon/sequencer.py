"""Cross-symbol candle ordering for the daemon: candles leave in backtest order (open time, then symbol)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import cast

import structlog

from tradebot.core.domain import Candle, FeedStatus

log = structlog.get_logger("tradebot.daemon")


class CandleSequencer:
    """Release feed events across symbols in candle open-time order (ties: symbol order).

    A symbol's events keep their own order. A candle at time ``t`` is released once every other
    symbol has delivered a candle at ``t`` or later; a symbol that holds the others back for
    ``timeout_s`` (wall) is excused until it delivers again. Feed statuses pass as soon as the
    candles before them are released.
    """

    def __init__(self, symbols: Sequence[str], timeout_s: float) -> None:
        self._rank = {s: i for i, s in enumerate(symbols)}
        self._buf: dict[str, deque[Candle | FeedStatus]] = {s: deque() for s in symbols}
        self._seen: dict[str, int | None] = dict.fromkeys(symbols)
        self._excused: set[str] = set()
        self._timeout_s = timeout_s
        self._blocked_since: float | None = None

    def push(self, event: Candle | FeedStatus, now_s: float) -> list[Candle | FeedStatus]:
        """Add one feed event; return the events now releasable, in order."""
        sym = event.symbol
        self._buf[sym].append(event)
        if type(event) is Candle:
            self._seen[sym] = event.open_time_ms
            self._excused.discard(sym)
        return self.release(now_s)

    def release(self, now_s: float) -> list[Candle | FeedStatus]:
        """Return the events releasable now (also call it periodically for the timeout)."""
        out: list[Candle | FeedStatus] = []
        while True:
            for q in self._buf.values():
                while q and type(q[0]) is FeedStatus:
                    out.append(q.popleft())
            # The loop above took every leading FeedStatus, so each non-empty queue starts with a Candle.
            heads = [(cast(Candle, q[0]).open_time_ms, self._rank[s], s) for s, q in self._buf.items() if q]
            if not heads:
                self._blocked_since = None
                return out
            t, _, sym = min(heads)
            waiting = [
                o
                for o, seen in self._seen.items()
                if o != sym and o not in self._excused and (seen is None or seen < t)
            ]
            if waiting:
                if self._blocked_since is None:
                    self._blocked_since = now_s
                if now_s - self._blocked_since < self._timeout_s:
                    return out
                self._excused.update(waiting)
                log.warning("sequencer_timeout", waiting_for=waiting, candle_open_ms=t)
            self._blocked_since = None
            out.append(self._buf[sym].popleft())

    def pending(self) -> int:
        """Events held back."""
        return sum(len(q) for q in self._buf.values())


__all__ = ["CandleSequencer"]
