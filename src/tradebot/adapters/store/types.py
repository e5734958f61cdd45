"""Column types that behave the same on PostgreSQL and SQLite: lossless decimals, aware UTC datetimes, JSON.

- :class:`DecimalType`: ``NUMERIC(38, 18)`` on PostgreSQL, ``TEXT`` on SQLite (after eventsourcing's
  ``DecimalAsStr``, ``eventsourcing/persistence.py``), always returning ``Decimal``.
- :class:`UTCDateTime`: ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL; on SQLite (which has no time
  zones) a naive UTC text stamp. Both accept only aware datetimes and return aware UTC datetimes.
- :data:`JSONType`: ``JSONB`` on PostgreSQL, ``JSON`` elsewhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Numeric, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

#: Total significant digits and digits after the point of stored decimals.
DECIMAL_PRECISION = 38
DECIMAL_SCALE = 18
_QUANTUM = Decimal(1).scaleb(-DECIMAL_SCALE)
#: Largest magnitude a stored decimal may have (exclusive): 10**(38 - 18) = 1e20.
DECIMAL_LIMIT = Decimal(10) ** (DECIMAL_PRECISION - DECIMAL_SCALE)

#: JSON on every dialect, JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")


def quantize_decimal(value: Decimal | int | str) -> Decimal:
    """Return ``value`` rounded (half-even) to 18 decimal places, as every backend stores it.

    Parameters
    ----------
    value
        A ``Decimal``, an ``int`` or a decimal string. Floats are refused: convert them with
        ``tradebot.core.domain.to_decimal`` first.

    Raises
    ------
    TypeError
        If ``value`` is a float or another non-decimal type.
    ValueError
        If ``value`` is not finite or its magnitude is ``>= 1e20`` (does not fit ``NUMERIC(38, 18)``).
    """
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise TypeError(f"decimal column needs a Decimal, int or str, was {type(value).__name__} {value!r}")
    try:
        dec = value if isinstance(value, Decimal) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"decimal column needs a decimal number, was {value!r}") from None
    if not dec.is_finite():
        raise ValueError(f"decimal column needs a finite number, was {value!r}")
    if dec.copy_abs() >= DECIMAL_LIMIT:  # copy_abs is exact; abs() would round to 28 digits
        raise ValueError(f"decimal column holds magnitudes below {DECIMAL_LIMIT:f}, was {value!r}")
    if dec.as_tuple().exponent >= -DECIMAL_SCALE:  # type: ignore[operator]
        return dec
    with localcontext() as ctx:
        ctx.prec = DECIMAL_PRECISION + 2
        return dec.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)


def canonical_decimal(value: Decimal) -> Decimal:
    """Return ``value`` without trailing fractional zeros and with an exponent <= 0.

    ``Decimal("24899.180000000000000000")`` → ``Decimal("24899.18")``, ``Decimal("100")`` stays
    ``Decimal("100")`` (not ``1E+2``), ``Decimal("-0")`` → ``Decimal("0")``. The value is unchanged
    (``==``); both backends return the same digits for the same stored value.
    """
    if value.is_zero():
        return Decimal(0)
    with localcontext() as ctx:
        ctx.prec = max(DECIMAL_PRECISION, len(value.as_tuple().digits)) + 2
        normal = value.normalize()
        if normal.as_tuple().exponent > 0:  # type: ignore[operator]
            return normal.quantize(Decimal(1))
        return normal


class DecimalType(TypeDecorator[Decimal]):
    """Lossless decimal column: ``NUMERIC(38, 18)`` on PostgreSQL, ``TEXT`` on SQLite.

    Values are rounded half-even to 18 decimal places on the way in (PostgreSQL would round the
    same way; SQLite stores the rounded text), so both backends hold identical values. Values
    come back as canonical ``Decimal`` (see :func:`canonical_decimal`), equal to what was written.
    Magnitudes up to ``1e20`` (exclusive) fit, e.g. quote amounts of 1e15 with 18 decimals.

    Raises
    ------
    TypeError, ValueError
        On bind, as :func:`quantize_decimal`.
    """

    impl = Numeric(DECIMAL_PRECISION, DECIMAL_SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(Numeric(DECIMAL_PRECISION, DECIMAL_SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        dec = quantize_decimal(value)
        if dialect.name == "sqlite":
            return f"{dec:f}"
        return dec

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return canonical_decimal(value if isinstance(value, Decimal) else Decimal(str(value)))


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetime column on every backend.

    PostgreSQL stores ``TIMESTAMP WITH TIME ZONE``; SQLite stores the UTC wall time as text (it
    sorts chronologically). Results are always aware datetimes in UTC.

    Raises
    ------
    ValueError
        On bind, if the datetime is naive.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"datetime column needs a timezone-aware datetime, was {value!r}")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        dt: datetime = value  # the DateTime impl column returns datetimes
        if dt.tzinfo is None:
            return dt.replace(tzinfo=UTC)
        return dt.astimezone(UTC)
