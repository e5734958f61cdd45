"""The backtest's bulk replay of quiet stretches decides exactly what candle-by-candle replay decides.

Real 1m sample candles, the plain and the managed configuration, with a gap cut into one symbol's
data: every record (orders, fills, events, signals, equity snapshots), the ledger and the equity curve
must be identical, and most candles must actually have gone through the bulk path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tradebot.adapters.feeds.replay import merge_by_time
from tradebot.adapters.venues.simulated import SimulatedExchange
from tradebot.app.backtest.backtest import BacktestOptions, load_data
from tradebot.app.backtest.replay import Dispatcher, ReplayStream, replay_into, slice_end
from tradebot.app.instruments import default_instruments
from tradebot.app.settings import build_engine_config, load_settings
from tradebot.core.domain import Timeframe
from tradebot.core.engine import Engine

REPO = Path(__file__).resolve().parents[2]
START = 1_680_307_200_000  # 2023-04-01 00:00 UTC
END = 1_681_516_800_000  # 2023-04-15 00:00 UTC
GAP = (1_680_800_000_000, 1_680_810_000_000)  # ~2.8 h of ETH candles removed (2023-04-06)


def _run(config: Path | None, *, quiet_runs: bool) -> tuple[list[str], Engine, int]:
    settings = load_settings(config)
    data = load_data(
        settings,
        BacktestOptions(
            data_dir=REPO / "data" / "sample", timeframe=Timeframe.M1, start_ms=START, end_ms=END
        ),
    )
    data.candles["ETH/USDT"] = [c for c in data.candles["ETH/USDT"] if not GAP[0] <= c.open_time_ms < GAP[1]]
    instruments = default_instruments(tuple(data.candles))
    engine = Engine(build_engine_config(settings, run_id="quiet", base_timeframe=data.base), instruments)
    engine.warm_up(data.warmup)
    absorbed = 0
    original = engine.on_quiet_run

    def counting(symbol, first, last, n, *rest):
        nonlocal absorbed
        ok = original(symbol, first, last, n, *rest)
        absorbed += n if ok else 0
        return ok

    engine.on_quiet_run = counting  # type: ignore[method-assign]
    exchange = SimulatedExchange(
        instruments=instruments,
        balances={"USDT": settings.backtest.initial_cash},
        slippage_bps=5,
        trade_id_prefix="quiet",
    )
    merged = list(merge_by_time(data.candles))
    stream = ReplayStream.build(merged, data.candles)
    d = Dispatcher(engine, exchange)
    records: list[object] = []
    lo = 0
    while lo < len(merged):  # in chunks, as the backtest does, so runs also end at chunk borders
        hi = slice_end(merged, min(lo + 7_001, len(merged)))
        records += replay_into(d, stream, lo, hi, quiet_runs=quiet_runs)
        lo = hi
    records += engine.finish()
    return [repr(r) for r in records], engine, absorbed


@pytest.mark.parametrize("config", [None, REPO / "config" / "managed.toml"], ids=["plain", "managed"])
def test_quiet_runs_give_the_candle_by_candle_decisions(config) -> None:
    expected, reference, none = _run(config, quiet_runs=False)
    got, engine, absorbed = _run(config, quiet_runs=True)

    assert none == 0
    n_candles = 3 * 14 * 1440 - 167
    assert absorbed > 0.6 * n_candles  # the bulk path did most of the work
    assert len(expected) > 100
    assert got == expected
    assert engine.ledger.cash == reference.ledger.cash
    assert engine.ledger.positions() == reference.ledger.positions()
    assert engine.stats.equity_curve == reference.stats.equity_curve
    assert engine.last_time_ms == reference.last_time_ms
    assert engine.snapshot() == reference.snapshot()


@pytest.mark.parametrize("reentry", ["after_periods", "new_high"])
def test_quiet_runs_give_the_same_decisions_with_the_reentry_policies(reentry, tmp_path) -> None:
    # The policies are judged on rebalance-clock closes, which end every quiet run.
    config = tmp_path / "knobs.toml"
    config.write_text(
        f'[management]\npreset = "managed"\nreentry = "{reentry}"\nreentry_periods = 3\natr_timeframe = "4h"\n',
        encoding="utf-8",
    )
    expected, reference, _ = _run(config, quiet_runs=False)
    got, engine, absorbed = _run(config, quiet_runs=True)
    assert absorbed > 0
    assert sum("PositionEventType.REENTRY_ALLOWED" in r for r in expected) > 10
    assert got == expected
    assert engine.snapshot() == reference.snapshot()
