"""Fault injection of the simulator, per venue (``"binance"``, ``"deribit"``).

Switches (all take effect immediately on the connections open now, or on the next events):

* :meth:`VenueFaults.drop` — abort every open websocket connection (no close frame).
* :meth:`VenueFaults.stall` — hold all data for ``seconds`` (keepalive pings continue), then send
  the backlog late.
* :meth:`VenueFaults.pings_only` — the open connections never send data again (pings continue).
* :meth:`VenueFaults.malformed` — send one malformed frame (``bad_json``, ``missing_field``,
  ``negative_price``, ``high_below_low``) before the next events.
* :meth:`VenueFaults.bad_tick` — Binance: send the final kline of one symbol and minute with wrong
  values (a close scaled by a factor, or raw strings such as ``"1e300"`` / ``"NaN"``); REST keeps
  the true candle.
* :meth:`VenueFaults.duplicate` / :meth:`VenueFaults.out_of_order` — repeat the next final candle /
  send the next closed candle after the following one.
* :meth:`VenueFaults.gap` — omit the next ``minutes`` minutes from the websocket (REST has them).
* ``session_limit_s`` — close each connection after this long (like Binance's 24 h limit).
* :meth:`VenueFaults.server_shutdown` — Binance ``serverShutdown`` event then close.
* :meth:`VenueFaults.refuse` — refuse websocket handshakes (HTTP 503) for ``seconds``.
* :meth:`VenueFaults.http_errors` — answer the next ``count`` REST requests with ``status``
  (429, 418, 5xx).

Private (user-data) streams have their own switches, :attr:`VenueFaults.user` (a
:class:`UserStreamFaults`), so a test can break the account's push channel without touching the
market data: ``drop``, ``refuse``, ``duplicate`` and ``out_of_order`` order events.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from websockets.exceptions import ConnectionClosed

from tradebot.exchange_sim.market import MarketEvent

_EIGHT = Decimal("0.00000001")

MALFORMED_KINDS = ("bad_json", "missing_field", "negative_price", "high_below_low")


class SimConnection:
    """One server-side websocket session: an outgoing frame queue pumped with fault handling."""

    def __init__(self, ws: object, faults: VenueFaults) -> None:
        self.ws = ws
        self.faults = faults
        self.out: asyncio.Queue[str] = asyncio.Queue()
        self.control: asyncio.Queue[str] = asyncio.Queue()
        self.stalled_until = 0.0
        self.silenced = False
        self.opened_at = asyncio.get_running_loop().time()

    def send(self, frame: str, *, control: bool = False) -> None:
        """Queue ``frame`` (never blocks). ``control`` frames (RPC answers, heartbeats) bypass stalls
        and silencing, like a server whose market-data pipeline froze but whose session layer lives."""
        (self.control if control else self.out).put_nowait(frame)

    async def pump(self) -> None:
        """Send queued frames until the connection closes, honouring stalls and silencing."""
        async with asyncio.TaskGroup() as tg:
            control = tg.create_task(self._pump_control())
            await self._pump_data()
            control.cancel()

    async def _pump_data(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame = await self.out.get()
            delay = self.stalled_until - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.silenced:
                continue
            try:
                await self.ws.send(frame)  # type: ignore[attr-defined]
            except ConnectionClosed:
                return

    async def _pump_control(self) -> None:
        while True:
            frame = await self.control.get()
            try:
                await self.ws.send(frame)  # type: ignore[attr-defined]
            except ConnectionClosed:
                return

    async def enforce_session_limit(self) -> None:
        """Close the connection (1001) once it is older than ``faults.session_limit_s`` (re-read
        continuously, so the switch applies to open connections too)."""
        loop = asyncio.get_running_loop()
        while True:
            limit = self.faults.session_limit_s
            if limit is not None and loop.time() - self.opened_at >= limit:
                await self.ws.close(1001, "session limit")  # type: ignore[attr-defined]
                return
            await asyncio.sleep(0.05)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        transport = getattr(self.ws, "transport", None)
        if transport is not None:
            transport.abort()


@dataclass(frozen=True, slots=True, kw_only=True)
class BadTick:
    """How :meth:`VenueFaults.bad_tick` alters one kline.

    Attributes
    ----------
    close_factor
        Multiply the close by this (``Decimal("0.5")``: a half-price tick; ``Decimal("1.3")``: a
        spike); the high or low is widened to contain it, so the kline stays internally valid.
    fields
        Raw wire strings replacing kline fields (``{"c": "1e300", "h": "1e300"}``, ``{"c": "NaN"}``),
        applied after ``close_factor``.
    """

    close_factor: Decimal | None = None
    fields: Mapping[str, str] = field(default_factory=dict)

    def apply(self, k: dict[str, object]) -> None:
        """Alter the kline object ``k`` (the ``"k"`` of a kline event) in place."""
        if self.close_factor is not None:
            close = Decimal(str(k["c"])) * self.close_factor
            k["c"] = f"{close.quantize(_EIGHT):f}"
            if close > Decimal(str(k["h"])):
                k["h"] = k["c"]
            if close < Decimal(str(k["l"])):
                k["l"] = k["c"]
        k.update(self.fields)


@dataclass
class UserStreamFaults:
    """Fault switches of one venue's private streams (Binance WebSocket API user-data subscriptions,
    Deribit ``user.*`` channels). Each count goes down as it fires; the counters tell a test what
    was done.

    Attributes
    ----------
    connections
        The open private-stream connections (of every account).
    duplicate_next
        The next N order events are pushed twice (``duplicates_pushed`` counts them).
    swap_next
        The next N order events are each held and pushed right after the order event that follows
        it (``swapped`` counts them); a held event nobody follows is pushed after ``hold_s`` seconds.
    """

    connections: set[SimConnection] = field(default_factory=set)
    refuse_until: float = 0.0
    duplicate_next: int = 0
    swap_next: int = 0
    hold_s: float = 0.5
    pushed: int = 0
    duplicates_pushed: int = 0
    swapped: int = 0
    drops: int = 0
    log: list[str] = field(default_factory=list)
    _held: list[tuple[str, Callable[[str], None]]] = field(default_factory=list)
    _timer: asyncio.TimerHandle | None = None

    def drop(self) -> None:
        """Abort every open private-stream connection (no close frame); nothing is replayed."""
        self.log.append("drop")
        self.drops += 1
        for conn in list(self.connections):
            conn.abort()

    def refuse(self, seconds: float) -> None:
        """Refuse private streams for ``seconds``: Binance WebSocket API handshakes get HTTP 503, a
        Deribit connection is cut when it sends ``public/auth``."""
        self.log.append(f"refuse {seconds}")
        self.refuse_until = asyncio.get_running_loop().time() + seconds

    def refusing(self) -> bool:
        """True while private-stream handshakes are refused."""
        return asyncio.get_running_loop().time() < self.refuse_until

    def duplicate(self, count: int = 1) -> None:
        """Push each of the next ``count`` order events twice."""
        self.log.append(f"duplicate x{count}")
        self.duplicate_next += count

    def out_of_order(self, count: int = 1) -> None:
        """Push each of the next ``count`` order events after the order event that follows it."""
        self.log.append(f"out_of_order x{count}")
        self.swap_next += count

    def push(self, frame: str, send: Callable[[str], None], *, order_event: bool = True) -> None:
        """Push ``frame`` with ``send`` through the switches (only order events are duplicated or
        reordered; an account event passes at once and releases nothing held)."""
        if not order_event:
            self._send(frame, send)
            return
        if self._held:
            (held, held_send), self._held = self._held[0], []
            self._cancel_timer()
            self._out(frame, send)
            self._out(held, held_send)
            return
        if self.swap_next > 0:
            self.swap_next -= 1
            self.swapped += 1
            self._held = [(frame, send)]
            self._timer = asyncio.get_running_loop().call_later(self.hold_s, self._release)
            return
        self._out(frame, send)

    def _out(self, frame: str, send: Callable[[str], None]) -> None:
        self._send(frame, send)
        if self.duplicate_next > 0:
            self.duplicate_next -= 1
            self.duplicates_pushed += 1
            self._send(frame, send)

    def _send(self, frame: str, send: Callable[[str], None]) -> None:
        self.pushed += 1
        send(frame)

    def _release(self) -> None:
        self._timer = None
        if self._held:
            (held, held_send), self._held = self._held[0], []
            self._out(held, held_send)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


@dataclass
class VenueFaults:
    """Fault switches of one venue (see the module docstring). Mutated by tests or :class:`RandomFaults`."""

    venue: str
    session_limit_s: float | None = None
    connections: set[SimConnection] = field(default_factory=set)
    refuse_until: float = 0.0
    pending_malformed: list[str] = field(default_factory=list)
    duplicate_next: int = 0
    swap_next: int = 0
    skip_minutes: int = 0
    rest_statuses: deque[int] = field(default_factory=deque)
    shutdown_requested: int = 0
    held: list[MarketEvent] = field(default_factory=list)
    previous_finals: list[MarketEvent] = field(default_factory=list)
    skipped: set[int] = field(default_factory=set)
    bad_ticks: dict[tuple[str, int], BadTick] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    user: UserStreamFaults = field(default_factory=UserStreamFaults)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def drop(self) -> None:
        """Abort all open connections (the private streams' too)."""
        self.log.append("drop")
        for conn in [*self.connections, *self.user.connections]:
            conn.abort()

    def stall(self, seconds: float) -> None:
        """Hold all data of the open connections for ``seconds`` (pings continue), then send it late."""
        self.log.append(f"stall {seconds}")
        for conn in self.connections:
            conn.stalled_until = self._now() + seconds

    def pings_only(self) -> None:
        """Silence the open connections for good (keepalive pings continue)."""
        self.log.append("pings_only")
        for conn in self.connections:
            conn.silenced = True

    def malformed(self, kind: str) -> None:
        """Send one malformed frame of ``kind`` (one of :data:`MALFORMED_KINDS`) with the next events."""
        if kind not in MALFORMED_KINDS:
            raise ValueError(f"kind must be one of {MALFORMED_KINDS}, was {kind!r}")
        self.log.append(f"malformed {kind}")
        self.pending_malformed.append(kind)

    def bad_tick(self, symbol: str, open_time_ms: int, tick: BadTick) -> None:
        """Send the final websocket kline of wire symbol ``symbol`` (``"BTCUSDT"``) opening at
        ``open_time_ms`` altered by ``tick``; REST still serves the true candle (Binance only)."""
        self.log.append(f"bad_tick {symbol} {open_time_ms} {tick}")
        self.bad_ticks[(symbol, open_time_ms)] = tick

    def take_bad_tick(self, symbol: str, open_time_ms: int) -> BadTick | None:
        """Pop the alteration due for this symbol's final kline at ``open_time_ms``, or ``None``."""
        return self.bad_ticks.pop((symbol, open_time_ms), None) if self.bad_ticks else None

    def duplicate(self) -> None:
        """Send the next final candle of each symbol twice."""
        self.log.append("duplicate")
        self.duplicate_next += 1

    def out_of_order(self) -> None:
        """Send the next minute's closed candles after the following minute's."""
        self.log.append("out_of_order")
        self.swap_next += 1

    def gap(self, minutes: int) -> None:
        """Omit the next ``minutes`` candles (from the one opening next) from the websocket; REST keeps them."""
        self.log.append(f"gap {minutes}")
        self.skip_minutes += minutes

    def server_shutdown(self) -> None:
        """Announce a server shutdown on the open connections, then close them."""
        self.log.append("server_shutdown")
        self.shutdown_requested += 1

    def refuse(self, seconds: float) -> None:
        """Refuse websocket handshakes with HTTP 503 for ``seconds``."""
        self.log.append(f"refuse {seconds}")
        self.refuse_until = self._now() + seconds

    def refusing(self) -> bool:
        """True while handshakes are refused."""
        return self._now() < self.refuse_until

    def http_errors(self, status: int, count: int = 1) -> None:
        """Answer the next ``count`` REST requests with HTTP ``status``."""
        self.log.append(f"http {status} x{count}")
        self.rest_statuses.extend([status] * count)

    def next_rest_status(self) -> int | None:
        """Pop the status a REST request must fail with, or ``None``."""
        return self.rest_statuses.popleft() if self.rest_statuses else None

    def transform(self, events: list[MarketEvent]) -> list[MarketEvent]:
        """Apply gap / duplicate / out-of-order switches to one minute's events (finals, then openings).

        A gap removes whole candles (their opening and final updates) starting with the candle that
        opens now. Out of order: on Binance the closed candles of this minute are sent after those of
        the next minute; on Deribit (whose candles are final only through the next tick) the closed
        candles of the previous minute are sent again after this minute's.
        """
        opening_ms = {e.bar.open_time_ms for e in events if not e.final}
        if self.skip_minutes > 0 and opening_ms:
            start = min(opening_ms)
            self.skipped.update(start + i * 60_000 for i in range(self.skip_minutes))
            self.skip_minutes = 0
        events = [e for e in events if e.bar.open_time_ms not in self.skipped]
        finals = [e for e in events if e.final]
        openings = [e for e in events if not e.final]
        late: list[MarketEvent] = []
        if self.venue == "binance":
            if self.held:
                finals, self.held = finals + self.held, []
            elif self.swap_next > 0 and finals:
                self.swap_next -= 1
                self.held, finals = finals, []
        elif self.swap_next > 0 and self.previous_finals:
            self.swap_next -= 1
            late = self.previous_finals
        if finals:
            self.previous_finals = finals
        if self.duplicate_next > 0 and finals:
            self.duplicate_next -= 1
            finals = finals + finals
        return finals + late + openings


@dataclass
class Faults:
    """Fault switches of both venues."""

    binance: VenueFaults = field(default_factory=lambda: VenueFaults("binance"))
    deribit: VenueFaults = field(default_factory=lambda: VenueFaults("deribit"))

    def venue(self, name: str) -> VenueFaults:
        """Return the switches of venue ``name``."""
        if name not in ("binance", "deribit"):
            raise ValueError(f"venue must be 'binance' or 'deribit', was {name!r}")
        return self.binance if name == "binance" else self.deribit


class RandomFaults:
    """Seeded random fault schedule: on each simulated minute, with probability ``rate`` per venue,
    trigger one fault drawn from ``kinds``. Deterministic in simulated time for a given seed."""

    KINDS = (
        "drop",
        "stall",
        "pings_only",
        "malformed",
        "duplicate",
        "out_of_order",
        "gap",
        "refuse",
        "http_429",
        "http_5xx",
        "server_shutdown",
    )

    def __init__(
        self,
        faults: Faults,
        *,
        seed: int,
        rate: float,
        stall_s: float,
        refuse_s: float,
        kinds: tuple[str, ...] = KINDS,
    ) -> None:
        self._faults, self._rng, self._rate = faults, random.Random(seed), rate
        self._stall_s, self._refuse_s, self._kinds = stall_s, refuse_s, kinds
        self.triggered: list[tuple[int, str, str]] = []

    def __call__(self, now_ms: int) -> None:
        """Maybe trigger faults at simulated time ``now_ms`` (use as ``Market(on_minute=...)``)."""
        for venue in ("binance", "deribit"):
            if self._rng.random() >= self._rate:
                continue
            kind = self._rng.choice(self._kinds)
            if venue == "deribit" and kind == "server_shutdown":
                kind = "drop"
            self.triggered.append((now_ms, venue, kind))
            self._apply(self._faults.venue(venue), kind)

    def _apply(self, vf: VenueFaults, kind: str) -> None:
        actions: dict[str, Callable[[], None]] = {
            "drop": vf.drop,
            "stall": lambda: vf.stall(self._stall_s),
            "pings_only": vf.pings_only,
            "malformed": lambda: vf.malformed(self._rng.choice(MALFORMED_KINDS)),
            "duplicate": vf.duplicate,
            "out_of_order": vf.out_of_order,
            "gap": lambda: vf.gap(self._rng.randint(1, 3)),
            "refuse": lambda: vf.refuse(self._refuse_s),
            "http_429": lambda: vf.http_errors(429, 1),
            "http_5xx": lambda: vf.http_errors(503, 1),
            "server_shutdown": vf.server_shutdown,
        }
        actions[kind]()
