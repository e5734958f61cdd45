"""Simulated Binance spot WebSocket API (``/ws-api/v3``): the user-data subscription of today's
exchange (the ``listenKey`` stream of ``stream.binance.com`` was discontinued on 2026-02-20).

Requests are JSON text frames ``{"id", "method", "params"}``, answered ``{"id", "status": 200,
"result"}`` or ``{"id", "status": 4xx, "error": {"code", "msg"}}`` (``web-socket-api.md``
"Request format", "Response format"):

* ``userDataStream.subscribe.signature`` — ``apiKey``, ``timestamp``, ``signature`` and an optional
  ``recvWindow`` (at most 60 000 ms). The signature is the hex HMAC-SHA256, with the key's secret
  (:attr:`BinancePrivate.credentials`, shared with the REST endpoints), of every other parameter
  sorted by name as ``name=value`` joined by ``&`` ("SIGNED request security"). Refusals: an unknown
  key ``-2015`` (status 401), a wrong signature ``-1022``, a missing or malformed ``timestamp`` /
  ``recvWindow`` ``-1102``, and — when :attr:`BinancePrivate.server_clock_ms` is set — a timestamp
  outside the receive window ``-1021``. The answer is ``{"subscriptionId": n}`` (0, 1, … per
  connection).
* ``userDataStream.unsubscribe`` (``subscriptionId``, or all), ``session.subscriptions``, ``ping``,
  ``time``.

Each subscription then receives ``{"subscriptionId": n, "event": {…}}`` frames (``user-data-stream.md``):
an ``executionReport`` for every change of the account's orders (``NEW`` on placement, ``TRADE`` per
execution, ``CANCELED``, ``EXPIRED``; the fields of the docs' payload, 8-decimal strings; a cancel
names the cancelled order in ``C`` and carries a cancel id in ``c``, as Binance does), followed by
an ``outboundAccountPosition`` of the order's two assets whenever the change moved a balance (every
event except a market order's ``NEW``). Example (abridged)::

    {"subscriptionId": 0, "event": {"e": "executionReport", "E": 1679533260000, "s": "BTCUSDT",
     "c": "web_manual_1", "S": "BUY", "o": "LIMIT", "q": "0.01000000", "p": "27000.00000000",
     "x": "TRADE", "X": "FILLED", "i": 7, "l": "0.01000000", "z": "0.01000000",
     "L": "27000.00000000", "n": "0.27000000", "N": "USDT", "T": 1679533260000, "t": 12, …}}

Faults: :class:`~tradebot.exchange_sim.faults.UserStreamFaults` (``sim.faults.binance.user``) drops
or refuses these connections and duplicates or reorders order events; ``VenueFaults.drop`` and the
session limit apply too. Nothing missed while a client is away is replayed (as on Binance).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tradebot.exchange_sim.binance_private import (
    BinancePrivate,
    f8,
    generated_cancel_id,
    timing_refusal,
)
from tradebot.exchange_sim.faults import SimConnection, VenueFaults
from tradebot.exchange_sim.orders import SimOrder, SimTrade

WS_API_PATH = "/ws-api/v3"
_ZERO8 = "0.00000000"


def signature_payload(params: dict[str, Any]) -> str:
    """The text a WebSocket API request signs: every parameter but ``signature``, sorted by name,
    as ``name=value`` joined by ``&`` (``"apiKey=k&recvWindow=5000&timestamp=1747385641636"``)."""
    return "&".join(f"{k}={_text(v)}" for k, v in sorted(params.items()) if k != "signature")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def execution_report(order: SimOrder, exec_type: str, trade: SimTrade | None, *, event_ms: int,
                     execution_id: int) -> dict[str, Any]:  # fmt: skip
    """The ``executionReport`` of one change of ``order`` (its state after the change)."""
    cid, orig = order.client_order_id, ""
    if exec_type == "CANCELED":  # the cancel request's own id in c, the cancelled order's in C
        cid, orig = generated_cancel_id(order.order_id, 0), order.client_order_id
    # a stop is on the book only once triggered (a STOP_LOSS then trades at once)
    on_book = order.is_open and (
        order.type == "LIMIT" or (order.type == "STOP_LOSS_LIMIT" and order.triggered_ms is not None)
    )
    report: dict[str, Any] = {
        "e": "executionReport", "E": event_ms, "s": order.symbol, "c": cid, "S": order.side, "o": order.type,
        "f": "GTC", "q": f8(order.qty), "p": f8(order.price or Decimal(0)), "P": f8(order.stop_price or Decimal(0)), "F": _ZERO8, "g": -1,
        "C": orig, "x": exec_type, "X": order.status, "r": "NONE", "i": order.order_id,
        "l": f8(trade.qty) if trade else _ZERO8, "z": f8(order.filled), "L": f8(trade.price) if trade else _ZERO8,
        "n": f8(trade.fee) if trade else "0", "N": trade.fee_asset if trade else None,
        "T": trade.ts_ms if trade else order.updated_ms, "t": trade.trade_id if trade else -1,
        "I": execution_id, "w": on_book, "m": trade is not None and trade.maker, "M": bool(trade),
        "O": order.created_ms, "Z": f8(order.quote_filled), "Y": f8(trade.qty * trade.price) if trade else _ZERO8,
        "Q": _ZERO8,
    }  # fmt: skip
    if on_book or (order.type != "MARKET" and order.filled > 0):
        report["W"] = order.triggered_ms or order.created_ms
    report["V"] = "NONE"
    return report


def _answer(request_id: Any, result: Any) -> str:
    return json.dumps({"id": request_id, "status": 200, "result": result})


def _error(request_id: Any, code: int, msg: str, status: int = 400) -> str:
    return json.dumps({"id": request_id, "status": status, "error": {"code": code, "msg": msg}})


class BinanceWsApi:
    """Serves ``/ws-api/v3`` connections and pushes the account's events to their subscriptions.

    Parameters
    ----------
    private
        The REST private endpoints: their order engine (the account), credentials and server clock.
    faults
        The Binance fault switches (``faults.user`` for the private streams).
    now_ms
        The simulator's clock, ms (event times ``E``).
    """

    def __init__(self, private: BinancePrivate, faults: VenueFaults, now_ms: Callable[[], int]) -> None:
        self.private, self.faults, self._now_ms = private, faults, now_ms
        self._subs: dict[SimConnection, dict[int, str]] = {}  # connection → subscription id → api key
        self._next_sub: dict[SimConnection, int] = {}
        self._executions = 0
        #: Every request method received, in order (tests).
        self.requests: list[str] = []
        private.engine.listeners.append(self._on_order)

    # -- connections ---------------------------------------------------------------------------
    async def handle(self, ws: ServerConnection) -> None:
        """Serve one connection until it closes or its session limit passes."""
        conn = SimConnection(ws, self.faults)
        self.faults.user.connections.add(conn)
        self._subs[conn], self._next_sub[conn] = {}, 0
        try:
            async with asyncio.TaskGroup() as tg:
                pump = tg.create_task(conn.pump())
                limit = tg.create_task(conn.enforce_session_limit())
                with contextlib.suppress(ConnectionClosed):
                    async for raw in ws:
                        self._on_request(conn, raw)
                limit.cancel()
                pump.cancel()
        finally:
            self._subs.pop(conn, None)
            self._next_sub.pop(conn, None)
            self.faults.user.connections.discard(conn)

    def subscriptions(self) -> int:
        """Number of active subscriptions over every connection."""
        return sum(len(s) for s in self._subs.values())

    def _on_request(self, conn: SimConnection, raw: str | bytes) -> None:
        try:
            req = json.loads(raw)
            rid, method, params = req.get("id"), req["method"], req.get("params") or {}
            if not isinstance(params, dict):
                raise TypeError("params must be an object")
        except (ValueError, KeyError, TypeError, AttributeError):
            conn.send(_error(None, -1102, "Malformed request."), control=True)
            return
        self.requests.append(str(method))
        subs = self._subs.get(conn, {})
        if method == "userDataStream.subscribe.signature":
            conn.send(self._subscribe(conn, rid, params), control=True)
        elif method == "userDataStream.unsubscribe":
            sid = params.get("subscriptionId")
            if sid is None:
                subs.clear()
            else:
                subs.pop(int(sid), None)
            conn.send(_answer(rid, {}), control=True)
        elif method == "session.subscriptions":
            conn.send(_answer(rid, [{"subscriptionId": s} for s in sorted(subs)]), control=True)
        elif method == "ping":
            conn.send(_answer(rid, {}), control=True)
        elif method == "time":
            conn.send(_answer(rid, {"serverTime": self._now_ms()}), control=True)
        else:
            conn.send(_error(rid, -1100, f"Illegal characters found in parameter 'method'; was {method!r}."),
                      control=True)  # fmt: skip

    def _subscribe(self, conn: SimConnection, rid: Any, params: dict[str, Any]) -> str:
        key = params.get("apiKey")
        secret = self.private.credentials.get(key) if isinstance(key, str) else None
        if secret is None:
            return _error(rid, -2015, "Invalid API-key, IP, or permissions for action.", 401)
        signature = params.get("signature")
        expected = hmac.new(secret.encode(), signature_payload(params).encode(), hashlib.sha256).hexdigest()
        if not isinstance(signature, str) or not hmac.compare_digest(signature.lower(), expected):
            return _error(rid, -1022, "Signature for this request is not valid.")
        refusal = self._timing(params)
        if refusal is not None:
            return _error(rid, *refusal)
        sid = self._next_sub[conn]
        self._next_sub[conn] = sid + 1
        self._subs[conn][sid] = key  # type: ignore[assignment]
        return _answer(rid, {"subscriptionId": sid})

    def _timing(self, params: dict[str, Any]) -> tuple[int, str] | None:
        # the REST endpoints' timing rules (binance_private.py module docstring)
        timestamp, window = params.get("timestamp"), params.get("recvWindow", 5000)
        if isinstance(timestamp, bool) or not isinstance(timestamp, int):
            return -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
        if isinstance(window, bool) or not isinstance(window, int | float):
            return -1102, "Mandatory parameter 'recvWindow' was not sent, was empty/null, or malformed."
        clock = self.private.server_clock_ms
        return timing_refusal(timestamp, window, None if clock is None else clock())

    # -- push ----------------------------------------------------------------------------------
    def _on_order(self, order: SimOrder, exec_type: str, trade: SimTrade | None) -> None:
        targets = [(conn, sid) for conn, subs in self._subs.items() for sid in sorted(subs)]
        if not targets:
            return
        now = self._now_ms()
        self._executions += 1
        report = execution_report(order, exec_type, trade, event_ms=now, execution_id=self._executions)
        moved = not (exec_type == "NEW" and order.type == "MARKET")  # a market order locks nothing
        account = self._account_position(order, now) if moved else None
        for conn, sid in targets:
            self.faults.user.push(json.dumps({"subscriptionId": sid, "event": report}), conn.send)
            if account is not None:
                self.faults.user.push(json.dumps({"subscriptionId": sid, "event": account}), conn.send,
                                      order_event=False)  # fmt: skip

    def _account_position(self, order: SimOrder, now: int) -> dict[str, Any]:
        engine = self.private.engine
        rules = engine.rules[order.symbol]
        balances = [
            {"a": a, "f": f8(engine.free.get(a, Decimal(0))), "l": f8(engine.locked.get(a, Decimal(0)))}
            for a in (rules.base, rules.quote)
        ]
        return {"e": "outboundAccountPosition", "E": now, "u": order.updated_ms, "B": balances}
