"""Deribit JSON-RPC 2.0 websocket wire format (``chart.trades`` channel, heartbeats) → domain values.

Pure functions; numbers are parsed from their JSON tokens (``parse_float=Decimal``) so candle
prices are exact. Raises :class:`tradebot.errors.DataError` on anything malformed.

Reference: docs.deribit.com ``chart.trades.{instrument_name}.{resolution}``, ``public/set_heartbeat``,
``public/get_tradingview_chart_data``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from tradebot.adapters.feeds.schemas_common import checked, exact_float, excerpt, require, require_int
from tradebot.core.domain import Candle, Timeframe
from tradebot.errors import DataError

_CHART_PREFIX = "chart.trades."


@dataclass(frozen=True, slots=True)
class ChartUpdate:
    """One ``chart.trades.<instrument>.1`` notification: the current values of a 1m candle.

    ``candle`` is not necessarily final: Deribit repeats the open candle while it forms; the candle
    of tick ``t`` is final once a notification with a later tick arrives.
    """

    instrument: str
    candle: Candle


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A ``heartbeat`` notification; ``kind == "test_request"`` must be answered with ``public/test``."""

    kind: str


@dataclass(frozen=True, slots=True)
class RpcResponse:
    """An answer to one of our requests: ``result`` or (``error_code``, ``error_message``)."""

    request_id: int | None
    result: object = None
    error_code: int | None = None
    error_message: str = ""


DeribitMessage = ChartUpdate | Heartbeat | RpcResponse


def chart_channel(instrument: str) -> str:
    """Return the 1m chart channel of ``instrument`` (``"chart.trades.BTC-PERPETUAL.1"``)."""
    return f"{_CHART_PREFIX}{instrument}.1"


def unified_symbol(instrument: str) -> str:
    """Return the ccxt unified symbol of a Deribit perpetual.

    ``"BTC_USDC-PERPETUAL"`` → ``"BTC/USDC:USDC"`` (linear), ``"BTC-PERPETUAL"`` → ``"BTC/USD:BTC"``
    (inverse), matching ``ccxt.deribit`` market symbols.

    Raises
    ------
    ValueError
        If ``instrument`` is not a perpetual name.
    """
    head, sep, tail = instrument.partition("-")
    if sep != "-" or tail != "PERPETUAL" or not head:
        raise ValueError(f"instrument must be a perpetual like 'BTC-PERPETUAL', was {instrument!r}")
    if "_" in head:
        base, quote = head.split("_", 1)
        return f"{base}/{quote}:{quote}"
    return f"{head}/USD:{head}"


def decode_frame(raw: str | bytes, symbols: Mapping[str, str]) -> DeribitMessage:
    """Decode one JSON-RPC frame.

    Sample chart notification (recorded, ``nautilus_ws_chart.json``)::

        {"jsonrpc": "2.0", "method": "subscription",
         "params": {"channel": "chart.trades.BTC-PERPETUAL.1",
                    "data": {"tick": 1767200040000, "open": 87490.0, "high": 87500.0,
                             "low": 87465.0, "close": 87474.0, "volume": 0.95978896,
                             "cost": 83970.0}}}

    Parameters
    ----------
    raw
        The text frame as received.
    symbols
        Instrument name (``"BTC_USDC-PERPETUAL"``) → ccxt unified symbol of the subscribed instruments.

    Returns
    -------
    ChartUpdate | Heartbeat | RpcResponse

    Raises
    ------
    DataError
        Bad JSON, an unknown method or channel, a missing field, a resolution other than 1, a
        tick not aligned to the minute, or an invalid candle (prices ≤ 0, high < low, …).
    """
    try:
        msg = json.loads(raw, parse_float=Decimal)
    except (ValueError, TypeError) as e:
        raise DataError(f"frame is not valid JSON ({e}): {excerpt(raw, 80)!r}") from None
    if not isinstance(msg, dict):
        raise DataError(f"frame must be a JSON object, was {excerpt(raw, 80)!r}")
    method = msg.get("method")
    if method == "subscription":
        params = require(msg, "params", where="frame")
        return decode_chart_notification(params, symbols)
    if method == "heartbeat":
        params = require(msg, "params", where="frame")
        kind = require(params, "type", where="params")
        return Heartbeat(kind=str(kind))
    if "result" in msg or "error" in msg:
        return _response(msg)
    raise DataError(f"unexpected frame method, was {method!r}")


def decode_chart_notification(params: Mapping[str, object], symbols: Mapping[str, str]) -> ChartUpdate:
    """Decode the ``params`` of a ``chart.trades`` subscription notification. Raises ``DataError``."""
    channel = require(params, "channel", where="params")
    if not isinstance(channel, str) or not channel.startswith(_CHART_PREFIX):
        raise DataError(f"params.channel must be a chart.trades channel, was {channel!r}")
    instrument, _, resolution = channel[len(_CHART_PREFIX) :].rpartition(".")
    if resolution != "1":
        raise DataError(f"chart resolution must be '1' (minute), was {resolution!r}")
    unified = symbols.get(instrument)
    if unified is None:
        raise DataError(f"chart for an unsubscribed instrument, was {instrument!r}")
    data = require(params, "data", where="params")
    tick = require_int(data, "tick", where="data")
    if tick % Timeframe.M1.ms != 0:
        raise DataError(f"data.tick must be minute-aligned ms, was {tick!r}")
    candle = Candle(
        symbol=unified,
        timeframe=Timeframe.M1,
        open_time_ms=tick,
        open=exact_float(require(data, "open", where="data"), field="data.open"),
        high=exact_float(require(data, "high", where="data"), field="data.high"),
        low=exact_float(require(data, "low", where="data"), field="data.low"),
        close=exact_float(require(data, "close", where="data"), field="data.close"),
        volume=exact_float(require(data, "volume", where="data"), field="data.volume"),
    )
    return ChartUpdate(instrument=instrument, candle=checked(candle))


def _response(msg: dict[str, object]) -> RpcResponse:
    request_id = msg.get("id")
    rid = request_id if isinstance(request_id, int) and not isinstance(request_id, bool) else None
    error = msg.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        return RpcResponse(
            request_id=rid,
            error_code=code if isinstance(code, int) else None,
            error_message=str(error.get("message", "")),
        )
    return RpcResponse(request_id=rid, result=msg.get("result"))
