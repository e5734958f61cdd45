"""Candles as columns: loaded with the very values (and checks) of ``load_candles``, read back as the
same ``Candle`` tuples, and merged across symbols in the order of ``merge_by_time``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tradebot.adapters.feeds.columns import CandleColumns
from tradebot.adapters.feeds.replay import load_candles, load_columns, merge_by_time
from tradebot.app.backtest.replay import ReplayStream, slice_end
from tradebot.core.domain import Candle, Symbol, Timeframe
from tradebot.errors import DataError

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
H = 3_600_000
HEADER = "open_time_ms,open,high,low,close,volume"


def _candles(symbol: str, hours: list[int], base: float = 100.0) -> list[Candle]:
    return [
        Candle(
            symbol, Timeframe.H1, h * H, base + h, base + h + 1.5, base + h - 0.25, base + h + 0.5, 0.1 * h
        )
        for h in hours
    ]


def test_columns_load_the_values_load_candles_loads():
    path = SAMPLE / "binance_SOLUSDT_1h.csv.gz"
    candles = load_candles(path, "SOL/USDT", Timeframe.H1, start_ms=1_677_000_000_000)
    columns = load_columns(path, "SOL/USDT", Timeframe.H1, start_ms=1_677_000_000_000)
    assert columns.gaps == candles.gaps
    assert len(columns.columns) == len(candles.candles) > 100
    assert list(columns.columns) == candles.candles  # bit for bit: the same parsed floats
    got = columns.columns[5]
    assert got == candles.candles[5] and type(got.open_time_ms) is int and type(got.close) is float
    assert columns.columns.open_time_ms.dtype == np.int64 and columns.columns.volume.dtype == np.float64


def test_columns_of_a_file_only_the_strict_parser_reads(tmp_path):
    # Quoted fields defeat the vectorised pass; the csv parser reads them.
    path = tmp_path / "q.csv"
    path.write_text(f'{HEADER}\n0,"100.5",101,99,100,12.5\n{H},100,102,99.5,101.25,3\n', newline="")
    columns = load_columns(path, "BTC/USDT", Timeframe.H1).columns
    assert list(columns) == load_candles(path, "BTC/USDT", Timeframe.H1).candles
    assert columns[0] == Candle("BTC/USDT", Timeframe.H1, 0, 100.5, 101.0, 99.0, 100.0, 12.5)
    path.write_text(f"{HEADER}\n0,100,99,101,100,1\n", newline="")
    with pytest.raises(DataError, match=r"q\.csv:2: invalid candle: high 99\.0 is below low 101\.0"):
        load_columns(path, "BTC/USDT", Timeframe.H1)


def test_a_columns_sequence_indexes_slices_and_refuses_writes():
    candles = _candles("BTC/USDT", [0, 1, 2, 4])
    columns = CandleColumns.from_candles("BTC/USDT", Timeframe.H1, candles)
    assert len(columns) == 4 and bool(columns)
    assert columns[-1] == candles[-1] and columns[1:3] == candles[1:3] and columns[::2] == candles[::2]
    assert columns.candles(1, 4) == candles[1:4] and list(columns) == candles
    with pytest.raises(IndexError, match="candle index 4 out of range for 4 candles"):
        columns[4]
    with pytest.raises(ValueError, match="read-only"):
        columns.close[0] = 1.0
    assert CandleColumns.from_candles("BTC/USDT", Timeframe.H1, columns) is columns
    with pytest.raises(ValueError, match="candles of ETH/USDT 1h expected"):
        CandleColumns.from_candles("ETH/USDT", Timeframe.H1, candles)
    with pytest.raises(ValueError, match="volume must be a 1-d float64 array of 4 values"):
        CandleColumns("X", Timeframe.H1, columns.open_time_ms, *columns.columns()[1:5], np.zeros(3))


def test_the_merged_stream_is_merge_by_time_with_ties_in_symbol_order():
    # Staggered starts, a gap in one symbol, a symbol without candles, different lengths.
    by_symbol = {
        Symbol("ETH/USDT"): _candles("ETH/USDT", [2, 3, 4, 7, 8, 9, 10]),
        Symbol("BTC/USDT"): _candles("BTC/USDT", [0, 1, 2, 3, 4, 5, 6, 7, 8]),
        Symbol("XRP/USDT"): [],
        Symbol("SOL/USDT"): _candles("SOL/USDT", [1, 2, 9]),
    }
    merged = list(merge_by_time(by_symbol))
    columns = {s: CandleColumns.from_candles(s, Timeframe.H1, c) for s, c in by_symbol.items()}
    for stream in (ReplayStream.from_columns(columns), ReplayStream.build(merged, by_symbol)):
        assert len(stream) == len(merged)
        got = [stream.by_symbol[k][r] for k, r in zip(stream.symbol_index, stream.rows, strict=True)]
        assert got == merged
        assert stream.times.tolist() == [c.open_time_ms for c in merged]
        assert [stream.slice_end(i) for i in range(len(merged) + 1)] == [
            slice_end(merged, i) for i in range(len(merged) + 1)
        ]
