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
from collections.abc import Mapping, Sequence
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any

from tradebot.core.domain import (
    ZERO,
    Asset,
    ClientOrderId,
    ExchangeOrderId,
    Fill,
    Instrument,
    OrderStatus,
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

#: Deribit ``order_state`` → domain status (``open`` with a fill becomes PARTIALLY_FILLED).
DERIBIT_STATUS: dict[str, OrderStatus] = {
    "open": OrderStatus.ACCEPTED,
    "untriggered": OrderStatus.ACCEPTED,
    "filled": OrderStatus.FILLED,
    "rejected": OrderStatus.REJECTED,
    "cancelled": OrderStatus.CANCELED,
    "archive": OrderStatus.CANCELED,
}

_SIDES = {"BUY": Side.BUY, "SELL": Side.SELL, "buy": Side.BUY, "sell": Side.SELL}
_QTY_QUANTUM = Decimal("1e-8")


def dec(raw: Mapping[str, Any], key: str, *, where: str) -> Decimal:
    """Return ``raw[key]`` as an exact ``Decimal`` (string, int or float via ``repr``).

    Raises
    ------
    DataError
        If the field is missing or not a finite number; the message names ``where.key`` and the value.
    """
    value = raw.get(key) if isinstance(raw, Mapping) else None
    if value is None or isinstance(value, bool):
        raise DataError(f"{where}.{key} must be a number, was {value!r}")
    try:
        return to_decimal(value, field=f"{where}.{key}")
    except ValueError as e:
        raise DataError(str(e)) from None


def _int(raw: Mapping[str, Any], key: str, *, where: str) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where}.{key} must be an integer, was {value!r}")
    return value


def _side(value: Any, *, where: str) -> Side:
    side = _SIDES.get(value) if isinstance(value, str) else None
    if side is None:
        raise DataError(f"{where}: side must be buy or sell, was {value!r}")
    return side


def fee_in_quote(fee: Decimal, fee_asset: str, price: Decimal, instrument: Instrument) -> Decimal:
    """Return a fee charged in ``fee_asset`` in the instrument's quote currency.

    Quote-asset fees are taken as is, base-asset fees are valued at the fill ``price``; a fee in a
    third asset (Binance BNB discount) cannot be valued here and gives 0 (the raw fee and its
    currency stay on the fill).
    """
    if fee_asset == instrument.quote:
        return fee
    if fee_asset == instrument.base:
        return fee * price
    return ZERO


# --------------------------------------------------------------------------------------- Binance


def binance_order(raw: Mapping[str, Any], instrument: Instrument, *, venue: str = "binance") -> OrderReport:
    """Decode a Binance order (new-order ACK/RESULT/FULL answer, ``GET /api/v3/order``, open orders).

    Parameters
    ----------
    raw
        The venue's JSON object.
    instrument
        The order's instrument (maps ``symbol`` and values fees).
    venue
        Venue name written into the fills.

    Returns
    -------
    OrderReport
        Quantities in base units, average price ``cummulativeQuoteQty / executedQty`` in quote
        currency (``None`` before a fill); ``fills`` from a FULL answer. An ACK answer (no status)
        is ``ACCEPTED`` with quantities unknown (0).

    Raises
    ------
    DataError
        If a field is missing or malformed, or the status is not in :data:`BINANCE_STATUS`.
    """
    where = "binance order"
    cid = raw.get("clientOrderId")
    if not isinstance(cid, str) or not cid:
        raise DataError(f"{where}.clientOrderId must be a non-empty string, was {cid!r}")
    oid = ExchangeOrderId(str(_int(raw, "orderId", where=where)))
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
    side = _side(raw.get("side"), where=where)
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
        trade_id=TradeId(str(_int(raw, "tradeId", where=where))),
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
        trade_id=TradeId(str(_int(raw, "id", where=where))),
        client_order_id=client_order_id,
        side=Side.BUY if is_buyer else Side.SELL,
        qty=dec(raw, "qty", where=where),
        price=price,
        fee_quote=fee_in_quote(fee, asset, price, instrument),
        ts_ms=_int(raw, "time", where=where),
        exchange_order_id=ExchangeOrderId(str(_int(raw, "orderId", where=where))),
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


def plain(value: Decimal) -> Decimal:
    """Return ``value`` without trailing zeros and without an exponent (``"10.000"`` → ``10``)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def _filters(raw: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {f["filterType"]: f for f in raw.get("filters", ()) if isinstance(f, Mapping)}


def binance_instrument(raw: Mapping[str, Any], symbol: Symbol, *, taker_fee: Decimal = Decimal("0.001"),
                       maker_fee: Decimal = Decimal("0.001")) -> Instrument:  # fmt: skip
    """Decode one ``exchangeInfo.symbols`` entry into an :class:`Instrument`.

    Tick from ``PRICE_FILTER.tickSize``, step and minimum quantity from ``LOT_SIZE``, notional
    limits from ``NOTIONAL`` (``minNotional`` / ``maxNotional``) or the legacy ``MIN_NOTIONAL``.
    """
    where = f"binance exchangeInfo {raw.get('symbol')!r}"
    filters = _filters(raw)
    try:
        price_f, lot = filters["PRICE_FILTER"], filters["LOT_SIZE"]
    except KeyError as e:
        raise DataError(f"{where}: filter {e.args[0]} missing, filters were {sorted(filters)}") from None
    notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}
    max_notional = notional.get("maxNotional")
    return Instrument(
        symbol=symbol,
        base=Asset(str(raw.get("baseAsset"))),
        quote=Asset(str(raw.get("quoteAsset"))),
        tick_size=plain(dec(price_f, "tickSize", where=where)),
        step_size=plain(dec(lot, "stepSize", where=where)),
        min_qty=plain(dec(lot, "minQty", where=where)),
        min_notional=plain(dec(notional, "minNotional", where=where)) if notional else ZERO,
        max_notional=plain(to_decimal(max_notional)) if max_notional is not None else None,
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


# --------------------------------------------------------------------------------------- Deribit


def deribit_is_inverse(raw_instrument: Mapping[str, Any]) -> bool:
    """True for an inverse contract (amount in USD, settled in the base coin, e.g. ``BTC-PERPETUAL``)."""
    # newer answers say instrument_type "reversed"; older ones only quote inverse contracts in USD
    return (
        raw_instrument.get("instrument_type") == "reversed" or raw_instrument.get("quote_currency") == "USD"
    )


def deribit_instrument(raw: Mapping[str, Any], symbol: Symbol) -> Instrument:
    """Decode a Deribit ``public/get_instruments`` entry.

    Linear (USDC) perpetuals: step = ``contract_size`` and min qty = ``min_trade_amount`` in base
    units. Inverse perpetuals trade in USD: the step is 1e-8 base units, and the minimum order is a
    notional of ``min_trade_amount`` USD (``min_notional``); :func:`deribit_amount` rounds to the
    USD contract size.
    """
    where = f"deribit instrument {raw.get('instrument_name')!r}"
    fee = dec(raw, "taker_commission", where=where)
    common = {"symbol": symbol, "base": Asset(str(raw.get("base_currency"))),
              "quote": Asset(str(raw.get("quote_currency"))), "taker_fee": fee,
              "maker_fee": dec(raw, "maker_commission", where=where) if "maker_commission" in raw else fee,
              "tick_size": dec(raw, "tick_size", where=where)}  # fmt: skip
    if deribit_is_inverse(raw):
        return Instrument(step_size=_QTY_QUANTUM, min_notional=dec(raw, "min_trade_amount", where=where),
                          contract_size=dec(raw, "contract_size", where=where), **common)  # fmt: skip
    return Instrument(step_size=dec(raw, "contract_size", where=where),
                      min_qty=dec(raw, "min_trade_amount", where=where), **common)  # fmt: skip


def deribit_amount(qty: Decimal, price: Decimal, *, inverse: bool, contract_size: Decimal) -> Decimal:
    """Return the wire ``amount`` of an order of ``qty`` base units at ``price`` (quote currency).

    Linear: ``qty`` itself. Inverse: the USD notional ``qty × price`` rounded *down* to a multiple
    of the USD ``contract_size`` (never more than intended), e.g. 0.0123 BTC at 40 000 → 490 USD
    with contract size 10.
    """
    if not inverse:
        return qty
    return ((qty * price) / contract_size).to_integral_value(rounding=ROUND_DOWN) * contract_size


def deribit_qty(amount: Decimal, price: Decimal, *, inverse: bool) -> Decimal:
    """Return base units of a wire ``amount`` at ``price``: linear as is, inverse ``USD / price``
    quantized to 1e-8 (half-even), e.g. 490 USD at 40 000 → 0.01225000 BTC."""
    if not inverse:
        return amount
    return (amount / price).quantize(_QTY_QUANTUM, rounding=ROUND_HALF_EVEN)


def deribit_trade(raw: Mapping[str, Any], instrument: Instrument, *, inverse: bool,
                  client_order_id: ClientOrderId | None = None, venue: str = "deribit") -> Fill:  # fmt: skip
    """Decode one Deribit trade (``private/buy`` answer ``trades[]``, ``get_user_trades_by_*``).

    Quantity is converted to base units (:func:`deribit_qty`); ``client_order_id`` defaults to the
    trade's ``label``. The fee is charged in ``fee_currency`` (the base coin for inverse contracts).
    """
    where = "deribit trade"
    price = dec(raw, "price", where=where)
    fee = dec(raw, "fee", where=where)
    cid = client_order_id or raw.get("label") or ""
    asset = str(raw.get("fee_currency", ""))
    return Fill(
        venue=venue,
        symbol=instrument.symbol,
        trade_id=TradeId(str(raw.get("trade_id"))),
        client_order_id=ClientOrderId(str(cid)),
        side=_side(raw.get("direction"), where=where),
        qty=deribit_qty(dec(raw, "amount", where=where), price, inverse=inverse),
        price=price,
        fee_quote=fee_in_quote(fee, asset, price, instrument) if asset != "USDC" else fee,
        ts_ms=_int(raw, "timestamp", where=where),
        exchange_order_id=ExchangeOrderId(str(raw.get("order_id"))),
        fee=fee,
        fee_currency=asset,
    )


def deribit_order(raw: Mapping[str, Any], instrument: Instrument, *, inverse: bool,
                  trades: Sequence[Mapping[str, Any]] = (), venue: str = "deribit") -> OrderReport:  # fmt: skip
    """Decode a Deribit order object (``private/buy|sell`` ``result.order``, ``get_order_state``).

    Our client order id is the ``label``. Amounts are converted to base units at the average
    price (inverse: ordered USD at the limit price when nothing filled yet).
    """
    where = "deribit order"
    state = DERIBIT_STATUS.get(raw.get("order_state", ""))
    if state is None:
        raise DataError(
            f"{where}.order_state must be one of {sorted(DERIBIT_STATUS)}, was {raw.get('order_state')!r}"
        )
    amount, filled = (
        dec(raw, "amount", where=where),
        dec(raw, "filled_amount", where=where) if "filled_amount" in raw else ZERO,
    )
    avg = dec(raw, "average_price", where=where) if filled > 0 else None
    ref = avg if avg is not None else _order_price(raw)
    if inverse and ref is None:
        raise DataError(
            f"{where}: an inverse order needs a price to convert USD amounts, was {raw.get('price')!r}"
        )
    if state is OrderStatus.ACCEPTED and filled > 0:
        state = OrderStatus.PARTIALLY_FILLED
    cid = ClientOrderId(str(raw.get("label", "")))
    return OrderReport(
        client_order_id=cid,
        symbol=instrument.symbol,
        status=state,
        qty=deribit_qty(amount, ref, inverse=True) if inverse and ref else amount,
        filled_qty=deribit_qty(filled, avg, inverse=True) if inverse and avg else filled,
        ts_ms=_int(raw, "last_update_timestamp", where=where),
        avg_price=avg,
        exchange_order_id=ExchangeOrderId(str(raw.get("order_id"))),
        fills=tuple(
            deribit_trade(t, instrument, inverse=inverse, client_order_id=cid, venue=venue) for t in trades
        ),
    )


def _order_price(raw: Mapping[str, Any]) -> Decimal | None:
    # the limit price, else the trigger price of a stop market order ("price": "market_price")
    for key in ("price", "trigger_price"):
        value = raw.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return to_decimal(value)
    return None


def deribit_rpc_error(payload: Mapping[str, Any]) -> tuple[int | None, str]:
    """Return (code, message[: reason]) of a JSON-RPC error answer, or (None, "") if there is none."""
    err = payload.get("error") if isinstance(payload, Mapping) else None
    if not isinstance(err, Mapping):
        return None, ""
    data = err.get("data")
    reason = data.get("reason") if isinstance(data, Mapping) else None
    message = str(err.get("message", ""))
    return (int(err["code"]) if isinstance(err.get("code"), int) else None), (
        f"{message}: {reason}" if reason else message
    )
