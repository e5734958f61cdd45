"""Simulated Binance spot REST market endpoints for ccxt: ``/api/v3/time``, ``/api/v3/exchangeInfo``,
``/api/v3/klines`` (plus ``/api/v3/ping``), with injected HTTP 429/418/5xx answers.

Klines are 12-field arrays with 8-decimal strings (``payloads/binance/rest_klines_real_BTCUSDT_1m.json``);
like Binance, the 1m answer includes the candle still forming (its values so far).

``exchangeInfo`` (``data/binance_exchange_info.json``) has today's shape, not the 2021 capture's:
the ``NOTIONAL`` filter (``minNotional`` 5, ``maxNotional`` 9 000 000 USDT) instead of the legacy
``MIN_NOTIONAL``, ``PERCENT_PRICE_BY_SIDE`` and ``TRAILING_DELTA``, ``permissions: []`` with
``permissionSets``, and the rate limits REQUEST_WEIGHT 6000/min, ORDERS 100/10 s and 200 000/day,
RAW_REQUESTS 61 000/5 min (``enums.md`` "Rate limiters"). Symbol fields follow the docs example
(``rest-api.md`` "Exchange information"); BTCUSDT/ETHUSDT filter values are those of ccxt's static
Binance market snapshot (``ts/src/test/static/markets/binance.json``); SOLUSDT keeps the tick and
lot sizes of the real 2021 capture (``payloads/binance/rest_exchangeInfo_real_2021-10-12_*``).
"""

from __future__ import annotations

import json
from decimal import Decimal
from importlib import resources
from typing import Any

from aiohttp import web

from tradebot.exchange_sim.binance_ws import fmt8, trade_count
from tradebot.exchange_sim.faults import VenueFaults
from tradebot.exchange_sim.market import Bar, Market

#: Spot kline intervals (Binance REST docs) → length, ms; 1M (a calendar month) is accepted, never served.
INTERVALS_MS = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
    "1M": 31 * 86_400_000,
}

_ERRORS = {
    429: {"code": -1003, "msg": "Too many requests; current limit of IP is 6000 requests per minute."},
    418: {"code": -1003, "msg": "Way too many requests; IP banned until 1633998600000."},
}


def load_exchange_info() -> dict[str, Any]:
    """Return the recorded real ``exchangeInfo`` (BTCUSDT, ETHUSDT, SOLUSDT) shipped with the simulator."""
    text = resources.files("tradebot.exchange_sim").joinpath("data/binance_exchange_info.json").read_text()
    info: dict[str, Any] = json.loads(text)
    return info


def kline_row(bar: Bar, timeframe_ms: int) -> list[Any]:
    """Return ``bar`` as a Binance REST kline array (open time … ignore)."""
    quote = (Decimal(bar.volume) * Decimal(bar.close)).quantize(Decimal("0.00000001"))
    return [
        bar.open_time_ms,
        fmt8(bar.open),
        fmt8(bar.high),
        fmt8(bar.low),
        fmt8(bar.close),
        fmt8(bar.volume),
        bar.open_time_ms + timeframe_ms - 1,
        fmt8(quote),
        trade_count(bar.volume),
        fmt8(Decimal(bar.volume) / 2),
        fmt8(quote / 2),
        "0",
    ]


class BinanceRest:
    """aiohttp handlers of the Binance market endpoints."""

    def __init__(self, market: Market, faults: VenueFaults) -> None:
        self.market, self.faults = market, faults
        self.exchange_info = load_exchange_info()
        self.requests: list[str] = []

    def routes(self) -> list[web.RouteDef]:
        """Return the routes to add to the simulator's aiohttp app."""
        return [
            web.get("/api/v3/time", self.time),
            web.get("/api/v3/ping", self.ping),
            web.get("/api/v3/exchangeInfo", self.exchange_info_handler),
            web.get("/api/v3/klines", self.klines),
            web.get("/api/v3/ticker/price", self.ticker_price),
        ]

    def _fault(self, request: web.Request) -> web.Response | None:
        self.requests.append(request.path_qs)
        status = self.faults.next_rest_status()
        if status is None:
            return None
        if status in _ERRORS:
            return web.json_response(_ERRORS[status], status=status, headers={"Retry-After": "1"})
        return web.Response(
            status=status, text="<html><body>Service Unavailable</body></html>", content_type="text/html"
        )

    async def time(self, request: web.Request) -> web.Response:
        """``GET /api/v3/time`` → ``{"serverTime": <sim now ms>}``."""
        return self._fault(request) or web.json_response({"serverTime": self.market.now_ms})

    async def ping(self, request: web.Request) -> web.Response:
        """``GET /api/v3/ping`` → ``{}``."""
        return self._fault(request) or web.json_response({})

    async def exchange_info_handler(self, request: web.Request) -> web.Response:
        """``GET /api/v3/exchangeInfo`` → the recorded exchange info with the simulated server time."""
        fault = self._fault(request)
        if fault:
            return fault
        info = dict(self.exchange_info, serverTime=self.market.now_ms)
        return web.json_response(info)

    async def ticker_price(self, request: web.Request) -> web.Response:
        """``GET /api/v3/ticker/price?symbol=`` → ``{"symbol": "BTCUSDT", "price": "27610.00000000"}``:
        the forming candle's open (bad ticks alter the websocket only, so this is the true price);
        -1121 for an unknown symbol; without ``symbol``, every symbol's row, as on Binance."""
        fault = self._fault(request)
        if fault:
            return fault
        symbol = request.query.get("symbol")
        symbols = sorted(self.market.tape.symbols) if symbol is None else [symbol]
        rows = []
        for sym in symbols:
            price = self.market.last_price(sym) if sym in self.market.tape.symbols else None
            if price is None:
                return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
            rows.append({"symbol": sym, "price": fmt8(price)})
        return web.json_response(rows[0] if symbol is not None else rows)

    async def klines(self, request: web.Request) -> web.Response:
        """``GET /api/v3/klines?symbol=&interval=&startTime=&endTime=&limit=`` (limit ≤ 1000, default 500).

        With ``startTime`` the first ``limit`` candles from it, else the last ``limit`` up to
        ``endTime``/now. Intervals the tape does not hold (5m, 2h …) are aggregated from it
        (:meth:`Tape.window`); an unknown interval is -1120, an unknown symbol -1121, as on Binance.
        """
        fault = self._fault(request)
        if fault:
            return fault
        q = request.query
        symbol, interval = q.get("symbol", ""), q.get("interval", "")
        if symbol not in self.market.tape.symbols:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        if interval not in INTERVALS_MS:
            return web.json_response({"code": -1120, "msg": "Invalid interval."}, status=400)
        try:
            tf_ms = INTERVALS_MS[interval]
            limit = min(int(q.get("limit", "500")), 1000)
            start = int(q["startTime"]) if "startTime" in q else None
            end = int(q["endTime"]) if "endTime" in q else None
        except (ValueError, KeyError):
            return web.json_response(
                {"code": -1100, "msg": "Illegal characters found in parameter."}, status=400
            )
        now = self.market.now_ms
        hi = min(now + 1, end + 1) if end is not None else now + 1
        bars = self.market.tape.window(symbol, tf_ms, start if start is not None else 0, hi)
        # only the last bar can be the forming one: format limit + 1 bars, not the whole span
        bars = bars[: limit + 1] if start is not None else bars[-(limit + 1) :]
        rows = []
        for bar in bars:
            if bar.open_time_ms + tf_ms > now:  # still forming
                if interval != "1m":
                    continue
                bar = bar.opening()
            rows.append(kline_row(bar, tf_ms))
        rows = rows[:limit] if start is not None else rows[-limit:]
        return web.json_response(rows)
