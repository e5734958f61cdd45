"""Simulated Binance spot combined-stream websocket: ``/stream?streams=<sym>@kline_1m/...``.

Frames are shaped like the recorded ones (``payloads/binance/ws_kline_combined_real.json``):
8-decimal strings, ``x`` true only on the final update of a candle.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection

from tradebot.exchange_sim.faults import BadTick, SimConnection, VenueFaults
from tradebot.exchange_sim.market import MINUTE_MS, Market, MarketEvent

_EIGHT = Decimal("0.00000001")


def fmt8(value: str | Decimal) -> str:
    """Format a decimal with Binance's 8 decimals and never an exponent (``"24899.18"`` →
    ``"24899.18000000"``, ``"0"`` → ``"0.00000000"``, not ``"0E-8"``)."""
    return f"{Decimal(value).quantize(_EIGHT):f}"


def trade_count(volume: str) -> int:
    """The kline's number of trades: the tape has none, so 100 for a bar with volume, 0 without."""
    return 100 if Decimal(volume) else 0


def kline_frame(symbol: str, event: MarketEvent, event_time_ms: int, bad: BadTick | None = None) -> str:
    """Return the combined-stream kline frame of ``event`` for wire symbol ``symbol`` (altered by
    ``bad``, see :meth:`~tradebot.exchange_sim.faults.VenueFaults.bad_tick`)."""
    bar = event.bar
    quote_volume = (Decimal(bar.volume) * Decimal(bar.close)).quantize(_EIGHT)
    k = {
        "t": bar.open_time_ms,
        "T": bar.open_time_ms + MINUTE_MS - 1,
        "s": symbol,
        "i": "1m",
        "f": bar.open_time_ms // 1000,
        "L": bar.open_time_ms // 1000 + 99,
        "o": fmt8(bar.open),
        "c": fmt8(bar.close),
        "h": fmt8(bar.high),
        "l": fmt8(bar.low),
        "v": fmt8(bar.volume),
        "n": trade_count(bar.volume),
        "x": event.final,
        "q": fmt8(quote_volume),
        "V": fmt8(Decimal(bar.volume) / 2),
        "Q": fmt8(quote_volume / 2),
        "B": "0",
    }
    if bad is not None:
        bad.apply(k)
    data = {"e": "kline", "E": event_time_ms, "s": symbol, "k": k}
    return json.dumps({"stream": f"{symbol.lower()}@kline_1m", "data": data}, separators=(",", ":"))


def malformed_frame(kind: str, symbol: str, event: MarketEvent, event_time_ms: int) -> str:
    """Return a malformed variant (``bad_json``, ``missing_field``, ``negative_price``, ``high_below_low``)."""
    frame = json.loads(kline_frame(symbol, event, event_time_ms))
    k = frame["data"]["k"]
    k["x"] = True
    if kind == "bad_json":
        return json.dumps(frame)[:-7]
    if kind == "missing_field":
        del k["c"]
    elif kind == "negative_price":
        k["l"] = "-" + k["l"]
    elif kind == "high_below_low":
        k["h"], k["l"] = k["l"], k["h"]
    return json.dumps(frame)


def shutdown_frame(event_time_ms: int) -> str:
    """Return the combined-stream ``serverShutdown`` frame."""
    return json.dumps({"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": event_time_ms}})


def requested_symbols(path: str) -> list[str] | None:
    """Return the wire symbols of a ``/stream?streams=a@kline_1m/b@kline_1m`` path, or ``None``."""
    parts = urlsplit(path)
    if parts.path != "/stream":
        return None
    streams = parse_qs(parts.query).get("streams", [""])[0]
    symbols = []
    for name in filter(None, streams.split("/")):
        sym, _, channel = name.partition("@")
        if channel != "kline_1m":
            return None
        symbols.append(sym.upper())
    return symbols or None


class BinanceStreams:
    """Fans the market's events out to Binance combined-stream connections, through the faults."""

    def __init__(self, market: Market, faults: VenueFaults) -> None:
        self.market, self.faults = market, faults
        self._subs: dict[SimConnection, set[str]] = {}
        market.subscribe(self._on_events)

    def _on_events(self, events: list[MarketEvent]) -> None:
        now = self.market.now_ms
        if self.faults.shutdown_requested:
            self.faults.shutdown_requested = 0
            for conn in self._subs:
                conn.send(shutdown_frame(now))
                asyncio.get_running_loop().call_later(0.05, conn.abort)
        events = self.faults.transform(events)
        malformed, self.faults.pending_malformed = self.faults.pending_malformed, []
        bad = {
            id(e): tick
            for e in events
            if e.final and (tick := self.faults.take_bad_tick(e.symbol, e.bar.open_time_ms)) is not None
        }
        for conn, symbols in self._subs.items():
            for kind in malformed:
                if events:
                    conn.send(malformed_frame(kind, events[0].symbol, events[0], now))
            for event in events:
                if event.symbol in symbols:
                    conn.send(kline_frame(event.symbol, event, now + 5, bad.get(id(event))))

    async def handle(self, ws: ServerConnection, path: str) -> None:
        """Serve one connection until it closes or its session limit passes."""
        symbols = set(requested_symbols(path) or ())
        conn = SimConnection(ws, self.faults)
        self.faults.connections.add(conn)
        self._subs[conn] = symbols
        for event in self.market.opening_events():
            if event.symbol in symbols:
                conn.send(kline_frame(event.symbol, event, self.market.now_ms))
        try:
            async with asyncio.TaskGroup() as tg:
                pump = tg.create_task(conn.pump())
                limit = tg.create_task(conn.enforce_session_limit())
                await ws.wait_closed()
                pump.cancel()
                limit.cancel()
        finally:
            self._subs.pop(conn, None)
            self.faults.connections.discard(conn)
