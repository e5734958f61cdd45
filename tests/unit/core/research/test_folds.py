"""Walk-forward folds: calendar durations and train/test windows with exact timestamps."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebot.core.research.folds import Duration, add_duration, make_folds, parse_duration


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12M", Duration(12, "M")),
        ("3m", Duration(3, "M")),
        ("30D", Duration(30, "D")),
        ("36h", Duration(36, "h")),
        (" 1y ", Duration(1, "Y")),
        ("2W", Duration(2, "W")),
    ],
)
def test_parse_duration(text: str, expected: Duration) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["0M", "12", "M", "1.5M", "-3D", "3Q", ""])
def test_parse_duration_refuses_naming_the_value(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text).replace("(", r"\(")):
        parse_duration(text)


def test_months_keep_the_day_and_clamp_to_the_month_end() -> None:
    assert add_duration(ms(2021, 1, 31), Duration(1, "M")) == ms(2021, 2, 28)
    assert add_duration(ms(2020, 1, 31, 6), Duration(1, "M")) == ms(2020, 2, 29, 6)
    assert add_duration(ms(2020, 8, 11), Duration(12, "M")) == ms(2021, 8, 11)
    assert add_duration(ms(2020, 2, 29), Duration(1, "Y")) == ms(2021, 2, 28)
    assert add_duration(ms(2024, 11, 15), Duration(3, "M")) == ms(2025, 2, 15)
    assert add_duration(0, Duration(36, "h")) == 36 * 3_600_000


def test_rolling_12m_3m_folds_over_2020_08_to_2025_02() -> None:
    folds = make_folds(ms(2020, 8, 11), ms(2025, 3, 1), Duration(12, "M"), Duration(3, "M"), Duration(3, "M"))
    assert len(folds) == 14
    first, last = folds[0], folds[-1]
    assert (first.train_start_ms, first.train_end_ms, first.test_end_ms) == (
        ms(2020, 8, 11), ms(2021, 8, 11), ms(2021, 11, 11),
    )  # fmt: skip
    assert (last.train_start_ms, last.test_start_ms, last.test_end_ms) == (
        ms(2023, 11, 11), ms(2024, 11, 11), ms(2025, 2, 11),
    )  # fmt: skip
    for a, b in itertools.pairwise(folds):
        assert b.test_start_ms == a.test_end_ms  # the test windows tile the OOS period
        assert b.train_start_ms == add_duration(a.train_start_ms, Duration(3, "M"))


def test_anchored_folds_all_train_from_the_start() -> None:
    folds = make_folds(
        ms(2021, 1, 1), ms(2022, 1, 1), Duration(6, "M"), Duration(2, "M"), Duration(2, "M"), anchored=True
    )
    assert [f.train_start_ms for f in folds] == [ms(2021, 1, 1)] * 3
    assert [f.test_start_ms for f in folds] == [ms(2021, 7, 1), ms(2021, 9, 1), ms(2021, 11, 1)]


def test_no_fold_when_train_plus_test_exceeds_the_span() -> None:
    assert (
        make_folds(ms(2021, 1, 1), ms(2021, 12, 31), Duration(12, "M"), Duration(1, "D"), Duration(1, "D"))
        == []
    )


@given(
    start=st.integers(0, 2_000_000_000_000),
    span_days=st.integers(1, 2000),
    train=st.integers(1, 400),
    test=st.integers(1, 200),
    extra=st.integers(0, 50),
    anchored=st.booleans(),
)
def test_folds_never_leak_the_test_window_into_training(
    start: int, span_days: int, train: int, test: int, extra: int, anchored: bool
) -> None:
    day = 86_400_000
    end = start + span_days * day
    folds = make_folds(
        start, end, Duration(train, "D"), Duration(test, "D"), Duration(test + extra, "D"), anchored=anchored
    )
    for f in folds:
        assert start <= f.train_start_ms < f.train_end_ms == f.test_start_ms < f.test_end_ms <= end
        assert f.test_end_ms - f.test_start_ms == test * day
    for a, b in itertools.pairwise(folds):
        assert b.test_start_ms >= a.test_end_ms
