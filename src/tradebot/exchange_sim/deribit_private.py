"""Simulated Deribit private JSON-RPC-over-HTTP endpoints (``GET /api/v2/private/<method>``) for ccxt:
``buy``, ``sell``, ``cancel``, ``get_order_state``, ``get_order_state_by_label``,
``get_open_orders_by_instrument``, ``get_user_trades_by_instrument``, ``get_positions`` and
``get_account_summary``, over an :class:`~tradebot.exchange_sim.orders.OrderEngine`.

Only the linear USDC perpetuals trade here (amounts in base units, settled in USDC); the account
is kept spot-like (a position in the base coin, USDC paying the notional), a simplification that
keeps "ledger = venue" checkable. Inverse (USD-amount) instruments answer ``-32602``.

Authentication like Deribit's ``deri-hmac-sha256`` header: ``sig = HMAC-SHA256(secret,
ts\\nnonce\\nGET\\n<path?query>\\n\\n)``; a wrong id or signature answers ``13004
invalid_credentials`` (HTTP 400). The order fault switches of :class:`OrderFaults` apply
(``accept_then_500``, ``unknown_1007`` → HTTP 503, ``lookup_not_found``, ``throttle`` → 10028).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from tradebot.exchange_sim.deribit_ws import rpc_result, tape_symbol
from tradebot.exchange_sim.market import Market
from tradebot.exchange_sim.orders import OrderEngine, SimOrder, SimReject, SimTrade, SymbolRules

CLIENT_ID = "sim-deribit-id"
CLIENT_SECRET = "sim-deribit-secret"
_AUTH = re.compile(
    r"deri-hmac-sha256 id=(?P<id>[^,]*),ts=(?P<ts>\d+),sig=(?P<sig>[0-9a-f]+),nonce=(?P<nonce>.*)"
)
_STATE = {"NEW": "open", "PARTIALLY_FILLED": "open", "FILLED": "filled", "CANCELED": "cancelled",
          "EXPIRED": "cancelled"}  # fmt: skip
#: Binance-worded engine refusals → Deribit (code, message).
_CODES = {-2010: (10009, "not_enough_funds"), -2013: (10004, "order_not_found"), -2011: (11044, "not_open_order"),
          -1121: (10000, "instrument_not_found")}  # fmt: skip


def deribit_rules(instruments: list[dict[str, Any]]) -> dict[str, SymbolRules]:
    """Rules of the linear (USDC) perpetuals of ``public/get_instruments``."""
    out = {}
    for i in instruments:
        if i.get("quote_currency") == "USD":
            continue
        name = i["instrument_name"]
        out[name] = SymbolRules(
            symbol=name, base=i["base_currency"], quote=i["quote_currency"], tick=Decimal(repr(i["tick_size"])),
            step=Decimal(repr(i["contract_size"])), min_qty=Decimal(repr(i["min_trade_amount"])),
            min_notional=Decimal(0), tape=tape_symbol(name),
        )  # fmt: skip
    return out


def _num(value: Decimal) -> float | int:
    # Deribit sends JSON numbers; every simulated value has few digits, so the float is exact in repr
    return int(value) if value == value.to_integral_value() else float(value)


def order_json(o: SimOrder) -> dict[str, Any]:
    """Deribit order object."""
    avg = o.quote_filled / o.filled if o.filled else Decimal(0)
    return {
        "order_id": f"USDC-{o.order_id}", "label": o.client_order_id, "instrument_name": o.symbol,
        "direction": o.side.lower(), "amount": _num(o.qty), "filled_amount": _num(o.filled),
        "average_price": _num(avg), "order_state": _STATE[o.status], "order_type": o.type.lower(),
        "price": _num(o.price) if o.price is not None else "market_price", "time_in_force": "good_til_cancelled",
        "creation_timestamp": o.created_ms, "last_update_timestamp": o.updated_ms, "api": True,
        "post_only": False, "reduce_only": False,
    }  # fmt: skip


def trade_json(t: SimTrade, label: str) -> dict[str, Any]:
    """Deribit user trade."""
    return {
        "trade_id": f"USDC-T{t.trade_id}", "order_id": f"USDC-{t.order_id}", "label": label,
        "instrument_name": t.symbol, "direction": t.side.lower(), "amount": _num(t.qty), "price": _num(t.price),
        "fee": _num(t.fee), "fee_currency": t.fee_asset, "timestamp": t.ts_ms, "state": "filled",
        "order_type": "market", "liquidity": "T", "trade_seq": t.trade_id,
    }  # fmt: skip


class DeribitPrivate:
    """aiohttp handler of the Deribit private methods."""

    def __init__(self, engine: OrderEngine, market: Market, *, client_id: str = CLIENT_ID,
                 secret: str = CLIENT_SECRET) -> None:  # fmt: skip
        self.engine, self.market = engine, market
        #: Client id → secret of every accepted key (tests may add their own).
        self.credentials: dict[str, str] = {client_id: secret}
        self.requests: list[str] = []

    def routes(self) -> list[web.RouteDef]:
        """Return the routes to add to the simulator's aiohttp app."""
        return [web.get("/api/v2/private/{method}", self.dispatch)]

    def _error(self, code: int, message: str, reason: str = "", status: int = 400) -> web.Response:
        body: dict[str, Any] = {
            "jsonrpc": "2.0",
            "error": {"code": code, "message": message},
            "testnet": True,
        }
        if reason:
            body["error"]["data"] = {"reason": reason}
        return web.Response(status=status, text=json.dumps(body), content_type="application/json")

    def _ok(self, result: Any) -> web.Response:
        return web.Response(
            text=rpc_result(None, result, self.market.now_ms), content_type="application/json"
        )

    def _authenticated(self, request: web.Request) -> bool:
        m = _AUTH.fullmatch(request.headers.get("Authorization", ""))
        secret = None if m is None else self.credentials.get(m["id"])
        if m is None or secret is None:
            return False
        text = f"{m['ts']}\n{m['nonce']}\nGET\n{request.raw_path}\n\n"
        return hmac.compare_digest(
            m["sig"], hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
        )

    async def dispatch(self, request: web.Request) -> web.Response:
        """Route ``GET /api/v2/private/<method>?<params>``."""
        method, q = request.match_info["method"], dict(request.query)
        self.requests.append(method)
        faults = self.engine.faults
        if faults.throttle:
            status, _retry_after = faults.throttle.popleft()
            return self._error(10028, "too_many_requests", status=429 if status == 429 else status)
        if not self._authenticated(request):
            return self._error(13004, "invalid_credentials")
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return self._error(-32601, "Method not found")
        try:
            response: web.Response = await handler(q)
            return response
        except SimReject as e:
            if e.code == -1013:
                lot = "LOT_SIZE" in e.msg
                return self._error(-32602 if lot else 10002, "Invalid params" if lot else "qty_too_low",
                                   "amount must be a multiple of contract size" if lot else "")  # fmt: skip
            code, message = _CODES.get(e.code, (10001, "error"))
            return self._error(code, message, e.msg)

    async def _m_buy(self, q: dict[str, str]) -> web.Response:
        return await self._place(q, "BUY")

    async def _m_sell(self, q: dict[str, str]) -> web.Response:
        return await self._place(q, "SELL")

    async def _place(self, q: dict[str, str], side: str) -> web.Response:
        name = q.get("instrument_name", "")
        if name not in self.engine.rules:
            return self._error(
                -32602,
                "Invalid params",
                f"instrument {name!r} (amount {q.get('amount')}) is not traded by the simulator",
            )
        try:
            amount = Decimal(q["amount"])
            price = Decimal(q["price"]) if "price" in q else None
        except (KeyError, InvalidOperation):
            return self._error(-32602, "Invalid params", "amount")
        order = self.engine.place(symbol=name, side=side, type=q.get("type", "limit").upper(), qty=amount,
                                  price=price, client_order_id=q.get("label", ""))  # fmt: skip
        faults = self.engine.faults
        if faults.accept_then_500 > 0:
            faults.accept_then_500 -= 1
            return web.Response(status=500, text="Internal Server Error", content_type="text/html")
        if faults.unknown_1007 > 0:
            faults.unknown_1007 -= 1
            return web.Response(status=503, text="Service Unavailable", content_type="text/html")
        trades = [trade_json(t, order.client_order_id) for t in order.trades]
        return self._ok(
            {"order": order_json(order), "trades": trades + trades if faults.duplicate_trades else trades}
        )

    async def _m_get_order_state_by_label(self, q: dict[str, str]) -> web.Response:
        faults = self.engine.faults
        if faults.lookup_not_found > 0:
            faults.lookup_not_found -= 1
            return self._ok([])
        label = q.get("label", "")
        return self._ok([order_json(o) for o in self.engine.orders if o.client_order_id == label])

    async def _m_get_order_state(self, q: dict[str, str]) -> web.Response:
        oid = q.get("order_id", "").removeprefix("USDC-")
        order = next((o for o in self.engine.orders if str(o.order_id) == oid), None)
        if order is None:
            raise SimReject(-2013, "Order does not exist.")
        return self._ok(order_json(order))

    async def _m_cancel(self, q: dict[str, str]) -> web.Response:
        oid = q.get("order_id", "").removeprefix("USDC-")
        order = next((o for o in self.engine.orders if str(o.order_id) == oid), None)
        if order is None:
            raise SimReject(-2013, "Order does not exist.")
        return self._ok(order_json(self.engine.cancel(order.symbol, order.client_order_id)))

    async def _m_get_open_orders_by_instrument(self, q: dict[str, str]) -> web.Response:
        return self._ok([order_json(o) for o in self.engine.open_orders(q.get("instrument_name"))])

    async def _m_get_user_trades_by_instrument(self, q: dict[str, str]) -> web.Response:
        labels = {o.order_id: o.client_order_id for o in self.engine.orders}
        rows = [
            trade_json(t, labels[t.order_id]) for t in self.engine.trades_of(q.get("instrument_name", ""))
        ]
        if self.engine.faults.duplicate_trades:
            rows = [r for row in rows for r in (row, row)]
        return self._ok({"trades": rows[: int(q.get("count", "1000"))], "has_more": False})

    async def _m_get_positions(self, q: dict[str, str]) -> web.Response:
        rows = []
        for name, rules in self.engine.rules.items():
            if rules.quote != q.get("currency", rules.quote):  # linear perpetuals settle in their quote
                continue
            size = self.engine.balances().get(rules.base, Decimal(0))
            if size:
                rows.append({"instrument_name": name, "kind": "future", "size": _num(size),
                             "direction": "buy" if size > 0 else "sell", "size_currency": _num(size)})  # fmt: skip
        return self._ok(rows)

    async def _m_get_account_summary(self, q: dict[str, str]) -> web.Response:
        currency = q.get("currency", "USDC")
        balance = self.engine.balances().get(currency, Decimal(0))
        return self._ok({"currency": currency, "balance": _num(balance), "equity": _num(balance),
                         "available_funds": _num(self.engine.free.get(currency, Decimal(0)))})  # fmt: skip
