"""Candle-file rows without I/O: wire rows → exact text, merge/dedupe, gaps, and download planning.

The file format is the one :mod:`tradebot.adapters.feeds.replay` reads (``shared/data/README.md``
§1): header ``open_time_ms,open,high,low,close,volume``, open time in ms UTC, strictly ascending,
numbers in the shortest decimal text that round-trips (``27860.0``, ``293.13711``; never an
exponent). A :data:`Row` keeps those texts, so a file is rewritten byte for byte.

Everything here is pure: the download command (:mod:`tradebot.app.research.download`) does the
fetching and the file writes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from typing import Any

from tradebot.adapters.feeds.replay import HEADER
from tradebot.core.domain import Candle, Timeframe, validate_candle
from tradebot.errors import DataError

__all__ = [
    "HEADER_LINE",
    "GapReport",
    "MergeResult",
    "Row",
    "Segment",
    "aggregate_rows",
    "covered_span",
    "encode_rows",
    "find_gaps",
    "format_decimal",
    "format_number",
    "merge_rows",
    "missing_ranges",
    "next_cursor",
    "parse_log",
    "parse_rows",
    "range_marker",
    "row_from_ohlcv",
]

#: ``(open_time_ms, open, high, low, close, volume)``; the five values as exact decimal text.
Row = tuple[int, str, str, str, str, str]
HEADER_LINE = ",".join(HEADER)


def format_number(value: Any) -> str:
    """Return ``value`` (a float from ccxt, or a decimal string) as the shortest round-trip text.

    ``27860.0 → "27860.0"``, ``"24899.18000000" → "24899.18"``, ``1e-05 → "0.00001"``: ``repr`` of the
    float (what the shared files contain), written without exponent (``f"{Decimal:f}"``).

    Raises
    ------
    DataError
        If ``value`` is not a finite number.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"candle value must be a number, was {value!r}") from None
    if not math.isfinite(number):
        raise DataError(f"candle value must be finite, was {value!r}")
    text = repr(number)
    if "e" in text or "E" in text:
        text = f"{Decimal(text):f}"
        if "." not in text:
            text += ".0"
    return text


def format_decimal(value: Decimal) -> str:
    """Return an exact Decimal (an aggregated volume) as text: the float style when it round-trips."""
    text = format_number(float(value))
    return text if Decimal(text) == value else f"{value.normalize():f}"


def row_from_ohlcv(raw: Sequence[Any], *, where: str) -> Row:
    """Return the row of one ccxt OHLCV entry ``[ts_ms, open, high, low, close, volume]``.

    A missing volume (``None``) is written as ``0.0``.

    Raises
    ------
    DataError
        If the entry is not six numbers, the open time is not a non-negative integer, or the candle
        is invalid (:func:`~tradebot.core.domain.validate_candle`); ``where`` prefixes the message.
    """
    try:
        ts, o, h, lo, c, v = raw[:6]
        open_ms = int(ts)
    except (TypeError, ValueError):
        raise DataError(f"{where}: OHLCV row must be [ts, o, h, l, c, v], was {raw!r}") from None
    if open_ms < 0 or open_ms != ts:
        raise DataError(f"{where}: open time must be a non-negative integer of ms, was {ts!r}")
    try:
        texts = (format_number(o), format_number(h), format_number(lo), format_number(c))
        vol = format_number(0.0 if v is None else v)
    except DataError as e:
        raise DataError(f"{where}: {e}, in row {raw!r}") from None
    row: Row = (open_ms, *texts, vol)
    o_f, h_f, l_f, c_f, v_f = (float(x) for x in row[1:])
    candle = Candle("", Timeframe.M1, open_ms, o_f, h_f, l_f, c_f, v_f)
    problem = validate_candle(candle)
    if problem is not None:
        raise DataError(f"{where}: invalid candle at {open_ms}: {problem}")
    return row


def parse_rows(text: str, *, name: str) -> list[Row]:
    """Parse a candle file's text: the header, then rows of six columns with strictly ascending times.

    Raises
    ------
    DataError
        ``"<name>:<line>: <problem>, was <value>"`` for a wrong header, a malformed row, or an open
        time not after the previous one (the monotonic check).
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0].rstrip("\r") != HEADER_LINE:
        found = lines[0] if lines else ""
        raise DataError(f"{name}:1: header must be {HEADER_LINE!r}, was {found!r}")
    rows: list[Row] = []
    prev = -1
    for n, line in enumerate(lines[1:], start=2):
        row = _parse_line(line, name, n)
        if row[0] <= prev:
            raise DataError(f"{name}:{n}: open_time_ms must be after the previous row's {prev}, was {row[0]}")
        prev = row[0]
        rows.append(row)
    return rows


def _parse_line(line: str, name: str, n: int) -> Row:
    parts = line.rstrip("\r").split(",")
    try:
        if len(parts) != 6:
            raise ValueError
        t = int(parts[0])
        for value in parts[1:]:
            if not Decimal(value).is_finite():
                raise ValueError
    except (ValueError, InvalidOperation):
        raise DataError(f"{name}:{n}: expected open_time_ms and 5 numbers, was {line!r}") from None
    return (t, parts[1], parts[2], parts[3], parts[4], parts[5])


@dataclass(frozen=True, slots=True)
class Segment:
    """One range of an append log: the fetch of ``[lo, hi)`` and the rows it stored before it ended.

    The rows of a segment come from consecutive pages that started at ``lo``, so
    ``[lo, last open + tf)`` holds every candle the venue has there (:meth:`done`).
    """

    lo: int
    hi: int
    rows: list[Row]

    def done(self, tf_ms: int) -> tuple[int, int] | None:
        """Return the fetched prefix ``[lo, last open + tf_ms)``, or ``None`` when no row was stored."""
        return (self.lo, self.rows[-1][0] + tf_ms) if self.rows else None


def range_marker(lo: int, hi: int) -> str:
    """Return the append-log line that opens a segment for ``[lo, hi)``."""
    return f"#range,{lo},{hi}\n"


def parse_log(text: str, *, name: str) -> list[Segment]:
    """Parse an append log: ``#range,<lo>,<hi>`` lines, each followed by the rows fetched for it.

    An unterminated last line (the tail of a write cut by SIGKILL) is ignored.

    Raises
    ------
    DataError
        For a malformed complete line, or rows before the first marker.
    """
    lines = text.split("\n")
    lines.pop()  # "" after the last newline, or a torn tail
    segments: list[Segment] = []
    for n, line in enumerate(lines, start=1):
        if line.startswith("#range,"):
            try:
                _, lo, hi = line.split(",")
                segments.append(Segment(int(lo), int(hi), []))
            except ValueError:
                raise DataError(f"{name}:{n}: malformed range marker, was {line!r}") from None
        elif not segments:
            raise DataError(f"{name}:{n}: row before the first range marker, was {line!r}")
        else:
            segments[-1].rows.append(_parse_line(line, name, n))
    return segments


def encode_rows(rows: Iterable[Row], *, header: bool = True) -> str:
    """Return rows as file text (header first when ``header``), one ``\\n``-terminated line each."""
    body = "".join(f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]}\n" for r in rows)
    return f"{HEADER_LINE}\n{body}" if header else body


@dataclass(frozen=True, slots=True)
class MergeResult:
    """Rows after a merge: strictly ascending, one per open time.

    Attributes
    ----------
    rows
        The merged rows.
    added
        Open times that were not in ``existing``.
    replaced
        Open times present in both whose values differed (the newer values were kept).
    """

    rows: list[Row]
    added: int
    replaced: int


def merge_rows(existing: Sequence[Row], new: Iterable[Row]) -> MergeResult:
    """Merge ``new`` rows (any order; a later duplicate wins) into ascending ``existing`` rows.

    Raises
    ------
    DataError
        If ``existing`` is not strictly ascending (the monotonic check of a stored file).
    """
    by_time: dict[int, Row] = {}
    prev = -1
    for row in existing:
        if row[0] <= prev:
            raise DataError(f"stored rows are not strictly ascending: {row[0]} after {prev}")
        prev = row[0]
        by_time[row[0]] = row
    before = dict(by_time)
    for row in new:
        by_time[row[0]] = row
    added = len(by_time) - len(before)
    replaced = sum(1 for t, r in before.items() if by_time[t] != r)
    return MergeResult(rows=[by_time[t] for t in sorted(by_time)], added=added, replaced=replaced)


@dataclass(frozen=True, slots=True)
class GapReport:
    """Missing bars between the rows of one file.

    Attributes
    ----------
    gaps
        ``(after_ms, missing)`` per gap: open time of the last row before it, number of missing bars.
    """

    gaps: list[tuple[int, int]] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Number of gaps."""
        return len(self.gaps)

    @property
    def missing_bars(self) -> int:
        """Total missing bars."""
        return sum(m for _, m in self.gaps)

    @property
    def largest(self) -> tuple[int, int] | None:
        """``(after_ms, missing)`` of the largest gap (the earliest of equal ones), or ``None``."""
        return max(self.gaps, key=lambda g: (g[1], -g[0])) if self.gaps else None


def find_gaps(open_times: Sequence[int], tf_ms: int) -> GapReport:
    """Return the gaps of ascending ``open_times`` for candles ``tf_ms`` long (a gap = a step > ``tf_ms``)."""
    gaps = [(a, (b - a) // tf_ms - 1) for a, b in pairwise(open_times) if b - a > tf_ms]
    return GapReport(gaps)


def covered_span(rows: Sequence[Row], tf_ms: int) -> tuple[int, int] | None:
    """Return ``[first_open, last_open + tf_ms)`` of ascending rows, or ``None`` when empty."""
    return (rows[0][0], rows[-1][0] + tf_ms) if rows else None


def missing_ranges(
    request: tuple[int, int], covered: Iterable[tuple[int, int]], tf_ms: int
) -> list[tuple[int, int]]:
    """Return the ``[lo, hi)`` ranges to fetch so that the stored data has no hole.

    The result is the hull of ``request`` and every ``covered`` interval, minus the union of the
    covered intervals: a request after (or before) the stored data also fetches the stretch between,
    so a file never gets a hole that the venue did not make. Bounds are aligned down to ``tf_ms``.

    >>> missing_ranges((0, 100), [(20, 40), (30, 60)], 10)
    [(0, 20), (60, 100)]
    >>> missing_ranges((80, 100), [(0, 40)], 10)
    [(40, 100)]
    """
    lo, hi = request
    spans = sorted((a, b) for a, b in covered if b > a)
    if lo >= hi and not spans:
        return []
    start = min([lo, *(a for a, _ in spans)]) if lo < hi else spans[0][0]
    end = max([hi, *(b for _, b in spans)]) if lo < hi else spans[-1][1]
    out: list[tuple[int, int]] = []
    cursor = start
    for a, b in spans:
        if a > cursor:
            out.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < end:
        out.append((cursor, end))
    aligned = [(a - a % tf_ms, b - b % tf_ms) for a, b in out]
    return [(a, b) for a, b in aligned if b > a]


def next_cursor(cursor: int, hi: int, opens: Sequence[int], limit: int, tf_ms: int, *, windowed: bool) -> int:
    """Return where the next page of a ``[cursor, hi)`` fetch starts, given the open times it returned.

    Parameters
    ----------
    cursor, hi
        The page's start and the end of the range, ms.
    opens
        Open times in the page (any, also outside the range), ms.
    limit
        Candles asked for.
    tf_ms
        Candle length, ms.
    windowed
        ``True`` for a venue that answers a time window (Deribit: ``[start, start + limit·tf]``),
        ``False`` for one that answers the next ``limit`` candles from the start (Binance).

    Returns
    -------
    int
        After the last open in the range; ``hi`` when the venue has nothing more before ``hi`` (a
        page that starts at or after ``hi``, or an empty page from a count-paged venue); one window
        further for an empty window (an outage longer than a page).
    """
    inside = [t for t in opens if cursor <= t < hi]
    if inside:
        return max(inside) + tf_ms
    if any(t >= hi for t in opens) or not windowed:
        return hi
    return cursor + limit * tf_ms


def aggregate_rows(rows: Sequence[Row], tf_ms: int) -> list[Row]:
    """Aggregate ascending rows of a shorter timeframe into UTC-aligned ``tf_ms`` rows, exactly.

    Open of the first, max high, min low, close of the last, summed volume (``Decimal``). A period
    with some rows absent (a venue gap) is still emitted from the rows it has; a period with none
    is not. The caller passes only whole periods.
    """
    out: list[Row] = []
    group: list[Row] = []

    def flush() -> None:
        if group:
            start = group[0][0] - group[0][0] % tf_ms
            high = max((r[2] for r in group), key=Decimal)
            low = min((r[3] for r in group), key=Decimal)
            volume = format_decimal(sum((Decimal(r[5]) for r in group), Decimal(0)))
            out.append((start, group[0][1], high, low, group[-1][4], volume))
            group.clear()

    for row in rows:
        if group and row[0] - row[0] % tf_ms != group[0][0] - group[0][0] % tf_ms:
            flush()
        group.append(row)
    flush()
    return out
