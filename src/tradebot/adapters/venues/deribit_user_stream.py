"""Deribit private subscriptions (``user.orders.<instrument>.raw``, ``user.trades.<instrument>.raw``)
on the JSON-RPC websocket (``wss://www.deribit.com/ws/api/v2``; testnet ``test.deribit.com``).

On each connection: ``public/auth`` with ``grant_type`` ``client_signature`` (the secret never
leaves the host: ``signature`` = hex HMAC-SHA256 of ``"<timestamp>\\n<nonce>\\n"`` with the client
secret, empty ``data``), then ``private/subscribe`` of both channels of every traded instrument, and
``public/set_heartbeat``: the server's ``test_request`` heartbeats are answered with
``public/test``. An order notification becomes the order's report; a trades notification one report
per order with its fills (status ``UNKNOWN``: a trade does not tell the order's state); both are
decoded by :func:`~tradebot.adapters.venues.user_stream_schemas.decode_deribit_user`. A refused
authentication (``13004`` credentials, ``13009`` signature) is a :class:`StreamRefused`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
from collections.abc import Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection

from tradebot.adapters.venues.user_stream import UserStream
from tradebot.adapters.venues.user_stream_schemas import decode_deribit_user
from tradebot.core.domain import Instrument
from tradebot.errors import DataError

#: ``public/set_heartbeat`` interval, seconds (Deribit's minimum is 10).
HEARTBEAT_S = 30


def auth_params(client_id: str, secret: str, *, timestamp_ms: int, nonce: str) -> dict[str, Any]:
    """The parameters of ``public/auth`` with ``client_signature`` (see the module docstring)."""
    text = f"{timestamp_ms}\n{nonce}\n"
    signature = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    return {"grant_type": "client_signature", "client_id": client_id, "timestamp": timestamp_ms,
            "nonce": nonce, "data": "", "signature": signature}  # fmt: skip


def channels(instruments: Mapping[str, Any]) -> list[str]:
    """The private channels of ``instruments`` (names), orders before trades per instrument."""
    return [f"user.{kind}.{name}.raw" for name in sorted(instruments) for kind in ("orders", "trades")]


class DeribitUserStream(UserStream):
    """The account's order and trade notifications of the traded instruments.

    Parameters
    ----------
    client_id, secret
        The mode's API client id and secret (the REST venue's).
    markets
        Instrument name → (instrument, inverse) of the traded perpetuals.
    heartbeat_s
        ``public/set_heartbeat`` interval, seconds (default 30).
    **kwargs
        Of :class:`~tradebot.adapters.venues.user_stream.UserStream` (``url``, ``queue``, ``config``, …).
    """

    venue = "deribit"

    def __init__(self, *, client_id: str, secret: str, markets: Mapping[str, tuple[Instrument, bool]],
                 heartbeat_s: float = HEARTBEAT_S, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self._id, self._secret, self._markets = client_id, secret, dict(markets)
        self.heartbeat_s = heartbeat_s
        self._ids = itertools.count(1)

    async def _request(self, ws: ClientConnection, method: str, params: dict[str, Any]) -> Any:
        request_id = next(self._ids)
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
        return (await self._await_answer(ws, request_id)).result

    async def _open(self, ws: ClientConnection) -> None:
        params = auth_params(self._id, self._secret, timestamp_ms=self._now_ms(), nonce=secrets.token_hex(8))
        await self._request(ws, "public/auth", params)
        wanted = channels(self._markets)
        got = await self._request(ws, "private/subscribe", {"channels": wanted})
        missing = sorted(set(wanted) - set(got or ()))
        if missing:
            self._log.warning("user_stream_channels_missing", channels=missing)
        await self._request(ws, "public/set_heartbeat", {"interval": self.heartbeat_s})

    async def _on_frame(self, ws: ClientConnection, raw: str | bytes) -> list[Any]:
        if b"test_request" in (raw if isinstance(raw, bytes) else raw.encode()):
            try:
                msg = json.loads(raw)
            except ValueError as e:
                raise DataError(f"deribit frame: not JSON: {e}") from None
            if isinstance(msg, dict) and msg.get("method") == "heartbeat":
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": "public/test",
                                          "params": {}}))  # fmt: skip
                return []
        decoded = decode_deribit_user(raw, self._markets, venue=self.venue)
        if decoded is None:
            return []
        return decoded if isinstance(decoded, list) else [decoded]
