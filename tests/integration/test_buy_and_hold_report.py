"""A backtest of data/sample reports buy-and-hold of its assets: bought at the first opens, marked to
the last closes, in the summary and its table."""

from __future__ import annotations

import asyncio
import csv
import gzip
import os
from fractions import Fraction
from pathlib import Path

import pytest
from rich.console import Console

from tradebot.app.backtest.backtest import BacktestOptions, BacktestResult, run_backtest
from tradebot.app.reports.summary import buy_and_hold_curve_of
from tradebot.app.reports.tables import render_summary
from tradebot.app.settings import load_settings

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
SYMBOLS = {"BTC/USDT": "BTCUSDT", "ETH/USDT": "ETHUSDT", "SOL/USDT": "SOLUSDT"}


def first_open_last_close(pair: str) -> tuple[str, str]:
    with gzip.open(SAMPLE / f"binance_{pair}_1m.csv.gz", "rt") as f:
        rows = list(csv.DictReader(f))
    return rows[0]["open"], rows[-1]["close"]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> BacktestResult:
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
            mp.delenv(key)
        mp.chdir(tmp_path_factory.mktemp("cwd"))
        settings = load_settings()
    return asyncio.run(run_backtest(settings, BacktestOptions(data_dir=SAMPLE)))


def test_buy_and_hold_final_equity_is_the_first_opens_marked_to_the_last_closes(
    result: BacktestResult,
) -> None:
    bench = result.summary["buy_and_hold"]
    assert bench["entry"] == "first open"
    expected = Fraction(0)
    for sym, pair in SYMBOLS.items():
        first_open, last_close = first_open_last_close(pair)
        assert bench["entry_prices"][sym] == Fraction(first_open)
        expected += Fraction(10000, 3) / (Fraction(first_open) * Fraction("1.001")) * Fraction(last_close)
    assert abs(Fraction(bench["final_equity"]) - expected) < Fraction(1, 10**30)
    assert bench["initial_equity"] == 10000  # the cash just before the buy, at the first open
    assert bench["weights"] == {s: Fraction(1, 3) for s in SYMBOLS} or all(
        abs(Fraction(w) - Fraction(1, 3)) < Fraction(1, 10**30) for w in bench["weights"].values()
    )
    assert set(result.summary["overall"]) <= set(bench)  # same measures as the strategy
    # 46 days < 90: no annualized return for either.
    assert result.summary["overall"]["annualized_return"] is None
    assert bench["annualized_return"] is None


def test_buy_and_hold_is_marked_at_the_strategy_sample_times(result: BacktestResult) -> None:
    curve = buy_and_hold_curve_of(result.engine, result.summary)
    assert curve is not None
    strategy_times = [t for t, _ in result.engine.stats.equity_curve]
    assert [t for t, _ in curve[1:]] == strategy_times
    assert curve[0][0] == result.summary["buy_and_hold"]["entry_ms"] < strategy_times[0]
    assert curve[-1][1] == result.summary["buy_and_hold"]["final_equity"]


def test_summary_table_of_the_sample_shows_the_buy_and_hold_column(result: BacktestResult) -> None:
    c = Console(record=True, width=160)
    render_summary(result.summary, c)
    out = c.export_text()
    line = next(line for line in out.splitlines() if "Final equity (USDT)" in line)
    cells = [x.strip() for x in line.split("│")[1:-1]]
    assert cells == [
        "Final equity (USDT)",
        "10,391.17",
        f"{float(result.summary['buy_and_hold']['final_equity']):,.2f}",
    ]
    annualized = next(line for line in out.splitlines() if "Annualized return" in line)
    assert annualized.count("—") == 2
