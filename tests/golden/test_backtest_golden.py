"""Golden backtests: the shipped sample and a 1h window of the shared data, pinned to their results.

The pinned numbers were produced once by ``run_backtest`` with the default settings (pooled policy,
EMA 20/50 streams on 1h/4h/1d, 10 000 USDT, 5 bps slippage, 0.1 % fee) and pasted here. A change to
any of them means the trading behaviour changed: re-derive them on purpose, never to make a test pass.

Also checked: a run is deterministic (two runs give the same summary but for the run id), and the
database does not change the result (no DB = SQLite = PostgreSQL), which hold the run as ``completed``
with the same counts as the summary.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tradebot.adapters.store import SqlEventStore
from tradebot.app.backtest.backtest import BacktestOptions, BacktestResult, run_backtest
from tradebot.app.settings import Settings, load_settings
from tradebot.core.domain import Timeframe, datetime_to_ms

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
WINDOW = (
    datetime_to_ms(datetime(2024, 1, 1, tzinfo=UTC)),
    datetime_to_ms(datetime(2024, 4, 1, tzinfo=UTC)),
)


@dataclass(frozen=True)
class Golden:
    """The numbers of a run that matter."""

    candles: int
    final_equity: str
    n_orders: int
    n_fills: int
    n_trades: int
    n_open_trades: int
    max_drawdown: float
    fees_paid: str
    event_counts: dict[str, int]
    final_positions: dict[str, str]


SAMPLE_GOLDEN = Golden(
    candles=198_261,
    final_equity="10391.17359401",
    n_orders=152,
    n_fills=152,
    n_trades=21,
    n_open_trades=0,
    max_drawdown=0.14074571103508282,
    fees_paid="241.18970539",
    event_counts={
        "daily_loss_halt": 6,
        "entry": 21,
        "exit": 21,
        "order_denied": 25,
        "rebalance_buy": 79,
        "rebalance_sell": 73,
        "risk_block": 26,
        "trading_resumed": 5,
    },
    final_positions={"BTC/USDT": "0", "ETH/USDT": "0", "SOL/USDT": "0"},
)

H1_WINDOW_GOLDEN = Golden(
    candles=6_552,
    final_equity="15079.77692394",
    n_orders=325,
    n_fills=325,
    n_trades=48,
    n_open_trades=3,
    max_drawdown=0.2014233933348808,
    fees_paid="595.43537226",
    event_counts={
        "daily_loss_halt": 16,
        "entry": 51,
        "exit": 48,
        "order_denied": 134,
        "rebalance_buy": 162,
        "rebalance_sell": 163,
        "risk_block": 55,
        "trading_resumed": 16,
    },
    final_positions={"BTC/USDT": "0.07016", "ETH/USDT": "1.3591", "SOL/USDT": "25.265"},
)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Default settings, unaffected by the caller's environment or a ``.env`` file."""
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
            mp.delenv(key)
        mp.chdir(tmp_path_factory.mktemp("settings_cwd"))
        return load_settings()


def backtest(settings: Settings, db_url: str | None = None, **options: Any) -> BacktestResult:
    """Run one backtest of the sample (or ``data_dir=…``) to completion."""
    options.setdefault("data_dir", SAMPLE)
    return asyncio.run(run_backtest(settings, BacktestOptions(db_url=db_url, **options)))


def canonical(summary: dict[str, Any]) -> str:
    """The summary as sorted JSON text without the run id (Decimals and NaNs as text, compared exactly)."""
    data = dict(summary)
    data["run"] = {k: v for k, v in summary["run"].items() if k != "run_id"}
    return json.dumps(data, sort_keys=True, default=str)


def assert_golden(result: BacktestResult, golden: Golden) -> None:
    s = result.summary
    overall = s["overall"]
    assert s["run"]["candles"] == golden.candles
    assert str(s["final_equity"]) == golden.final_equity
    assert str(overall["final_equity"]) == golden.final_equity
    assert Decimal(str(s["initial_equity"])) == Decimal(
        "10000"
    )  # reported as "10000.0", see test_cli_backtest
    assert overall["n_orders"] == golden.n_orders
    assert result.engine.stats.n_fills == golden.n_fills
    assert overall["n_trades"] == golden.n_trades
    assert overall["n_open_trades"] == golden.n_open_trades
    assert overall["max_drawdown"] == pytest.approx(golden.max_drawdown, abs=1e-9)
    assert str(overall["fees_paid"]) == golden.fees_paid
    assert s["event_counts"] == golden.event_counts
    positions = {k: Decimal(str(v)) for k, v in s["final_positions"].items()}
    assert positions == {k: Decimal(v) for k, v in golden.final_positions.items()}
    # Attribution invariant: Σ stream PnL (realized − fees + unrealized) = final − initial equity.
    total = sum((Decimal(str(row["total"])) for row in s["per_stream"].values()), start=Decimal(0))
    assert total == Decimal(str(s["final_equity"])) - Decimal(str(s["initial_equity"]))


@pytest.fixture(scope="module")
def sample_result(settings: Settings) -> BacktestResult:
    return backtest(settings)


# ---------------------------------------------------------------- pinned results


def test_sample_1m_backtest_matches_the_golden_numbers(sample_result: BacktestResult) -> None:
    assert sample_result.summary["run"]["base_timeframe"] == "1m"
    halt = "1 gap(s), 80 bars missing: 80 after 2023-03-24 12:39"  # the Binance spot halt
    assert sample_result.summary["run"]["data_gaps"] == f"every symbol: {halt}"
    assert_golden(sample_result, SAMPLE_GOLDEN)


def test_shared_1h_window_backtest_matches_the_golden_numbers(settings: Settings) -> None:
    if not (SHARED / "binance_BTCUSDT_1h.csv.gz").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"shared data is required when CI=true, missing in {SHARED}")
        pytest.skip(f"shared data not found in {SHARED}")
    result = backtest(settings, data_dir=SHARED, timeframe=Timeframe.H1, start_ms=WINDOW[0], end_ms=WINDOW[1])
    assert result.summary["run"]["base_timeframe"] == "1h"
    assert result.summary["overall"]["start_ms"] == WINDOW[0] + 3_600_000  # first candle's close
    assert result.summary["overall"]["end_ms"] == WINDOW[1]
    assert_golden(result, H1_WINDOW_GOLDEN)


# ---------------------------------------------------------------- determinism and storage


def test_running_twice_gives_the_same_summary_but_for_the_run_id(
    settings: Settings, sample_result: BacktestResult
) -> None:
    again = backtest(settings)
    assert again.summary["run"]["run_id"] != sample_result.summary["run"]["run_id"]
    assert canonical(again.summary) == canonical(sample_result.summary)


async def _stored(url: str, run_id: str) -> dict[str, Any]:
    async with SqlEventStore(url) as store:
        run = await store.get_run(run_id)
        assert run is not None
        return {
            "status": run.status,
            "summary_final_equity": (run.summary or {}).get("final_equity"),
            "orders": len(await store.orders(run_id)),
            "fills": len(await store.fills(run_id)),
            "position_events": len(await store.position_events(run_id)),
        }


def assert_stored(url: str, result: BacktestResult) -> None:
    """The database holds the run as completed, with the summary's counts."""
    s = result.summary
    stored = asyncio.run(_stored(url, s["run"]["run_id"]))
    assert stored == {
        "status": "completed",
        "summary_final_equity": str(s["final_equity"]),
        "orders": s["overall"]["n_orders"],
        "fills": result.engine.stats.n_fills,
        "position_events": sum(s["event_counts"].values()),
    }


@pytest.fixture(scope="module")
def sqlite_result(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, BacktestResult]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('golden_sqlite') / 'events.db'}"
    return url, backtest(settings, url)


def test_with_sqlite_the_summary_equals_the_no_db_one_and_the_run_is_stored_completed(
    sample_result: BacktestResult, sqlite_result: tuple[str, BacktestResult]
) -> None:
    url, result = sqlite_result
    assert canonical(result.summary) == canonical(sample_result.summary)
    assert_stored(url, result)


@pytest.mark.postgres
def test_with_postgresql_the_summary_equals_the_sqlite_one_and_the_run_is_stored_completed(
    settings: Settings, pg_url: str, sqlite_result: tuple[str, BacktestResult]
) -> None:
    result = backtest(settings, pg_url)
    assert canonical(result.summary) == canonical(sqlite_result[1].summary)
    assert_stored(pg_url, result)
