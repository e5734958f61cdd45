"""Candle-file rows without I/O: exact text, merge/dedupe, gaps, page planning, range planning."""

from __future__ import annotations

import pytest

from tradebot.adapters.feeds.candle_files import (
    GapReport,
    Segment,
    aggregate_rows,
    encode_rows,
    find_gaps,
    format_number,
    merge_rows,
    missing_ranges,
    next_cursor,
    parse_log,
    parse_rows,
    row_from_ohlcv,
)
from tradebot.errors import DataError

M = 60_000


def r(t: int, close: str = "10.0", volume: str = "1.5") -> tuple[int, str, str, str, str, str]:
    return (t, "10.0", "11.0", "9.0", close, volume)


def test_format_number_is_the_shortest_round_trip_text_without_exponent() -> None:
    assert format_number(27860.0) == "27860.0"  # what the shared files contain
    assert format_number("24899.18000000") == "24899.18"  # Binance's 8-decimal string
    assert format_number(293.13711) == "293.13711"
    assert format_number(1e-05) == "0.00001"
    assert format_number(2.5e16) == "25000000000000000.0"
    with pytest.raises(DataError, match="finite, was inf"):
        format_number(float("inf"))


def test_row_from_ohlcv_keeps_exact_values_and_refuses_invalid_candles() -> None:
    row = row_from_ohlcv([1679529600000, 27250.97, 27256.77, 27238.0, 27250.01, None], where="t")
    assert row == (1679529600000, "27250.97", "27256.77", "27238.0", "27250.01", "0.0")
    with pytest.raises(DataError, match=r"t: invalid candle at 60000: high 1\.0 is below low 2\.0"):
        row_from_ohlcv([60000, 1.5, 1.0, 2.0, 1.5, 3.0], where="t")
    with pytest.raises(DataError, match=r"open time must be a non-negative integer of ms, was 1\.5"):
        row_from_ohlcv([1.5, 1, 1, 1, 1, 1], where="t")


def test_merge_dedupes_by_open_time_counts_added_and_replaced_and_keeps_order() -> None:
    existing = [r(0), r(M), r(2 * M)]
    new = [r(5 * M), r(2 * M, close="10.5"), r(M), r(3 * M), r(5 * M, close="9.5")]
    result = merge_rows(existing, new)
    assert [row[0] for row in result.rows] == [0, M, 2 * M, 3 * M, 5 * M]
    assert result.added == 2  # 3m and 5m; the second 5m row replaces the first one of this batch
    assert result.replaced == 1  # 2m changed; 1m identical
    assert result.rows[2] == r(2 * M, close="10.5") and result.rows[4] == r(5 * M, close="9.5")


def test_merge_refuses_stored_rows_that_are_not_ascending() -> None:
    with pytest.raises(DataError, match=f"not strictly ascending: {M} after {2 * M}"):
        merge_rows([r(0), r(2 * M), r(M)], [])


def test_gaps_count_missing_bars_and_name_the_largest() -> None:
    opens = [0, M, 2 * M, 5 * M, 6 * M, 10 * M, 11 * M, 14 * M]
    report = find_gaps(opens, M)
    assert report.gaps == [(2 * M, 2), (6 * M, 3), (11 * M, 2)]
    assert (report.count, report.missing_bars, report.largest) == (3, 7, (6 * M, 3))
    assert find_gaps([0, M], M) == GapReport([]) and GapReport([]).largest is None


def test_missing_ranges_fill_the_hull_so_no_hole_is_left() -> None:
    h = 3_600_000
    assert missing_ranges((0, 10 * h), [], h) == [(0, 10 * h)]
    assert missing_ranges((0, 10 * h), [(0, 10 * h)], h) == []
    # stored 2h..5h, an interrupted log prefix 7h..8h: fetch before, between and after
    assert missing_ranges((0, 10 * h), [(2 * h, 5 * h), (7 * h, 8 * h)], h) == [
        (0, 2 * h),
        (5 * h, 7 * h),
        (8 * h, 10 * h),
    ]
    # a request after the stored data also fetches the stretch between (no hole in the file)
    assert missing_ranges((20 * h, 30 * h), [(0, 10 * h)], h) == [(10 * h, 30 * h)]
    # a request inside the stored data needs nothing; unaligned bounds are aligned down
    assert missing_ranges((3 * h, 4 * h), [(0, 10 * h)], h) == []
    assert missing_ranges((h + 5, 3 * h + 7), [], h) == [(h, 3 * h)]


def test_next_cursor_for_count_paged_and_window_paged_venues() -> None:
    # a full page: continue after its last candle
    assert next_cursor(0, 100 * M, [0, M, 2 * M], 3, M, windowed=False) == 3 * M
    # the page also holds the forming candle at/after hi: stop at hi
    assert next_cursor(0, 3 * M, [M, 2 * M, 3 * M], 3, M, windowed=False) == 3 * M
    # nothing before hi (the data starts later): stop
    assert next_cursor(0, 3 * M, [5 * M], 3, M, windowed=True) == 3 * M
    # empty page: Binance has nothing from the cursor on; Deribit's window was an outage
    assert next_cursor(0, 100 * M, [], 3, M, windowed=False) == 100 * M
    assert next_cursor(0, 100 * M, [], 3, M, windowed=True) == 3 * M


def test_aggregate_rows_is_decimal_exact() -> None:
    h = 3_600_000
    rows = [
        (0, "10.0", "12.5", "9.5", "11.0", "0.1"),
        (h, "11.0", "13.0", "10.0", "12.0", "0.2"),
        (3 * h, "12.0", "12.0", "8.25", "9.0", "7"),
        (4 * h, "9.0", "9.5", "9.0", "9.5", "1.0"),
    ]
    assert aggregate_rows(rows, 4 * h) == [
        (0, "10.0", "13.0", "8.25", "9.0", "7.3"),  # 0.1 + 0.2 + 7 exactly, not 7.300000000000001
        (4 * h, "9.0", "9.5", "9.0", "9.5", "1.0"),
    ]


def test_file_text_round_trips_and_bad_files_are_named_by_line() -> None:
    rows = [r(0), r(M)]
    assert parse_rows(encode_rows(rows), name="f") == rows
    with pytest.raises(DataError, match=r"f:1: header must be"):
        parse_rows("t,o,h,l,c,v\n", name="f")
    with pytest.raises(DataError, match=f"f:3: open_time_ms must be after the previous row's {M}, was 0"):
        parse_rows(encode_rows([r(M), r(0)]), name="f")
    with pytest.raises(DataError, match=r"f:2: expected open_time_ms and 5 numbers, was '0,1,2'"):
        parse_rows("open_time_ms,open,high,low,close,volume\n0,1,2\n", name="f")


def test_append_log_segments_drop_a_torn_tail() -> None:
    text = "#range,0,600000\n" + encode_rows([r(0), r(M)], header=False) + "#range,900000,960000\n120000,10"
    segments = parse_log(text, name="p")
    assert segments == [Segment(0, 10 * M, [r(0), r(M)]), Segment(15 * M, 16 * M, [])]
    assert segments[0].done(M) == (0, 2 * M) and segments[1].done(M) is None
    with pytest.raises(DataError, match="p:1: row before the first range marker"):
        parse_log("0,1,1,1,1,1\n", name="p")
