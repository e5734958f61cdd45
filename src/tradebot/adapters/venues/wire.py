"""Exact number and field parsing shared by the venue payload decoders (Binance, Deribit)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tradebot.core.domain import ZERO, Instrument, Side, to_decimal
from tradebot.errors import DataError

_SIDES = {"BUY": Side.BUY, "SELL": Side.SELL, "buy": Side.BUY, "sell": Side.SELL}


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


def positive_price(raw: Mapping[str, Any], key: str, *, where: str) -> Decimal:
    """Return ``raw[key]`` as a ``Decimal`` price > 0 (quote currency).

    Raises
    ------
    DataError
        If the field is missing, not a finite number or not positive; the message names it.
    """
    price = dec(raw, key, where=where)
    if not price > 0:
        raise DataError(f"{where}.{key} must be > 0, was {raw.get(key)!r}")
    return price


def wire_int(raw: Mapping[str, Any], key: str, *, where: str) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where}.{key} must be an integer, was {value!r}")
    return value


def wire_side(value: Any, *, where: str) -> Side:
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


def plain(value: Decimal) -> Decimal:
    """Return ``value`` without trailing zeros and without an exponent (``"10.000"`` → ``10``)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()
