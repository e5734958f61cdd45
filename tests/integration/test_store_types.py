"""Column types of the event store: decimal quantization/canonical form, JSON sanitising, exact ms → datetime."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebot.adapters.store.records import jsonable, ms_to_utc
from tradebot.adapters.store.types import canonical_decimal, quantize_decimal
from tradebot.core.domain import Side


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("24899.18"), "24899.18"),
        (Decimal("0.00001"), "0.00001"),
        (Decimal("1E-12"), "1E-12"),
        (Decimal("123456789.123456789012"), "123456789.123456789012"),
        (Decimal("0.0000000000000000015"), "2E-18"),
        (Decimal("-0.0000000000000000005"), "0"),
        (Decimal("99999999999999999999.999999999999999999"), "99999999999999999999.999999999999999999"),
        (7, "7"),
        ("0.50", "0.5"),
    ],
)
def test_stored_value_is_quantized_then_canonical(value: object, expected: str) -> None:
    assert str(canonical_decimal(quantize_decimal(value))) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0.1, TypeError, "was float 0.1"),
        (True, TypeError, "was bool True"),
        (Decimal("NaN"), ValueError, "finite"),
        (Decimal("-1E20"), ValueError, "was Decimal\\('-1E\\+20'\\)"),
        ("abc", ValueError, "was 'abc'"),
    ],
)
def test_bad_decimals_are_refused_with_the_value(value: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        quantize_decimal(value)  # type: ignore[arg-type]


def test_canonical_keeps_integers_without_exponent() -> None:
    assert str(canonical_decimal(Decimal("100.000"))) == "100"
    assert str(canonical_decimal(Decimal("1E+3"))) == "1000"


@given(st.decimals(min_value=Decimal("-1E19"), max_value=Decimal("1E19"), places=18, allow_nan=False))
def test_values_with_at_most_18_places_survive_storage_unchanged(value: Decimal) -> None:
    assert canonical_decimal(quantize_decimal(value)) == value


def test_jsonable_makes_strict_json() -> None:
    data = {"a": Decimal("0.00001000"), "b": float("inf"), "c": (1, Side.BUY), 3: uuid.UUID(int=1)}
    assert jsonable(data) == {
        "a": "0.00001000",
        "b": None,
        "c": [1, "buy"],
        "3": "00000000-0000-0000-0000-000000000001",
    }
    with pytest.raises(TypeError, match="object has no JSON form"):
        jsonable({"x": object()})


def test_ms_to_utc_is_exact() -> None:
    assert ms_to_utc(1_700_000_000_123) == datetime(2023, 11, 14, 22, 13, 20, 123_000, tzinfo=UTC)
    assert ms_to_utc(253_402_300_799_999) == datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
