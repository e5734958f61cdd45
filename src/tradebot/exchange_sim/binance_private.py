"""Simulated Binance spot private REST endpoints (the ones ccxt's raw API calls):
``POST|GET|DELETE /api/v3/order``, ``GET /api/v3/openOrders``, ``GET /api/v3/myTrades`` and
``GET /api/v3/account``, over :class:`~tradebot.exchange_sim.orders.OrderEngine`.

Authentication like Binance: header ``X-MBX-APIKEY`` (else ``-2015``, HTTP 401) and an HMAC-SHA256
``signature`` of the query string / form body without the signature (else ``-1022``).

Timing security (``rest-api.md`` "Timing security"): ``timestamp`` is mandatory and ``recvWindow``
(default 5000 ms) may not exceed 60000 (``-1102``, worded as in ``errors.md``). The timing rule
``timestamp < server + 1000 and server - timestamp <= recvWindow`` (else ``-1021``) is applied when
:attr:`BinancePrivate.server_clock_ms` is set (e.g. to the wall clock). It is off by default: the
server time the simulator publishes (``/api/v3/time``) is the *simulated* market clock, which runs
faster than the wall clock, and a client that resynchronises to it (ccxt's
``load_time_difference``) cannot keep its timestamps within a receive window of it. Clock skew is
injected with :attr:`OrderFaults.clock_skew` instead.

Checks and fault switches are applied in this order: throttle (429/418 with ``Retry-After``), auth,
timestamp and receive window, clock skew, then the endpoint; ``accept_then_500`` / ``accept_then_hang`` / ``unknown_1007`` act *after*
the order was executed, and ``lookup_not_found`` answers ``-2013`` to order lookups.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tradebot.exchange_sim.orders import ORDER_TYPES, OrderEngine, SimOrder, SimReject, SimTrade, SymbolRules

API_KEY = "sim-binance-key"
API_SECRET = "sim-binance-secret"
#: Largest ``recvWindow`` Binance accepts, ms.
MAX_RECV_WINDOW_MS = 60_000
#: ``uid`` of the simulated account in ``GET /api/v3/account``.
SIM_UID = 100000001
_CID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_EIGHT = Decimal("0.00000001")


def f8(value: Decimal) -> str:
    """Binance's 8-decimal string of ``value``."""
    return f"{value.quantize(_EIGHT):f}"


def binance_rules(exchange_info: dict[str, Any]) -> dict[str, SymbolRules]:
    """Return the simulator's symbol rules from an ``exchangeInfo`` document."""
    out = {}
    for s in exchange_info["symbols"]:
        f = {x["filterType"]: x for x in s["filters"]}
        notional = f.get("NOTIONAL") or f.get("MIN_NOTIONAL") or {"minNotional": "0"}
        out[s["symbol"]] = SymbolRules(
            symbol=s["symbol"], base=s["baseAsset"], quote=s["quoteAsset"],
            tick=Decimal(f["PRICE_FILTER"]["tickSize"]).normalize(),
            step=Decimal(f["LOT_SIZE"]["stepSize"]).normalize(),
            min_qty=Decimal(f["LOT_SIZE"]["minQty"]), min_notional=Decimal(notional["minNotional"]),
            tape=s["symbol"], order_types=frozenset(s.get("orderTypes") or ORDER_TYPES) & ORDER_TYPES,
        )  # fmt: skip
    return out


def _stop_fields(o: SimOrder) -> dict[str, Any]:
    # the conditional fields of a stop order ("Conditional fields in Order Responses": stopPrice
    # appears for STOP_LOSS / STOP_LOSS_LIMIT orders); none for other orders
    return {} if o.stop_price is None else {"stopPrice": f8(o.stop_price)}


def _working(o: SimOrder) -> tuple[bool, int]:
    # isWorking and workingTime: a stop works on the book only once triggered (workingTime -1
    # until then, docs example of a NEW STOP_LOSS order in "New OCO (TRADE)")
    if o.is_stop:
        return o.is_open and o.triggered_ms is not None, -1 if o.triggered_ms is None else o.triggered_ms
    return o.is_open, o.created_ms


def order_json(o: SimOrder) -> dict[str, Any]:
    """Binance order object of ``GET /api/v3/order`` and ``GET /api/v3/openOrders`` (docs example
    "Query order (USER_DATA)"; ``stopPrice`` and ``icebergQty`` appear only for orders that set them;
    an untriggered stop is ``NEW`` with ``isWorking`` false and ``workingTime`` -1)."""
    working, working_ms = _working(o)
    return {
        "symbol": o.symbol, "orderId": o.order_id, "orderListId": -1, "clientOrderId": o.client_order_id,
        "price": f8(o.price or Decimal(0)), "origQty": f8(o.qty), "executedQty": f8(o.filled),
        "cummulativeQuoteQty": f8(o.quote_filled), "status": o.status, "timeInForce": "GTC", "type": o.type,
        "side": o.side, **_stop_fields(o), "time": o.created_ms, "updateTime": o.updated_ms,
        "isWorking": working, "workingTime": working_ms, "origQuoteOrderQty": "0.00000000",
        "selfTradePreventionMode": "NONE",
    }  # fmt: skip


def new_order_json(o: SimOrder, *, resp_type: str = "FULL", duplicate: bool = False) -> dict[str, Any]:
    """``POST /api/v3/order`` answer of ``newOrderRespType`` ``ACK``, ``RESULT`` or ``FULL`` (``RESULT``
    plus ``fills``), as in the docs examples "New order (TRADE)"; ``duplicate`` lists each fill twice."""
    body: dict[str, Any] = {
        "symbol": o.symbol, "orderId": o.order_id, "orderListId": -1, "clientOrderId": o.client_order_id,
        "transactTime": o.created_ms,
    }  # fmt: skip
    if resp_type == "ACK":
        return body
    body |= {
        "price": f8(o.price or Decimal(0)), "origQty": f8(o.qty), "executedQty": f8(o.filled),
        "origQuoteOrderQty": "0.00000000", "cummulativeQuoteQty": f8(o.quote_filled), "status": o.status,
        "timeInForce": "GTC", "type": o.type, "side": o.side, **_stop_fields(o), "workingTime": _working(o)[1],
        "selfTradePreventionMode": "NONE",
    }  # fmt: skip
    if resp_type == "FULL":
        rows = [
            {"price": f8(t.price), "qty": f8(t.qty), "commission": f8(t.fee), "commissionAsset": t.fee_asset,
             "tradeId": t.trade_id}
            for t in o.trades
        ]  # fmt: skip
        body["fills"] = rows + rows if duplicate else rows
    return body


def cancel_json(o: SimOrder, *, cancel_id: str, ts_ms: int) -> dict[str, Any]:
    """``DELETE /api/v3/order`` answer, as Binance sends it: the cancelled order's id in
    ``origClientOrderId``, the cancel request's own id (``newClientOrderId``, else generated) in
    ``clientOrderId``, ``transactTime`` the cancel time (``rest-api.md`` "Cancel order (TRADE)")."""
    return {
        "symbol": o.symbol, "origClientOrderId": o.client_order_id, "orderId": o.order_id, "orderListId": -1,
        "clientOrderId": cancel_id, "transactTime": ts_ms, "price": f8(o.price or Decimal(0)),
        "origQty": f8(o.qty), "executedQty": f8(o.filled), "origQuoteOrderQty": "0.00000000",
        "cummulativeQuoteQty": f8(o.quote_filled), "status": o.status, "timeInForce": "GTC", "type": o.type,
        "side": o.side, **_stop_fields(o), "selfTradePreventionMode": "NONE",
    }  # fmt: skip


def generated_cancel_id(order_id: int, n: int) -> str:
    """A cancel request id as Binance generates one when ``newClientOrderId`` is not sent: 22
    characters, never an order's own id (deterministic here: derived from the order id and a count)."""
    return hashlib.sha256(f"cancel:{order_id}:{n}".encode()).hexdigest()[:22]


def trade_json(t: SimTrade) -> dict[str, Any]:
    """``GET /api/v3/myTrades`` row."""
    return {
        "symbol": t.symbol, "id": t.trade_id, "orderId": t.order_id, "orderListId": -1,
        "price": f8(t.price), "qty": f8(t.qty), "quoteQty": f8(t.qty * t.price), "commission": f8(t.fee),
        "commissionAsset": t.fee_asset, "time": t.ts_ms, "isBuyer": t.side == "BUY", "isMaker": t.maker,
        "isBestMatch": True,
    }  # fmt: skip


def _error(code: int, msg: str, status: int = 400, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status, headers=headers)


def timing_refusal(timestamp_ms: int, window_ms: float, server_ms: int | None) -> tuple[int, str] | None:
    """Binance's timing rules for a signed request (REST and WebSocket API alike): ``(code, msg)`` of
    the refusal, or ``None``. ``recvWindow`` above :data:`MAX_RECV_WINDOW_MS` is -1102; with a
    server clock (``server_ms``, ms), a timestamp 1 s or more ahead of it or older than the window
    is -1021."""
    if window_ms > MAX_RECV_WINDOW_MS:
        return -1102, f"'recvWindow' contains unexpected value. Cannot be greater than {MAX_RECV_WINDOW_MS}."
    if server_ms is None:
        return None
    if timestamp_ms >= server_ms + 1000:
        return -1021, "Timestamp for this request was 1000ms ahead of the server's time."
    if server_ms - timestamp_ms > window_ms:
        return -1021, "Timestamp for this request is outside of the recvWindow."
    return None


class BinancePrivate:
    """aiohttp handlers of the Binance private order endpoints."""

    def __init__(self, engine: OrderEngine, *, api_key: str = API_KEY, secret: str = API_SECRET) -> None:
        self.engine = engine
        #: API key → secret of every accepted key (tests may add their own: ``credentials[key] = secret``).
        self.credentials: dict[str, str] = {api_key: secret}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every private request
        #: Kill-point hook: called with each order just executed, before the answer is sent (crash tests).
        self.after_accept: Callable[[SimOrder], None] | None = None
        #: Server clock of the timing rule, ms (``None``: the rule is off; see the module docstring).
        self.server_clock_ms: Callable[[], int] | None = None
        self._cancels = 0

    def routes(self) -> list[web.RouteDef]:
        """Return the routes to add to the simulator's aiohttp app."""
        return [
            web.post("/api/v3/order", self._wrap(self.new_order)),
            web.get("/api/v3/order", self._wrap(self.query_order)),
            web.delete("/api/v3/order", self._wrap(self.cancel_order)),
            web.get("/api/v3/openOrders", self._wrap(self.open_orders)),
            web.get("/api/v3/myTrades", self._wrap(self.my_trades)),
            web.get("/api/v3/account", self._wrap(self.account)),
        ]

    def _wrap(self, handler: Any) -> Any:
        async def run(request: web.Request) -> web.Response:
            self.requests.append((request.method, request.path))
            faults = self.engine.faults
            if faults.throttle:
                status, retry_after = faults.throttle.popleft()
                msg = (
                    "Too much request weight used."
                    if status == 429
                    else "Way too much request weight used; IP banned."
                )
                return _error(-1003, msg, status, {"Retry-After": str(retry_after)})
            body = await request.text()
            params, denied = self._authenticate(request, body)
            if denied is not None:
                return denied
            untimely = self._timing(params)
            if untimely is not None:
                return untimely
            if faults.clock_skew > 0:
                faults.clock_skew -= 1
                return _error(-1021, "Timestamp for this request is outside of the recvWindow.")
            try:
                response: web.Response = await handler(params)
                return response
            except SimReject as e:
                return _error(e.code, e.msg, e.status)

        return run

    def _timing(self, params: dict[str, str]) -> web.Response | None:
        """The refusal of a request whose ``timestamp`` / ``recvWindow`` breaks Binance's timing rules."""
        try:
            timestamp = int(params["timestamp"])
        except (KeyError, ValueError):
            return _error(
                -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            )
        try:
            window = float(params.get("recvWindow", "5000"))
        except ValueError:
            return _error(
                -1102, "Mandatory parameter 'recvWindow' was not sent, was empty/null, or malformed."
            )
        refusal = timing_refusal(
            timestamp, window, None if self.server_clock_ms is None else self.server_clock_ms()
        )
        return None if refusal is None else _error(*refusal)

    def _authenticate(self, request: web.Request, body: str) -> tuple[dict[str, str], web.Response | None]:
        secret = self.credentials.get(request.headers.get("X-MBX-APIKEY", ""))
        if secret is None:
            return {}, _error(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        raw = request.query_string or body
        signed, _, signature = raw.rpartition("&signature=")
        expected = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(signature, expected):
            return {}, _error(-1022, "Signature for this request is not valid.")
        return dict(parse_qsl(signed, keep_blank_values=True)), None

    async def new_order(self, p: dict[str, str]) -> web.Response:
        """``POST /api/v3/order``: MARKET, LIMIT, STOP_LOSS (``stopPrice``) or STOP_LOSS_LIMIT
        (``stopPrice``, ``price``, ``timeInForce``); answer FULL for MARKET and LIMIT, ACK for the
        others, unless ``newOrderRespType`` says otherwise (``rest-api.md`` "New order (TRADE)")."""
        cid = p.get("newClientOrderId", "")
        if not _CID.match(cid):
            return _error(
                -1100,
                f"Illegal characters found in parameter 'newClientOrderId'; legal range is '{_CID.pattern}'.",
            )
        for name in ("quantity", "price", "stopPrice"):
            try:
                if name == "quantity" or name in p:
                    Decimal(p[name])
            except (KeyError, InvalidOperation):
                return _error(
                    -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
                )
        kind = p.get("type", "")
        if kind == "STOP_LOSS_LIMIT" and not p.get("timeInForce"):
            return _error(
                -1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed."
            )
        order = self.engine.place(symbol=p.get("symbol", ""), side=p.get("side", ""), type=kind,
                                  qty=Decimal(p["quantity"]), price=Decimal(p["price"]) if "price" in p else None,
                                  client_order_id=cid,
                                  stop_price=Decimal(p["stopPrice"]) if "stopPrice" in p else None)  # fmt: skip
        if self.after_accept is not None:
            self.after_accept(order)
        faults = self.engine.faults
        if faults.accept_then_500 > 0:
            faults.accept_then_500 -= 1
            return web.Response(status=500, text="<html><body>Internal Server Error</body></html>",
                                content_type="text/html")  # fmt: skip
        if faults.unknown_1007 > 0:
            faults.unknown_1007 -= 1
            return _error(-1007, "Timeout waiting for response from backend server. Send status unknown; "
                          "execution status unknown.", 503)  # fmt: skip
        if faults.accept_then_hang > 0:
            faults.accept_then_hang -= 1
            await asyncio.sleep(faults.hang_s)
        resp = p.get("newOrderRespType", "FULL" if kind in ("MARKET", "LIMIT") else "ACK")
        return web.json_response(new_order_json(order, resp_type=resp, duplicate=faults.duplicate_trades))

    async def query_order(self, p: dict[str, str]) -> web.Response:
        """``GET /api/v3/order?symbol=&origClientOrderId=|orderId=``."""
        faults = self.engine.faults
        if faults.lookup_not_found > 0:
            faults.lookup_not_found -= 1
            raise SimReject(-2013, "Order does not exist.")
        oid = int(p["orderId"]) if p.get("orderId") else None
        order = self.engine.find(
            p.get("symbol", ""), client_order_id=p.get("origClientOrderId"), order_id=oid
        )
        return web.json_response(order_json(order))

    async def cancel_order(self, p: dict[str, str]) -> web.Response:
        """``DELETE /api/v3/order?symbol=&origClientOrderId=|orderId=[&newClientOrderId=]`` (see
        :func:`cancel_json`); ``orderId`` takes precedence as on Binance."""
        symbol, orig = p.get("symbol", ""), p.get("origClientOrderId", "")
        if p.get("orderId"):
            try:
                orig = self.engine.find(symbol, order_id=int(p["orderId"])).client_order_id
            except SimReject:
                raise SimReject(-2011, "Unknown order sent.") from None
        elif not orig:
            raise SimReject(
                -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        order = self.engine.cancel(symbol, orig)
        self._cancels += 1
        cancel_id = p.get("newClientOrderId") or generated_cancel_id(order.order_id, self._cancels)
        return web.json_response(cancel_json(order, cancel_id=cancel_id, ts_ms=order.updated_ms))

    async def open_orders(self, p: dict[str, str]) -> web.Response:
        """``GET /api/v3/openOrders[?symbol=]``."""
        return web.json_response([order_json(o) for o in self.engine.open_orders(p.get("symbol"))])

    async def my_trades(self, p: dict[str, str]) -> web.Response:
        """``GET /api/v3/myTrades?symbol=[&startTime=][&orderId=][&limit=]``, oldest first."""
        start = int(p["startTime"]) if p.get("startTime") else None
        trades = self.engine.trades_of(p.get("symbol", ""), start)
        if p.get("orderId"):
            trades = [t for t in trades if t.order_id == int(p["orderId"])]
        rows = [trade_json(t) for t in trades[: int(p.get("limit", "500"))]]
        if self.engine.faults.duplicate_trades:
            rows = [r for row in rows for r in (row, row)]
        return web.json_response(rows)

    async def account(self, p: dict[str, str]) -> web.Response:
        """``GET /api/v3/account``: every field of the docs example (``rest-api.md`` "Account
        information (USER_DATA)"): commissions from the engine's fee rate (``makerCommission`` in
        0.01 % units, ``commissionRates`` as 8-decimal strings), ``updateTime`` of the last balance
        change, balances with free and locked."""
        e = self.engine
        rows = [
            {"asset": a, "free": f8(e.free.get(a, Decimal(0))), "locked": f8(e.locked.get(a, Decimal(0)))}
            for a in e.balances()
        ]
        bps = int(e.fee_rate * 10_000)
        return web.json_response({
            "makerCommission": bps, "takerCommission": bps, "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": f8(e.fee_rate), "taker": f8(e.fee_rate), "buyer": f8(Decimal(0)),
                                "seller": f8(Decimal(0))},
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": e.account_update_ms,
            "accountType": "SPOT", "balances": rows, "permissions": ["SPOT"], "uid": SIM_UID,
        })  # fmt: skip
