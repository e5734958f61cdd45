"""Helpers shared by the websocket wire decoders: exact number parsing and candle validation.

Candles carry float prices (see :class:`tradebot.core.domain.Candle`); the decoders guarantee that
``to_decimal(candle.close) == Decimal(<the exchange's decimal string>)`` by refusing any number
whose float does not round-trip through ``repr`` to the same decimal value.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from tradebot.core.domain import Candle, validate_candle
from tradebot.errors import DataError

#: Longest raw payload excerpt put into a log event or an error message (characters).
RAW_EXCERPT_CHARS = 300


def excerpt(raw: object, limit: int = RAW_EXCERPT_CHARS) -> str:
    """Return ``raw`` as text truncated to ``limit`` characters (``…`` marks a cut)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
    return text if len(text) <= limit else text[:limit] + "…"


def exact_float(value: Any, *, field: str) -> float:
    """Return ``value`` (decimal string, ``Decimal`` or int) as a float that round-trips exactly.

    Parameters
    ----------
    value
        The wire value, e.g. Binance's ``"24899.18000000"`` or a ``Decimal`` parsed from a JSON
        number token (Deribit). Floats are refused: parse JSON with ``parse_float=Decimal``.
    field
        Name used in the error message.

    Returns
    -------
    float
        ``f`` with ``Decimal(repr(f)) == Decimal(value)``.

    Raises
    ------
    DataError
        If the value is missing, not a finite decimal, or not exactly representable by a float
        (more than ~15 significant digits).
    """
    if isinstance(value, bool) or not isinstance(value, str | Decimal | int):
        raise DataError(f"{field} must be a decimal string or number, was {value!r}")
    try:
        exact = Decimal(value)
    except InvalidOperation:
        raise DataError(f"{field} must be a decimal number, was {value!r}") from None
    if not exact.is_finite():
        raise DataError(f"{field} must be finite, was {value!r}")
    result = float(exact)
    if Decimal(repr(result)) != exact:
        raise DataError(f"{field} is not exactly representable as a float, was {value!r}")
    return result


def require(mapping: Any, key: str, *, where: str) -> Any:
    """Return ``mapping[key]``; raise :class:`DataError` naming ``where.key`` when absent."""
    if not isinstance(mapping, dict):
        raise DataError(f"{where} must be an object, was {excerpt(mapping, 80)!r}")
    if key not in mapping or mapping[key] is None:
        raise DataError(f"{where}.{key} is missing")
    return mapping[key]


def require_int(mapping: Any, key: str, *, where: str) -> int:
    """Return ``mapping[key]`` as an int (ms timestamps); :class:`DataError` if it is not one."""
    value = require(mapping, key, where=where)
    if isinstance(value, bool) or not isinstance(value, int | Decimal) or int(value) != value:
        raise DataError(f"{where}.{key} must be an integer, was {value!r}")
    return int(value)


def checked(candle: Candle) -> Candle:
    """Return ``candle`` if it passes :func:`validate_candle` (prices > 0, high ≥ low, …).

    Raises
    ------
    DataError
        With the validation reason and the candle's symbol and open time.
    """
    reason = validate_candle(candle)
    if reason is not None:
        raise DataError(f"invalid candle {candle.symbol} @ {candle.open_time_ms}: {reason}")
    return candle
