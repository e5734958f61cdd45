"""Supervised private (user-data) streams of the execution venues: the account's order updates and
fills pushed as they happen, so they need not wait for the next REST poll.

A stream connects, authenticates and subscribes (:meth:`UserStream._open`, per venue:
:mod:`~tradebot.adapters.venues.binance_user_stream`, :mod:`~tradebot.adapters.venues.deribit_user_stream`),
then puts on its queue, in the order received:

* :class:`~tradebot.ports.OrderReport` — one order's state after a change, with the execution that
  caused it as its fill (the consumer de-duplicates fills by trade id: a venue may push an event
  twice, and a fill also arrives through REST);
* :class:`~tradebot.adapters.venues.user_stream_schemas.AccountPosition` — balances after a change;
* :class:`UserStreamStatus` — ``up`` once subscribed, ``down`` when the session is lost. Events
  pushed while a stream is down are lost for good (no venue replays them): after a ``down``, the
  consumer must look its open orders up over REST.

Any failure of a session (connection refused or dropped, handshake or subscription timeout, an
authentication refusal, even an unexpected error, logged ``user_stream_failed``: polling is the
fallback, so the stream never stops the daemon) ends it; the stream reconnects after a jittered
exponential back-off
(:class:`~tradebot.adapters.feeds.ws_base.Backoff`, reset once subscribed). A malformed frame is
logged with its raw payload (``user_stream_frame_rejected``) and skipped. Connections are renewed
after ``max_session_s`` (Binance ends them at 24 h).
"""

from __future__ import annotations

import asyncio
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from tradebot.adapters.feeds.schemas_common import excerpt
from tradebot.adapters.feeds.ws_base import Backoff
from tradebot.adapters.venues.user_stream_schemas import AccountPosition, RpcAnswer, StreamEnd
from tradebot.errors import DataError
from tradebot.ports import OrderReport

log = structlog.get_logger("tradebot.venues.user_stream")


@dataclass(frozen=True, slots=True, kw_only=True)
class UserStreamConfig:
    """Connection and reconnect settings of a private stream.

    Attributes
    ----------
    open_timeout_s
        Handshake timeout, and how long to wait for the answer to the subscription or
        authentication request, seconds (default 10).
    ping_interval_s, ping_timeout_s
        Client keepalive pings, seconds (default 20 / 20; ``None`` disables).
    max_session_s
        Reconnect proactively after this long on one connection, seconds (default 23.5 h).
    backoff_initial_s, backoff_max_s, backoff_factor, backoff_jitter
        Reconnect delay ``min(max, initial·factor**n)·(1 − jitter·u)``, reset once subscribed
        (defaults 0.5 s, 30 s, 2.0, 0.5).
    refused_backoff_s
        Least wait after the venue refused the authentication or subscription, seconds (default 60;
        the keys will not become valid by retrying fast).
    recv_window_ms
        Binance ``recvWindow`` of the signed subscription, ms (default 5 000, at most 60 000).
    """

    open_timeout_s: float = 10.0
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    max_session_s: float = 23.5 * 3600
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_factor: float = 2.0
    backoff_jitter: float = 0.5
    refused_backoff_s: float = 60.0
    recv_window_ms: int = 5000


@dataclass(frozen=True, slots=True, kw_only=True)
class UserStreamStatus:
    """A private stream came up (subscribed) or went down (events may have been missed)."""

    venue: str
    up: bool
    reason: str
    ts_ms: int


@dataclass
class UserStreamStats:
    """Counters of one stream (monotonic; for logs, metrics and tests)."""

    connects: int = 0
    subscribed: int = 0
    disconnects: int = 0
    refusals: int = 0
    order_reports: int = 0
    fills: int = 0
    account_positions: int = 0
    frames_rejected: int = 0


class StreamRefused(Exception):
    """The venue refused our authentication or subscription (``code``, ``msg``)."""

    def __init__(self, code: int | None, msg: str) -> None:
        super().__init__(f"{code} {msg}")
        self.code, self.msg = code, msg


#: What a stream puts on its queue.
UserStreamItem = OrderReport | AccountPosition | UserStreamStatus


class UserStream(ABC):
    """Base of the venue streams. Run :meth:`run` in the daemon's ``TaskGroup``; consume ``queue``.

    Parameters
    ----------
    url
        The venue's private websocket endpoint.
    queue
        Output (see the module docstring). The daemon passes its engine queue, which carries the
        candles too: the engine task is the only consumer.
    config
        Connection settings.
    now_ms, sleep, rng
        Injectable wall clock (ms UTC: request timestamps, status times), back-off wait and jitter.
    """

    venue = "?"

    def __init__(self, *, url: str, queue: asyncio.Queue[Any], config: UserStreamConfig | None = None,
                 now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None) -> None:  # fmt: skip
        self.url, self.queue = url, queue
        self.config = config or UserStreamConfig()
        self._now_ms, self._sleep = now_ms, sleep
        cfg = self.config
        self._backoff = Backoff(initial_s=cfg.backoff_initial_s, max_s=cfg.backoff_max_s, factor=cfg.backoff_factor,
                                jitter=cfg.backoff_jitter, rng=rng or random.Random())  # fmt: skip
        self.stats = UserStreamStats()
        self.up = False
        self._log = log.bind(venue=self.venue)

    # -- venue hooks ----------------------------------------------------------------------------
    @abstractmethod
    async def _open(self, ws: ClientConnection) -> None:
        """Authenticate and subscribe; raise :class:`StreamRefused` when the venue says no."""

    @abstractmethod
    async def _on_frame(self, ws: ClientConnection, raw: str | bytes) -> list[Any]:
        """Decode one frame (may answer it, e.g. a heartbeat); raise ``DataError`` if malformed."""

    # -- supervision ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Stream forever: connect, subscribe, deliver; on any failure report ``down`` and reconnect.

        Never returns; cancel it to stop (``CancelledError`` propagates).
        """
        while True:
            try:
                reason = await self._session()
                delay = 0.0
            except StreamRefused as e:
                self.stats.refusals += 1
                reason = f"refused: {e}"
                delay = max(self._backoff.next_delay_s(), self.config.refused_backoff_s)
                self._log.error("user_stream_refused", code=e.code, msg=e.msg[:200])
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, InvalidURI) as e:
                reason, delay = f"{type(e).__name__}: {excerpt(e, 200)}", self._backoff.next_delay_s()
            except Exception as e:  # a bug here must not stop trading: REST polling is the fallback
                reason, delay = f"{type(e).__name__}: {excerpt(e, 200)}", self._backoff.next_delay_s()
                self._log.error("user_stream_failed", error=reason, exc_info=True)
            self.stats.disconnects += 1
            await self._set_up(False, reason)
            self._log.info("user_stream_reconnecting", reason=reason, delay_s=round(delay, 3),
                           attempt=self._backoff.attempt)  # fmt: skip
            await self._sleep(delay)

    async def _session(self) -> str:
        cfg = self.config
        self._log.info("user_stream_connecting", url=self.url)
        async with connect(self.url, open_timeout=cfg.open_timeout_s, ping_interval=cfg.ping_interval_s,
                           ping_timeout=cfg.ping_timeout_s, close_timeout=2, max_size=2**22) as ws:  # fmt: skip
            self.stats.connects += 1
            async with asyncio.timeout(cfg.open_timeout_s):
                await self._open(ws)
            self.stats.subscribed += 1
            self._backoff.reset()
            await self._set_up(True, "subscribed")
            return await self._read_loop(ws)

    async def _read_loop(self, ws: ClientConnection) -> str:
        loop = asyncio.get_running_loop()
        session_end = loop.time() + self.config.max_session_s
        while True:
            left = session_end - loop.time()
            if left <= 0:
                return "session_rollover"
            try:
                async with asyncio.timeout(left):
                    raw = await ws.recv()
            except TimeoutError:
                return "session_rollover"
            for item in await self._decoded(ws, raw):
                if isinstance(item, StreamEnd):
                    return item.reason
                await self._deliver(item)

    async def _decoded(self, ws: ClientConnection, raw: str | bytes) -> list[Any]:
        try:
            return await self._on_frame(ws, raw)
        except DataError as e:
            self.stats.frames_rejected += 1
            self._log.warning("user_stream_frame_rejected", reason=str(e)[:300], raw=excerpt(raw))
            return []

    async def _deliver(self, item: Any) -> None:
        if isinstance(item, OrderReport):
            self.stats.order_reports += 1
            self.stats.fills += len(item.fills)
        elif isinstance(item, AccountPosition):
            self.stats.account_positions += 1
        elif isinstance(item, RpcAnswer):
            if item.error_code is not None:
                self._log.warning(
                    "user_stream_request_failed", code=item.error_code, msg=item.error_msg[:200]
                )
            return
        else:
            return
        await self.queue.put(item)

    async def _await_answer(self, ws: ClientConnection, request_id: Any) -> RpcAnswer:
        """Read frames until the answer to ``request_id`` (events before it are delivered)."""
        while True:
            raw = await ws.recv()
            for item in await self._decoded(ws, raw):
                if isinstance(item, RpcAnswer) and item.request_id == request_id:
                    if item.error_code is not None:
                        raise StreamRefused(item.error_code, item.error_msg)
                    return item
                if isinstance(item, StreamEnd):
                    raise ConnectionClosed(None, None)
                await self._deliver(item)

    async def _set_up(self, up: bool, reason: str) -> None:
        if self.up == up and not up:
            return  # one "down" per outage
        self.up = up
        self._log.info("user_stream_subscribed" if up else "user_stream_down", reason=reason)
        await self.queue.put(UserStreamStatus(venue=self.venue, up=up, reason=reason, ts_ms=self._now_ms()))
