"""The simulator's market: real candles from CSV files and a candle clock that replays them.

Time is simulated: it starts at ``start_ms`` and advances one minute every ``minute_wall_s`` wall
seconds, unless the clock is paused (:meth:`Market.pause` / :meth:`Market.resume`: a test holds the
market still while the client under test is down; :meth:`Market.step` still advances it by hand). At
each minute boundary the market publishes the final values of the candle that just
closed, then the first (open) values of the new candle, to every subscriber.
"""

from __future__ import annotations

import asyncio
import bisect
import csv
import gzip
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from tradebot.core.domain import Candle, Timeframe

MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class Bar:
    """One real candle; prices/volume kept as the file's exact decimal strings."""

    open_time_ms: int
    open: str
    high: str
    low: str
    close: str
    volume: str

    def opening(self) -> Bar:
        """Return the first update of the candle: every price equals ``open``, volume 0."""
        return Bar(self.open_time_ms, self.open, self.open, self.open, self.open, "0")

    def to_candle(self, symbol: str, timeframe: Timeframe = Timeframe.M1) -> Candle:
        """Return the bar as a domain candle of ``symbol``."""
        return Candle(
            symbol,
            timeframe,
            self.open_time_ms,
            float(self.open),
            float(self.high),
            float(self.low),
            float(self.close),
            float(self.volume),
        )


class Tape:
    """Real candles per Binance wire symbol (``"BTCUSDT"``) and timeframe.

    Loads ``<data_dir>/binance_<SYMBOL>_<tf>.csv.gz`` (header ``open_time_ms,open,high,low,close,volume``)
    for each symbol and each timeframe whose file exists (1m is required).

    Raises
    ------
    FileNotFoundError
        If a symbol's 1m file is missing.
    """

    def __init__(
        self,
        data_dir: str | Path,
        symbols: Iterable[str],
        timeframes: Iterable[str] = ("1m", "1h", "4h", "1d"),
    ) -> None:
        self.data_dir = Path(data_dir)
        self._bars: dict[tuple[str, str], list[Bar]] = {}
        self._opens: dict[tuple[str, str], list[int]] = {}
        for symbol in symbols:
            for tf in timeframes:
                path = self.data_dir / f"binance_{symbol}_{tf}.csv.gz"
                if not path.exists():
                    if tf == "1m":
                        raise FileNotFoundError(f"1m candles of {symbol} not found, was {str(path)!r}")
                    continue
                bars = _read_bars(path)
                self._bars[(symbol, tf)] = bars
                self._opens[(symbol, tf)] = [b.open_time_ms for b in bars]
        self.symbols = tuple(dict.fromkeys(symbols))

    def has(self, symbol: str, timeframe: str) -> bool:
        """True when candles of ``symbol`` at ``timeframe`` are loaded."""
        return (symbol, timeframe) in self._bars

    def first_open_ms(self, symbol: str) -> int:
        """Open time of the first 1m candle of ``symbol``, ms UTC."""
        return self._opens[(symbol, "1m")][0]

    def last_open_ms(self, symbol: str) -> int:
        """Open time of the last 1m candle of ``symbol``, ms UTC."""
        return self._opens[(symbol, "1m")][-1]

    def bars(self, symbol: str, timeframe: str, since_ms: int, until_ms: int) -> list[Bar]:
        """Return the bars with ``since_ms <= open_time_ms < until_ms`` (empty when not loaded)."""
        key = (symbol, timeframe)
        if key not in self._bars:
            return []
        opens = self._opens[key]
        lo, hi = bisect.bisect_left(opens, since_ms), bisect.bisect_left(opens, until_ms)
        return self._bars[key][lo:hi]

    def window(self, symbol: str, timeframe_ms: int, since_ms: int, until_ms: int) -> list[Bar]:
        """Return ``timeframe_ms`` bars with ``since_ms <= open_time_ms < until_ms``: the loaded ones, or
        aggregated exactly (Decimal) from the longest loaded timeframe that divides ``timeframe_ms``
        (5m from 1m, 2h from 1h), as the venue builds them from its trades; empty when none divides.

        Aggregated periods are UTC-aligned; a period is built from the bars it has (a real gap
        leaves it short, a period without bars is absent). The caller drops periods not yet closed.
        """
        loaded = sorted(
            (tf for (sym, tf) in self._bars if sym == symbol), key=lambda tf: Timeframe(tf).ms, reverse=True
        )
        for tf in loaded:
            ms = Timeframe(tf).ms
            if ms == timeframe_ms:
                return self.bars(symbol, tf, since_ms, until_ms)
            if timeframe_ms % ms == 0:
                lo = since_ms - since_ms % timeframe_ms
                return aggregate(self.bars(symbol, tf, lo, until_ms), timeframe_ms, since_ms)
        return []

    def bar(self, symbol: str, open_ms: int) -> Bar | None:
        """Return the 1m bar opened at ``open_ms`` or ``None`` (no trading that minute)."""
        found = self.bars(symbol, "1m", open_ms, open_ms + 1)
        return found[0] if found else None


def aggregate(bars: list[Bar], period_ms: int, since_ms: int) -> list[Bar]:
    """Return ``bars`` (ascending) merged into UTC-aligned periods of ``period_ms`` opening at or after
    ``since_ms``: first open, max high, min low, last close, summed volume (exact decimal strings)."""
    out: list[Bar] = []
    group: list[Bar] = []
    for bar in [*bars, None]:
        start = None if bar is None else bar.open_time_ms - bar.open_time_ms % period_ms
        if group and (bar is None or start != group[0].open_time_ms - group[0].open_time_ms % period_ms):
            first = group[0].open_time_ms - group[0].open_time_ms % period_ms
            if first >= since_ms:
                high = max((b.high for b in group), key=Decimal)
                low = min((b.low for b in group), key=Decimal)
                volume = sum((Decimal(b.volume) for b in group), Decimal(0))
                out.append(Bar(first, group[0].open, high, low, group[-1].close, f"{volume.normalize():f}"))
            group = []
        if bar is not None:
            group.append(bar)
    return out


def _read_bars(path: Path) -> list[Bar]:
    with gzip.open(path, "rt", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        if header != ["open_time_ms", "open", "high", "low", "close", "volume"]:
            raise ValueError(f"unexpected CSV header in {path}, was {header!r}")
        return [Bar(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in reader]


@dataclass(frozen=True, slots=True)
class MarketEvent:
    """One candle update published by the market: ``final`` values of a closed candle, or the
    opening values of a new one."""

    symbol: str
    bar: Bar
    final: bool


Subscriber = Callable[[list[MarketEvent]], None]


class Market:
    """Candle clock over a :class:`Tape`.

    Parameters
    ----------
    tape
        The candles.
    start_ms
        Simulated start time (a minute boundary), ms UTC.
    minute_wall_s
        Wall seconds per simulated minute (0.05 = 1200× speed-up).
    end_ms
        Stop advancing at this simulated time (default: the tape's last minute + 1).
    on_minute
        Optional hook called with the new simulated time after each minute (random faults).
    """

    def __init__(
        self,
        tape: Tape,
        *,
        start_ms: int,
        minute_wall_s: float,
        end_ms: int | None = None,
        on_minute: Callable[[int], None] | None = None,
    ) -> None:
        if start_ms % MINUTE_MS:
            raise ValueError(f"start_ms must be a minute boundary, was {start_ms!r}")
        if minute_wall_s <= 0:
            raise ValueError(f"minute_wall_s must be > 0, was {minute_wall_s!r}")
        self.tape = tape
        self.now_ms = start_ms
        self.start_ms = start_ms
        self.minute_wall_s = minute_wall_s
        self.end_ms = (
            end_ms if end_ms is not None else max(tape.last_open_ms(s) for s in tape.symbols) + MINUTE_MS
        )
        self._subscribers: list[Subscriber] = []
        self._on_minute = on_minute
        self.finished = False
        self._stepped = asyncio.Event()
        self._running = asyncio.Event()
        self._running.set()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Register ``subscriber`` (called synchronously with each minute's events); returns an unsubscribe."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber) if subscriber in self._subscribers else None

    def opening_events(self) -> list[MarketEvent]:
        """Events describing the candle currently forming (sent to a new subscriber)."""
        events = []
        for symbol in self.tape.symbols:
            bar = self.tape.bar(symbol, self.now_ms)
            if bar is not None:
                events.append(MarketEvent(symbol, bar.opening(), final=False))
        return events

    def history(self, symbol: str, since_ms: int, until_ms: int, unified: str) -> list[Candle]:
        """Closed 1m candles of ``symbol`` with ``since_ms <= open < min(until_ms, now)``, as ``unified``."""
        until = min(until_ms, self.now_ms)
        return [b.to_candle(unified) for b in self.tape.bars(symbol, "1m", since_ms, until)]

    def last_price(self, symbol: str) -> str | None:
        """Return the price of ``symbol`` now (the ticker's last trade price, a decimal string): the
        open of the forming 1m candle, else the close of the last closed one within a day, else
        ``None``."""
        forming = self.tape.bar(symbol, self.now_ms)
        if forming is not None:
            return forming.open
        recent = self.tape.bars(symbol, "1m", self.now_ms - 86_400_000, self.now_ms)
        return recent[-1].close if recent else None

    @property
    def paused(self) -> bool:
        """True while the clock is paused (:meth:`run` does not advance)."""
        return not self._running.is_set()

    def pause(self) -> None:
        """Hold the clock: :meth:`run` advances no minute until :meth:`resume` (manual steps still work)."""
        self._running.clear()

    def resume(self) -> None:
        """Let the clock run again (a minute that came due while paused is taken at once)."""
        self._running.set()

    async def run(self) -> None:
        """Advance the clock until ``end_ms``; publishes each minute's events (waits while paused)."""
        while self.now_ms < self.end_ms:
            await asyncio.sleep(self.minute_wall_s)
            await self._running.wait()
            if self.now_ms < self.end_ms:
                self.step()
        self.finished = True

    def step(self) -> None:
        """Advance one simulated minute and publish the closed candles and the new openings."""
        closed_open = self.now_ms
        self.now_ms += MINUTE_MS
        events = []
        for symbol in self.tape.symbols:
            bar = self.tape.bar(symbol, closed_open)
            if bar is not None:
                events.append(MarketEvent(symbol, bar, final=True))
        events.extend(self.opening_events())
        if self._on_minute is not None:
            self._on_minute(self.now_ms)
        for subscriber in list(self._subscribers):
            subscriber(events)
        stepped, self._stepped = self._stepped, asyncio.Event()
        stepped.set()

    async def wait_until(self, ms: int, timeout_s: float) -> None:
        """Wait (wall ``timeout_s`` at most) until the simulated time reaches ``ms``.

        Raises
        ------
        TimeoutError
            If the time is not reached in time.
        """
        async with asyncio.timeout(timeout_s):
            while self.now_ms < ms:
                await self._stepped.wait()
