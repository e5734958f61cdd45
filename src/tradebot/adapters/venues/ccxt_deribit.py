"""Deribit perpetuals execution through ``ccxt.async_support`` (www.deribit.com, test.deribit.com, or
the simulator), as a :class:`~tradebot.ports.Venue`.

Same rules as :class:`~tradebot.adapters.venues.ccxt_venue.CcxtVenue` (send once; UNKNOWN on
timeout / 5xx / undecodable answer; definitive refusals raise; reads retried through the gate).
Our client order id is the order ``label``. Amounts cross in base units: the adapter converts to
the instrument's own unit (:func:`~tradebot.adapters.venues.ccxt_schemas.deribit_amount`: USD for
inverse perpetuals, base coin for linear USDC ones) and back. Balances are the settlement
currencies' ``balance`` plus each position's size in base units (under the base coin's code).

Stop orders go out as ``type=stop_market`` / ``stop_limit`` with ``trigger_price`` (on the tick
grid, else refused here, not sent), ``trigger`` (``last_price`` by default: the trades the
backtest's candles are made of; ``mark_price`` or ``index_price`` by the ``stop_trigger`` argument)
and ``reduce_only=true`` when the order says so. The venue answers an untriggered stop with
``order_state`` ``untriggered`` (→ ``ACCEPTED``) and refuses a trigger price the market has already
reached with ``11036 invalid_trigger_price`` (→ ``OrderRejected``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from functools import partial
from typing import Any

import ccxt.async_support as ccxt

from tradebot.adapters.venues.ccxt_schemas import (
    deribit_amount,
    deribit_instrument,
    deribit_is_inverse,
    deribit_order,
    deribit_rpc_error,
    deribit_trade,
    plain,
)
from tradebot.adapters.venues.ccxt_venue import CcxtVenue, HttpAnswer, _on_grid, _retry_after
from tradebot.adapters.venues.deribit_schemas import DERIBIT_TYPE
from tradebot.adapters.venues.gate import Priority
from tradebot.adapters.venues.wire import positive_price
from tradebot.core.domain import ClientOrderId, Fill, Instrument, OrderType, PlaceOrder, Symbol, to_wire
from tradebot.errors import (
    ConfigError,
    DataError,
    InsufficientFunds,
    OrderRejected,
    RateLimited,
    VenueUnavailable,
)
from tradebot.ports import OrderReport

DERIBIT_REST_URL = "https://www.deribit.com"
DERIBIT_TESTNET_REST_URL = "https://test.deribit.com"
_RATE_LIMITED = frozenset({10028})
_NOT_FOUND = frozenset({10004, 11044})
_NO_FUNDS = frozenset({10009})
#: Domain order type → Deribit ``type``.
#: Our order type → Deribit's ``type`` (the decoder's table inverted).
_DERIBIT_TYPES = {ours: wire for wire, ours in DERIBIT_TYPE.items() if ours is not None}
#: Deribit's trigger kinds of a stop order.
STOP_TRIGGERS = ("last_price", "mark_price", "index_price")


class _Deribit(ccxt.deribit):  # type: ignore[misc]
    """ccxt's Deribit, raising :class:`HttpAnswer` for every HTTP error or JSON-RPC error answer."""

    def handle_errors(self, code: int, reason: str, url: str, method: str, headers: Any, body: Any,
                      response: Any, request_headers: Any, request_body: Any) -> None:  # fmt: skip
        rpc_code, message = deribit_rpc_error(response if isinstance(response, dict) else {})
        if (code is not None and code >= 400) or rpc_code is not None:
            if rpc_code is None and isinstance(body, str):
                try:
                    rpc_code, message = deribit_rpc_error(json.loads(body))
                except ValueError:
                    message = body[:200]
            raise HttpAnswer(code or 400, rpc_code, message or reason, _retry_after(headers))


def deribit_exchange(rest_url: str = DERIBIT_REST_URL, *, client_id: str = "", secret: str = "",
                     timeout_ms: int = 10_000) -> Any:  # fmt: skip
    """Return a ccxt Deribit client for ``rest_url`` with our error hook (ccxt's rate limiter off)."""
    exchange = _Deribit(
        {"apiKey": client_id, "secret": secret, "enableRateLimit": False, "timeout": timeout_ms}
    )
    exchange.urls["api"]["rest"] = rest_url.rstrip("/")
    return exchange


class DeribitVenue(CcxtVenue):
    """A :class:`tradebot.ports.Venue` over a ccxt Deribit client (perpetuals).

    ``stop_trigger`` is the price a stop order triggers on, one of :data:`STOP_TRIGGERS` (default
    ``"last_price"``); the other keyword arguments are :class:`CcxtVenue`'s.
    """

    def __init__(self, exchange: Any, *, stop_trigger: str = "last_price", **kwargs: Any) -> None:
        if stop_trigger not in STOP_TRIGGERS:
            raise ConfigError(f"stop_trigger must be one of {list(STOP_TRIGGERS)}, was {stop_trigger!r}")
        self.stop_trigger = stop_trigger
        kwargs.setdefault("name", "deribit")
        super().__init__(exchange, **kwargs)
        self._raw: dict[Symbol, dict[str, Any]] = {}
        self._sized = True  # Deribit publishes its limits per account; the gate keeps its defaults

    async def load_instruments(self, symbols: Sequence[str]) -> dict[Symbol, Instrument]:
        """Return the perpetuals ``symbols`` (ccxt unified, e.g. ``"ETH/USDC:USDC"``, ``"BTC/USD:BTC"``)."""
        markets = await self._read("load_markets", self.exchange.load_markets)
        unknown = [s for s in symbols if s not in markets]
        if unknown:
            raise ConfigError(f"unknown symbol(s) {unknown!r} on venue {self.name}")
        for s in symbols:
            sym, raw = Symbol(s), markets[s]["info"]
            self.instruments[sym] = deribit_instrument(raw, sym)
            self._wire_symbol[sym] = raw["instrument_name"]
            self._raw[sym] = raw
        return {Symbol(s): self.instruments[Symbol(s)] for s in symbols}

    def _inverse(self, symbol: str) -> bool:
        return deribit_is_inverse(self._raw[Symbol(symbol)])

    def is_inverse(self, symbol: str) -> bool:
        """True for an inverse perpetual (``BTC-PERPETUAL``: amounts in USD)."""
        return self._inverse(symbol)

    def _decode(self, raw: dict[str, Any], symbol: str, trades: Sequence[dict[str, Any]] = ()) -> OrderReport:
        inst, _ = self._instrument(symbol)
        return deribit_order(raw, inst, inverse=self._inverse(symbol), trades=trades, venue=self.name)

    async def submit(self, order: PlaceOrder) -> OrderReport:
        """Send ``order`` once as ``private/buy|sell`` with ``label`` = client order id (a stop with
        ``trigger_price``, ``trigger`` and ``reduce_only``; module docstring)."""
        inst, name = self._instrument(order.symbol)
        price = (
            order.limit_price
            if order.order_type is OrderType.LIMIT and order.limit_price
            else order.stop_price or order.ref_price  # an inverse stop's USD amount at its trigger
        )
        amount = deribit_amount(order.qty, price, inverse=self._inverse(order.symbol), contract_size=inst.contract_size
                                if self._inverse(order.symbol) else inst.step_size)  # fmt: skip
        if amount <= 0 or (not self._inverse(order.symbol) and amount % inst.step_size != 0):
            raise OrderRejected(f"{order.client_order_id}: LOT_SIZE: amount {amount} is not a positive multiple of "
                                f"the contract size (not sent)")  # fmt: skip
        params = {"instrument_name": name, "amount": to_wire(plain(amount)),
                  "type": _DERIBIT_TYPES[order.order_type], "label": order.client_order_id}  # fmt: skip
        if order.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and order.limit_price is not None:
            params["price"] = to_wire(order.limit_price)
        if order.stop_price is not None:
            params |= {"trigger_price": _on_grid(order.stop_price, inst.tick_size, "trigger_price_wrong_tick", order),
                       "trigger": self.stop_trigger}  # fmt: skip
        if order.reduce_only:
            params["reduce_only"] = "true"
        call = self.exchange.private_get_buy if order.side.value == "buy" else self.exchange.private_get_sell
        async with self.gate.slot(Priority.ORDER):
            try:
                answer = await call(params)
            except HttpAnswer as e:
                return self._refused(order, e)
            except (ccxt.BaseError, TimeoutError, OSError) as e:
                return self._unknown(order, f"{type(e).__name__}: {e}")
        try:
            result = answer["result"]
            return self._decode(result["order"], order.symbol, result.get("trades") or ())
        except (DataError, KeyError, TypeError) as e:
            return self._unknown(order, f"undecodable answer: {e}")

    def _refused(self, order: PlaceOrder, e: HttpAnswer) -> OrderReport:
        cid = order.client_order_id
        if e.status == 429 or e.code in _RATE_LIMITED:
            self.gate.back_off(e.retry_after_s)
            raise RateLimited(f"{cid} not processed: {e}", retry_after_s=e.retry_after_s)
        if e.status >= 500 or e.code is None:
            return self._unknown(order, str(e))
        if e.code in _NO_FUNDS:
            raise InsufficientFunds(f"{cid}: {e.code} {e.msg}")
        raise OrderRejected(f"{cid}: {e.code} {e.msg}")

    async def _by_label(self, symbol: Symbol, cid: ClientOrderId) -> dict[str, Any] | None:
        raw = self._raw[symbol]
        params = {"currency": raw.get("settlement_currency") or raw["base_currency"], "label": cid}

        async def call() -> Any:
            return await self.exchange.private_get_get_order_state_by_label(params)

        rows = [r for r in (await self._read("fetch_order", call, priority=Priority.URGENT))["result"]
                if r.get("instrument_name") == raw["instrument_name"]]  # fmt: skip
        return max(rows, key=lambda r: r.get("creation_timestamp", 0)) if rows else None

    async def fetch_order(self, symbol: Symbol, client_order_id: ClientOrderId) -> OrderReport | None:
        """Look an order up by label (``get_order_state_by_label``); ``None`` when not (yet) known."""
        self._instrument(symbol)
        raw = await self._by_label(symbol, client_order_id)
        return None if raw is None else self._decode(raw, symbol)

    async def cancel(self, symbol: Symbol, client_order_id: ClientOrderId) -> OrderReport:
        """Cancel by label: look the order id up, then ``private/cancel``. ``OrderRejected`` if unknown/closed."""
        raw = await self._by_label(symbol, client_order_id)
        if raw is None or raw.get("order_state") not in ("open", "untriggered"):
            raise OrderRejected(f"{client_order_id}: not an open order")
        async with self.gate.slot(Priority.URGENT):
            try:
                answer = await self.exchange.private_get_cancel({"order_id": raw["order_id"]})
            except HttpAnswer as e:
                if e.code in _NOT_FOUND:
                    raise OrderRejected(f"{client_order_id}: {e.code} {e.msg}") from e
                raise await self._read_error(e) from e
            except ccxt.BaseError as e:
                raise VenueUnavailable(f"cancel {client_order_id}: outcome unknown: {e}"[:300]) from e
        return self._decode(answer["result"], symbol)

    async def fetch_open_orders(self, symbol: Symbol | None = None) -> list[OrderReport]:
        """Open orders of ``symbol`` (or every loaded instrument)."""
        out: list[OrderReport] = []
        for sym in [symbol] if symbol is not None else list(self.instruments):
            _, name = self._instrument(sym)
            answer = await self._read("fetch_open_orders", partial(self.exchange.private_get_get_open_orders_by_instrument, {"instrument_name": name}))  # fmt: skip
            out.extend(self._decode(r, sym) for r in answer["result"])
        return out

    async def fetch_balances(self) -> dict[str, Decimal]:
        """Settlement-currency balances plus position sizes in base units (under the base coin)."""
        out: dict[str, Decimal] = {}
        for currency in sorted(
            {r.get("settlement_currency") or r["base_currency"] for r in self._raw.values()}
        ):
            summary = await self._read("account_summary", partial(self.exchange.private_get_get_account_summary, {"currency": currency}))  # fmt: skip
            balance = Decimal(repr(summary["result"]["balance"]))
            if balance:
                out[currency] = balance
            positions = await self._read("positions", partial(self.exchange.private_get_get_positions, {"currency": currency, "kind": "future"}))  # fmt: skip
            for p in positions["result"]:
                sym = next(
                    (s for s, r in self._raw.items() if r["instrument_name"] == p["instrument_name"]), None
                )
                if sym is not None:
                    base = self.instruments[sym].base
                    size = Decimal(repr(p["size_currency"] if self._inverse(sym) else p["size"]))
                    out[base] = out.get(base, Decimal(0)) + size
        return out

    async def fetch_reference_price(self, symbol: Symbol) -> Decimal:
        """Return the mark price of ``symbol`` (USD / USDC per base unit) from ``public/ticker``: the
        second reference before a large decision. Raises ``VenueError`` when the venue cannot be read,
        ``DataError`` if ``result.mark_price`` is not a positive number."""
        _, name = self._instrument(symbol)

        async def call() -> Any:
            return await self.exchange.public_get_ticker({"instrument_name": name})

        answer = await self._read("fetch_ticker", call, priority=Priority.URGENT)
        result = answer.get("result") if isinstance(answer, dict) else None
        return positive_price(result if isinstance(result, dict) else {}, "mark_price",
                              where=f"{self.name} public/ticker {name}")  # fmt: skip

    async def fetch_my_trades(self, symbol: Symbol, since_ms: int | None = None) -> list[Fill]:
        """Our trades on ``symbol`` since ``since_ms``, oldest first, de-duplicated by trade id."""
        inst, name = self._instrument(symbol)
        answer = await self._read("fetch_my_trades", lambda: self.exchange.private_get_get_user_trades_by_instrument(
            {"instrument_name": name, "count": 1000, "sorting": "asc"}))  # fmt: skip
        fills: dict[str, Fill] = {}
        for row in answer["result"]["trades"]:
            if since_ms is None or row["timestamp"] >= since_ms:
                fill = deribit_trade(row, inst, inverse=self._inverse(symbol), venue=self.name)
                fills.setdefault(fill.trade_id, fill)
        return sorted(fills.values(), key=lambda f: f.ts_ms)
