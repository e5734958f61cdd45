"""The position dataset of ``tradebot ml dataset`` (issue 16, item 1): one row per open position at
each rebalance-clock close of a backtest over stored candles.

A row joins three things, each known at the row's time ``t`` only (the leakage test poisons every
candle after ``t`` and finds the row's features unchanged):

- the position as the engine held it (:class:`~tradebot.app.ml.observer.ClockObserver`);
- the symbol's market features on the rebalance-timeframe candles known at ``t``
  (:class:`~tradebot.core.ml.MarketTracker`: the warm-up's native candles, then the base candles
  aggregated as the engine aggregates them);
- the asset's stream states and confidences.

The labels (:func:`~tradebot.core.ml.position_labels`) read the base candles after ``t`` within the
horizon, and never past the window's end: the last ``horizon`` periods of a window have no labels,
so datasets of disjoint windows share no candle.
"""

from __future__ import annotations

import decimal
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from tradebot.adapters.feeds.columns import CandleColumns
from tradebot.app.backtest.backtest import (
    DECIMAL_PRECISION,
    BacktestOptions,
    LoadedData,
    _prepare,
    load_data,
    warmup_lookback_bars,
    with_symbols,
)
from tradebot.app.backtest.replay import replay_into
from tradebot.app.ml.manifest import RunInfo, build_manifest, config_hash
from tradebot.app.ml.observer import ClockObserver, OpenPosition
from tradebot.app.settings import Settings
from tradebot.core.domain import Candle, Symbol, Timeframe
from tradebot.core.ml import (
    LABEL_NAMES,
    CandleArrays,
    FeatureConfig,
    LabelConfig,
    MarketState,
    MarketTracker,
    PositionState,
    feature_names,
    position_features,
    position_labels,
)
from tradebot.core.signals.aggregator import CandleAggregator
from tradebot.errors import ConfigError

__all__ = ["ID_COLUMNS", "Dataset", "DatasetOptions", "Progress", "build_dataset", "schema"]
#: Base candles replayed between two progress reports.
CHUNK = 100_000

#: ``progress(phase, done, total)``: ``phase`` is ``"backtest"`` (candles) or ``"rows"`` (rows).
Progress = Callable[[str, int, int], None]

#: Columns before the features: which position, when, and the numbers the labels start from.
ID_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("run_id", pa.string()),
    ("position_id", pa.string()),
    ("symbol", pa.string()),
    ("time_ms", pa.int64()),
    ("opened_ms", pa.int64()),
    ("qty_base", pa.float64()),
    ("mark", pa.float64()),
    ("avg_entry", pa.float64()),
    ("initial_risk", pa.float64()),
    ("stop", pa.float64()),
    ("exiting", pa.bool_()),
    ("horizon_end_ms", pa.int64()),
    ("horizon_complete", pa.bool_()),
)
_LABEL_TYPES: dict[str, pa.DataType] = {
    "recovered": pa.bool_(),
    "time_to_best_ms": pa.int64(),
    "scale_in_success": pa.bool_(),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetOptions:
    """What to replay and how to label it.

    Attributes
    ----------
    data_dir, timeframe, symbols, start_ms, end_ms
        As :class:`~tradebot.app.backtest.backtest.BacktestOptions` (window ``start <= open < end``,
        ms UTC; ``None`` = all data, the finest timeframe, the settings' symbols).
    horizon_periods
        Label horizon in rebalance-timeframe periods, int >= 1 (default 24).
    config_file
        The configuration's file, for the manifest only.
    features
        Indicator periods of the market features.
    """

    data_dir: Path
    timeframe: Timeframe | None = None
    symbols: tuple[str, ...] | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    horizon_periods: int = 24
    config_file: Path | None = None
    features: FeatureConfig = field(default_factory=FeatureConfig)


@dataclass(slots=True)
class Dataset:
    """A built dataset: the table and its manifest (the file hash is added when written)."""

    table: pa.Table
    manifest: dict[str, Any]
    n_positions: int
    n_candles: int
    elapsed_s: float


def build_dataset(settings: Settings, options: DatasetOptions, progress: Progress | None = None) -> Dataset:
    """Replay the window through the engine and return one row per open position per clock close.

    Deterministic: the run id is ``ml-<config hash[:12]>`` and nothing reads a clock into the table,
    so the same candles and settings give the same table and manifest.

    Raises
    ------
    ConfigError
        If ``horizon_periods`` is not an int >= 1, or the configuration is invalid.
    DataError
        For missing or malformed candles, or an empty window.
    """
    started = time.perf_counter()
    h = options.horizon_periods
    if isinstance(h, bool) or not isinstance(h, int) or h < 1:
        raise ConfigError(f"horizon must be an integer number of rebalance periods >= 1, was {h!r}")
    decimal.getcontext().prec = DECIMAL_PRECISION
    settings = with_symbols(settings, options.symbols)
    data = load_data(
        settings,
        BacktestOptions(
            data_dir=options.data_dir,
            timeframe=options.timeframe,
            start_ms=options.start_ms,
            end_ms=options.end_ms,
        ),
        lookback_bars=max(warmup_lookback_bars(settings), options.features.warmup_periods),
    )
    digest = config_hash(settings)
    run_id = f"ml-{digest[:12]}"
    observer = _replay(settings, data, run_id, progress)
    clock = Timeframe(settings.rebalance_timeframe)
    markets: dict[str, list[MarketState]] = {
        sym: _market_states(data, sym, clock, options.features) for sym in data.candles
    }
    arrays: dict[str, CandleArrays] = {sym: _arrays(data, sym) for sym in data.candles}
    labels = LabelConfig(
        horizon_ms=h * clock.ms,
        fee_fraction=float(settings.backtest.taker_fee),
        slippage_fraction=settings.backtest.slippage_bps / 10_000,
    )
    stream_tfs = tuple(s.timeframe for s in settings.streams)
    rows = _rows(run_id, observer.positions, markets, arrays, labels, stream_tfs, progress)
    table = _table(rows, stream_tfs)
    n_positions = len({p.position_id for p in observer.positions})
    manifest = build_manifest(
        settings,
        data,
        table,
        run=RunInfo(run_id=run_id, config_hash=digest, n_clock=observer.n_clock, n_positions=n_positions),
        config_file=options.config_file,
        data_dir=options.data_dir,
        requested=(options.start_ms, options.end_ms),
        horizon_periods=h,
        labels=labels,
        features=options.features,
        stream_tfs=stream_tfs,
    )
    return Dataset(
        table=table,
        manifest=manifest,
        n_positions=n_positions,
        n_candles=data.n_candles,
        elapsed_s=time.perf_counter() - started,
    )


def _replay(settings: Settings, data: LoadedData, run_id: str, progress: Progress | None) -> ClockObserver:
    # The backtest of the window with the clock observer as its dispatcher.
    engine, exchange, stream, _warm = _prepare(settings, data, run_id, None)
    observer = ClockObserver(engine, exchange)
    n, lo = len(stream), 0
    while lo < n:
        hi = stream.slice_end(min(lo + CHUNK, n))
        replay_into(observer, stream, lo, hi)
        lo = hi
        if progress is not None:
            progress("backtest", hi, n)
    return observer


def _market_states(
    data: LoadedData, sym: Symbol, clock: Timeframe, config: FeatureConfig
) -> list[MarketState]:
    # Market features after each clock candle of sym: the native warm-up candles, then the base
    # candles aggregated to the clock (each known when the base candle that closed it closed).
    tracker = MarketTracker(config)
    native = sorted(
        (c for c in data.warmup if c.symbol == sym and c.timeframe == clock), key=lambda c: c.open_time_ms
    )
    out = [tracker.update(c) for c in native]
    last_open = native[-1].open_time_ms if native else None
    agg = CandleAggregator(sym, data.base, [clock])
    base_ms = data.base.ms
    cols = data.candles[sym]
    step = 50_000
    for lo in range(0, len(cols), step):
        batch: Sequence[Candle] = cols[lo : lo + step]
        for candle in batch:
            for closed in agg.update(candle):
                if last_open is None or closed.open_time_ms > last_open:
                    out.append(tracker.update(closed, candle.open_time_ms + base_ms))
    return out


def _arrays(data: LoadedData, sym: Symbol) -> CandleArrays:
    cols = CandleColumns.from_candles(sym, data.base, data.candles[sym])
    t, o, hi, lo, c, _v = cols.columns()
    return CandleArrays(
        open_ms=t, open=o, high=hi, low=lo, close=c, base_ms=data.base.ms, end_ms=int(t[-1]) + data.base.ms
    )


def _rows(
    run_id: str,
    positions: Sequence[OpenPosition],
    markets: dict[str, list[MarketState]],
    arrays: dict[str, CandleArrays],
    labels: LabelConfig,
    stream_tfs: tuple[str, ...],
    progress: Progress | None,
) -> list[dict[str, Any]]:
    known = {sym: [m.known_ms for m in states] for sym, states in markets.items()}
    rows: list[dict[str, Any]] = []
    n = len(positions)
    for i, p in enumerate(positions):
        states, times = markets[p.symbol], known[p.symbol]
        k = bisect_right(times, p.time_ms) - 1
        market = states[k] if k >= 0 else None
        e = bisect_right(times, p.opened_ms) - 1
        state = PositionState(
            time_ms=p.time_ms,
            opened_ms=p.opened_ms,
            mark=p.mark,
            avg_entry=p.avg_entry,
            initial_risk=p.initial_risk,
            stop=p.stop,
            mae_fraction=p.mae_fraction,
            mfe_fraction=p.mfe_fraction,
            trailing=p.trailing,
            position_fraction=p.qty_base * p.mark / p.equity if p.equity > 0 else None,
            exposure_fraction=p.exposure_quote / p.equity if p.equity > 0 else None,
            entry_volume=states[e].volume if e >= 0 else None,
        )
        lab = position_labels(
            arrays[p.symbol],
            time_ms=p.time_ms,
            mark=p.mark,
            avg_entry=p.avg_entry,
            stop=p.stop,
            config=labels,
        )
        row: dict[str, Any] = {
            "run_id": run_id,
            "position_id": p.position_id,
            "symbol": p.symbol,
            "time_ms": p.time_ms,
            "opened_ms": p.opened_ms,
            "qty_base": p.qty_base,
            "mark": p.mark,
            "avg_entry": p.avg_entry,
            "initial_risk": p.initial_risk,
            "stop": p.stop,
            "exiting": p.exiting,
            "horizon_end_ms": p.time_ms + labels.horizon_ms,
            "horizon_complete": lab.horizon_complete,
        }
        row.update(position_features(state, market, p.streams, stream_tfs))
        row.update({name: getattr(lab, name) for name in LABEL_NAMES})
        rows.append(row)
        if progress is not None and ((i + 1) % 2_000 == 0 or i + 1 == n):
            progress("rows", i + 1, n)
    return rows


def schema(stream_tfs: Sequence[str]) -> pa.Schema:
    """Return the table's schema: id columns, then the features (float64), then the labels."""
    fields = [pa.field(name, kind) for name, kind in ID_COLUMNS]
    fields += [pa.field(name, pa.float64()) for name in feature_names(stream_tfs)]
    fields += [pa.field(name, _LABEL_TYPES.get(name, pa.float64())) for name in LABEL_NAMES]
    return pa.schema(fields)


def _table(rows: list[dict[str, Any]], stream_tfs: Sequence[str]) -> pa.Table:
    s = schema(stream_tfs)
    return pa.Table.from_pydict({name: [r[name] for r in rows] for name in s.names}, schema=s)
