"""Venue order payloads (Binance spot REST, Deribit JSON-RPC) → domain values. Pure functions.

The ccxt venue sends requests through ccxt's implicit raw endpoints (signing, rate limiting and
transport are ccxt's) and decodes the *raw* venue answers here, so every price, quantity and fee
is parsed from the venue's own decimal text and never passes through ccxt's float-based unified
structures. This module is the only place that knows the venues' order shapes.

Numbers: Binance sends decimal strings (``"0.00100000"``), parsed with ``Decimal(str)``. Deribit
sends JSON numbers; ``json.loads`` makes them floats, converted through ``repr`` (the shortest
round-tripping decimal, i.e. the JSON token for any number with ≤ 15 significant digits).

Example (Binance ``POST /api/v3/order``, ``newOrderRespType=FULL``, abridged)::

    {"symbol": "BTCUSDT", "orderId": 28, "clientOrderId": "6gCrw2kRUAF9CvJDGP16IP",
     "transactTime": 1507725176595, "origQty": "10.00000000", "executedQty": "10.00000000",
     "cummulativeQuoteQty": "10.00000000", "status": "FILLED", "type": "MARKET", "side": "SELL",
     "fills": [{"price": "4000.00000000", "qty": "1.00000000", "commission": "4.00000000",
                "commissionAsset": "USDT", "tradeId": 56}, …]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tradebot.adapters.venues.deribit_schemas import (  # the Deribit decoders, re-exported
    DERIBIT_STATUS,
    DERIBIT_TYPE,
    deribit_amount,
    deribit_instrument,
    deribit_is_inverse,
    deribit_order,
    deribit_qty,
    deribit_rpc_error,
    deribit_trade,
)
from tradebot.adapters.venues.wire import dec, fee_in_quote, plain, wire_int, wire_side
from tradebot.core.domain import (
    ZERO,
    Asset,
    ClientOrderId,
    ExchangeOrderId,
    Fill,
    Instrument,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    TradeId,
    to_decimal,
)
from tradebot.errors import DataError
from tradebot.ports import OrderReport

#: Binance spot order status → domain status (one table per venue).
BINANCE_STATUS: dict[str, OrderStatus] = {
    "NEW": OrderStatus.ACCEPTED,
    "PENDING_NEW": OrderStatus.ACCEPTED,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "PENDING_CANCEL": OrderStatus.ACCEPTED,
    "CANCELED": OrderStatus.CANCELED,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
}

#: Binance spot order type → domain type; ``None`` for the types the bot never sends (take-profit).
BINANCE_TYPE: dict[str, OrderType | None] = {
    "MARKET": OrderType.MARKET,
    "LIMIT": OrderType.LIMIT,
    "LIMIT_MAKER": OrderType.LIMIT,
    "STOP_LOSS": OrderType.STOP_MARKET,
    "STOP_LOSS_LIMIT": OrderType.STOP_LIMIT,
    "TAKE_PROFIT": None,
    "TAKE_PROFIT_LIMIT": None,
}


# --------------------------------------------------------------------------------------- Binance


def binance_order(raw: Mapping[str, Any], instrument: Instrument, *, venue: str = "binance") -> OrderReport:
    """Decode a Binance order (new-order ACK/RESULT/FULL answer, ``GET /api/v3/order``, open orders,
    ``DELETE /api/v3/order`` cancel answer).

    The order is named by ``clientOrderId``, except in a cancel answer: there ``origClientOrderId``
    is the cancelled order and ``clientOrderId`` the cancel request's own id (``newClientOrderId``,
    random when not sent), so ``origClientOrderId`` wins whenever it is present. Cancel answer
    (``rest-api.md`` "Cancel order (TRADE)", abridged)::

        {"symbol": "BTCUSDT", "origClientOrderId": "4d96324ff9d44481926157", "orderId": 12569099453,
         "clientOrderId": "91fe37ce9e69c90d6358c0", "transactTime": 1684804350068,
         "origQty": "0.00847000", "executedQty": "0.00001000", "cummulativeQuoteQty": "0.23416100",
         "status": "CANCELED", "type": "LIMIT", "side": "SELL", …}

    Parameters
    ----------
    raw
        The venue's JSON object.
    instrument
        The order's instrument (maps ``symbol`` and values fees).
    venue
        Venue name written into the fills.

    A stop order (``STOP_LOSS`` / ``STOP_LOSS_LIMIT``) carries ``stopPrice`` and stays ``NEW``
    (``ACCEPTED``) until it triggers; docs example ("Place new OCO", ``orderReports[0]``, abridged)::

        {"symbol": "BTCUSDT", "orderId": 12569138901, "clientOrderId": "BqtFCj5odMoWtSqGk2X9tU",
         "transactTime": 1660801713793, "price": "23410.00000000", "origQty": "0.00650000",
         "status": "NEW", "type": "STOP_LOSS_LIMIT", "side": "SELL", "stopPrice": "23405.00000000",
         "workingTime": -1, …}

    Returns
    -------
    OrderReport
        Quantities in base units, average price ``cummulativeQuoteQty / executedQty`` in quote
        currency (``None`` before a fill); ``fills`` from a FULL answer; ``order_type`` from
        :data:`BINANCE_TYPE` and, for a stop, ``stop_price``. An ACK answer (no status) is
        ``ACCEPTED`` with quantities unknown (0).

    Raises
    ------
    DataError
        If a field is missing or malformed, or the status is not in :data:`BINANCE_STATUS`.
    """
    where = "binance order"
    id_field = "origClientOrderId" if "origClientOrderId" in raw else "clientOrderId"
    cid = raw.get(id_field)
    if not isinstance(cid, str) or not cid:
        raise DataError(f"{where}.{id_field} must be a non-empty string, was {cid!r}")
    oid = ExchangeOrderId(str(wire_int(raw, "orderId", where=where)))
    ts = raw.get("updateTime") or raw.get("transactTime") or raw.get("time")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise DataError(f"{where}: updateTime/transactTime/time must be an integer ms, was {ts!r}")
    if "status" not in raw:  # newOrderRespType=ACK
        return OrderReport(client_order_id=ClientOrderId(cid), symbol=instrument.symbol,
                           status=OrderStatus.ACCEPTED, qty=ZERO, filled_qty=ZERO, ts_ms=ts,
                           exchange_order_id=oid)  # fmt: skip
    status = BINANCE_STATUS.get(raw["status"])
    if status is None:
        raise DataError(f"{where}.status must be one of {sorted(BINANCE_STATUS)}, was {raw['status']!r}")
    qty = dec(raw, "origQty", where=where)
    filled = dec(raw, "executedQty", where=where)
    quote = dec(raw, "cummulativeQuoteQty", where=where)
    side = wire_side(raw.get("side"), where=where)
    order_type = BINANCE_TYPE.get(raw.get("type", ""))
    stop = dec(raw, "stopPrice", where=where) if order_type is not None and order_type.is_stop else None
    fills = tuple(
        binance_order_fill(f, instrument, side=side, client_order_id=ClientOrderId(cid),
                           exchange_order_id=oid, ts_ms=ts, venue=venue)
        for f in raw.get("fills") or ()
    )  # fmt: skip
    return OrderReport(
        client_order_id=ClientOrderId(cid),
        symbol=instrument.symbol,
        status=status,
        qty=qty,
        filled_qty=filled,
        ts_ms=ts,
        avg_price=quote / filled if filled > 0 else None,
        exchange_order_id=oid,
        reason="",
        fills=fills,
        side=side,
        order_type=order_type,
        stop_price=stop,
    )


def binance_order_fill(
    raw: Mapping[str, Any],
    instrument: Instrument,
    *,
    side: Side,
    client_order_id: ClientOrderId,
    exchange_order_id: ExchangeOrderId,
    ts_ms: int,
    venue: str = "binance",
) -> Fill:
    """Decode one element of a FULL new-order answer's ``fills`` (it carries no time: ``ts_ms``)."""
    where = "binance fill"
    price = dec(raw, "price", where=where)
    fee = dec(raw, "commission", where=where)
    asset = str(raw.get("commissionAsset", ""))
    return Fill(
        venue=venue,
        symbol=instrument.symbol,
        trade_id=TradeId(str(wire_int(raw, "tradeId", where=where))),
        client_order_id=client_order_id,
        side=side,
        qty=dec(raw, "qty", where=where),
        price=price,
        fee_quote=fee_in_quote(fee, asset, price, instrument),
        ts_ms=ts_ms,
        exchange_order_id=exchange_order_id,
        fee=fee,
        fee_currency=asset,
    )


def binance_trade(
    raw: Mapping[str, Any], instrument: Instrument, client_order_id: ClientOrderId, *, venue: str = "binance"
) -> Fill:
    """Decode one ``GET /api/v3/myTrades`` row (which names the order by ``orderId`` only).

    ``client_order_id`` is the caller's mapping of ``orderId`` to our id.
    """
    where = "binance trade"
    price = dec(raw, "price", where=where)
    fee = dec(raw, "commission", where=where)
    asset = str(raw.get("commissionAsset", ""))
    is_buyer = raw.get("isBuyer")
    if not isinstance(is_buyer, bool):
        raise DataError(f"{where}.isBuyer must be a boolean, was {is_buyer!r}")
    return Fill(
        venue=venue,
        symbol=instrument.symbol,
        trade_id=TradeId(str(wire_int(raw, "id", where=where))),
        client_order_id=client_order_id,
        side=Side.BUY if is_buyer else Side.SELL,
        qty=dec(raw, "qty", where=where),
        price=price,
        fee_quote=fee_in_quote(fee, asset, price, instrument),
        ts_ms=wire_int(raw, "time", where=where),
        exchange_order_id=ExchangeOrderId(str(wire_int(raw, "orderId", where=where))),
        fee=fee,
        fee_currency=asset,
    )


def binance_balances(raw: Mapping[str, Any]) -> dict[str, Decimal]:
    """Return total (``free + locked``) per asset of a ``GET /api/v3/account`` answer, zero rows dropped."""
    rows = raw.get("balances") if isinstance(raw, Mapping) else None
    if not isinstance(rows, list):
        raise DataError(f"binance account.balances must be a list, was {rows!r}")
    out: dict[str, Decimal] = {}
    for row in rows:
        total = dec(row, "free", where="binance balance") + dec(row, "locked", where="binance balance")
        if total != 0:
            out[str(row.get("asset"))] = total
    return out


def _filters(raw: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {f["filterType"]: f for f in raw.get("filters", ()) if isinstance(f, Mapping)}


def binance_instrument(raw: Mapping[str, Any], symbol: Symbol, *, taker_fee: Decimal = Decimal("0.001"),
                       maker_fee: Decimal = Decimal("0.001")) -> Instrument:  # fmt: skip
    """Decode one ``exchangeInfo.symbols`` entry into an :class:`Instrument`.

    Tick from ``PRICE_FILTER.tickSize``, step and minimum quantity from ``LOT_SIZE``, maximum
    quantity from the smaller of ``LOT_SIZE`` and ``MARKET_LOT_SIZE`` ``maxQty`` (the bot sends
    market orders; 0 means no limit), notional limits from ``NOTIONAL`` (``minNotional`` /
    ``maxNotional``) or the legacy ``MIN_NOTIONAL``.
    """
    where = f"binance exchangeInfo {raw.get('symbol')!r}"
    filters = _filters(raw)
    try:
        price_f, lot = filters["PRICE_FILTER"], filters["LOT_SIZE"]
    except KeyError as e:
        raise DataError(f"{where}: filter {e.args[0]} missing, filters were {sorted(filters)}") from None
    notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}
    max_notional = notional.get("maxNotional")
    max_notional_dec = plain(to_decimal(max_notional)) if max_notional is not None else None
    # Market orders obey MARKET_LOT_SIZE as well as LOT_SIZE; a maxQty of 0 means no limit.
    max_qtys = [
        q
        for f in (lot, filters.get("MARKET_LOT_SIZE") or {})
        if f.get("maxQty") is not None and (q := plain(dec(f, "maxQty", where=where))) > 0
    ]
    return Instrument(
        symbol=symbol,
        base=Asset(str(raw.get("baseAsset"))),
        quote=Asset(str(raw.get("quoteAsset"))),
        tick_size=plain(dec(price_f, "tickSize", where=where)),
        step_size=plain(dec(lot, "stepSize", where=where)),
        min_qty=plain(dec(lot, "minQty", where=where)),
        max_qty=min(max_qtys) if max_qtys else None,
        min_notional=plain(dec(notional, "minNotional", where=where)) if notional else ZERO,
        max_notional=max_notional_dec if max_notional_dec else None,
        taker_fee=taker_fee,
        maker_fee=maker_fee,
    )


def binance_rate_limits(exchange_info: Mapping[str, Any]) -> tuple[float, float]:
    """Return (request weight per second, orders per second) from ``exchangeInfo.rateLimits``.

    Defaults when absent: 1200 weight/min (20/s) and 50 orders/10 s (5/s).
    """
    seconds = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
    weights: list[float] = []
    orders: list[float] = []
    for lim in exchange_info.get("rateLimits", ()):
        span = seconds.get(lim.get("interval"), 0) * int(lim.get("intervalNum", 1))
        if span and lim.get("rateLimitType") == "REQUEST_WEIGHT":
            weights.append(float(lim["limit"]) / span)
        elif span and lim.get("rateLimitType") == "ORDERS" and span <= 60:
            orders.append(float(lim["limit"]) / span)
    weight, order = min(weights, default=20.0), min(orders, default=5.0)
    return weight, order


def binance_error(body: str | bytes | Mapping[str, Any] | None) -> tuple[int | None, str]:
    """Return (code, msg) of a Binance error body ``{"code": -1013, "msg": "…"}``; (None, text) otherwise."""
    data: Any = body
    if isinstance(body, str | bytes):
        try:
            data = json.loads(body)
        except ValueError:
            return None, (body.decode("utf-8", "replace") if isinstance(body, bytes) else body)[:200]
    if isinstance(data, Mapping) and isinstance(data.get("code"), int):
        return int(data["code"]), str(data.get("msg", ""))
    return None, str(data)[:200]


__all__ = [
    "BINANCE_STATUS",
    "BINANCE_TYPE",
    "DERIBIT_STATUS",
    "DERIBIT_TYPE",
    "binance_balances",
    "binance_error",
    "binance_instrument",
    "binance_order",
    "binance_order_fill",
    "binance_rate_limits",
    "binance_trade",
    "dec",
    "deribit_amount",
    "deribit_instrument",
    "deribit_is_inverse",
    "deribit_order",
    "deribit_qty",
    "deribit_rpc_error",
    "deribit_trade",
    "fee_in_quote",
    "plain",
]
