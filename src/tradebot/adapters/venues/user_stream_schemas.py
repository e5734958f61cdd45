"""Pushed account events (Binance WebSocket API user-data events, Deribit ``user.*`` notifications) →
domain values. Pure functions; the one place that knows these shapes.

Binance (``user-data-stream.md``): an event arrives as ``{"subscriptionId": 0, "event": {…}}``;
``executionReport`` numbers are decimal strings. Fields read: ``s`` symbol, ``c`` client order id
(on a cancel the cancel request's own id: the cancelled order is ``C``), ``S`` side, ``q`` order
quantity, ``x`` execution type, ``X`` order status, ``r`` reject reason, ``i`` order id, ``l`` / ``L``
last executed quantity / price, ``n`` / ``N`` commission and its asset, ``T`` transaction time,
``t`` trade id, ``z`` / ``Z`` cumulative quantity / quote quantity. One execution of the docs'
market-order example (``faqs/market_orders_faq.md``, abridged)::

    {"e": "executionReport", "E": 1719467634107, "s": "LTCBNB", "c": "8LGC97RRgNPVQk979VIhjt",
     "S": "BUY", "o": "MARKET", "q": "6.00000000", "C": "", "x": "TRADE", "X": "PARTIALLY_FILLED",
     "r": "NONE", "i": 32, "l": "2.00000000", "z": "2.00000000", "L": "1.00000000",
     "n": "0.00100000", "N": "BNB", "T": 1719467634105, "t": 7, "Z": "2.00000000", …}

Deribit (``user.orders.<instrument>.raw``: the order object; ``user.trades.<instrument>.raw``: a list
of trades): decoded with :func:`~tradebot.adapters.venues.deribit_schemas.deribit_order` /
:func:`~tradebot.adapters.venues.deribit_schemas.deribit_trade`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradebot.adapters.venues.ccxt_schemas import BINANCE_STATUS
from tradebot.adapters.venues.deribit_schemas import deribit_order, deribit_trade
from tradebot.adapters.venues.wire import dec, fee_in_quote, wire_int, wire_side
from tradebot.core.domain import ZERO, ClientOrderId, ExchangeOrderId, Fill, Instrument, OrderStatus, TradeId
from tradebot.errors import DataError
from tradebot.ports import OrderReport


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountPosition:
    """Balances a venue pushed after a change (Binance ``outboundAccountPosition``).

    Attributes
    ----------
    venue
        Venue name.
    balances
        Asset → (free, locked), in the asset's units, of the assets the change touched.
    ts_ms
        Time of the account update (``u``), ms UTC.
    """

    venue: str
    balances: Mapping[str, tuple[Decimal, Decimal]]
    ts_ms: int


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The venue ended the subscription (Binance ``eventStreamTerminated``): reconnect."""

    reason: str


@dataclass(frozen=True, slots=True)
class RpcAnswer:
    """An answer to one of our requests (``id``, then the result, or the error's code and text)."""

    request_id: Any
    result: Any = None
    error_code: int | None = None
    error_msg: str = ""


#: What one pushed frame decodes to.
Decoded = OrderReport | AccountPosition | StreamEnd | RpcAnswer | None


def _json(raw: str | bytes, *, where: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as e:
        raise DataError(f"{where}: not JSON: {e}") from None


# --------------------------------------------------------------------------------------- Binance


def binance_execution_report(event: Mapping[str, Any], instrument: Instrument, *,
                             client_order_id: Callable[[str], ClientOrderId] = ClientOrderId,
                             venue: str = "binance") -> OrderReport:  # fmt: skip
    """Decode one ``executionReport`` (the ``event`` object).

    Parameters
    ----------
    event
        The event's JSON object.
    instrument
        The order's instrument (its ``s``).
    client_order_id
        Maps the wire client order id (``c``, or ``C`` on a cancel) to ours (long ids are hashed on
        the wire, :func:`~tradebot.adapters.venues.ccxt_venue.wire_client_order_id`).
    venue
        Venue name written into the fill.

    Returns
    -------
    OrderReport
        Status ``X``, quantity ``q`` and cumulative filled ``z`` (base units), average price ``Z / z``
        (``None`` before a fill), time ``T``; with ``x`` ``TRADE`` and ``l`` > 0 the execution as its
        one fill (trade id ``t``, fee ``n`` in ``N`` valued in quote at ``L``).

    Raises
    ------
    DataError
        If a field is missing or malformed, or the status is unknown.
    """
    where = "binance executionReport"
    exec_type = event.get("x")
    wire = event.get("C") if exec_type == "CANCELED" and event.get("C") else event.get("c")
    if not isinstance(wire, str) or not wire:
        raise DataError(f"{where}.c must be a non-empty string, was {wire!r}")
    status = BINANCE_STATUS.get(event.get("X", ""))
    if status is None:
        raise DataError(f"{where}.X must be one of {sorted(BINANCE_STATUS)}, was {event.get('X')!r}")
    cid = client_order_id(wire)
    side = wire_side(event.get("S"), where=where)
    oid = ExchangeOrderId(str(wire_int(event, "i", where=where)))
    ts = wire_int(event, "T", where=where)
    filled, quote = dec(event, "z", where=where), dec(event, "Z", where=where)
    fills: tuple[Fill, ...] = ()
    last = dec(event, "l", where=where)
    if exec_type == "TRADE" and last > 0:
        price, fee = dec(event, "L", where=where), dec(event, "n", where=where)
        asset = event.get("N") or ""
        fills = (Fill(venue=venue, symbol=instrument.symbol, trade_id=TradeId(str(wire_int(event, "t", where=where))),
                      client_order_id=cid, side=side, qty=last, price=price,
                      fee_quote=fee_in_quote(fee, str(asset), price, instrument), ts_ms=ts, exchange_order_id=oid,
                      fee=fee, fee_currency=str(asset)),)  # fmt: skip
    reason = event.get("r")
    return OrderReport(
        client_order_id=cid,
        symbol=instrument.symbol,
        status=status,
        qty=dec(event, "q", where=where),
        filled_qty=filled,
        ts_ms=ts,
        avg_price=quote / filled if filled > 0 and quote > 0 else None,
        exchange_order_id=oid,
        reason="" if reason in (None, "NONE") else str(reason),
        fills=fills,
        side=side,
    )


def binance_account_position(event: Mapping[str, Any], *, venue: str = "binance") -> AccountPosition:
    """Decode one ``outboundAccountPosition`` (``B``: asset ``a``, free ``f``, locked ``l``; ``u``)."""
    where = "binance outboundAccountPosition"
    rows = event.get("B")
    if not isinstance(rows, list):
        raise DataError(f"{where}.B must be a list, was {rows!r}")
    balances = {str(r.get("a")): (dec(r, "f", where=where), dec(r, "l", where=where)) for r in rows}
    return AccountPosition(venue=venue, balances=balances, ts_ms=wire_int(event, "u", where=where))


def decode_binance_ws_api(raw: str | bytes, markets: Mapping[str, Instrument], *,
                          client_order_id: Callable[[str], ClientOrderId] = ClientOrderId,
                          venue: str = "binance") -> Decoded:  # fmt: skip
    """Decode one WebSocket API frame: an answer (``id`` + ``status``), or an event of a subscription.

    ``markets`` maps the venue's symbols (``"BTCUSDT"``) to the loaded instruments; an event of another
    symbol, or of a type not used here (``balanceUpdate``, ``listStatus``, …), gives ``None``.

    Raises
    ------
    DataError
        For a frame that is not JSON or an event that is malformed (the message says which field).
    """
    msg = _json(raw, where="binance ws-api frame")
    if not isinstance(msg, Mapping):
        raise DataError(f"binance ws-api frame must be an object, was {msg!r}"[:200])
    if "status" in msg and "id" in msg:
        error: Mapping[str, Any] = msg["error"] if isinstance(msg.get("error"), Mapping) else {}
        code = error.get("code") if isinstance(error.get("code"), int) else None
        if msg.get("status") != 200 and code is None:
            code = int(msg["status"]) if isinstance(msg.get("status"), int) else -1
        return RpcAnswer(msg.get("id"), msg.get("result"), code, str(error.get("msg", "")))
    event = msg.get("event")
    if not isinstance(event, Mapping):
        raise DataError(f"binance ws-api frame has neither an answer nor an event: {msg!r}"[:200])
    kind = event.get("e")
    if kind == "executionReport":
        instrument = markets.get(str(event.get("s")))
        if instrument is None:
            return None
        return binance_execution_report(event, instrument, client_order_id=client_order_id, venue=venue)
    if kind == "outboundAccountPosition":
        return binance_account_position(event, venue=venue)
    if kind == "eventStreamTerminated":
        return StreamEnd("eventStreamTerminated")
    return None


# --------------------------------------------------------------------------------------- Deribit


def decode_deribit_user(raw: str | bytes, markets: Mapping[str, tuple[Instrument, bool]], *,
                        venue: str = "deribit") -> Decoded | list[OrderReport]:  # fmt: skip
    """Decode one Deribit frame of a private session.

    ``markets`` maps instrument names to (instrument, inverse). Returns an :class:`RpcAnswer` for an
    answer, for ``user.orders.<instrument>.raw`` the order's :class:`OrderReport` (no fills), for
    ``user.trades.<instrument>.raw`` one report per order with its fills (status ``UNKNOWN``: a trade
    says nothing of the order's state, quantities 0), ``None`` for anything else (heartbeats are the
    caller's).

    Raises
    ------
    DataError
        For a frame that is not JSON or a notification that is malformed.
    """
    msg = _json(raw, where="deribit frame")
    if not isinstance(msg, Mapping):
        raise DataError(f"deribit frame must be an object, was {msg!r}"[:200])
    if "id" in msg and ("result" in msg or "error" in msg):
        err = msg.get("error") if isinstance(msg.get("error"), Mapping) else None
        if err is not None:
            code = err.get("code") if isinstance(err.get("code"), int) else -1
            return RpcAnswer(msg.get("id"), None, code, str(err.get("message", "")))
        return RpcAnswer(msg.get("id"), msg.get("result"))
    params = msg.get("params") if msg.get("method") == "subscription" else None
    channel = params.get("channel") if isinstance(params, Mapping) else None
    if not isinstance(channel, str) or not channel.startswith("user."):
        return None
    kind, _, rest = channel.removeprefix("user.").partition(".")
    name = rest.rsplit(".", 1)[0]
    market = markets.get(name)
    if market is None or kind not in ("orders", "trades"):
        return None
    instrument, inverse = market
    data = params.get("data")  # type: ignore[union-attr]
    rows = data if isinstance(data, list) else [data]
    if not all(isinstance(r, Mapping) for r in rows):
        raise DataError(f"deribit {channel}: data must be objects, was {data!r}"[:200])
    if kind == "orders":
        reports = [deribit_order(r, instrument, inverse=inverse, venue=venue) for r in rows]
        return reports[0] if len(reports) == 1 else reports
    by_order: dict[str, list[Fill]] = {}
    for r in rows:
        fill = deribit_trade(r, instrument, inverse=inverse, venue=venue)
        by_order.setdefault(fill.client_order_id, []).append(fill)
    return [OrderReport(client_order_id=ClientOrderId(cid), symbol=instrument.symbol, status=OrderStatus.UNKNOWN,
                        qty=ZERO, filled_qty=ZERO, ts_ms=max(f.ts_ms for f in fills),
                        exchange_order_id=fills[0].exchange_order_id, fills=tuple(fills), side=fills[0].side)
            for cid, fills in by_order.items()]  # fmt: skip
