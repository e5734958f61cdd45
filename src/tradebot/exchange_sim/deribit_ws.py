"""Simulated Deribit JSON-RPC 2.0 websocket (``/ws/api/v2``): ``public/subscribe`` to
``chart.trades.<instrument>.1``, ``public/set_heartbeat`` with ``test_request`` heartbeats,
``public/test``, ``public/get_time``, ``public/hello``.

Instruments map to the tape by base currency: ``BTC_USDC-PERPETUAL`` and ``BTC-PERPETUAL`` replay
``BTCUSDT``. A connection that leaves a ``test_request`` unanswered until the next heartbeat is
closed, like Deribit does. Private methods are left for the order-engine extension.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from decimal import Decimal
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tradebot.exchange_sim.faults import SimConnection, VenueFaults
from tradebot.exchange_sim.market import Market, MarketEvent

_CHART = "chart.trades."


def tape_symbol(instrument: str) -> str:
    """Return the tape symbol replayed for a Deribit instrument (``"ETH_USDC-PERPETUAL"`` → ``"ETHUSDT"``)."""
    return instrument.split("-")[0].split("_")[0] + "USDT"


def chart_frame(instrument: str, event: MarketEvent) -> str:
    """Return the ``chart.trades.<instrument>.1`` notification of ``event`` (numbers as JSON numbers)."""
    bar = event.bar
    cost = Decimal(bar.volume) * Decimal(bar.close)
    data = (
        f'{{"volume":{bar.volume},"tick":{bar.open_time_ms},"open":{bar.open},"low":{bar.low},'
        f'"high":{bar.high},"cost":{cost:.1f},"close":{bar.close}}}'
    )
    return (
        '{"jsonrpc":"2.0","method":"subscription","params":{"channel":'
        f'"{_CHART}{instrument}.1","data":{data}}}}}'
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
        self._subs: dict[SimConnection, set[str]] = {}
        market.subscribe(self._on_events)

    def _on_events(self, events: list[MarketEvent]) -> None:
        self.faults.shutdown_requested = 0  # Deribit has no serverShutdown notification
        events = self.faults.transform(events)
        malformed, self.faults.pending_malformed = self.faults.pending_malformed, []
        for conn, instruments in self._subs.items():
            for instrument in sorted(instruments):
                for kind in malformed:
                    mine = [e for e in events if e.symbol == tape_symbol(instrument)]
                    if mine:
                        conn.send(malformed_frame(kind, instrument, mine[0]))
                for event in events:
                    if event.symbol == tape_symbol(instrument):
                        conn.send(chart_frame(instrument, event))

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
        if method == "public/subscribe":
            channels = [c for c in params.get("channels", []) if self._chart_instrument(c) is not None]
            subscribed = self._subs.setdefault(conn, set())
            for channel in channels:
                subscribed.add(self._chart_instrument(channel))  # type: ignore[arg-type]
            conn.send(rpc_result(rid, channels, now), control=True)
            for instrument in sorted(subscribed):
                for event in self.market.opening_events():
                    if event.symbol == tape_symbol(instrument):
                        conn.send(chart_frame(instrument, event))
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

    def _chart_instrument(self, channel: str) -> str | None:
        if not channel.startswith(_CHART) or not channel.endswith(".1"):
            return None
        instrument = channel[len(_CHART) : -2]
        return instrument if instrument in self.instruments else None

    async def _heartbeats(self, conn: SimConnection, interval_s: float, state: dict[str, Any]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            if state["awaiting_test"]:
                conn.abort()  # test_request left unanswered: Deribit closes the connection
                return
            state["awaiting_test"] = True
            conn.send('{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}', control=True)
