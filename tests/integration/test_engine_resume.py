"""A restart resumes the same portfolio: snapshot → JSON → restore + warm-up + prime gives the decisions
of an uninterrupted run, for the plain engine and for the managed overlay (trailing peaks, ladders)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradebot.adapters.feeds.replay import merge_by_time
from tradebot.adapters.venues.simulated import SimulatedExchange
from tradebot.app.backtest.backtest import BacktestOptions, load_data
from tradebot.app.backtest.replay import Dispatcher, replay_into, slice_end
from tradebot.app.instruments import default_instruments
from tradebot.app.settings import build_engine_config, load_settings
from tradebot.core.domain import Timeframe
from tradebot.core.engine import Engine

REPO = Path(__file__).resolve().parents[2]
START = 1_680_307_200_000  # 2023-04-01 00:00 UTC
END = 1_681_516_800_000  # 2023-04-15 00:00 UTC


def _setup(config_file: Path | None):
    settings = load_settings(config_file)
    options = BacktestOptions(
        data_dir=REPO / "data" / "sample", timeframe=Timeframe.M1, start_ms=START, end_ms=END
    )
    data = load_data(settings, options)
    stream = list(merge_by_time(data.candles))
    instruments = default_instruments(tuple(data.candles))

    def engine() -> Engine:
        e = Engine(build_engine_config(settings, run_id="resume", base_timeframe=data.base), instruments)
        e.warm_up(data.warmup)
        return e

    exchange = SimulatedExchange(
        instruments=instruments,
        balances={"USDT": settings.backtest.initial_cash},
        slippage_bps=5,
        trade_id_prefix="resume",
    )
    return engine, exchange, stream, settings, instruments


def _without_volatile(records: list) -> list:
    return [repr(r) for r in records]


@pytest.mark.parametrize("config", [None, REPO / "config" / "managed.toml"], ids=["plain", "managed"])
@pytest.mark.parametrize("cut_fraction", [0.37, 0.81])
@pytest.mark.parametrize("book", [True, False], ids=["book-in-snapshot", "replay"])
def test_restart_from_snapshot_gives_the_uninterrupted_decisions(config, cut_fraction, book) -> None:
    # book-in-snapshot: the signal book restored from the checkpoint, nothing replayed (bounded
    # restart); replay: a snapshot without it (older checkpoints) rebuilt by priming every candle.
    _resume_matches(config, cut_fraction, book=book)


#: The managed overlay with the searchable knobs off their defaults (4h ATR, block-entries halt).
_KNOBS = """
[management]
preset = "managed"
reentry = "{reentry}"
reentry_periods = 3
atr_timeframe = "4h"

[risk]
max_position_fraction = 0.5
daily_loss_action = "block_entries"
"""


@pytest.mark.parametrize("reentry", ["after_periods", "new_high"])
def test_restart_while_a_reentry_lock_waits_gives_the_uninterrupted_decisions(reentry, tmp_path) -> None:
    config = tmp_path / "knobs.toml"
    config.write_text(_KNOBS.format(reentry=reentry), encoding="utf-8")
    saved = _resume_matches(config, 0.5)
    # The cut falls while some symbol waits for its re-entry: the snapshot carries the exit.
    waiting = [m["reentry"] for m in saved["overlay"]["managers"].values() if m["locked"]]
    assert waiting and all(w["exit_ms"] is not None and w["high"] is not None for w in waiting)


def _resume_matches(config: Path | None, cut_fraction: float, *, book: bool = True) -> dict:
    # Run uninterrupted, and again with a snapshot → JSON → restore at the cut; the records must match.
    make_engine, exchange, stream, _settings, _instruments = _setup(config)
    reference = Dispatcher(make_engine(), exchange)
    expected = replay_into(reference, stream, 0, len(stream)) + reference.engine.finish()

    make_engine, exchange, stream, _settings, _instruments = _setup(config)
    cut = slice_end(stream, int(len(stream) * cut_fraction))  # restarts happen between time slices
    first = Dispatcher(make_engine(), exchange)
    got = replay_into(first, stream, 0, cut)
    saved = json.loads(json.dumps(first.engine.snapshot()))
    assert saved["book"] is not None
    if not book:
        saved["book"] = None

    resumed = make_engine()
    if resumed.restore(saved) is not book:
        raise AssertionError("restore must say whether it restored the book")
    if not book:
        resumed.prime(stream[:cut])
    second = Dispatcher(resumed, exchange)
    got += replay_into(second, stream, cut, len(stream)) + resumed.finish()

    assert len(got) == len(expected)
    assert _without_volatile(got) == _without_volatile(expected)
    assert resumed.ledger.cash == reference.engine.ledger.cash
    assert resumed.ledger.positions() == reference.engine.ledger.positions()
    assert resumed.stats.equity_curve == reference.engine.stats.equity_curve
    return saved


def test_restore_refuses_another_runs_snapshot() -> None:
    make_engine, *_ = _setup(None)
    data = make_engine().snapshot()
    data["run_id"] = "other"
    with pytest.raises(ValueError, match="snapshot is of run 'other'"):
        make_engine().restore(data)


@pytest.mark.parametrize("cut_fraction", [0.55, 0.7, 0.9])
def test_restart_with_stops_resting_at_the_venue_gives_the_uninterrupted_decisions(
    cut_fraction, tmp_path
) -> None:
    """With ``stops_at_venue`` the snapshot carries the resting stop orders (and the next stop id):
    the resumed engine keeps routing their fills and cancels and decides as the uninterrupted one."""
    config = tmp_path / "venue_stops.toml"
    config.write_text(
        "stops_at_venue = true\n" + (REPO / "config" / "managed.toml").read_text(), encoding="utf-8"
    )
    saved = _resume_matches(config, cut_fraction)
    assert saved["stops"]["live"]  # the cut falls while a stop rests (1 at 0.55 and 0.7, 2 at 0.9)
