"""Walk-forward folds: durations (``30D``, ``12M``, ``1Y``) and train/test windows over a span.

Pure: calendar arithmetic on ms UTC with the standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["Duration", "Fold", "add_duration", "make_folds", "parse_duration"]

_DAY_MS = 86_400_000
_DURATION = re.compile(r"^\s*(\d+)\s*([hHdDwWmMyY])\s*$")


@dataclass(frozen=True, slots=True)
class Duration:
    """A calendar duration: ``count`` units of ``unit`` (``h`` hours, ``D`` days, ``W`` weeks,
    ``M`` months, ``Y`` years)."""

    count: int
    unit: str

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fold:
    """One walk-forward fold; windows are half-open ``[start, end)`` in ms UTC.

    Attributes
    ----------
    index
        0-based fold number.
    train_start_ms, train_end_ms
        The in-sample window (``train_end_ms == test_start_ms``).
    test_start_ms, test_end_ms
        The out-of-sample window that follows it.
    """

    index: int
    train_start_ms: int
    train_end_ms: int
    test_start_ms: int
    test_end_ms: int


def parse_duration(text: str) -> Duration:
    """Parse ``"30D"``, ``"12M"``, ``"1Y"``, ``"2W"`` or ``"36h"`` (count > 0; case of ``m``/``M``
    both mean months).

    Raises
    ------
    ValueError
        If ``text`` is not a positive count followed by one of h, D, W, M, Y; the message names it.
    """
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) <= 0:
        raise ValueError(f"duration must look like 30D, 12M, 1Y, 2W or 36h, was {text!r}")
    unit = match.group(2)
    unit = "h" if unit in "hH" else unit.upper()
    return Duration(int(match.group(1)), unit)


def add_duration(t_ms: int, d: Duration) -> int:
    """Return ``t_ms`` + ``d`` in ms UTC; months and years keep the day of month (clamped to the
    month's last day)."""
    if d.unit == "h":
        return t_ms + d.count * 3_600_000
    if d.unit == "D":
        return t_ms + d.count * _DAY_MS
    if d.unit == "W":
        return t_ms + d.count * 7 * _DAY_MS
    return _shift_months(t_ms, d.count * (12 if d.unit == "Y" else 1))


def make_folds(
    start_ms: int, end_ms: int, train: Duration, test: Duration, step: Duration, *, anchored: bool = False
) -> list[Fold]:
    """Cut ``[start_ms, end_ms)`` into walk-forward folds.

    Fold ``k`` trains on ``[s_k, t_k)`` and tests on ``[t_k, t_k + test)``, with ``t_0 = start + train``
    and ``t_{k+1} = t_k + step``; rolling folds start ``s_k = t_k - train``, anchored folds keep
    ``s_k = start_ms``. Only complete folds (test window ending at or before ``end_ms``) are made.

    Returns
    -------
    list of Fold
        Possibly empty (the caller decides how to refuse that).
    """
    folds: list[Fold] = []
    train_end = add_duration(start_ms, train)
    while True:
        test_end = add_duration(train_end, test)
        if test_end > end_ms:
            break
        train_start = start_ms if anchored else _minus(train_end, train, start_ms)
        folds.append(
            Fold(
                index=len(folds),
                train_start_ms=train_start,
                train_end_ms=train_end,
                test_start_ms=train_end,
                test_end_ms=test_end,
            )
        )
        train_end = add_duration(train_end, step)
    return folds


def _shift_months(t_ms: int, months: int) -> int:
    # Move by whole months, keeping the day of month (clamped to the target month's last day).
    dt = datetime.fromtimestamp(t_ms / 1000, tz=UTC)
    y, m = divmod(dt.month - 1 + months, 12)
    year, month = dt.year + y, m + 1
    next_first = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    last_day = (next_first - datetime(year, month, 1, tzinfo=UTC)).days
    moved = dt.replace(year=year, month=month, day=min(dt.day, last_day))
    return int(moved.timestamp() * 1000) + (t_ms % 1000)


def _minus(t_ms: int, d: Duration, floor_ms: int) -> int:
    # t - d, never before floor_ms.
    if d.unit in ("h", "D", "W"):
        return max(floor_ms, t_ms - add_duration(0, d))
    return max(floor_ms, _shift_months(t_ms, -d.count * (12 if d.unit == "Y" else 1)))
