"""Exact conversions between floats, strings and ``Decimal``.

Money and quantities that reach an order, a fill or the ledger are ``Decimal``. A float is
converted through its shortest round-trip decimal string (``repr``), never ``Decimal(float)``,
so ``to_decimal(24899.18) == Decimal("24899.18")`` exactly.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

ZERO = Decimal(0)
ONE = Decimal(1)


def to_decimal(value: float | int | str | Decimal, *, field: str = "value") -> Decimal:
    """Return ``value`` as a finite ``Decimal`` through its decimal string.

    Parameters
    ----------
    value
        A float (converted via ``repr``: the shortest string that round-trips), an int, a decimal
        string such as ``"24899.18000000"``, or a ``Decimal``.
    field
        Name used in the error message.

    Raises
    ------
    ValueError
        If the value is not a finite number; the message names ``field`` and the value.
    """
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"{field} must be a number, was {value!r}")
    elif isinstance(value, float):
        result = Decimal(repr(value))
    else:
        try:
            result = Decimal(value)
        except (InvalidOperation, TypeError):
            raise ValueError(f"{field} must be a decimal number, was {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"{field} must be finite, was {value!r}")
    return result


def to_wire(value: Decimal) -> str:
    """Format ``value`` for a venue request without exponent (``f"{x:f}"``), e.g. ``"0.00001000"``."""
    return f"{value:f}"
