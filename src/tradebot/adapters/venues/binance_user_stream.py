"""Binance spot user-data stream over the WebSocket API (``wss://ws-api.binance.com:443/ws-api/v3``;
testnet ``wss://ws-api.testnet.binance.vision/ws-api/v3``). The ``listenKey`` stream of
``stream.binance.com`` was discontinued on 2026-02-20; this is its replacement.

On each connection the stream sends one signed ``userDataStream.subscribe.signature`` request (an
HMAC-SHA256 key works; ``session.logon`` would need an Ed25519 one)::

    {"id": "tb-sub-1", "method": "userDataStream.subscribe.signature",
     "params": {"apiKey": "…", "recvWindow": 5000, "timestamp": 1747385641636, "signature": "…"}}

the signature being the hex HMAC of every other parameter sorted by name, ``name=value`` joined by
``&``, and waits for ``{"id": "tb-sub-1", "status": 200, "result": {"subscriptionId": 0}}``. Events
(``{"subscriptionId": 0, "event": {…}}``) are decoded by
:func:`~tradebot.adapters.venues.user_stream_schemas.decode_binance_ws_api`. A refusal (``-2015``
key, ``-1022`` signature, ``-1021`` timestamp) is a :class:`StreamRefused`: the stream retries no
sooner than ``refused_backoff_s``. The request is never logged (it carries the key and signature).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection

from tradebot.adapters.venues.user_stream import UserStream
from tradebot.adapters.venues.user_stream_schemas import decode_binance_ws_api
from tradebot.core.domain import ClientOrderId, Instrument

WS_API_URL = "wss://ws-api.binance.com:443/ws-api/v3"
TESTNET_WS_API_URL = "wss://ws-api.testnet.binance.vision/ws-api/v3"
WS_API_PATH = "/ws-api/v3"


def ws_api_url(url: str) -> str:
    """Return ``url`` with the WebSocket API path when it has none (``wss://host`` →
    ``wss://host/ws-api/v3``), so a host-only setting works like the full URL."""
    parts = urlsplit(url)
    return url.rstrip("/") + WS_API_PATH if parts.path in ("", "/") else url


def signed_params(api_key: str, secret: str, *, timestamp_ms: int, recv_window_ms: int) -> dict[str, Any]:
    """The parameters of ``userDataStream.subscribe.signature``, signed (see the module docstring)."""
    params: dict[str, Any] = {"apiKey": api_key, "recvWindow": recv_window_ms, "timestamp": timestamp_ms}
    payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
    params["signature"] = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return params


class BinanceUserStream(UserStream):
    """The account's ``executionReport`` and ``outboundAccountPosition`` events.

    Parameters
    ----------
    api_key, secret
        The mode's API key and secret (the same as the REST venue's).
    markets
        Venue symbol → instrument of the traded markets (``CcxtVenue.markets_by_wire``).
    client_order_id
        Wire client order id → ours (``CcxtVenue.own_client_order_id``).
    **kwargs
        Of :class:`~tradebot.adapters.venues.user_stream.UserStream` (``url``, ``queue``, ``config``, …).
    """

    venue = "binance"

    def __init__(self, *, api_key: str, secret: str, markets: Mapping[str, Instrument],
                 client_order_id: Callable[[str], ClientOrderId] = ClientOrderId, **kwargs: Any) -> None:  # fmt: skip
        kwargs["url"] = ws_api_url(kwargs["url"])
        super().__init__(**kwargs)
        self._key, self._secret = api_key, secret
        self._markets, self._cid = dict(markets), client_order_id
        self._ids = itertools.count(1)
        self.subscription_id: int | None = None

    async def _open(self, ws: ClientConnection) -> None:
        request_id = f"tb-sub-{next(self._ids)}"
        params = signed_params(self._key, self._secret, timestamp_ms=self._now_ms(),
                               recv_window_ms=self.config.recv_window_ms)  # fmt: skip
        await ws.send(
            json.dumps({"id": request_id, "method": "userDataStream.subscribe.signature", "params": params})
        )
        answer = await self._await_answer(ws, request_id)
        result = answer.result if isinstance(answer.result, dict) else {}
        self.subscription_id = result.get("subscriptionId")

    async def _on_frame(self, ws: ClientConnection, raw: str | bytes) -> list[Any]:
        decoded = decode_binance_ws_api(raw, self._markets, client_order_id=self._cid, venue=self.venue)
        return [] if decoded is None else [decoded]
