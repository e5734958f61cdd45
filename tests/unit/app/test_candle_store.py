"""The candle file and its append log: what a rerun finds after a kill at each point."""

from __future__ import annotations

import gzip
from pathlib import Path

from tradebot.adapters.feeds.candle_files import encode_rows, parse_rows
from tradebot.adapters.feeds.replay import load_candles
from tradebot.app.research.candle_store import CandleFile
from tradebot.core.domain import Timeframe

M = 60_000


def r(t: int) -> tuple[int, str, str, str, str, str]:
    return (t, "10.0", "11.0", "9.0", "10.5", "1.25")


def stored(path: Path) -> list[tuple[int, str, str, str, str, str]]:
    return parse_rows(gzip.decompress(path.read_bytes()).decode(), name=path.name)


def test_a_killed_log_with_a_torn_tail_and_a_stale_temp_file_recovers(tmp_path: Path) -> None:
    path = tmp_path / "binance_BTCUSDT_1m.csv.gz"
    first = CandleFile(path, M)
    first.load()
    first.begin_range(0, 10 * M)
    first.append([r(0), r(M), r(2 * M)])
    # SIGKILL mid-page: half a line in the log, and a temp file of an interrupted commit
    with first.part_path.open("a") as fh:
        fh.write("180000,10.0,11")
    (tmp_path / f".{path.name}.999.tmp").write_bytes(b"\x1f\x8b half")
    assert not path.exists()

    again = CandleFile(path, M)
    again.load()
    assert again.covered() == [(0, 3 * M)]  # the torn row is dropped: refetched from 3m
    assert not list(tmp_path.glob(".*.tmp"))
    again.begin_range(3 * M, 10 * M)
    again.append([r(3 * M), r(4 * M)])
    result = again.commit()
    assert (result.added, result.replaced) == (5, 0)
    assert stored(path) == [r(t * M) for t in range(5)]
    assert not again.part_path.exists()
    candles = load_candles(path, "BTC/USDT", Timeframe.M1).candles  # the backtester reads it
    assert [c.open_time_ms for c in candles] == [t * M for t in range(5)]


def test_a_kill_after_the_replace_only_merges_the_same_rows_again(tmp_path: Path) -> None:
    path = tmp_path / "binance_BTCUSDT_1m.csv.gz"
    path.write_bytes(gzip.compress(encode_rows([r(0), r(M)]).encode()))
    # the log whose rows were already merged, left behind by a kill before its deletion
    part = path.with_name(path.name + ".part")
    part.write_text("#range,60000,600000\n" + encode_rows([r(M)], header=False))
    before = path.read_bytes()
    store = CandleFile(path, M)
    store.load()
    assert store.covered() == [(0, 2 * M), (M, 2 * M)]
    result = store.commit()
    assert (result.added, result.replaced) == (0, 0)
    assert path.read_bytes() == before and not part.exists()


def test_commit_without_a_log_leaves_the_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "binance_BTCUSDT_1m.csv.gz"
    store = CandleFile(path, M)
    store.load()
    assert store.covered() == [] and store.commit().added == 0
    assert not path.exists()
