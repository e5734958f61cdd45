"""Binance spot websocket wire format (combined streams) → domain values.

Pure functions: a raw frame (``str``/``bytes``) goes in, a typed message comes out, or
:class:`tradebot.errors.DataError` is raised with the reason. No I/O, no logging (the feed logs).

Reference: binance-spot-api-docs ``web-socket-streams.md`` (Kline/Candlestick Streams, Combined
streams, Server Shutdown).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from tradebot.adapters.feeds.schemas_common import checked, exact_float, excerpt, require, require_int
from tradebot.core.domain import Candle, Timeframe
from tradebot.errors import DataError

_MINUTE_MS = Timeframe.M1.ms


@dataclass(frozen=True, slots=True)
class KlineUpdate:
    """One ``<symbol>@kline_1m`` event.

    Attributes
    ----------
    candle
        The kline's values so far (final when ``closed``), symbol in ccxt unified form.
    closed
        The kline's ``x`` flag: True once the candle is final.
    event_time_ms
        Event time ``E``, ms UTC.
    """

    candle: Candle
    closed: bool
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    """The server announced it will close the connection soon (``serverShutdown`` event)."""

    event_time_ms: int


@dataclass(frozen=True, slots=True)
class ControlResponse:
    """An answer to a control request (``SUBSCRIBE`` …): ``{"result": null, "id": 1}`` or an error."""

    request_id: int | None
    result: object = None
    error_code: int | None = None
    error_msg: str = ""


BinanceMessage = KlineUpdate | ServerShutdown | ControlResponse


def stream_name(wire_symbol: str) -> str:
    """Return the 1m kline stream name of ``wire_symbol`` (``"BTCUSDT"`` → ``"btcusdt@kline_1m"``)."""
    return f"{wire_symbol.lower()}@kline_1m"


def combined_stream_path(wire_symbols: list[str] | tuple[str, ...]) -> str:
    """Return the combined-stream URL path, e.g. ``/stream?streams=btcusdt@kline_1m/ethusdt@kline_1m``."""
    if not wire_symbols:
        raise ValueError("wire_symbols must not be empty, was []")
    return "/stream?streams=" + "/".join(stream_name(s) for s in wire_symbols)


def decode_frame(raw: str | bytes, symbols: Mapping[str, str]) -> BinanceMessage:
    """Decode one text frame of a combined-stream connection.

    Sample kline frame (recorded, ``ws_kline_combined_real.json``)::

        {"stream":"nknusdt@kline_1m","data":{"e":"kline","E":1633998523963,"s":"NKNUSDT",
         "k":{"t":1633998480000,"T":1633998539999,"s":"NKNUSDT","i":"1m","f":19862761,
              "L":19862790,"o":"0.35270000","c":"0.35280000","h":"0.35280000",
              "l":"0.35220000","v":"25877.00000000","n":30,"x":false,"q":"9116.04600000",
              "V":"58.00000000","Q":"20.46240000","B":"0"}}}

    Parameters
    ----------
    raw
        The frame as received.
    symbols
        Wire symbol (``"BTCUSDT"``) → ccxt unified symbol (``"BTC/USDT"``) of the subscribed markets.

    Returns
    -------
    KlineUpdate | ServerShutdown | ControlResponse
        Raw (non-combined) payloads are accepted too.

    Raises
    ------
    DataError
        Bad JSON, an unknown event type or symbol, a missing field, a non-1m interval, an open/close
        time mismatch, a number that is not an exact decimal, or an invalid candle
        (prices ≤ 0, high < low, open/close outside [low, high], volume < 0).
    """
    try:
        msg = json.loads(raw)
    except (ValueError, TypeError) as e:
        raise DataError(f"frame is not valid JSON ({e}): {excerpt(raw, 80)!r}") from None
    if not isinstance(msg, dict):
        raise DataError(f"frame must be a JSON object, was {excerpt(raw, 80)!r}")
    if ("id" in msg and "result" in msg) or ("code" in msg and "msg" in msg):
        return _control(msg)
    data = msg.get("data", msg) if "stream" in msg else msg
    event = require(data, "e", where="data")
    if event == "kline":
        return decode_kline_event(data, symbols)
    if event == "serverShutdown":
        return ServerShutdown(event_time_ms=require_int(data, "E", where="data"))
    raise DataError(f"unexpected event type data.e, was {event!r}")


def decode_kline_event(data: Mapping[str, object], symbols: Mapping[str, str]) -> KlineUpdate:
    """Decode the ``data`` object of a kline event (see :func:`decode_frame`). Raises ``DataError``."""
    k = require(data, "k", where="data")
    wire_symbol = require(k, "s", where="k")
    unified = symbols.get(wire_symbol) if isinstance(wire_symbol, str) else None
    if unified is None:
        raise DataError(f"kline for an unsubscribed symbol k.s, was {wire_symbol!r}")
    interval = require(k, "i", where="k")
    if interval != "1m":
        raise DataError(f"k.i must be '1m', was {interval!r}")
    open_ms = require_int(k, "t", where="k")
    close_ms = require_int(k, "T", where="k")
    if open_ms % _MINUTE_MS != 0 or close_ms != open_ms + _MINUTE_MS - 1:
        raise DataError(f"k.t/k.T must span one aligned minute, were {open_ms!r}/{close_ms!r}")
    closed = require(k, "x", where="k")
    if not isinstance(closed, bool):
        raise DataError(f"k.x must be a boolean, was {closed!r}")
    candle = Candle(
        symbol=unified,
        timeframe=Timeframe.M1,
        open_time_ms=open_ms,
        open=exact_float(require(k, "o", where="k"), field="k.o"),
        high=exact_float(require(k, "h", where="k"), field="k.h"),
        low=exact_float(require(k, "l", where="k"), field="k.l"),
        close=exact_float(require(k, "c", where="k"), field="k.c"),
        volume=exact_float(require(k, "v", where="k"), field="k.v"),
    )
    return KlineUpdate(
        candle=checked(candle), closed=closed, event_time_ms=require_int(data, "E", where="data")
    )


def _control(msg: dict[str, object]) -> ControlResponse:
    request_id = msg.get("id")
    rid = request_id if isinstance(request_id, int) and not isinstance(request_id, bool) else None
    if "code" in msg:
        code = msg["code"]
        return ControlResponse(
            request_id=rid,
            error_code=code if isinstance(code, int) else None,
            error_msg=str(msg.get("msg", "")),
        )
    return ControlResponse(request_id=rid, result=msg.get("result"))


def unified_symbol(wire_symbol: str, quotes: tuple[str, ...] = ("USDT", "USDC", "BUSD", "BTC", "ETH")) -> str:
    """Return the ccxt unified symbol of a Binance spot id (``"BTCUSDT"`` → ``"BTC/USDT"``).

    Raises
    ------
    ValueError
        If no known quote currency suffixes ``wire_symbol``.
    """
    for quote in quotes:
        if wire_symbol.endswith(quote) and len(wire_symbol) > len(quote):
            return f"{wire_symbol[: -len(quote)]}/{quote}"
    raise ValueError(f"cannot split Binance symbol into base/quote, was {wire_symbol!r}")


def wire_symbol(unified: str) -> str:
    """Return the Binance id of a unified spot symbol (``"BTC/USDT"`` → ``"BTCUSDT"``).

    Raises
    ------
    ValueError
        If ``unified`` is not of the form ``BASE/QUOTE``.
    """
    base, sep, quote = unified.partition("/")
    if not sep or not base or not quote or ":" in quote:
        raise ValueError(f"symbol must look like 'BTC/USDT', was {unified!r}")
    return base + quote
