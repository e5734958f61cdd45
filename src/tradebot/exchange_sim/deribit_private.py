"""Simulated Deribit private JSON-RPC-over-HTTP endpoints (``GET /api/v2/private/<method>``) for ccxt:
``buy``, ``sell``, ``cancel``, ``get_order_state``, ``get_order_state_by_label``,
``get_open_orders_by_instrument``, ``get_user_trades_by_instrument``, ``get_position``,
``get_positions`` and ``get_account_summary``, over an
:class:`~tradebot.exchange_sim.orders.OrderEngine`.

The linear USDC perpetuals (amounts in base units, settled in USDC) keep a spot-like account (a
position in the base coin, USDC paying the notional), a simplification that keeps "ledger = venue"
checkable. The inverse perpetuals (``BTC-PERPETUAL``, ``ETH-PERPETUAL``, ``SOL-PERPETUAL``) trade
as on Deribit: ``amount`` in USD (a multiple of the 10-USD / 1-USD contract size), fees and
realized PnL in the coin, settled in the coin's account (``get_account_summary?currency=BTC``);
a position has ``size`` in USD and ``size_currency`` = size / mark in coins, like the docs example
(50 USD at mark 7476.65 → 0.006687487 BTC), with the harmonic entry price and the PnL of
:func:`tradebot.exchange_sim.orders.inverse_position`. Ids follow the docs examples: plain numbers
on ``BTC`` instruments (``"4008965646"``), ``ETH-…`` / ``SOL-…`` otherwise, ``USDC-…`` on the
linear ones (trades ``USDC-T…``).

Authentication like Deribit's ``deri-hmac-sha256`` header: ``sig = HMAC-SHA256(secret,
ts\\nnonce\\nGET\\n<path?query>\\n\\n)``. Refusals (HTTP 400) use the documented codes
(``payloads/deribit/errors_rpc_codes_legacy_docs.json``): no or malformed header ``10000
authorization_required`` ("invalid or absent signature"), an unknown client id ``13004
invalid_credentials``, a wrong signature ``13009 unauthorized`` ("bad signature"). The order fault
switches of :class:`OrderFaults` apply (``accept_then_500``, ``unknown_1007`` → HTTP 503,
``lookup_not_found``, ``throttle`` → 10028).

Stop orders: ``private/buy|sell`` with ``type=stop_market`` (or ``stop_limit`` with ``price``),
``trigger_price`` (on the tick, else ``10044 trigger_price_wrong_tick``), ``trigger`` (``last_price``,
``mark_price`` or ``index_price``: the simulator's mark and index are its last price, so all three
trigger alike) and ``reduce_only``. A trigger price the last price has already reached is refused
with ``11036 invalid_trigger_price``. The order rests ``untriggered`` (``price`` ``"market_price"``
for a stop-market, no fill fields yet, as in the docs example of ``private/cancel``) and triggers by
the rule of :mod:`tradebot.exchange_sim.orders`, then shows ``filled`` (``triggered`` true).

Answers carry the fields of the documentation examples (``docs_private_*_response.json``): order
objects, trades (``tick_direction``, ``mark_price`` … with mark and index = the simulator's last
price), positions (average price, mark, floating and realized PnL; margins 0 and leverage 1: the
account is fully funded) and account summaries (``extended=true`` adds the account's profile
fields, as in ``private/get_account_summaries``).
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
from tradebot.exchange_sim.orders import (
    STOP_TYPES,
    OrderEngine,
    SimOrder,
    SimReject,
    SimTrade,
    SymbolRules,
    inverse_position,
)

CLIENT_ID = "sim-deribit-id"
CLIENT_SECRET = "sim-deribit-secret"
_AUTH = re.compile(
    r"deri-hmac-sha256 id=(?P<id>[^,]*),ts=(?P<ts>\d+),sig=(?P<sig>[0-9a-f]+),nonce=(?P<nonce>.*)"
)
_STATE = {"NEW": "open", "PARTIALLY_FILLED": "open", "FILLED": "filled", "CANCELED": "cancelled",
          "EXPIRED": "cancelled"}  # fmt: skip
#: ``limits`` of an account summary (the docs example's default rate limits, per second).
_LIMITS: dict[str, Any] = {
    "limits_per_currency": False,
    "non_matching_engine": {"burst": 1500, "rate": 1000},
    "matching_engine": {"trading": {"total": {"burst": 250, "rate": 200}}, "spot": {"burst": 250, "rate": 200},
                        "quotes": {"burst": 500, "rate": 500}, "max_quotes": {"burst": 10, "rate": 10},
                        "guaranteed_quotes": {"burst": 2, "rate": 2}, "cancel_all": {"burst": 250, "rate": 200}},
}  # fmt: skip
#: Account profile fields ``get_account_summary`` adds with ``extended=true`` (simulated account).
_PROFILE: dict[str, Any] = {
    "id": 1, "username": "sim", "system_name": "sim", "email": "sim@localhost", "type": "main",
    "referrer_id": None, "creation_timestamp": 1646784000000, "login_enabled": False,
    "security_keys_enabled": False, "mmp_enabled": False, "interuser_transfers_enabled": False,
    "block_rfq_self_match_prevention": True, "self_trading_reject_mode": "cancel_maker",
    "self_trading_extended_to_subaccounts": False,
}  # fmt: skip
#: Binance-worded engine refusals → Deribit (code, message).
#: Deribit order types → the engine's (Binance-named) types, and back.
_TYPES = {"limit": "LIMIT", "market": "MARKET", "stop_market": "STOP_LOSS", "stop_limit": "STOP_LOSS_LIMIT"}
WIRE_TYPES = {v: k for k, v in _TYPES.items()}
_TRIGGERS = ("index_price", "mark_price", "last_price")
_CODES = {-2010: (10009, "not_enough_funds"), -2013: (10004, "order_not_found"), -2011: (11044, "not_open_order"),
          -1121: (10020, "invalid_or_unsupported_instrument")}  # fmt: skip


def deribit_rules(instruments: list[dict[str, Any]]) -> dict[str, SymbolRules]:
    """Rules of the perpetuals of ``public/get_instruments``: linear (USDC; step and minimum in base
    units) and inverse (``quote_currency`` USD; step and minimum in USD, :attr:`SymbolRules.inverse`)."""
    out = {}
    for i in instruments:
        name = i["instrument_name"]
        out[name] = SymbolRules(
            symbol=name, base=i["base_currency"], quote=i["quote_currency"], tick=Decimal(repr(i["tick_size"])),
            step=Decimal(repr(i["contract_size"])), min_qty=Decimal(repr(i["min_trade_amount"])),
            min_notional=Decimal(0), tape=tape_symbol(name), inverse=i.get("quote_currency") == "USD",
        )  # fmt: skip
    return out


def id_prefixes(rules: SymbolRules) -> tuple[str, str]:
    """(order id prefix, trade id prefix) of a symbol's ids, as in the docs examples (module docstring)."""
    if not rules.inverse:
        return "USDC-", "USDC-T"
    return ("", "") if rules.base == "BTC" else (f"{rules.base}-", f"{rules.base}-")


def _order_number(order_id: str) -> str:
    return order_id.rsplit("-", 1)[-1]


def _num(value: Decimal) -> float | int:
    # Deribit sends JSON numbers; every simulated value has few digits, so the float is exact in repr
    return int(value) if value == value.to_integral_value() else float(value)


def order_json(o: SimOrder, prefix: str = "USDC-") -> dict[str, Any]:
    """Deribit order object with the keys of the docs examples (``private/buy``, ``get_order_state``;
    for a stop, ``private/cancel``'s untriggered ``stop_market``).

    ``price`` is a number for every order: the limit price, or for a market order its fill price
    (Deribit shows a market order's price limit there), except ``"market_price"`` for an untriggered
    stop-market, which also has no ``filled_amount`` / ``average_price`` yet. A stop adds
    ``trigger``, ``trigger_price`` and ``triggered``; it is ``untriggered`` until it triggers.
    ``prefix`` starts the order id (:func:`id_prefixes`).
    """
    avg = o.quote_filled / o.filled if o.filled else Decimal(0)
    untriggered = o.untriggered
    price: Any = _num(o.price if o.price is not None else avg)
    if untriggered and o.price is None:
        price = "market_price"
    body = {
        "order_id": f"{prefix}{o.order_id}", "label": o.client_order_id, "instrument_name": o.symbol,
        "direction": o.side.lower(), "amount": _num(o.qty), "filled_amount": _num(o.filled),
        "average_price": _num(avg), "order_state": "untriggered" if untriggered else _STATE[o.status],
        "order_type": WIRE_TYPES[o.type], "price": price, "time_in_force": "good_til_cancelled",
        "max_show": _num(o.qty), "creation_timestamp": o.created_ms, "last_update_timestamp": o.updated_ms,
        "api": True, "web": False, "post_only": False, "reduce_only": o.reduce_only, "replaced": False,
        "is_liquidation": False, "is_rebalance": False,
    }  # fmt: skip
    if o.stop_price is not None:
        body |= {"trigger": o.trigger or "last_price", "trigger_price": _num(o.stop_price),
                 "triggered": o.triggered_ms is not None}  # fmt: skip
    if untriggered:
        del body["filled_amount"], body["average_price"]
    return body


def trade_json(t: SimTrade, label: str, *, order_type: str = "market", tick_direction: int = 0,
               mark: Decimal | None = None, prefixes: tuple[str, str] = ("USDC-", "USDC-T")) -> dict[str, Any]:  # fmt: skip
    """Deribit user trade with the keys of the docs example (``private/buy`` ``trades[]``).

    ``tick_direction``: 0 plus tick, 1 zero-plus, 2 minus, 3 zero-minus (:func:`tick_directions`);
    ``mark`` is the mark and index price at the trade (default: the trade price); ``prefixes`` start
    the order and trade ids (:func:`id_prefixes`).
    """
    ref = _num(mark if mark is not None else t.price)
    order_prefix, trade_prefix = prefixes
    return {
        "trade_id": f"{trade_prefix}{t.trade_id}", "order_id": f"{order_prefix}{t.order_id}", "label": label,
        "instrument_name": t.symbol, "direction": t.side.lower(), "amount": _num(t.qty), "price": _num(t.price),
        "fee": _num(t.fee), "fee_currency": t.fee_asset, "timestamp": t.ts_ms, "state": "filled",
        "order_type": order_type, "liquidity": "M" if t.maker else "T", "trade_seq": t.trade_id,
        "tick_direction": tick_direction, "mark_price": ref, "index_price": ref, "matching_id": None,
        "post_only": False, "reduce_only": False,
    }  # fmt: skip


def tick_directions(trades: list[SimTrade]) -> dict[int, int]:
    """Trade id → Deribit ``tick_direction`` of each trade against the previous one of its instrument."""
    out: dict[int, int] = {}
    last: dict[str, tuple[Decimal, int]] = {}
    for t in trades:
        prev = last.get(t.symbol)
        if prev is None or t.price > prev[0]:
            direction = 0
        elif t.price < prev[0]:
            direction = 2
        else:
            direction = 1 if prev[1] in (0, 1) else 3
        out[t.trade_id] = direction
        last[t.symbol] = (t.price, direction)
    return out


def position_of(trades: list[SimTrade]) -> tuple[Decimal, Decimal, Decimal]:
    """(size, average entry price, realized PnL) of one instrument's trades, oldest first (linear)."""
    size = avg = realized = Decimal(0)
    for t in trades:
        signed = t.qty if t.side == "BUY" else -t.qty
        if size == 0 or (size > 0) == (signed > 0):  # opening or adding
            avg = (avg * abs(size) + t.price * t.qty) / (abs(size) + t.qty)
        else:  # reducing, maybe through zero
            closed = min(abs(size), t.qty)
            realized += closed * (t.price - avg) * (1 if size > 0 else -1)
            if t.qty > abs(size):
                avg = t.price
        size += signed
        if size == 0:
            avg = Decimal(0)
    return size, avg, realized


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
        """A JSON-RPC error answer in the documented format (``docs_error_response_format_example.json``:
        ``error.code``, ``error.message``, ``error.data.reason`` when there is one, ``usIn``/``usOut``)."""
        us = self.market.now_ms * 1000
        body: dict[str, Any] = {"jsonrpc": "2.0", "error": {"code": code, "message": message}}
        if reason:
            body["error"]["data"] = {"reason": reason}
        body |= {"usIn": us, "usOut": us + 50, "usDiff": 50, "testnet": True}
        return web.Response(status=status, text=json.dumps(body), content_type="application/json")

    def _ok(self, result: Any) -> web.Response:
        return web.Response(
            text=rpc_result(None, result, self.market.now_ms), content_type="application/json"
        )

    def _refused(self, request: web.Request) -> web.Response | None:
        """The documented refusal of a request that is not authenticated, else ``None``."""
        m = _AUTH.fullmatch(request.headers.get("Authorization", ""))
        if m is None:
            return self._error(10000, "authorization_required")
        secret = self.credentials.get(m["id"])
        if secret is None:
            return self._error(13004, "invalid_credentials")
        text = f"{m['ts']}\n{m['nonce']}\nGET\n{request.raw_path}\n\n"
        expected = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(m["sig"], expected):
            return self._error(13009, "unauthorized", "bad signature")
        return None

    async def dispatch(self, request: web.Request) -> web.Response:
        """Route ``GET /api/v2/private/<method>?<params>``."""
        method, q = request.match_info["method"], dict(request.query)
        self.requests.append(method)
        faults = self.engine.faults
        if faults.throttle:
            status, _retry_after = faults.throttle.popleft()
            return self._error(10028, "too_many_requests", status=429 if status == 429 else status)
        refused = self._refused(request)
        if refused is not None:
            return refused
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
            if e.code == -2010 and "trigger immediately" in e.msg:
                return self._error(11036, "invalid_trigger_price", e.msg)
            code, message = _CODES.get(e.code, (10001, "error"))
            return self._error(code, message, e.msg)

    async def _m_buy(self, q: dict[str, str]) -> web.Response:
        return await self._place(q, "BUY")

    async def _m_sell(self, q: dict[str, str]) -> web.Response:
        return await self._place(q, "SELL")

    async def _place(self, q: dict[str, str], side: str) -> web.Response:
        name = q.get("instrument_name", "")
        if name not in self.engine.rules:
            return self._error(10020, "invalid_or_unsupported_instrument",
                               f"instrument {name!r} (amount {q.get('amount')}) is not listed")  # fmt: skip
        values: dict[str, Decimal | None] = {}
        for key in ("amount", "price", "trigger_price"):
            try:
                values[key] = Decimal(q[key]) if key in q or key == "amount" else None
            except (KeyError, InvalidOperation):
                return self._error(-32602, "Invalid params", key)
        kind = _TYPES.get(q.get("type", "limit"), q.get("type", "").upper())
        trigger, stop = q.get("trigger", ""), values["trigger_price"]
        if kind in STOP_TYPES:
            if stop is None or trigger not in _TRIGGERS:
                return self._error(-32602, "Invalid params", "trigger_price" if stop is None else "trigger")
            if stop % self.engine.rules[name].tick != 0:
                return self._error(10044, "trigger_price_wrong_tick")
        amount = values["amount"]
        assert amount is not None
        order = self.engine.place(symbol=name, side=side, type=kind, qty=amount, price=values["price"],
                                  client_order_id=q.get("label", ""), stop_price=stop if kind in STOP_TYPES else None,
                                  reduce_only=q.get("reduce_only") == "true", trigger=trigger)  # fmt: skip
        faults = self.engine.faults
        if faults.accept_then_500 > 0:
            faults.accept_then_500 -= 1
            return web.Response(status=500, text="Internal Server Error", content_type="text/html")
        if faults.unknown_1007 > 0:
            faults.unknown_1007 -= 1
            return web.Response(status=503, text="Service Unavailable", content_type="text/html")
        trades = [self._trade(t, order.client_order_id) for t in order.trades]
        return self._ok(
            {"order": self._order(order), "trades": trades + trades if faults.duplicate_trades else trades}
        )

    async def _m_get_order_state_by_label(self, q: dict[str, str]) -> web.Response:
        faults = self.engine.faults
        if faults.lookup_not_found > 0:
            faults.lookup_not_found -= 1
            return self._ok([])
        label, currency = q.get("label", ""), q.get("currency")
        return self._ok([self._order(o) for o in self.engine.orders if o.client_order_id == label
                         and currency in (None, _settlement(self.engine.rules[o.symbol]))])  # fmt: skip

    def _find(self, q: dict[str, str]) -> SimOrder:
        number = _order_number(q.get("order_id", ""))
        order = next((o for o in self.engine.orders if str(o.order_id) == number), None)
        if order is None:
            raise SimReject(-2013, "Order does not exist.")
        return order

    async def _m_get_order_state(self, q: dict[str, str]) -> web.Response:
        return self._ok(self._order(self._find(q)))

    async def _m_cancel(self, q: dict[str, str]) -> web.Response:
        order = self._find(q)
        return self._ok(self._order(self.engine.cancel(order.symbol, order.client_order_id)))

    async def _m_get_open_orders_by_instrument(self, q: dict[str, str]) -> web.Response:
        return self._ok([self._order(o) for o in self.engine.open_orders(q.get("instrument_name"))])

    async def _m_get_user_trades_by_instrument(self, q: dict[str, str]) -> web.Response:
        labels = {o.order_id: o.client_order_id for o in self.engine.orders}
        rows = [
            self._trade(t, labels[t.order_id]) for t in self.engine.trades_of(q.get("instrument_name", ""))
        ]
        if self.engine.faults.duplicate_trades:
            rows = [r for row in rows for r in (row, row)]
        return self._ok({"trades": rows[: int(q.get("count", "1000"))], "has_more": False})

    def prefixes(self, symbol: str) -> tuple[str, str]:
        """(order id prefix, trade id prefix) of ``symbol`` (:func:`id_prefixes`)."""
        return id_prefixes(self.engine.rules[symbol])

    def _order(self, o: SimOrder) -> dict[str, Any]:
        return order_json(o, self.prefixes(o.symbol)[0])

    def _trade(self, t: SimTrade, label: str) -> dict[str, Any]:
        order = next(o for o in self.engine.orders if o.order_id == t.order_id)
        return trade_json(t, label, order_type=WIRE_TYPES[order.type], prefixes=self.prefixes(t.symbol),
                          tick_direction=tick_directions(self.engine.trades)[t.trade_id])  # fmt: skip

    def _mark(self, name: str) -> Decimal:
        try:
            return self.engine.last_price(name)
        except SimReject:  # the market has not opened: no mark yet
            return Decimal(0)

    def _position(self, name: str) -> dict[str, Any]:
        """The position object of ``name`` (the docs examples' fields; flat: zeros, as ``get_position``)."""
        rules = self.engine.rules[name]
        mark, trades = self._mark(name), self.engine.trades_of(name)
        if rules.inverse:  # size in USD; PnL, margin and size_currency in the coin
            size, avg, realized = inverse_position(trades)
            coins = size / mark if mark else Decimal(0)
            upl = size * (1 / avg - 1 / mark) if size and mark else Decimal(0)
        else:
            size, avg, realized = position_of(trades)
            coins, upl = size, (mark - avg) * size
        return {
            "instrument_name": name, "kind": "future", "size": _num(size), "size_currency": _num(coins),
            "direction": "sell" if size < 0 else "buy", "average_price": _num(avg), "delta": _num(coins),
            "mark_price": _num(mark), "index_price": _num(mark), "settlement_price": _num(mark),
            "floating_profit_loss": _num(upl), "total_profit_loss": _num(upl + realized),
            "realized_profit_loss": _num(realized), "realized_funding": 0, "interest_value": 0,
            "estimated_liquidation_price": 0, "leverage": 1,
            "initial_margin": _num(abs(coins)) if rules.inverse else 0, "maintenance_margin": 0,
            "open_orders_margin": 0,
        }  # fmt: skip

    async def _m_get_position(self, q: dict[str, str]) -> web.Response:
        name = q.get("instrument_name", "")
        if name not in self.engine.rules:
            raise SimReject(-1121, "Invalid symbol.")
        return self._ok(self._position(name))

    async def _m_get_positions(self, q: dict[str, str]) -> web.Response:
        rows = []
        for name, rules in self.engine.rules.items():
            if q.get("currency", "any") not in ("any", _settlement(rules)):
                continue
            position = self._position(name)
            if position["size"]:
                rows.append(position)
        return self._ok(rows)

    async def _m_get_account_summary(self, q: dict[str, str]) -> web.Response:
        currency = q.get("currency", "USDC")
        e = self.engine
        maker = e.fee_rate if e.maker_fee_rate is None else e.maker_fee_rate
        settled = [r for r in e.rules.values() if _settlement(r) == currency]
        if any(r.inverse for r in settled):  # a coin account: margin at leverage 1, PnL in coins
            balance = e.coin_accounts.get(currency, Decimal(0))
            positions = [self._position(r.symbol) for r in settled]
            upl = sum((Decimal(repr(p["floating_profit_loss"])) for p in positions), Decimal(0))
            margin = sum((Decimal(repr(p["initial_margin"])) for p in positions), Decimal(0))
            equity, locked = balance + upl, Decimal(0)
            free = equity - margin
        else:
            balance, free = e.balances().get(currency, Decimal(0)), e.free.get(currency, Decimal(0))
            locked, equity, upl, margin = e.locked.get(currency, Decimal(0)), balance, Decimal(0), Decimal(0)
        index = "usd" if currency != "USDC" else "usdc"
        summary: dict[str, Any] = {
            "currency": currency, "balance": _num(balance), "equity": _num(equity),
            "margin_balance": _num(equity), "available_funds": _num(free), "available_withdrawal_funds": _num(free),
            "spot_reserve": _num(locked), "initial_margin": _num(margin), "maintenance_margin": 0,
            "projected_initial_margin": _num(margin), "projected_maintenance_margin": 0, "fee_balance": 0,
            "total_pl": _num(upl), "session_upl": _num(upl), "session_rpl": 0, "futures_pl": _num(upl),
            "futures_session_upl": _num(upl), "futures_session_rpl": 0, "options_pl": 0, "options_session_upl": 0,
            "options_session_rpl": 0, "options_value": 0, "options_delta": 0, "options_gamma": 0, "options_vega": 0,
            "options_theta": 0, "options_gamma_map": {}, "options_vega_map": {}, "options_theta_map": {},
            "delta_total": 0, "delta_total_map": {}, "projected_delta_total": 0, "estimated_liquidation_ratio": 0,
            "estimated_liquidation_ratio_map": {}, "portfolio_margining_enabled": False,
            "cross_collateral_enabled": False, "margin_model": "segregated_sm", "limits": _LIMITS,
            "fees": [{"kind": "perpetual", "index_name": f"{r.base.lower()}_{index}",
                      "value": {"default": {"type": "fixed", "taker": float(e.fee_rate), "maker": float(maker)},
                                "block_trade": 0.3}}
                     for r in settled],
        }  # fmt: skip
        if q.get("extended") == "true":
            summary |= _PROFILE
        return self._ok(summary)


def _settlement(rules: SymbolRules) -> str:
    # the currency account settling a symbol: the coin of an inverse one, the quote (USDC) of a linear one
    return rules.base if rules.inverse else rules.quote
