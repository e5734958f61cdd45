"""``tradebot download``: real candle history through ccxt into the files the backtester reads.

For each symbol it writes ``<data>/<venue>_<BASE><QUOTE>_<tf>.csv.gz`` (``binance_BTCUSDT_5m``,
``deribit_BTCUSDC_1h``; the format of :mod:`tradebot.adapters.feeds.replay`) for the base timeframe
and, with ``--warmup`` (default), for each stream and rebalance timeframe (``1h``/``4h``/``1d``),
from ``3 × max(slow)`` candles before ``--since`` — the window the backtest warms up from
(:func:`tradebot.app.backtest.load_data`). A warm-up timeframe the venue does not serve (Deribit 4h)
is aggregated exactly from the largest served timeframe that divides it.

Paging, throttling, retries and ccxt error mapping are :class:`~tradebot.adapters.feeds.backfill.CcxtHistory`'s
(settings ``TRADEBOT_FEEDS__BACKFILL__*``); the endpoint is the feed's REST URL
(``TRADEBOT_FEEDS__BINANCE__REST_URL`` / ``…__DERIBIT__REST_URL``, or ``--rest-url``), so the local
exchange simulator works as for the daemon. Only candles closed at ``--until`` and at the venue's
server time are stored. Files are resumable after a kill at any point (:mod:`.candle_store`).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tradebot.adapters.feeds.backfill import (
    BINANCE_REST_URL,
    DERIBIT_REST_URL,
    BackfillConfig,
    CcxtHistory,
    make_binance,
    make_deribit,
)
from tradebot.adapters.feeds.candle_files import (
    GapReport,
    Row,
    aggregate_rows,
    find_gaps,
    missing_ranges,
    next_cursor,
    row_from_ohlcv,
)
from tradebot.adapters.feeds.schemas_deribit import unified_symbol as deribit_unified
from tradebot.app.research.candle_store import CandleFile
from tradebot.app.research.download_args import VENUES
from tradebot.app.settings import Settings, load_settings
from tradebot.core.domain import Timeframe, floor_time, ms_to_datetime
from tradebot.errors import ConfigError, VenueUnavailable

_DEFAULT_URL = {"binance": BINANCE_REST_URL, "deribit": DERIBIT_REST_URL}
_QUOTE = {"binance": "USDT", "deribit": "USDC"}
ProgressFn = Callable[[str, int, int, bool], None]  # (file name, native candles done, total, file finished)


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadOptions:
    """What to download.

    Attributes
    ----------
    venue
        ``"binance"`` (spot) or ``"deribit"`` (USDC linear perpetuals).
    symbols
        Raw tokens (``"BTC"``, ``"BTCUSDT"``, ``"BTC/USDT"``); ``None`` = the configured symbols.
    timeframe
        Base timeframe, e.g. ``"5m"``; must be served natively by the venue.
    since_ms, until_ms
        ``[since, until)`` in ms UTC; ``until_ms=None`` = the venue's server time. Candles closing
        after ``until`` or after the server time are never stored.
    data_dir
        Output folder (created if missing).
    warmup
        Also the stream/rebalance timeframes from ``3 × max(slow)`` candles before ``since``.
    rest_url
        Overrides ``feeds.<venue>.rest_url`` (e.g. the simulator's ``http://127.0.0.1:PORT``).
    """

    venue: str = "binance"
    symbols: tuple[str, ...] | None = None
    timeframe: str = "1m"
    since_ms: int
    until_ms: int | None = None
    data_dir: Path = Path("data")
    warmup: bool = True
    rest_url: str | None = None


@dataclass(slots=True)
class FileReport:
    """Outcome for one file: rows added this run, final range and gaps."""

    name: str
    timeframe: Timeframe
    added: int = 0
    replaced: int = 0
    rows: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    gaps: GapReport = field(default_factory=GapReport)


@dataclass(slots=True)
class DownloadResult:
    """All files of a run, with request and throughput counters."""

    files: list[FileReport]
    requests: int = 0
    candles_fetched: int = 0
    elapsed_s: float = 0.0


@dataclass(slots=True)
class _Job:
    symbol: str
    timeframe: Timeframe
    native: Timeframe  # fetched timeframe; differs when aggregated
    store: CandleFile
    ranges: list[tuple[int, int]]


class _History(CcxtHistory):
    """:class:`CcxtHistory` plus raw pages and the market list, through its one retry/throttle path."""

    requests = 0

    async def markets(self) -> dict[str, Any]:
        return await self._call("load_markets", self.exchange.load_markets)

    async def page(self, symbol: str, timeframe: str, since_ms: int, limit: int) -> list[Any]:
        self.requests += 1
        rows = await self._call(
            "fetch_ohlcv", lambda: self.exchange.fetch_ohlcv(symbol, timeframe, since=since_ms, limit=limit)
        )
        return list(rows)


def resolve_symbols(tokens: Sequence[str] | None, settings: Settings, venue: str) -> list[str]:
    """Return ccxt symbols: ``BTC``/``BTCUSDT`` → ``BTC/USDT`` (Binance) or ``BTC/USDC:USDC`` (Deribit)."""
    if tokens is None:
        if venue == "deribit":
            return [deribit_unified(i) for i in settings.feeds.deribit.instruments]
        return list(settings.feeds.binance.symbols or settings.symbols)
    out = []
    quote = _QUOTE[venue] if venue == "deribit" else settings.quote
    for token in tokens:
        t = token.strip().upper()
        if "/" in t:
            out.append(t)
            continue
        base = t[: -len(quote)] if t.endswith(quote) and len(t) > len(quote) else t
        out.append(f"{base}/{quote}:{quote}" if venue == "deribit" else f"{base}/{quote}")
    return list(dict.fromkeys(out))


def file_name(venue: str, symbol: str, timeframe: Timeframe) -> str:
    """``("binance", "BTC/USDT", 5m)`` → ``binance_BTCUSDT_5m.csv.gz``; Deribit ``BTC/USDC:USDC`` → ``deribit_BTCUSDC_…``."""
    base, _, rest = symbol.partition("/")
    return f"{venue}_{base}{rest.split(':')[0]}_{timeframe.value}.csv.gz"


def warmup_plan(settings: Settings) -> tuple[set[Timeframe], int]:
    """Return the warm-up timeframes and bars per timeframe, as :func:`tradebot.app.backtest.load_data`."""
    tfs = {Timeframe(s.timeframe) for s in settings.streams} | {Timeframe(settings.rebalance_timeframe)}
    return tfs, max(s.slow for s in settings.streams) * 3


def _check_inputs(
    venue: str, exchange: Any, markets: dict[str, Any], symbols: list[str], timeframe: str
) -> Timeframe:
    kind = "swap" if venue == "deribit" else "spot"
    unknown = [s for s in symbols if s not in markets]
    if unknown:
        offered = sorted(s for s, m in markets.items() if m.get(kind) and m.get("active", True) is not False)
        shown = ", ".join(offered[:40]) + (f", … ({len(offered)} in all)" if len(offered) > 40 else "")
        raise ConfigError(
            f"--symbols: {venue} does not list {', '.join(map(repr, unknown))}; it offers {shown}"
        )
    served = list(getattr(exchange, "timeframes", None) or {})
    readable = [t for t in served if t in Timeframe._value2member_map_]
    if timeframe not in served or timeframe not in readable:
        why = "does not offer" if timeframe not in served else "offers, but the backtester cannot read,"
        raise ConfigError(
            f"--timeframe: {venue} {why} {timeframe!r}; it offers {', '.join(served)} "
            f"(the backtester reads {', '.join(readable)})"
        )
    return Timeframe(timeframe)


def _native_for(tf: Timeframe, served: Sequence[str]) -> Timeframe | None:
    if tf.value in served:
        return tf
    for cand in sorted(Timeframe, key=lambda t: t.ms, reverse=True):
        if cand.ms < tf.ms and tf.ms % cand.ms == 0 and cand.value in served:
            return cand
    return None


async def _connect(history: _History, venue: str, url: str) -> tuple[int, dict[str, Any]]:
    try:
        now = await history.server_time_ms()
        return now, await history.markets()
    except VenueUnavailable as e:
        host = urlsplit(url).hostname or url
        raise ConfigError(
            f"cannot reach {venue} at {host} ({url}): {e}; check the network or "
            f"TRADEBOT_FEEDS__{venue.upper()}__REST_URL / --rest-url"
        ) from e


async def run_download(
    settings: Settings, options: DownloadOptions, progress: ProgressFn | None = None
) -> DownloadResult:
    """Download, merge and report every file of ``options``.

    Raises
    ------
    ConfigError
        Unknown venue, symbol or timeframe (the message lists what the venue offers), ``since`` not
        before ``until``, or the venue cannot be reached (the message names the host).
    VenueError, DataError
        A page failed after the retries, or the venue sent an invalid candle; rows fetched so far
        stay in the ``.part`` log and the next run resumes from them.
    """
    if options.venue not in VENUES:
        raise ConfigError(f"--exchange must be one of {', '.join(VENUES)}, was {options.venue!r}")
    started = time.monotonic()
    venue = options.venue
    feed = settings.feeds.binance if venue == "binance" else settings.feeds.deribit
    url = options.rest_url or feed.rest_url or _DEFAULT_URL[venue]
    bf = settings.feeds.backfill
    make = make_binance if venue == "binance" else make_deribit
    exchange = make(url, timeout_ms=bf.timeout_ms)
    history = _History(exchange, BackfillConfig(**bf.model_dump()))
    try:
        now_ms, markets = await _connect(history, venue, url)
        symbols = resolve_symbols(options.symbols, settings, venue)
        base = _check_inputs(venue, exchange, markets, symbols, options.timeframe)
        jobs = _plan(settings, options, symbols, base, now_ms, list(exchange.timeframes))
        result = DownloadResult(files=[])
        total = sum((hi - lo) // j.native.ms for j in jobs for lo, hi in j.ranges)
        done = 0
        for job in jobs:
            try:
                for lo, hi in job.ranges:
                    done = await _fetch_range(history, job, lo, hi, venue, result, progress, done, total)
                merged = job.store.commit()
            finally:
                job.store.close()
            result.files.append(_report(job, merged.added, merged.replaced))
            if progress is not None:
                progress(job.store.path.name, done, total, True)
        result.requests = history.requests
        result.elapsed_s = time.monotonic() - started
        return result
    finally:
        await exchange.close()


def _plan(
    settings: Settings,
    options: DownloadOptions,
    symbols: list[str],
    base: Timeframe,
    now_ms: int,
    served: list[str],
) -> list[_Job]:
    until = min(options.until_ms, now_ms) if options.until_ms is not None else now_ms
    if options.since_ms >= until:
        raise ConfigError(
            f"--since must be before --until and the venue's time {ms_to_datetime(until):%Y-%m-%d %H:%M} UTC, "
            f"was {ms_to_datetime(options.since_ms):%Y-%m-%d %H:%M}"
        )
    lookback: dict[Timeframe, int] = {base: 0}
    if options.warmup:
        tfs, bars = warmup_plan(settings)
        lookback.update({tf: bars for tf in tfs})
    options.data_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for symbol in symbols:
        for tf in sorted(lookback, key=lambda t: t.ms):
            native = _native_for(tf, served)
            if native is None:
                raise ConfigError(f"{options.venue} serves no timeframe dividing the warm-up {tf}: {served}")
            lo = floor_time(options.since_ms, tf) - lookback[tf] * tf.ms
            store = CandleFile(options.data_dir / file_name(options.venue, symbol, tf), tf.ms)
            store.load()
            ranges = missing_ranges((lo, floor_time(until, tf)), store.covered(), tf.ms)
            jobs.append(_Job(symbol, tf, native, store, ranges))
    return jobs


async def _fetch_range(
    history: _History,
    job: _Job,
    lo: int,
    hi: int,
    venue: str,
    result: DownloadResult,
    progress: ProgressFn | None,
    done: int,
    total: int,
) -> int:
    store, native_ms, limit_max = job.store, job.native.ms, history.config.page_limit
    aggregated = job.native is not job.timeframe
    store.begin_range(lo, hi)
    carry: list[Row] = []  # native rows of a period that may continue on the next page
    cursor = lo
    where = f"{venue} {job.symbol} {job.native}"
    while cursor < hi:
        limit = min(limit_max, math.ceil((hi - cursor) / native_ms))
        raw = await history.page(job.symbol, job.native.value, cursor, limit)
        rows = [row_from_ohlcv(r, where=where) for r in raw]
        page = sorted(r for r in rows if cursor <= r[0] < hi)
        nxt = min(
            hi, next_cursor(cursor, hi, [r[0] for r in rows], limit, native_ms, windowed=venue == "deribit")
        )
        if aggregated:
            carry += page
            period = job.timeframe.ms
            cut = len(carry) if nxt >= hi else _last_period_start(carry, period)
            page, carry = aggregate_rows(carry[:cut], period), carry[cut:]
        if page:
            store.append(page)
        result.candles_fetched += len(rows)
        done += (nxt - cursor) // native_ms
        cursor = nxt
        if progress is not None:
            progress(store.path.name, done, total, False)
    return done


def _last_period_start(rows: list[Row], period_ms: int) -> int:
    # index of the first row of the last (possibly incomplete) period
    if not rows:
        return 0
    start = rows[-1][0] - rows[-1][0] % period_ms
    i = len(rows)
    while i and rows[i - 1][0] >= start:
        i -= 1
    return i


def _report(job: _Job, added: int, replaced: int) -> FileReport:
    rows = job.store.rows
    opens = [r[0] for r in rows]
    return FileReport(
        name=job.store.path.name,
        timeframe=job.timeframe,
        added=added,
        replaced=replaced,
        rows=len(rows),
        first_ms=opens[0] if opens else None,
        last_ms=opens[-1] if opens else None,
        gaps=find_gaps(opens, job.timeframe.ms),
    )


# -- command line ----------------------------------------------------------------------------------


def _fmt_ms(ms: int | None) -> str:
    return "-" if ms is None else f"{ms_to_datetime(ms):%Y-%m-%d %H:%M}"


def render(result: DownloadResult, console: Console) -> None:
    """Print the per-file summary table and the throughput line."""
    table = Table(title="tradebot download")
    for col in ("file", "added", "rows", "first open (UTC)", "last open (UTC)", "gaps", "largest gap"):
        table.add_column(col, justify="right" if col in ("added", "rows", "gaps") else "left")
    for f in result.files:
        big = f.gaps.largest
        largest = "-" if big is None else f"{big[1]} bars after {_fmt_ms(big[0])}"
        gaps = f"{f.gaps.count} ({f.gaps.missing_bars} bars)"
        table.add_row(
            f.name, f"{f.added:,}", f"{f.rows:,}", _fmt_ms(f.first_ms), _fmt_ms(f.last_ms), gaps, largest
        )
    console.print(table)
    rate = result.candles_fetched / result.elapsed_s if result.elapsed_s > 0 else 0.0
    console.print(
        f"{result.candles_fetched:,} candles in {result.requests:,} requests, "
        f"{result.elapsed_s:.1f} s ({rate:,.0f} candles/s)"
    )


def cmd_download(args: argparse.Namespace) -> int:
    """Run ``tradebot download``; return the exit code (errors raise, the CLI maps them)."""
    settings = load_settings(args.config)
    options = DownloadOptions(
        venue=args.exchange,
        symbols=tuple(t for t in args.symbols.split(",") if t.strip()) if args.symbols else None,
        timeframe=args.timeframe,
        since_ms=args.since,
        until_ms=args.until,
        data_dir=args.data,
        warmup=args.warmup,
        rest_url=args.rest_url,
    )
    console = Console(width=max(170, Console().width))
    err = Console(stderr=True)
    if err.is_terminal:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("candles"),
            TimeElapsedColumn(),
            console=err,
        ) as bar:
            task = bar.add_task("download", total=None)

            def show(name: str, done: int, total: int, finished: bool) -> None:
                bar.update(task, description=name, completed=done, total=total)

            result = asyncio.run(run_download(settings, options, show))
    else:

        def line(name: str, done: int, total: int, finished: bool) -> None:
            if finished:
                print(f"download: {name} done ({done:,}/{total:,} candles)", file=sys.stderr, flush=True)

        result = asyncio.run(run_download(settings, options, line))
    render(result, console)
    return 0
