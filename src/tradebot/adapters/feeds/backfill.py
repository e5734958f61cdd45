"""REST candle history through ccxt: warm-up at start and gap backfill after reconnects.

``fetch_ohlcv`` is paginated (``page_limit`` candles per request), throttled with
``asyncio-throttle`` and its read errors retried with tenacity (only
:class:`~tradebot.errors.VenueUnavailable`, bounded in attempts and time, exponential backoff with
jitter). ccxt errors are mapped once, here, to :mod:`tradebot.errors`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import ccxt.async_support as ccxt
import structlog
from asyncio_throttle.throttler import Throttler
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from tradebot.adapters.feeds.schemas_common import excerpt
from tradebot.core.domain import Candle, Timeframe, floor_time, validate_candle
from tradebot.errors import DataError, RateLimited, VenueBanned, VenueError, VenueUnavailable

log = structlog.get_logger("tradebot.feeds.backfill")
T = TypeVar("T")

BINANCE_REST_URL = "https://api.binance.com"
BINANCE_TESTNET_REST_URL = "https://testnet.binance.vision"
DERIBIT_REST_URL = "https://www.deribit.com"
DERIBIT_TESTNET_REST_URL = "https://test.deribit.com"


@dataclass(frozen=True, slots=True, kw_only=True)
class BackfillConfig:
    """Settings of REST backfill (env prefix ``TRADEBOT_FEEDS__BACKFILL__``).

    Attributes
    ----------
    page_limit
        Candles per ``fetch_ohlcv`` request (default 1000: Binance spot max; Deribit allows 5000).
    rate_limit, rate_period_s
        At most ``rate_limit`` requests per ``rate_period_s`` seconds (default 5 per 1 s), on top of
        ccxt's own rate limiter.
    retry_attempts, retry_max_delay_s
        Stop retrying a read after this many attempts or this many seconds (default 6 / 60 s).
    retry_initial_s, retry_max_wait_s, retry_jitter_s
        Exponential wait ``initial·2**n`` capped at ``max_wait`` plus uniform jitter up to
        ``jitter`` seconds (defaults 0.5 / 10 / 1). Tests set them near zero.
    timeout_ms
        ccxt HTTP timeout, milliseconds (default 10000).
    """

    page_limit: int = 1000
    rate_limit: int = 5
    rate_period_s: float = 1.0
    retry_attempts: int = 6
    retry_max_delay_s: float = 60.0
    retry_initial_s: float = 0.5
    retry_max_wait_s: float = 10.0
    retry_jitter_s: float = 1.0
    timeout_ms: int = 10_000


def make_binance(rest_url: str = BINANCE_REST_URL, *, timeout_ms: int = 10_000) -> Any:
    """Return a ``ccxt.async_support.binance`` for public spot data at ``rest_url`` (scheme://host[:port]).

    Only the spot market list is loaded (``options.fetchMarkets.types = ['spot']``) and currencies
    are not fetched (a private endpoint); ``urls['api']['public'|'private']`` point at ``rest_url``.
    """
    exchange = ccxt.binance(
        {
            "enableRateLimit": True,
            "timeout": timeout_ms,
            "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False},
        }
    )
    base = rest_url.rstrip("/")
    exchange.urls["api"]["public"] = base + "/api/v3"
    exchange.urls["api"]["private"] = base + "/api/v3"
    return exchange


def make_deribit(rest_url: str = DERIBIT_REST_URL, *, timeout_ms: int = 10_000) -> Any:
    """Return a ``ccxt.async_support.deribit`` whose ``urls['api']['rest']`` is ``rest_url``."""
    exchange = ccxt.deribit({"enableRateLimit": True, "timeout": timeout_ms})
    exchange.urls["api"]["rest"] = rest_url.rstrip("/")
    return exchange


def map_ccxt_error(exc: Exception) -> VenueError | DataError:
    """Map a ccxt exception to the tradebot taxonomy (429 → RateLimited, 418 → VenueBanned,
    network/5xx → VenueUnavailable, bad response → DataError, anything else → VenueError)."""
    text = excerpt(exc, 200)
    if isinstance(exc, ccxt.RateLimitExceeded):
        return RateLimited(text)
    if isinstance(exc, ccxt.DDoSProtection):
        # ccxt raises DDoSProtection for both HTTP 418 (IP ban) and 429 (Binance); the status is in the text
        return VenueBanned(text) if re.search(r"\b418\b", str(exc)[:40]) else RateLimited(text)
    if isinstance(exc, ccxt.NetworkError):
        return VenueUnavailable(text)
    if isinstance(exc, ccxt.BadResponse):
        return DataError(text)
    return VenueError(text)


class CcxtHistory:
    """Candle history of one venue through a ccxt exchange (``HistorySource`` of the feeds).

    Parameters
    ----------
    exchange
        A ``ccxt.async_support`` exchange (see :func:`make_binance` / :func:`make_deribit`); the
        caller closes it (``await exchange.close()``).
    config
        Pagination, throttling and retry settings.
    """

    def __init__(self, exchange: Any, config: BackfillConfig | None = None) -> None:
        self.exchange = exchange
        self.config = config or BackfillConfig()
        self._throttler = Throttler(rate_limit=self.config.rate_limit, period=self.config.rate_period_s)

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        cfg = self.config
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(VenueUnavailable),
            stop=stop_after_attempt(cfg.retry_attempts) | stop_after_delay(cfg.retry_max_delay_s),
            wait=wait_exponential_jitter(
                multiplier=cfg.retry_initial_s, max=cfg.retry_max_wait_s, jitter=cfg.retry_jitter_s
            ),
            before_sleep=lambda rs: log.warning(
                "rest_retry",
                venue=self.exchange.id,
                call=what,
                attempt=rs.attempt_number,
                error=excerpt(rs.outcome.exception() if rs.outcome else None, 200),
            ),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                async with self._throttler:
                    try:
                        return await fn()
                    except ccxt.BaseError as e:
                        raise map_ccxt_error(e) from e
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def server_time_ms(self) -> int:
        """Return the venue's time, ms UTC (``fetch_time``). Raises ``VenueError`` subclasses."""
        value = await self._call("fetch_time", self.exchange.fetch_time)
        if not isinstance(value, int):
            raise DataError(f"server time must be an int of ms, was {value!r}")
        return value

    async def fetch_candles(
        self, symbol: str, timeframe: Timeframe, since_ms: int, until_ms: int
    ) -> list[Candle]:
        """Return the candles with ``since_ms <= open_time_ms < until_ms``, oldest first, paginated.

        Candles outside the window (e.g. the still-forming one) are dropped; invalid rows raise. A
        page without candles (a venue outage longer than one page, on a venue that pages by time
        window like Deribit) skips ahead by one page window instead of ending the history. A
        timeframe the venue does not serve (Deribit has no 4h) is aggregated from the largest
        :class:`Timeframe` it serves that divides it (:func:`aggregate`).

        Raises
        ------
        VenueError
            ``RateLimited`` / ``VenueUnavailable`` after the retries are exhausted, ``VenueBanned``
            at once (never retried).
        DataError
            A returned row is not a valid candle.
        """
        native = self._native(timeframe)
        if native is not timeframe:
            since = floor_time(since_ms, timeframe)
            end = floor_time(until_ms - 1, timeframe) + timeframe.ms  # the whole last period
            parts = await self._fetch_native(symbol, native, since, end)
            return [c for c in aggregate(parts, timeframe) if since_ms <= c.open_time_ms < until_ms]
        return await self._fetch_native(symbol, timeframe, since_ms, until_ms)

    def _native(self, timeframe: Timeframe) -> Timeframe:
        served = getattr(self.exchange, "timeframes", None) or {}
        if not served or timeframe.value in served:
            return timeframe
        for tf in sorted(Timeframe, key=lambda t: t.ms, reverse=True):
            if tf.ms < timeframe.ms and timeframe.ms % tf.ms == 0 and tf.value in served:
                return tf
        raise VenueError(f"{self.exchange.id} serves no timeframe dividing {timeframe}, was {sorted(served)}")

    async def _fetch_native(
        self, symbol: str, timeframe: Timeframe, since_ms: int, until_ms: int
    ) -> list[Candle]:
        out: list[Candle] = []
        cursor = since_ms
        while cursor < until_ms:
            limit = min(self.config.page_limit, (until_ms - cursor + timeframe.ms - 1) // timeframe.ms)
            rows = await self._call(
                "fetch_ohlcv",
                partial(self.exchange.fetch_ohlcv, symbol, timeframe.value, since=cursor, limit=limit),
            )
            page = [self._candle(symbol, timeframe, row) for row in rows]
            page = [c for c in page if cursor <= c.open_time_ms < until_ms]
            if page:
                out.extend(page)
                cursor = page[-1].open_time_ms + timeframe.ms
            else:  # nothing in this page's window: an outage, or the end of the data
                cursor += limit * timeframe.ms
        return out

    async def warmup(
        self, symbols: Sequence[str], bars: Mapping[Timeframe, int], now_ms: int | None = None
    ) -> dict[tuple[str, Timeframe], list[Candle]]:
        """Return the last ``bars[tf]`` closed candles per symbol and timeframe, fetched natively.

        Parameters
        ----------
        symbols
            ccxt unified symbols.
        bars
            Timeframe → number of closed candles needed (e.g. ``{M1: 600, H1: 400, D1: 250}``).
        now_ms
            Reference time (default: the venue's server time).
        """
        now = now_ms if now_ms is not None else await self.server_time_ms()
        result: dict[tuple[str, Timeframe], list[Candle]] = {}
        for tf, count in bars.items():
            until = floor_time(now, tf)
            for symbol in symbols:
                result[(symbol, tf)] = await self.fetch_candles(symbol, tf, until - count * tf.ms, until)
        return result

    @staticmethod
    def _candle(symbol: str, timeframe: Timeframe, row: Sequence[Any]) -> Candle:
        try:
            ts, o, h, lo, c, v = row[:6]
            candle = Candle(
                symbol,
                timeframe,
                int(ts),
                float(o),
                float(h),
                float(lo),
                float(c),
                float(v) if v is not None else 0.0,
            )
        except (TypeError, ValueError) as e:
            raise DataError(f"OHLCV row must be [ts, o, h, l, c, v], was {row!r}") from e
        reason = validate_candle(candle)
        if reason is not None:
            raise DataError(f"invalid REST candle {symbol} @ {candle.open_time_ms}: {reason}")
        return candle


def aggregate(candles: Sequence[Candle], timeframe: Timeframe) -> list[Candle]:
    """Aggregate closed candles (oldest first, one timeframe dividing ``timeframe``) into UTC-aligned
    ``timeframe`` candles: open of the first, max high, min low, close of the last, summed volume;
    ``missing`` counts the absent candles of the period. Periods without candles are not emitted.

    The caller passes only closed candles of closed periods (a period's last candle may be absent:
    a real gap, not a forming candle).
    """
    out: list[Candle] = []
    for c in candles:
        start = floor_time(c.open_time_ms, timeframe)
        last = out[-1] if out else None
        if last is not None and last.open_time_ms == start:
            out[-1] = last._replace(
                high=max(last.high, c.high),
                low=min(last.low, c.low),
                close=c.close,
                volume=last.volume + c.volume,
                missing=last.missing - 1,
            )
        else:
            expected = timeframe.ms // c.timeframe.ms
            out.append(c._replace(timeframe=timeframe, open_time_ms=start, missing=expected - 1))
    return out
