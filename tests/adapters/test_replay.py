"""Tests of the candle-file replay: discovery, strict loading with exact error messages, gaps,
base-timeframe choice, time-ordered merging and the async feed."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import pytest

from tradebot.adapters.feeds.replay import (
    LoadResult,
    ReplayFeed,
    _parse,
    discover,
    load_candles,
    merge_by_time,
    pick_base_timeframe,
)
from tradebot.core.domain import Candle, Timeframe
from tradebot.errors import DataError
from tradebot.ports import MarketFeed

H = 3_600_000
HEADER = "open_time_ms,open,high,low,close,volume"
DATA = Path("/work/shared/data")


def write(path: Path, *rows: str, header: str = HEADER, newline: str = "\n") -> Path:
    text = newline.join([header, *rows]) + newline
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, newline="")
    return path


ROWS = (
    f"{0 * H},100.5,101,99,100,12.5",
    f"{1 * H},100,102,99.5,101.25,3",
    f"{3 * H},101,101,100,100.5,0",  # 1 missing bar at 2h
    f"{4 * H},100.5,100.5,100.5,100.5,1",
)


def test_load_plain_and_gzip_with_a_gap(tmp_path):
    for name in ("x.csv", "x.csv.gz"):
        result = load_candles(write(tmp_path / name, *ROWS), "BTC/USDT", Timeframe.H1)
        assert result.candles[0] == Candle("BTC/USDT", Timeframe.H1, 0, 100.5, 101.0, 99.0, 100.0, 12.5)
        assert [c.open_time_ms for c in result.candles] == [0, H, 3 * H, 4 * H]
        assert result.candles[2].volume == 0.0
        assert result.gaps == [(H, 1)]
        assert result.missing_bars == 1
        assert type(result.candles[0].open_time_ms) is int


def test_time_window_keeps_start_inclusive_end_exclusive(tmp_path):
    path = write(tmp_path / "x.csv", *ROWS)
    result = load_candles(path, "BTC/USDT", Timeframe.H1, start_ms=H, end_ms=4 * H)
    assert [c.open_time_ms for c in result.candles] == [H, 3 * H]
    assert result.gaps == [(H, 1)]
    after_gap = load_candles(path, "BTC/USDT", Timeframe.H1, start_ms=3 * H)
    assert after_gap.gaps == [] and len(after_gap.candles) == 2


def test_crlf_and_header_only_files(tmp_path):
    crlf = load_candles(write(tmp_path / "a.csv", *ROWS, newline="\r\n"), "S", Timeframe.H1)
    assert len(crlf.candles) == 4 and crlf.candles[3].close == 100.5
    assert load_candles(write(tmp_path / "b.csv"), "S", Timeframe.H1) == LoadResult([], [])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            (ROWS[0], f"{H},100,102,99.5,101.25,abc"),
            "x.csv:3: volume must be a number, was 'abc'",
        ),
        (
            (ROWS[0], f"{H},100,102,99.5,101.25"),
            "x.csv:3: volume is missing, was row '3600000,100,102,99.5,101.25'",
        ),
        ((ROWS[0], f"{H},100,102,99.5,101.25,1,7"), "x.csv:3: expected 6 columns, was row"),
        (
            (ROWS[0], "1h,100,102,99.5,101.25,1"),
            "x.csv:3: open_time_ms must be an integer (ms UTC), was '1h'",
        ),
        (
            (ROWS[0], ROWS[1], ROWS[0]),
            "x.csv:4: open_time_ms must be after the previous row's 3600000, was '0'",
        ),
        ((ROWS[0], ROWS[0]), "x.csv:3: open_time_ms must be after the previous row's 0, was '0'"),
        (
            (ROWS[0], "1000,100,102,99.5,101.25,1"),
            "x.csv:3: open_time_ms must be a multiple of 3600000 (1h), was '1000'",
        ),
        (
            (ROWS[0], f"{H},100,99,101,100,1"),
            f"x.csv:3: invalid candle: high 99.0 is below low 101.0, was row '{H},100,99,101,100,1'",
        ),
        ((f"{H},100,102,99.5,101.25,-1",), "x.csv:2: invalid candle: volume must be >= 0, was -1.0"),
        ((f"{H},nan,102,99.5,101.25,1",), "x.csv:2: invalid candle: prices must be > 0"),
        ((f"{H},100,inf,99.5,101.25,1",), "x.csv:2: invalid candle: prices and volume must be finite"),
        ((f"-{H},100,102,99.5,101.25,1",), "x.csv:2: open_time_ms must be >= 0, was '-3600000'"),
        ((ROWS[0], "", ROWS[1]), "x.csv:3: open_time_ms is missing, was row ''"),
    ],
)
def test_malformed_rows_raise_with_file_line_field_and_value(tmp_path, rows, message):
    path = write(tmp_path / "x.csv", *rows)
    with pytest.raises(DataError) as exc:
        load_candles(path, "BTC/USDT", Timeframe.H1)
    assert str(exc.value).startswith(message)


def test_wrong_header_and_unreadable_files(tmp_path):
    with pytest.raises(
        DataError, match=r"x\.csv:1: header must be 'open_time_ms,open,high,low,close,volume'"
    ):
        load_candles(
            write(tmp_path / "x.csv", *ROWS, header="time,open,high,low,close,volume"), "S", Timeframe.H1
        )
    bad_gz = tmp_path / "y.csv.gz"
    bad_gz.write_bytes(b"not gzip")
    with pytest.raises(DataError, match=r"y\.csv\.gz: cannot read candle file"):
        load_candles(bad_gz, "S", Timeframe.H1)
    with pytest.raises(DataError, match="cannot read candle file"):
        load_candles(tmp_path / "missing.csv", "S", Timeframe.H1)


def test_fast_and_strict_parsers_agree_on_real_data():
    path = DATA / "binance_ETHUSDT_1h.csv.gz"
    fast = load_candles(path, "ETH/USDT", Timeframe.H1, start_ms=1_600_000_000_000, end_ms=1_700_000_000_000)
    text = io.StringIO(gzip.decompress(path.read_bytes()).decode(), newline="")
    strict = _parse(
        csv.reader(text), path.name, "ETH/USDT", Timeframe.H1, 1_600_000_000_000, 1_700_000_000_000
    )
    assert fast == strict
    assert len(fast.candles) > 20_000


def test_real_btc_1h_file():
    files = discover(DATA)
    result = load_candles(files[("BTC", Timeframe.H1)], "BTC/USDT", Timeframe.H1)
    # first row of binance_BTCUSDT_1h.csv.gz: 1597125600000,11854.56,11854.57,11707.0,11751.79,4106.607804
    assert result.candles[0] == Candle(
        "BTC/USDT", Timeframe.H1, 1597125600000, 11854.56, 11854.57, 11707.0, 11751.79, 4106.607804
    )
    assert len(result.candles) == 39_886
    assert len(result.gaps) == 10 and result.missing_bars == 20  # README §1.2
    assert (1679659200000, 1) in result.gaps  # 2023-03-24 12:00, the Binance spot halt


def test_discover(tmp_path):
    for name in (
        "binance_BTCUSDT_1h.csv.gz",
        "binance_BTCUSDT_5m.csv",
        "binance_ETHUSDT_1h.csv",
        "binancefutures_BTCUSDT_1m.csv.gz",
        "binance_BTCUSDT_2h.csv",
        "binance_BTCUSDC_1m.csv",
        "README.md",
    ):
        (tmp_path / name).write_text(HEADER + "\n")
    assert discover(tmp_path) == {
        ("BTC", Timeframe.M5): tmp_path / "binance_BTCUSDT_5m.csv",
        ("BTC", Timeframe.H1): tmp_path / "binance_BTCUSDT_1h.csv.gz",
        ("ETH", Timeframe.H1): tmp_path / "binance_ETHUSDT_1h.csv",
    }
    assert list(discover(tmp_path, quote="USDC")) == [("BTC", Timeframe.M1)]
    (tmp_path / "binance_ETHUSDT_1h.csv.gz").write_bytes(b"")
    with pytest.raises(DataError, match="two files for ETH 1h"):
        discover(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        discover(tmp_path / "nope")


def test_pick_base_timeframe():
    p = Path("f")
    available = {
        ("BTC", Timeframe.M5): Path("binance_BTCUSDT_5m.csv.gz"),
        ("BTC", Timeframe.H1): p,
        ("ETH", Timeframe.H1): Path("binance_ETHUSDT_1h.csv.gz"),
        ("ETH", Timeframe.D1): p,
    }
    assert pick_base_timeframe(available, ["BTC", "ETH"], None) is Timeframe.H1
    assert pick_base_timeframe(available, ["BTC"], None) is Timeframe.M5
    assert pick_base_timeframe(available, ["BTC"], Timeframe.H1) is Timeframe.H1
    with pytest.raises(DataError) as exc:
        pick_base_timeframe(available, ["BTC", "ETH"], Timeframe.M5)
    assert str(exc.value) == "no 5m candle file for ETH; files present: binance_ETHUSDT_1h.csv.gz, f"
    with pytest.raises(DataError, match=r"no timeframe is available for every asset .*SOL: no files"):
        pick_base_timeframe(available, ["BTC", "SOL"], None)


def c(symbol: str, t: int) -> Candle:
    return Candle(symbol, Timeframe.H1, t, 1.0, 1.0, 1.0, 1.0, 1.0)


def keys(candles) -> list[tuple[str, int]]:
    return [(x.symbol, x.open_time_ms // H) for x in candles]


def test_merge_aligned_uses_mapping_order_for_equal_times():
    merged = merge_by_time({"B": [c("B", 0), c("B", H)], "A": [c("A", 0), c("A", H)]})
    assert keys(merged) == [("B", 0), ("A", 0), ("B", 1), ("A", 1)]


def test_merge_unaligned_and_uneven_lengths():
    data = {
        "B": [c("B", 0), c("B", H), c("B", 3 * H), c("B", 4 * H)],
        "A": [c("A", 0), c("A", 2 * H), c("A", 3 * H)],
        "C": [],
    }
    assert keys(merge_by_time(data)) == [("B", 0), ("A", 0), ("B", 1), ("A", 2), ("B", 3), ("A", 3), ("B", 4)]
    assert keys(merge_by_time({"A": [c("A", 0)], "B": [c("B", 0), c("B", H)]})) == [
        ("A", 0),
        ("B", 0),
        ("B", 1),
    ]
    assert list(merge_by_time({})) == []
    assert keys(merge_by_time({"A": [c("A", 0)]})) == [("A", 0)]


async def test_replay_feed_yields_merged_candles(tmp_path):
    write(tmp_path / "binance_BTCUSDT_1h.csv", *ROWS)
    write(tmp_path / "binance_ETHUSDT_1h.csv", *ROWS[:2])
    feed = ReplayFeed.from_directory(tmp_path, ["BTC", "ETH"], start_ms=H)
    assert isinstance(feed, MarketFeed)
    got = [x async for x in feed.candles()]
    assert keys(got) == [("BTC/USDT", 1), ("ETH/USDT", 1), ("BTC/USDT", 3), ("BTC/USDT", 4)]
    small = ReplayFeed({"A": [c("A", 0), c("A", H)]}, yield_every=1)
    assert len([x async for x in small.candles()]) == 2
    with pytest.raises(ValueError, match="yield_every must be > 0, was 0"):
        ReplayFeed({}, yield_every=0)
