"""Supervised websocket candle feed: reconnect with backoff, stale watchdog, gap backfill, status events.

The venue feeds (:mod:`binance_ws`, :mod:`deribit_ws`) subclass :class:`LiveCandleFeed` and only
know their wire format. This module guarantees, per symbol, that the closed 1m candles put on the
output queue are strictly increasing in open time with no hole the venue's REST history can fill:

* a closed candle older than or equal to the last delivered one is dropped and counted;
* a candle after a hole triggers a REST backfill of the hole first;
* after every (re)connect the candles missed while disconnected are backfilled up to the server time;
* while disconnected, stale or backfilling, the symbol is reported ``FeedStatus(stale=True)``;
  backfilled candles older than ``max_lag_ms`` (since their close, by the injectable ``now_ms``
  clock) are delivered while stale, and ``FeedStatus(stale=False)`` precedes the first candle —
  live or backfilled (a restart's catch-up) — that is within ``max_lag_ms`` of its close; a live
  candle that arrives later (buffered behind a backfill, a stalled server's backlog) is delivered
  while stale. A consumer must not open entries on candles received while stale.
"""

from __future__ import annotations

import asyncio
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from tradebot.adapters.feeds.schemas_common import excerpt
from tradebot.core.domain import Candle, FeedStatus, Symbol, Timeframe, floor_time
from tradebot.errors import DataError, RateLimited, VenueBanned, VenueError

log = structlog.get_logger("tradebot.feeds")

MINUTE_MS = Timeframe.M1.ms
#: Window of a multi-symbol catch-up: one REST page (1,000 1m candles) per symbol, delivered in time order.
CATCH_UP_WINDOW_MS = 1000 * MINUTE_MS
FeedEvent = Candle | FeedStatus
M = TypeVar("M")


def decode_or_log(
    decoder: Callable[[str | bytes, Mapping[str, str]], M],
    raw: str | bytes,
    symbols: Mapping[str, str],
    *,
    venue: str,
) -> M | None:
    """Return ``decoder(raw, symbols)``, or log ``feed_frame_rejected`` (reason, raw truncated) and
    return ``None`` when the frame is malformed (:class:`DataError`)."""
    try:
        return decoder(raw, symbols)
    except DataError as e:
        log.warning("feed_frame_rejected", venue=venue, reason=str(e), raw=excerpt(raw))
        return None


class HistorySource(Protocol):
    """REST history the feed backfills from (see :class:`tradebot.adapters.feeds.backfill.CcxtHistory`)."""

    async def fetch_candles(
        self, symbol: str, timeframe: Timeframe, since_ms: int, until_ms: int
    ) -> list[Candle]:
        """Return closed candles with ``since_ms <= open_time_ms < until_ms``, oldest first."""
        ...

    async def server_time_ms(self) -> int:
        """Return the venue's current time, ms UTC."""
        ...


class Backoff:
    """Exponential backoff with jitter: attempt ``n`` waits ``min(max_s, initial_s·factor**n)·(1 − jitter·u)``,
    ``u`` uniform in [0, 1). :meth:`reset` after a successful connect."""

    def __init__(
        self, *, initial_s: float, max_s: float, factor: float, jitter: float, rng: random.Random
    ) -> None:
        if not (0 < initial_s <= max_s):
            raise ValueError(f"backoff needs 0 < initial_s <= max_s, was {initial_s!r}/{max_s!r}")
        if factor < 1 or not (0 <= jitter < 1):
            raise ValueError(f"backoff needs factor >= 1 and 0 <= jitter < 1, was {factor!r}/{jitter!r}")
        self._initial, self._max, self._factor, self._jitter, self._rng = (
            initial_s,
            max_s,
            factor,
            jitter,
            rng,
        )
        self.attempt = 0

    def next_delay_s(self) -> float:
        """Return the next wait in seconds and count the attempt."""
        base = min(self._max, self._initial * self._factor**self.attempt)
        self.attempt += 1
        return base * (1.0 - self._jitter * self._rng.random())

    def reset(self) -> None:
        """Start again from ``initial_s`` (call after a successful connect)."""
        self.attempt = 0


@dataclass
class FeedStats:
    """Counters of one feed (monotonic; for logs, metrics and tests)."""

    connects: int = 0
    disconnects: int = 0
    watchdog_reconnects: int = 0
    live_candles: int = 0
    backfilled_candles: int = 0
    duplicates_dropped: int = 0
    out_of_order_dropped: int = 0
    frames_rejected: int = 0
    unfilled_bars: int = 0
    rest_polls: int = 0  # REST polls of closed candles while the websocket was down
    rest_poll_failures: int = 0


class FeedStale(Exception):
    """Internal: no candle data within ``stale_after_s``; the session is torn down and reconnected."""


@dataclass(frozen=True, slots=True)
class Handled:
    """What a subclass made of one frame: was it market data, and must the session end (reason)?"""

    data: bool = False
    closed: tuple[Candle, ...] = ()
    end_session: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionConfig:
    """Connection, watchdog and reconnect settings shared by every venue feed.

    Attributes
    ----------
    stale_after_s
        Reconnect when no candle update (open or closed) arrives for this long, seconds (default 30).
        Pings and heartbeats do not count.
    max_session_s
        Reconnect proactively after this long on one connection, seconds (default 23.5 h; Binance
        drops connections at 24 h).
    open_timeout_s
        Timeout of the websocket handshake, seconds (default 10).
    ping_interval_s, ping_timeout_s
        Client keepalive pings, seconds (default 20 / 20; ``None`` disables).
    backoff_initial_s, backoff_max_s, backoff_factor, backoff_jitter
        Reconnect delay ``min(max, initial·factor**n)·(1 − jitter·u)``, reset after a successful
        connect and catch-up (defaults 0.5 s, 30 s, 2.0, 0.5 — jitter is a fraction).
    banned_backoff_s
        Minimum wait after an HTTP 418 (IP ban) on backfill without Retry-After, seconds (default 120).
    idle_check_s
        Wake-up period of the read loop without frames, seconds (default 1).
    max_lag_ms
        A live closed candle counts as fresh only if received within this long after its close,
        ms (default 15000); later ones are delivered while the symbol is stale.
    rest_poll_interval_s
        While the websocket is down (between a failed session and the next successful connect),
        fetch the closed candles since each symbol's last over REST at least this often, seconds
        (default 10; ``None`` = wait for the reconnect's catch-up). Candles polled within
        ``max_lag_ms`` of their close are fresh, so trading goes on through an outage of the stream.
    """

    stale_after_s: float = 30.0
    max_session_s: float = 23.5 * 3600
    open_timeout_s: float = 10.0
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_factor: float = 2.0
    backoff_jitter: float = 0.5
    banned_backoff_s: float = 120.0
    idle_check_s: float = 1.0
    max_lag_ms: int = 15_000
    rest_poll_interval_s: float | None = 10.0


class LiveCandleFeed(ABC):
    """Base of the venue feeds. Run :meth:`run` inside the daemon's ``TaskGroup``; consume ``queue``.

    Parameters
    ----------
    symbols
        Wire id → ccxt unified symbol of the markets to stream.
    history
        REST history for backfills.
    queue
        Output: :class:`Candle` (closed, 1m) and :class:`FeedStatus` events, in order per symbol.
    last_open_ms
        Unified symbol → open time (ms UTC) of the last candle the consumer already has (e.g. from
        the warm-up); the feed backfills from the next minute. Symbols without one start at the
        first live candle.
    sleep, rng, now_ms
        Injectable wait (backoff), jitter source and clock, ms UTC (candle lag, ``FeedStatus.ts_ms``;
        the simulator's clock in tests).
    """

    venue = "?"

    def __init__(
        self,
        *,
        config: ConnectionConfig,
        symbols: Mapping[str, str],
        history: HistorySource,
        queue: asyncio.Queue[FeedEvent],
        last_open_ms: Mapping[str, int] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        if not symbols:
            raise ValueError("symbols must not be empty, was {}")
        self._cfg = config
        self.symbols = dict(symbols)
        self._history = history
        self.queue = queue
        self._last: dict[str, int | None] = {u: None for u in self.symbols.values()}
        self._last.update(dict(last_open_ms or {}))
        self._stale: dict[str, bool | None] = dict.fromkeys(self.symbols.values())
        self._sleep = sleep
        self._backoff = Backoff(
            initial_s=config.backoff_initial_s,
            max_s=config.backoff_max_s,
            factor=config.backoff_factor,
            jitter=config.backoff_jitter,
            rng=rng or random.Random(),
        )
        self._now_ms = now_ms
        self.stats = FeedStats()
        self._log = log.bind(venue=self.venue)

    # -- subclass hooks -------------------------------------------------------------------------
    @abstractmethod
    def _url(self) -> str: ...

    @abstractmethod
    async def _on_connected(self, ws: ClientConnection) -> None: ...

    @abstractmethod
    async def _handle_frame(self, ws: ClientConnection, raw: str | bytes) -> Handled: ...

    async def _on_idle(self, ws: ClientConnection) -> Handled:
        """Called every ``idle_check_s`` without frames (Deribit: grace-period finalisation)."""
        return Handled()

    def _reset_session_state(self) -> None:
        """Forget per-connection state (e.g. partially formed candles)."""
        return None

    # -- supervision ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Stream forever: connect, catch up, stream, and on any failure mark stale and reconnect.

        Never returns; cancel it to stop. ``CancelledError`` propagates; every other error of a
        session is logged and followed by a reconnect after the backoff delay.
        """
        await self._set_all_stale("starting")
        while True:
            retry_after_s = 0.0
            try:
                reason = await self._session()
                delay = 0.0
            except FeedStale:
                self.stats.watchdog_reconnects += 1
                reason, delay = "watchdog_no_data", self._backoff.next_delay_s()
            except (VenueBanned, RateLimited) as e:
                reason = f"{type(e).__name__}: {e}"
                retry_after_s = e.retry_after_s or (
                    self._cfg.banned_backoff_s if isinstance(e, VenueBanned) else 0.0
                )
                delay = max(self._backoff.next_delay_s(), retry_after_s)
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, InvalidURI, VenueError) as e:
                reason, delay = f"{type(e).__name__}: {excerpt(e, 200)}", self._backoff.next_delay_s()
            self.stats.disconnects += 1
            self._reset_session_state()
            await self._set_all_stale(reason)
            self._log.info(
                "feed_reconnecting", reason=reason, delay_s=round(delay, 3), attempt=self._backoff.attempt
            )
            await self._wait_polling_rest(delay)

    async def _wait_polling_rest(self, delay_s: float) -> None:
        """Wait ``delay_s`` before the next connect; meanwhile deliver the closed candles REST has
        (every ``rest_poll_interval_s``), so a websocket outage does not stop the candles."""
        interval = self._cfg.rest_poll_interval_s
        if interval is None or delay_s <= 0:
            await self._sleep(delay_s)
            return
        waited = 0.0
        while True:
            try:
                await self._catch_up_all()
            except (VenueBanned, RateLimited) as e:  # never poll into a rate limit: just wait
                self.stats.rest_poll_failures += 1
                self._log.warning("feed_rest_poll_limited", error=f"{type(e).__name__}: {excerpt(e, 200)}")
                await self._sleep(delay_s - waited)
                return
            except (VenueError, DataError, OSError, TimeoutError) as e:  # REST down too: retry later
                self.stats.rest_poll_failures += 1
                self._log.warning("feed_rest_poll_failed", error=f"{type(e).__name__}: {excerpt(e, 200)}")
            else:
                self.stats.rest_polls += 1
            step = min(interval, delay_s - waited)
            if step <= 0:
                return
            await self._sleep(step)
            waited += step

    async def _session(self) -> str:
        self._log.info("feed_connecting", url=self._url())
        async with connect(
            self._url(),
            open_timeout=self._cfg.open_timeout_s,
            ping_interval=self._cfg.ping_interval_s,
            ping_timeout=self._cfg.ping_timeout_s,
            close_timeout=2,
            max_size=2**22,
        ) as ws:
            self.stats.connects += 1
            await self._on_connected(ws)
            self._log.info("feed_connected", connects=self.stats.connects)
            await self._catch_up_all()
            self._backoff.reset()  # only once subscribed and caught up: a session failing early backs off
            return await self._read_loop(ws)

    async def _read_loop(self, ws: ClientConnection) -> str:
        loop = asyncio.get_running_loop()
        cfg = self._cfg
        session_end = loop.time() + cfg.max_session_s
        deadline = loop.time() + cfg.stale_after_s
        while True:
            now = loop.time()
            if now >= session_end:
                return "session_rollover"
            if now >= deadline:
                self._log.warning("feed_watchdog_fired", stale_after_s=cfg.stale_after_s)
                raise FeedStale()
            wait_s = min(deadline, session_end, now + cfg.idle_check_s) - now
            try:
                async with asyncio.timeout(wait_s):
                    raw = await ws.recv()
            except TimeoutError:
                handled = await self._on_idle(ws)
            else:
                handled = await self._handle_frame(ws, raw)
            if handled.data:
                deadline = loop.time() + cfg.stale_after_s
            for candle in handled.closed:
                if await self._on_closed(candle):
                    deadline = loop.time() + cfg.stale_after_s  # a backfill took time
            if handled.end_session is not None:
                return handled.end_session

    # -- sequencing -----------------------------------------------------------------------------
    async def _on_closed(self, candle: Candle) -> bool:
        """Deliver a closed live candle in sequence; return True when a backfill ran first."""
        symbol, open_ms = candle.symbol, candle.open_time_ms
        last = self._last[symbol]
        if last is not None and open_ms <= last:
            if open_ms == last:
                self.stats.duplicates_dropped += 1
            else:
                self.stats.out_of_order_dropped += 1
            self._log.info(
                "feed_candle_dropped",
                symbol=symbol,
                open_time_ms=open_ms,
                last_open_ms=last,
                why="duplicate" if open_ms == last else "out_of_order",
            )
            return False
        backfilled = False
        if last is not None and open_ms > last + MINUTE_MS:
            await self._set_stale(symbol, True, "gap_backfill")
            await self._fill(symbol, last + MINUTE_MS, open_ms)
            backfilled = True
        lag_ms = self._now_ms() - candle.close_time_ms
        if lag_ms <= self._cfg.max_lag_ms:
            await self._set_stale(symbol, False, "live")
        else:  # in sequence but old (buffered during a backfill, a stall's backlog): not fresh
            await self._set_stale(symbol, True, f"lagging {lag_ms} ms")
        self._last[symbol] = open_ms
        self.stats.live_candles += 1
        await self.queue.put(candle)
        return backfilled

    async def _catch_up_all(self) -> None:
        """Backfill every symbol up to the server time, in time order across symbols.

        With more than one symbol behind, the gaps are fetched window by window
        (:data:`CATCH_UP_WINDOW_MS`, one REST page per symbol) and each window's candles are
        delivered by open time, then symbol order: a long downtime's catch-up reaches the daemon's
        sequencer in backtest order instead of one symbol's whole gap before the next one's (which
        the sequencer's timeout would release ahead of the others). Same requests as one symbol
        after the other.
        """
        if all(v is None for v in self._last.values()):
            return
        server_now = await self._history.server_time_ms()
        until = floor_time(server_now, Timeframe.M1)  # the candle opened at `until` is not closed yet
        gaps = {
            s: last + MINUTE_MS
            for s, last in self._last.items()
            if last is not None and last + MINUTE_MS < until
        }
        if len(gaps) <= 1:
            for symbol, since in gaps.items():
                await self._fill(symbol, since, until)
            return
        rank = {s: i for i, s in enumerate(self._last)}
        delivered = dict.fromkeys(gaps, 0)
        for w0 in range(min(gaps.values()), until, CATCH_UP_WINDOW_MS):
            w1 = min(w0 + CATCH_UP_WINDOW_MS, until)
            batch: list[Candle] = []
            for symbol, since in gaps.items():
                lo = max(since, w0)
                if lo < w1:
                    got = await self._history.fetch_candles(symbol, Timeframe.M1, lo, w1)
                    batch.extend(c for c in got if c.symbol == symbol and lo <= c.open_time_ms < w1)
            batch.sort(key=lambda c: (c.open_time_ms, rank[c.symbol]))
            for c in batch:
                if await self._deliver(c):
                    delivered[c.symbol] += 1
        for symbol, since in gaps.items():
            self._filled(symbol, since, until, delivered[symbol])

    async def _fill(self, symbol: str, since_ms: int, until_ms: int) -> None:
        candles = await self._history.fetch_candles(symbol, Timeframe.M1, since_ms, until_ms)
        delivered = 0
        for c in candles:
            if c.symbol == symbol and since_ms <= c.open_time_ms < until_ms and await self._deliver(c):
                delivered += 1
        self._filled(symbol, since_ms, until_ms, delivered)

    async def _deliver(self, c: Candle) -> bool:
        # One backfilled candle: queued unless the symbol already has it; fresh or stale by its lag.
        last = self._last[c.symbol]
        if last is not None and c.open_time_ms <= last:
            return False
        lag_ms = self._now_ms() - c.close_time_ms
        if lag_ms <= self._cfg.max_lag_ms:  # e.g. a restart's catch-up that is still recent
            await self._set_stale(c.symbol, False, "backfill_fresh")
        else:
            await self._set_stale(c.symbol, True, "backfill")
        self._last[c.symbol] = c.open_time_ms
        await self.queue.put(c)
        return True

    def _filled(self, symbol: str, since_ms: int, until_ms: int, delivered: int) -> None:
        self.stats.backfilled_candles += delivered
        expected = (until_ms - since_ms) // MINUTE_MS
        self._log.info(
            "feed_backfilled", symbol=symbol, since_ms=since_ms, until_ms=until_ms, candles=delivered
        )
        if delivered < expected:
            self.stats.unfilled_bars += expected - delivered
            self._log.warning(
                "feed_gap_unfilled",
                symbol=symbol,
                since_ms=since_ms,
                until_ms=until_ms,
                missing_bars=expected - delivered,
            )

    # -- status ---------------------------------------------------------------------------------
    async def _set_stale(self, symbol: str, stale: bool, reason: str) -> None:
        if self._stale[symbol] is stale:
            return
        self._stale[symbol] = stale
        self._log.info("feed_stale" if stale else "feed_recovered", symbol=symbol, reason=reason)
        await self.queue.put(
            FeedStatus(symbol=Symbol(symbol), stale=stale, ts_ms=self._now_ms(), reason=reason)
        )

    async def _set_all_stale(self, reason: str) -> None:
        for symbol in self._stale:
            await self._set_stale(symbol, True, reason)

    def _reject(self, raw: str | bytes, error: DataError) -> None:
        self.stats.frames_rejected += 1
        self._log.warning("feed_frame_rejected", reason=str(error), raw=excerpt(raw))

    def _decode(self, decoder: Callable[[str | bytes, Mapping[str, str]], Any], raw: str | bytes) -> Any:
        try:
            return decoder(raw, self.symbols)
        except DataError as e:
            self._reject(raw, e)
            return None
