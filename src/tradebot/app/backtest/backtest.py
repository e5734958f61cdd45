"""The backtest driver: stored candles → the one Engine → simulated venue → event store → report.

The hot loop is synchronous (no ``await`` per candle): candles are processed in chunks, and between
chunks the loop yields to the batching store writer and refreshes the progress bar. The engine is the
same object the daemon drives; only the adapters differ.
"""

from __future__ import annotations

import asyncio
import ctypes
import decimal
import gc
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from tradebot import __version__
from tradebot.adapters.feeds.replay import discover, load_candles, load_columns, pick_base_timeframe
from tradebot.adapters.venues.simulated import SimulatedExchange
from tradebot.app.backtest.replay import Dispatcher, ReplayStream, replay_into
from tradebot.app.instruments import default_instruments
from tradebot.app.ml.runtime import model_folder, predictor_for
from tradebot.app.reports.summary import build_run_summary, first_opens
from tradebot.app.settings import Settings, build_engine_config, redacted_dump
from tradebot.core.domain import (
    Candle,
    Instrument,
    StreamSignal,
    Symbol,
    Timeframe,
    TradeRecord,
)
from tradebot.core.engine import Engine
from tradebot.core.ml import FeatureConfig
from tradebot.errors import DataError

if TYPE_CHECKING:  # the store (sqlalchemy) is imported only when a run writes to a database
    from tradebot.adapters.store.event_store import BatchingWriter

log = structlog.get_logger("tradebot.backtest")

CHUNK = 25_000
#: Decimal digits for money maths in the runtime (28 by default; 60 keeps absurd prices from overflowing).
DECIMAL_PRECISION = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestOptions:
    """What to replay and where to write.

    Attributes
    ----------
    data_dir
        Folder with ``binance_<SYM>USDT_<tf>.csv.gz`` files.
    timeframe
        Base timeframe; ``None`` picks the finest one available for every asset.
    symbols
        ccxt symbols (``"BTC/USDT"``); ``None`` uses the settings' symbols.
    start_ms, end_ms
        Replay window, ms UTC (``start <= open_time < end``); ``None`` = all data.
    db_url
        SQLAlchemy async URL, or ``None`` to skip the database (benchmarks).
    out_dir
        Where the JSON summary and the equity chart go (``None`` = nowhere).
    run_id
        Run id; default a fresh ``bt-<uuid>``.
    instruments
        Filters and fees per symbol; ``None`` uses the Binance-like defaults
        (:func:`~tradebot.app.instruments.default_instruments`). A venue's own filters (loaded by
        the daemon) make a backtest comparable with a testnet run.
    """

    data_dir: Path
    timeframe: Timeframe | None = None
    symbols: tuple[str, ...] | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    db_url: str | None = None
    out_dir: Path | None = None
    run_id: str | None = None
    label: str = ""
    instruments: Mapping[Symbol, Instrument] | None = None


@dataclass(slots=True)
class BacktestResult:
    """Outcome of a backtest: the summary dict (see ``app.report``) and the raw material."""

    summary: dict[str, Any]
    engine: Engine
    trades: list[TradeRecord] = field(default_factory=list)
    n_candles: int = 0
    elapsed_s: float = 0.0
    engine_s: float = 0.0


@dataclass(slots=True)
class LoadedData:
    """Candles ready to replay: base candles per symbol and native warm-up candles.

    The base candles are held as columns (:class:`~tradebot.adapters.feeds.columns.CandleColumns`,
    48 bytes a candle; a plain sequence of candles works too) and merged once into the
    :class:`ReplayStream` every run on them shares (:meth:`stream`). Do not modify a symbol's
    candles in place after a run: replace the mapping's value (the stream is then rebuilt).
    """

    base: Timeframe
    candles: dict[Symbol, Sequence[Candle]]
    warmup: list[Candle]
    gaps: dict[Symbol, list[tuple[int, int]]]
    #: Warm-up candles loaded per timeframe before the first base candle (see :func:`warmup_for`).
    lookback_bars: int = 0
    warmup_timeframes: frozenset[Timeframe] = frozenset()
    _stream: tuple[tuple[object, ...], ReplayStream] | None = field(default=None, repr=False, compare=False)

    @property
    def n_candles(self) -> int:
        """Total base candles over all symbols."""
        return sum(len(v) for v in self.candles.values())

    def stream(self) -> ReplayStream:
        """Return the base candles merged in time order, built on first use and then reused."""
        key = tuple((s, c, len(c)) for s, c in self.candles.items())  # columns compare by identity
        if self._stream is None or self._stream[0] != key:
            self._stream = (key, ReplayStream.from_columns(self.candles))
        return self._stream[1]


def warmup_lookback_bars(settings: Settings) -> int:
    """Return the warm-up length of ``settings``, in candles of each stream timeframe (3 x the slowest
    slow EMA)."""
    return max(s.slow for s in settings.streams) * 3


def ml_lookback_bars(settings: Settings) -> int:
    """Rebalance-timeframe candles the position models' market features need before the first
    candle (:attr:`tradebot.core.ml.FeatureConfig.warmup_periods`), 0 without ``[management.ml]``."""
    return FeatureConfig().warmup_periods if model_folder(settings) else 0


def _warmup_timeframes(settings: Settings) -> set[Timeframe]:
    return {Timeframe(s.timeframe) for s in settings.streams} | {Timeframe(settings.rebalance_timeframe)}


def load_data(
    settings: Settings,
    options: BacktestOptions,
    *,
    lookback_bars: int | None = None,
    warmup_timeframes: frozenset[Timeframe] | None = None,
) -> LoadedData:
    """Load base candles and native warm-up candles for the run.

    Parameters
    ----------
    settings, options
        The run; ``options.symbols`` (else ``settings.symbols``) selects the assets.
    lookback_bars
        Warm-up candles to load before the first base candle, per warm-up timeframe; default
        :func:`warmup_lookback_bars` of ``settings``. A study loads once with the widest lookback
        its space can ask for and cuts each trial's warm-up with :func:`warmup_for`.
    warmup_timeframes
        Timeframes to load warm-up candles of; default the stream and rebalance timeframes of
        ``settings``.

    Raises
    ------
    DataError
        If the folder has no files for a symbol, the timeframe is missing, a file is malformed, or the
        window holds no candles.
    """
    symbols = options.symbols or settings.symbols
    files = discover(options.data_dir)
    assets = [s.split("/")[0] for s in symbols]
    for asset, sym in zip(assets, symbols, strict=True):
        if not any(a == asset for a, _tf in files):
            raise DataError(f"no candle files for symbol {sym!r} in {str(options.data_dir)!r}")
    base = pick_base_timeframe(files, assets, options.timeframe)
    candles: dict[Symbol, Sequence[Candle]] = {}
    gaps: dict[Symbol, list[tuple[int, int]]] = {}
    for asset, sym in zip(assets, symbols, strict=True):
        result = load_columns(files[(asset, base)], sym, base, options.start_ms, options.end_ms)
        if not len(result.columns):
            raise DataError(f"no {base} candles for {sym} in the requested window in {files[(asset, base)]}")
        candles[Symbol(sym)] = result.columns
        gaps[Symbol(sym)] = list(result.gaps)
    first_open = min(c[0].open_time_ms for c in candles.values())
    warmup: list[Candle] = []
    stream_tfs = warmup_timeframes if warmup_timeframes is not None else _warmup_timeframes(settings)
    lookback = (
        lookback_bars
        if lookback_bars is not None
        else max(warmup_lookback_bars(settings), ml_lookback_bars(settings))
    )
    for asset, sym in zip(assets, symbols, strict=True):
        for tf in sorted(stream_tfs, key=lambda t: t.ms):
            path = files.get((asset, tf))
            if path is None:
                continue
            start = first_open - lookback * tf.ms
            native = load_candles(path, sym, tf, start, first_open - tf.ms + 1).candles
            warmup.extend(native)
    data = LoadedData(
        base=base,
        candles=candles,
        warmup=warmup,
        gaps=gaps,
        lookback_bars=lookback,
        warmup_timeframes=frozenset(stream_tfs),
    )
    data.stream()  # merged here, so that its temporaries go with the parse buffers
    _release_free_memory()
    return data


def _release_free_memory() -> None:
    # Parsing a file frees ~3x its columns in buffers (text, parsed rows) that glibc keeps in its
    # heap, ~40 MiB for a 5m file: hand them back to the OS, so a worker holding the columns for
    # thousands of runs does not hold those too. No-op without glibc (macOS, musl).
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def warmup_for(settings: Settings, data: LoadedData) -> list[Candle]:
    """Cut the warm-up candles ``settings`` needs out of ``data`` (loaded with a wider lookback), exactly
    as :func:`load_data` would load them for ``settings`` alone.

    Raises
    ------
    DataError
        If ``data`` was loaded with a shorter lookback or without a timeframe ``settings`` warms up on.
    """
    need = warmup_lookback_bars(settings)
    tfs = _warmup_timeframes(settings)
    if need > data.lookback_bars or not tfs <= data.warmup_timeframes:
        raise DataError(
            f"preloaded warm-up covers {data.lookback_bars} candles of "
            f"{sorted(str(t) for t in data.warmup_timeframes)}; the settings need {need} of "
            f"{sorted(str(t) for t in tfs)}"
        )
    first_open = min(c[0].open_time_ms for c in data.candles.values())
    if need == data.lookback_bars and tfs == data.warmup_timeframes:
        return data.warmup
    return [
        c for c in data.warmup if c.timeframe in tfs and c.open_time_ms >= first_open - need * c.timeframe.ms
    ]


def with_symbols(settings: Settings, symbols: tuple[str, ...] | None) -> Settings:
    """Return ``settings`` trading only ``symbols`` (``None``: unchanged), so that the engine, the
    allocation and the instruments are built from the run's assets, not from every configured one.

    Raises
    ------
    ConfigError
        If a symbol is malformed (the settings' own check).
    """
    if not symbols or tuple(symbols) == settings.symbols:
        return settings
    return type(settings).model_validate({**settings.model_dump(), "symbols": tuple(symbols)})


def _prepare(
    settings: Settings, data: LoadedData, run_id: str, instruments: Mapping[Symbol, Instrument] | None
) -> tuple[Engine, SimulatedExchange, ReplayStream, list[StreamSignal]]:
    # Engine (warmed up), simulated venue and replay stream of one run over loaded candles.
    config = build_engine_config(settings, run_id=run_id, base_timeframe=data.base)
    symbols = tuple(data.candles)
    missing = sorted(set(settings.symbols) - set(symbols))
    if missing:
        raise DataError(f"loaded candles lack the configured symbols {missing}; loaded {list(symbols)}")
    chosen = (
        {s: instruments[s] for s in symbols}
        if instruments is not None
        else default_instruments(symbols, taker_fee=settings.backtest.taker_fee)
    )
    engine = Engine(config, chosen, predictor_for(config))
    if engine.ml is not None:  # the models' features warm up on the whole lookback, as the dataset's
        engine.ml.warm_up(data.warmup, settings.rebalance_timeframe)
    warm_signals = list(engine.warm_up(warmup_for(settings, data)))
    exchange = SimulatedExchange(
        instruments=chosen,
        balances={settings.quote: settings.backtest.initial_cash},
        slippage_bps=settings.backtest.slippage_bps,
        max_volume_fraction=settings.backtest.max_volume_fraction,
        trade_id_prefix=f"{run_id}-sim",
    )
    return engine, exchange, data.stream(), warm_signals


def backtest_loaded(
    settings: Settings,
    data: LoadedData,
    *,
    run_id: str | None = None,
    label: str = "",
    instruments: Mapping[Symbol, Instrument] | None = None,
) -> BacktestResult:
    """Run one backtest on already-loaded candles, synchronously, with no database and no chart.

    The trial path of a study: ``data`` is loaded once per process (:func:`load_data` with the widest
    lookback the search space can ask for), and each call cuts the warm-up its own settings need
    (:func:`warmup_for`), so the result equals ``tradebot backtest`` with the same settings and window.

    Parameters
    ----------
    settings
        The run's settings; ``settings.symbols`` must be the symbols of ``data``.
    data
        Candles from :func:`load_data`; not modified, reusable across calls.
    run_id, label
        Run description (default run id ``bt-<uuid>``).
    instruments
        Filters and fees per symbol; default the Binance-like defaults.

    Raises
    ------
    DataError
        If ``data`` lacks a configured symbol or the warm-up the settings need.
    ConfigError
        For an invalid configuration.
    """
    started = time.perf_counter()
    decimal.getcontext().prec = DECIMAL_PRECISION
    rid = run_id or f"bt-{uuid.uuid4().hex[:12]}"
    engine, exchange, stream, _warm = _prepare(settings, data, rid, instruments)
    d = Dispatcher(engine, exchange)
    t0 = time.perf_counter()
    trades: list[TradeRecord] = []
    n, lo = len(stream), 0
    while lo < n:  # chunk by chunk, keeping only the trade records (no store to write the rest to)
        hi = stream.slice_end(min(lo + CHUNK, n))
        trades.extend(r for r in replay_into(d, stream, lo, hi) if type(r) is TradeRecord)
        lo = hi
    final = d.records + engine.finish()
    engine_s = time.perf_counter() - t0
    trades.extend(r for r in final if type(r) is TradeRecord)
    summary = build_run_summary(
        engine=engine,
        trades=trades,
        n_orders=d.n_orders,
        run_id=rid,
        base=data.base,
        n_candles=len(stream),
        gaps=data.gaps,
        **first_opens(data.candles),
        label=label,
    )
    return BacktestResult(
        summary=summary,
        engine=engine,
        trades=_final_trades(trades),
        n_candles=len(stream),
        elapsed_s=time.perf_counter() - started,
        engine_s=engine_s,
    )


async def run_backtest(
    settings: Settings,
    options: BacktestOptions,
    progress: Callable[[int, int], None] | None = None,
    *,
    data: LoadedData | None = None,
) -> BacktestResult:
    """Run one backtest end to end and return its result (summary included).

    ``options.symbols`` narrows the settings to those symbols (the engine trades only them). With
    ``data`` (from :func:`load_data`), the candles are not loaded again.

    Writes the run, orders, fills, trades, position events, stream signals and the equity curve to
    ``options.db_url`` when given. A failure marks the run ``failed`` (never ``completed``) and re-raises.

    Raises
    ------
    DataError
        For missing or malformed data.
    ConfigError
        For an invalid configuration.
    """
    started = time.perf_counter()
    decimal.getcontext().prec = DECIMAL_PRECISION
    settings = with_symbols(settings, options.symbols)
    if data is None:
        data = load_data(settings, options)
    run_id = options.run_id or f"bt-{uuid.uuid4().hex[:12]}"
    engine, exchange, stream, warm_signals = _prepare(settings, data, run_id, options.instruments)
    symbols = tuple(data.candles)
    total = len(stream)
    log.info(
        "backtest_started",
        run_id=run_id,
        base_timeframe=str(data.base),
        candles=total,
        symbols=list(symbols),
        gaps={s: len(g) for s, g in data.gaps.items()},
    )
    store = writer = None
    if options.db_url:
        from tradebot.app.storage import open_store_and_writer

        store, writer = await open_store_and_writer(options.db_url)
        await store.start_run(
            run_id=run_id,
            mode="backtest",
            config=redacted_dump(settings),
            version=__version__,
            started_ms=stream.open_time_ms(0),
        )
        await writer.put(list(warm_signals))
    trades: list[TradeRecord] = []
    pending_writes: list[list[object]] = []

    def on_chunk(done: int, records: list[object]) -> None:
        trades.extend(r for r in records if type(r) is TradeRecord)
        if writer is not None:
            pending_writes.append(records)
        if progress is not None:
            progress(done, total)

    # The loaded candles live as long as the run and hold no cycles: keep the collector from
    # walking them on every full collection (freed by reference counting as usual afterwards).
    gc.freeze()
    try:
        t0 = time.perf_counter()
        dispatcher = await _replay_async(engine, exchange, stream, on_chunk, writer, pending_writes)
        final = dispatcher.records + engine.finish()
        engine_s = time.perf_counter() - t0
        trades.extend(r for r in final if type(r) is TradeRecord)
        summary = build_run_summary(
            engine=engine,
            trades=trades,
            n_orders=dispatcher.n_orders,
            run_id=run_id,
            base=data.base,
            n_candles=total,
            gaps=data.gaps,
            **first_opens(data.candles),
            label=options.label,
        )
        if writer is not None and store is not None:
            await writer.put(final)
            await writer.close()
            await store.finish_run(
                run_id=run_id, status="completed", summary=summary, finished_ms=engine.last_time_ms
            )
    except BaseException:
        gc.unfreeze()
        if writer is not None and store is not None:
            try:
                await writer.close()
            finally:
                await store.finish_run(
                    run_id=run_id, status="failed", summary={}, finished_ms=engine.last_time_ms
                )
                await store.close()
        raise
    gc.unfreeze()
    if store is not None:
        await store.close()
    elapsed = time.perf_counter() - started
    log.info("backtest_finished", run_id=run_id, candles=total, elapsed_s=round(elapsed, 3))
    return BacktestResult(
        summary=summary,
        engine=engine,
        trades=_final_trades(trades),
        n_candles=total,
        elapsed_s=elapsed,
        engine_s=engine_s,
    )


async def _replay_async(
    engine: Engine,
    exchange: SimulatedExchange,
    stream: ReplayStream,
    on_chunk: Callable[[int, list[object]], None],
    writer: BatchingWriter | None,
    pending_writes: list[list[object]],
) -> Dispatcher:
    # Run the synchronous replay chunk by chunk (whole time slices), yielding to the writer between chunks.
    d = Dispatcher(engine, exchange)
    n = len(stream)
    lo = 0
    while lo < n:
        hi = stream.slice_end(min(lo + CHUNK, n))
        sub = replay_into(d, stream, lo, hi)
        on_chunk(hi, sub)
        if writer is not None:
            while pending_writes:
                await writer.put(pending_writes.pop(0))
        await asyncio.sleep(0)
        lo = hi
    return d


def _final_trades(trades: list[TradeRecord]) -> list[TradeRecord]:
    # Keep the last record of each position (a trade is re-recorded as it changes).
    last: dict[str, TradeRecord] = {}
    for t in trades:
        last[t.position_id] = t
    return list(last.values())
