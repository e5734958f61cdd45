"""Test support: consume a feed's output queue and check it against the simulator's history."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from tradebot.core.domain import Candle, FeedStatus
from tradebot.exchange_sim.market import MINUTE_MS, Market


@dataclass(frozen=True, slots=True)
class Received:
    """One event taken off the queue, with the simulated time and the symbol's stale flag at receipt."""

    event: Candle | FeedStatus
    sim_now_ms: int
    stale: bool
    wall_s: float


@dataclass
class FeedRecorder:
    """Consumes ``queue`` until every symbol has received its candle opened at ``until_open_ms[symbol]``.

    Attributes
    ----------
    market
        The simulator's market (for the simulated time at receipt).
    until_open_ms
        Unified symbol → open time of the last candle to wait for.
    """

    market: Market
    queue: asyncio.Queue[Candle | FeedStatus]
    until_open_ms: dict[str, int]
    received: list[Received] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def candles(self, symbol: str) -> list[Candle]:
        """The candles of ``symbol`` in delivery order."""
        return [r.event for r in self.received if isinstance(r.event, Candle) and r.event.symbol == symbol]

    def statuses(self, symbol: str) -> list[FeedStatus]:
        """The status events of ``symbol`` in delivery order."""
        return [
            r.event for r in self.received if isinstance(r.event, FeedStatus) and r.event.symbol == symbol
        ]

    async def run(self) -> None:
        """Consume forever (cancel when done); sets :attr:`done` once every symbol reached its target."""
        stale: dict[str, bool] = {}
        loop = asyncio.get_running_loop()
        while True:
            event = await self.queue.get()
            if isinstance(event, FeedStatus):
                stale[event.symbol] = event.stale
            self.received.append(
                Received(event, self.market.now_ms, stale.get(event.symbol, True), loop.time())
            )
            if all(self._reached(s, t) for s, t in self.until_open_ms.items()):
                self.done.set()

    def _reached(self, symbol: str, target: int) -> bool:
        last = next(
            (
                r.event
                for r in reversed(self.received)
                if isinstance(r.event, Candle) and r.event.symbol == symbol
            ),
            None,
        )
        return last is not None and last.open_time_ms >= target

    def late_fresh_candles(self, max_lag_ms: int) -> list[Received]:
        """Candles received while their symbol was not stale although older than ``max_lag_ms``
        behind the simulated time (i.e. delivered late as if fresh)."""
        return [
            r
            for r in self.received
            if isinstance(r.event, Candle)
            and not r.stale
            and r.sim_now_ms - (r.event.open_time_ms + MINUTE_MS) > max_lag_ms
        ]


def expected_history(
    market: Market, symbols: Mapping[str, str], since_ms: int, until_open_ms: int
) -> dict[str, list[Candle]]:
    """Return, per unified symbol, the simulator's closed 1m candles with ``since_ms <= open <= until_open_ms``.

    ``symbols`` maps unified symbol → tape symbol (``"BTC/USDT"`` → ``"BTCUSDT"``).
    """
    return {
        u: [b.to_candle(u) for b in market.tape.bars(t, "1m", since_ms, until_open_ms + 1)]
        for u, t in symbols.items()
    }
