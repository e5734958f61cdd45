"""Typed identifiers (``NewType`` over ``str``) so ids of different kinds cannot be mixed up."""

from __future__ import annotations

from typing import NewType

#: ccxt unified symbol of a spot or perpetual instrument, e.g. ``"BTC/USDT"``.
Symbol = NewType("Symbol", str)
#: Asset code, e.g. ``"BTC"``; also the quote currency ``"USDT"``.
Asset = NewType("Asset", str)
#: Our id of an order, sent as Binance ``newClientOrderId`` / Deribit ``label``.
ClientOrderId = NewType("ClientOrderId", str)
#: The venue's id of an order.
ExchangeOrderId = NewType("ExchangeOrderId", str)
#: The venue's id of one execution (fill); unique per (venue, symbol).
TradeId = NewType("TradeId", str)
#: One position lifecycle of one asset (flat → open → flat).
PositionId = NewType("PositionId", str)
#: One run of the engine (a backtest, or a daemon session series sharing state).
RunId = NewType("RunId", str)
#: A trend stream, ``"<asset>:<timeframe>"``, e.g. ``"BTC:4h"``.
StreamId = NewType("StreamId", str)


def stream_id(asset: str, timeframe: str) -> StreamId:
    """Return the id of the stream of ``asset`` on ``timeframe``, e.g. ``stream_id("BTC", "4h") == "BTC:4h"``."""
    return StreamId(f"{asset}:{timeframe}")
