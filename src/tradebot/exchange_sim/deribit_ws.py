"""Simulated Deribit JSON-RPC 2.0 websocket (``/ws/api/v2``): ``public/subscribe`` to
``chart.trades.<instrument>.<resolution>`` (every documented resolution: 1, 3, 5, 10, 15, 30, 60,
120, 180, 360, 720 minutes and ``1D``), ``public/set_heartbeat`` with ``test_request`` heartbeats,
``public/test``, ``public/get_time``, ``public/hello``.

A chart notification carries the candle of its resolution that contains the minute: at each
simulated minute the closed minute's final values, then the new minute's opening values, each
aggregated exactly (Decimal) from the 1m tape of the period so far, never from a longer loaded
timeframe (which would show the period's future).

Instruments map to the tape by base currency: ``BTC_USDC-PERPETUAL`` and ``BTC-PERPETUAL`` replay
``BTCUSDT``. A connection that leaves a ``test_request`` unanswered until the next heartbeat is
closed, like Deribit does. ``public/auth`` and ``private/subscribe`` / ``private/unsubscribe`` of the
account's ``user.orders.*.raw`` / ``user.trades.*.raw`` channels are served by
:class:`~tradebot.exchange_sim.deribit_user.DeribitUserStreams` when :attr:`DeribitStreams.user` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tradebot.exchange_sim.faults import SimConnection, VenueFaults
from tradebot.exchange_sim.market import MINUTE_MS, Market, MarketEvent, aggregate

if TYPE_CHECKING:
    from tradebot.exchange_sim.deribit_user import DeribitUserStreams

_CHART = "chart.trades."

#: Deribit chart resolutions (minutes, or ``1D``; API docs) → candle length, ms.
RESOLUTIONS = {
    **{str(m): m * 60_000 for m in (1, 3, 5, 10, 15, 30, 60, 120, 180, 360, 720)},
    "1D": 86_400_000,
}


def tape_symbol(instrument: str) -> str:
    """Return the tape symbol replayed for a Deribit instrument (``"ETH_USDC-PERPETUAL"`` → ``"ETHUSDT"``)."""
    return instrument.split("-")[0].split("_")[0] + "USDT"


def chart_frame(instrument: str, event: MarketEvent, resolution: str = "1") -> str:
    """Return the ``chart.trades.<instrument>.<resolution>`` notification of ``event``'s bar (numbers
    as JSON numbers); for a resolution above 1 the caller passes the period's aggregated bar."""
    bar = event.bar
    cost = Decimal(bar.volume) * Decimal(bar.close)
    data = (
        f'{{"volume":{bar.volume},"tick":{bar.open_time_ms},"open":{bar.open},"low":{bar.low},'
        f'"high":{bar.high},"cost":{cost:.1f},"close":{bar.close}}}'
    )
    return (
        '{"jsonrpc":"2.0","method":"subscription","params":{"channel":'
        f'"{_CHART}{instrument}.{resolution}","data":{data}}}}}'
    )


def malformed_frame(kind: str, instrument: str, event: MarketEvent) -> str:
    """Return a malformed variant of :func:`chart_frame`."""
    frame = json.loads(chart_frame(instrument, event))
    data = frame["params"]["data"]
    if kind == "bad_json":
        return json.dumps(frame)[:-9]
    if kind == "missing_field":
        del data["close"]
    elif kind == "negative_price":
        data["low"] = -data["low"]
    elif kind == "high_below_low":
        data["high"], data["low"] = data["low"] * 0.5, data["high"]
    return json.dumps(frame)


def rpc_result(request_id: Any, result: Any, now_ms: int) -> str:
    """Return a JSON-RPC success answer with Deribit's ``usIn``/``usOut`` fields; ``id`` echoes the
    request's, and is absent for ``None`` (HTTP ``GET`` requests carry none: recorded REST answers have
    no ``id``, e.g. ``payloads/deribit/rest_get_instruments_*_real.json``)."""
    us = now_ms * 1000
    body: dict[str, Any] = {"jsonrpc": "2.0"}
    if request_id is not None:
        body["id"] = request_id
    body |= {"result": result, "usIn": us, "usOut": us + 50, "usDiff": 50, "testnet": True}
    return json.dumps(body)


def rpc_error(request_id: Any, code: int, message: str) -> str:
    """Return a JSON-RPC error answer."""
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}})


class DeribitStreams:
    """Fans the market's events out to Deribit chart subscriptions, through the faults."""

    def __init__(self, market: Market, faults: VenueFaults, instruments: list[str]) -> None:
        self.market, self.faults, self.instruments = market, faults, set(instruments)
        self._subs: dict[SimConnection, set[tuple[str, str]]] = {}  # (instrument, resolution)
        #: Authentication and private subscriptions (set by the simulator; ``None``: not served).
        self.user: DeribitUserStreams | None = None
        market.subscribe(self._on_events)

    def _period_bar(self, event: MarketEvent, resolution: str) -> MarketEvent:
        """``event`` as the candle of ``resolution`` containing its minute, aggregated from the 1m tape."""
        period_ms = RESOLUTIONS[resolution]
        if period_ms == MINUTE_MS:
            return event
        start = event.bar.open_time_ms - event.bar.open_time_ms % period_ms
        bars = [*self.market.tape.bars(event.symbol, "1m", start, event.bar.open_time_ms), event.bar]
        (bar,) = aggregate(bars, period_ms, start)
        return MarketEvent(event.symbol, bar, event.final)

    def _on_events(self, events: list[MarketEvent]) -> None:
        self.faults.shutdown_requested = 0  # Deribit has no serverShutdown notification
        events = self.faults.transform(events)
        malformed, self.faults.pending_malformed = self.faults.pending_malformed, []
        for conn, subscriptions in self._subs.items():
            for instrument, resolution in sorted(subscriptions):
                mine = [e for e in events if e.symbol == tape_symbol(instrument)]
                for kind in malformed if mine and resolution == "1" else ():
                    conn.send(malformed_frame(kind, instrument, mine[0]))
                for event in mine:
                    conn.send(chart_frame(instrument, self._period_bar(event, resolution), resolution))

    async def handle(self, ws: ServerConnection) -> None:
        """Serve one JSON-RPC connection until it closes or its session limit passes."""
        conn = SimConnection(ws, self.faults)
        self.faults.connections.add(conn)
        state: dict[str, Any] = {"hb_task": None, "awaiting_test": False}
        try:
            async with asyncio.TaskGroup() as tg:
                pump = tg.create_task(conn.pump())
                limit = tg.create_task(conn.enforce_session_limit())
                with contextlib.suppress(ConnectionClosed):
                    async for raw in ws:
                        self._on_request(conn, raw, state, tg)
                limit.cancel()
                pump.cancel()
                if state["hb_task"] is not None:
                    state["hb_task"].cancel()
        finally:
            self._subs.pop(conn, None)
            self.faults.connections.discard(conn)
            self.faults.user.connections.discard(conn)
            if self.user is not None:
                self.user.forget(conn)

    def _on_request(
        self, conn: SimConnection, raw: str | bytes, state: dict[str, Any], tg: asyncio.TaskGroup
    ) -> None:
        now = self.market.now_ms
        try:
            req = json.loads(raw)
            method, rid, params = req["method"], req.get("id"), req.get("params") or {}
        except (ValueError, KeyError, TypeError):
            conn.send(rpc_error(None, -32700, "parse_error"), control=True)
            return
        if method in ("public/auth", "private/subscribe", "private/unsubscribe") and self.user is not None:
            self._on_private(conn, method, rid, params, now)
        elif method == "public/subscribe":
            wanted = {c: self._chart_subscription(c) for c in params.get("channels", [])}
            channels = [c for c, sub in wanted.items() if sub is not None]
            subscribed = self._subs.setdefault(conn, set())
            subscribed.update(sub for sub in wanted.values() if sub is not None)
            conn.send(rpc_result(rid, channels, now), control=True)
            for instrument, resolution in sorted(subscribed):
                for event in self.market.opening_events():
                    if event.symbol == tape_symbol(instrument):
                        conn.send(chart_frame(instrument, self._period_bar(event, resolution), resolution))
        elif method == "public/set_heartbeat":
            interval = float(params.get("interval", 10))
            if state["hb_task"] is not None:
                state["hb_task"].cancel()
            state["hb_task"] = tg.create_task(self._heartbeats(conn, interval, state))
            conn.send(rpc_result(rid, "ok", now), control=True)
        elif method == "public/test":
            state["awaiting_test"] = False
            conn.send(rpc_result(rid, {"version": "1.2.26"}, now), control=True)
        elif method == "public/get_time":
            conn.send(rpc_result(rid, now, now), control=True)
        elif method == "public/hello":
            conn.send(rpc_result(rid, {"version": "1.2.26"}, now), control=True)
        else:
            conn.send(rpc_error(rid, -32601, "Method not found"), control=True)

    def _on_private(
        self, conn: SimConnection, method: str, rid: Any, params: dict[str, Any], now: int
    ) -> None:
        user = self.user
        assert user is not None
        if method == "public/auth":
            if self.faults.user.refusing():  # the private streams are down: the session is cut at auth
                conn.abort()
                return
            answer = user.auth(conn, rid, params, now)
            if user.authed(conn):
                self.faults.user.connections.add(conn)
            conn.send(answer, control=True)
            return
        if not user.authed(conn):
            conn.send(rpc_error(rid, 10000, "authorization_required"), control=True)
            return
        channels = [c for c in params.get("channels", []) if isinstance(c, str)]
        done = (
            user.subscribe(conn, channels)
            if method == "private/subscribe"
            else user.unsubscribe(conn, channels)
        )
        conn.send(rpc_result(rid, done, now), control=True)

    def _chart_subscription(self, channel: str) -> tuple[str, str] | None:
        # "chart.trades.<instrument>.<resolution>" → (instrument, resolution), None if not served
        instrument, _, resolution = channel.removeprefix(_CHART).rpartition(".")
        if (
            not channel.startswith(_CHART)
            or instrument not in self.instruments
            or resolution not in RESOLUTIONS
        ):
            return None
        return instrument, resolution

    async def _heartbeats(self, conn: SimConnection, interval_s: float, state: dict[str, Any]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            if state["awaiting_test"]:
                conn.abort()  # test_request left unanswered: Deribit closes the connection
                return
            state["awaiting_test"] = True
            conn.send('{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}', control=True)
