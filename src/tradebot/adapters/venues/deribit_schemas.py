"""Deribit order payloads (JSON-RPC ``result`` objects) → domain values; re-exported by
:mod:`tradebot.adapters.venues.ccxt_schemas`. Numbers are JSON numbers, converted through ``repr``.

Example (``private/buy`` answer, abridged)::

    {"order": {"label": "market0000234", "order_id": "ETH-584849853", "order_state": "filled",
               "amount": 40, "filled_amount": 40, "average_price": 203.3, …},
     "trades": [{"trade_id": "ETH-2696083", "amount": 40, "price": 203.3, "fee": 0.00014757,
                 "fee_currency": "ETH", "direction": "buy", "timestamp": 1590483938456, …}]}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from functools import partial
from typing import Any

from tradebot.adapters.venues.wire import dec, fee_in_quote, wire_int, wire_side
from tradebot.core.domain import (
    ZERO,
    Asset,
    ClientOrderId,
    ExchangeOrderId,
    Fill,
    Instrument,
    OrderStatus,
    OrderType,
    Symbol,
    TradeId,
    to_decimal,
)
from tradebot.errors import DataError
from tradebot.ports import OrderReport

#: Deribit ``order_state`` → domain status (``open`` with a fill becomes PARTIALLY_FILLED).
DERIBIT_STATUS: dict[str, OrderStatus] = {
    "open": OrderStatus.ACCEPTED,
    "untriggered": OrderStatus.ACCEPTED,
    "triggered": OrderStatus.ACCEPTED,
    "filled": OrderStatus.FILLED,
    "rejected": OrderStatus.REJECTED,
    "cancelled": OrderStatus.CANCELED,
    "archive": OrderStatus.CANCELED,
}

#: Deribit ``order_type`` → domain type; ``None`` for the types the bot never sends (take, trailing).
DERIBIT_TYPE: dict[str, OrderType | None] = {
    "market": OrderType.MARKET,
    "limit": OrderType.LIMIT,
    "stop_market": OrderType.STOP_MARKET,
    "stop_limit": OrderType.STOP_LIMIT,
}

_QTY_QUANTUM = Decimal("1e-8")


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
    USD contract size. A negative ``maker_commission`` is a maker rebate and is kept as such
    (``SOL-PERPETUAL``: ``"maker_commission": -0.0002, "taker_commission": 0.0005``).

    Raises
    ------
    DataError
        If a field is missing or malformed, or a value is out of the Instrument's range (the
        message names the instrument, the field and the value).
    """
    where = f"deribit instrument {raw.get('instrument_name')!r}"
    fee = dec(raw, "taker_commission", where=where)
    common = partial(Instrument, symbol=symbol, base=Asset(str(raw.get("base_currency"))),
                     quote=Asset(str(raw.get("quote_currency"))), taker_fee=fee,
                     maker_fee=dec(raw, "maker_commission", where=where) if "maker_commission" in raw else fee,
                     tick_size=dec(raw, "tick_size", where=where))  # fmt: skip
    try:
        if deribit_is_inverse(raw):
            return common(step_size=_QTY_QUANTUM, min_notional=dec(raw, "min_trade_amount", where=where),
                          contract_size=dec(raw, "contract_size", where=where))  # fmt: skip
        return common(step_size=dec(raw, "contract_size", where=where),
                      min_qty=dec(raw, "min_trade_amount", where=where))  # fmt: skip
    except ValueError as e:  # a value the Instrument refuses (e.g. a taker fee below 0)
        raise DataError(f"{where}: {e}") from None


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
        side=wire_side(raw.get("direction"), where=where),
        qty=deribit_qty(dec(raw, "amount", where=where), price, inverse=inverse),
        price=price,
        fee_quote=fee_in_quote(fee, asset, price, instrument) if asset != "USDC" else fee,
        ts_ms=wire_int(raw, "timestamp", where=where),
        exchange_order_id=ExchangeOrderId(str(raw.get("order_id"))),
        fee=fee,
        fee_currency=asset,
    )


def deribit_order(raw: Mapping[str, Any], instrument: Instrument, *, inverse: bool,
                  trades: Sequence[Mapping[str, Any]] = (), venue: str = "deribit") -> OrderReport:  # fmt: skip
    """Decode a Deribit order object (``private/buy|sell`` ``result.order``, ``get_order_state``).

    Our client order id is the ``label``. Amounts are converted to base units at the average
    price (inverse: ordered USD at the limit price when nothing filled yet, or at the trigger price
    of an untriggered stop-market, whose ``price`` is ``"market_price"``). A stop order
    (``stop_market`` / ``stop_limit``) reports ``trigger_price`` as ``stop_price`` and is
    ``ACCEPTED`` while ``untriggered``; docs example (``private/cancel``, abridged)::

        {"order_id": "ETH-SLIS-12", "order_type": "stop_market", "order_state": "untriggered",
         "trigger": "index_price", "trigger_price": 144.73, "price": "market_price",
         "direction": "sell", "amount": 5, "reduce_only": false, …}
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
    order_type = DERIBIT_TYPE.get(raw.get("order_type", ""))
    stop = dec(raw, "trigger_price", where=where) if order_type is not None and order_type.is_stop else None
    return OrderReport(
        client_order_id=cid,
        symbol=instrument.symbol,
        status=state,
        qty=deribit_qty(amount, ref, inverse=True) if inverse and ref else amount,
        filled_qty=deribit_qty(filled, avg, inverse=True) if inverse and avg else filled,
        ts_ms=wire_int(raw, "last_update_timestamp", where=where),
        avg_price=avg,
        exchange_order_id=ExchangeOrderId(str(raw.get("order_id"))),
        fills=tuple(
            deribit_trade(t, instrument, inverse=inverse, client_order_id=cid, venue=venue) for t in trades
        ),
        side=wire_side(raw["direction"], where=where) if "direction" in raw else None,
        order_type=order_type,
        stop_price=stop,
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
