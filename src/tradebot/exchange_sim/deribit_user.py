"""Simulated Deribit private subscriptions on the JSON-RPC websocket (``/ws/api/v2``), served by
:class:`~tradebot.exchange_sim.deribit_ws.DeribitStreams` for the methods below.

* ``public/auth`` — ``grant_type`` ``client_credentials`` (``client_id``, ``client_secret``) or
  ``client_signature`` (``client_id``, ``timestamp``, ``nonce``, ``data``, ``signature`` = hex
  HMAC-SHA256 of ``"<timestamp>\\n<nonce>\\n<data>"`` with the client secret), checked against
  :attr:`DeribitPrivate.credentials` (shared with the REST endpoints; the timestamp's freshness is
  not checked: the simulator's clock is simulated). The answer carries the docs example's fields
  (``access_token``, ``expires_in``, ``refresh_token``, ``scope``, ``enabled_features``,
  ``token_type``). Refusals: an unknown client id or a wrong secret ``13004 invalid_credentials``,
  a wrong signature ``13009 unauthorized``, an unknown grant type ``13010 value_required``.
* ``private/subscribe`` / ``private/unsubscribe`` of ``user.orders.<instrument>.raw`` and
  ``user.trades.<instrument>.raw`` after ``public/auth`` (before it: ``10000
  authorization_required``); unknown channels are left out of the answer, as Deribit does.

Notifications (``{"jsonrpc": "2.0", "method": "subscription", "params": {"channel", "data"}}``):
``user.orders.<instrument>.raw`` carries the order object after every change (the fields of the
REST answers, ``deribit_private.order_json``), ``user.trades.<instrument>.raw`` a list with each
execution (``deribit_private.trade_json``), pushed before the order's update. Faults:
``sim.faults.deribit.user`` (:class:`~tradebot.exchange_sim.faults.UserStreamFaults`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from tradebot.exchange_sim.deribit_private import (
    WIRE_TYPES,
    DeribitPrivate,
    order_json,
    tick_directions,
    trade_json,
)
from tradebot.exchange_sim.deribit_ws import rpc_error, rpc_result
from tradebot.exchange_sim.faults import SimConnection, VenueFaults
from tradebot.exchange_sim.orders import SimOrder, SimTrade

_ORDERS, _TRADES = "user.orders.", "user.trades."


def client_signature(secret: str, timestamp: int, nonce: str, data: str = "") -> str:
    """The ``public/auth`` ``client_signature``: hex HMAC-SHA256 of ``"<timestamp>\\n<nonce>\\n<data>"``."""
    text = f"{timestamp}\n{nonce}\n{data}"
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def notification(channel: str, data: Any) -> str:
    """A subscription notification frame."""
    return json.dumps(
        {"jsonrpc": "2.0", "method": "subscription", "params": {"channel": channel, "data": data}}
    )


class DeribitUserStreams:
    """Authentication and ``user.*`` subscriptions of the Deribit websocket connections.

    Parameters
    ----------
    private
        The REST private endpoints: their order engine (the account) and credentials.
    faults
        The Deribit fault switches (``faults.user`` for the private streams).
    """

    def __init__(self, private: DeribitPrivate, faults: VenueFaults) -> None:
        self.private, self.faults = private, faults
        self._authed: dict[SimConnection, str] = {}  # connection → client id
        self._subs: dict[SimConnection, set[str]] = {}
        #: Every ``public/auth`` outcome, ``"ok"`` or the error message (tests).
        self.auths: list[str] = []
        private.engine.listeners.append(self._on_order)

    def authed(self, conn: SimConnection) -> bool:
        """True once ``conn`` authenticated."""
        return conn in self._authed

    def auth(self, conn: SimConnection, rid: Any, params: dict[str, Any], now_ms: int) -> str:
        """Answer ``public/auth`` (see the module docstring)."""
        client_id, grant = params.get("client_id"), params.get("grant_type")
        secret = self.private.credentials.get(client_id) if isinstance(client_id, str) else None
        if grant not in ("client_credentials", "client_signature"):
            return self._refused(rid, 13010, "value_required")
        if secret is None:
            return self._refused(rid, 13004, "invalid_credentials")
        if grant == "client_credentials":
            given = params.get("client_secret")
            if not isinstance(given, str) or not hmac.compare_digest(given, secret):
                return self._refused(rid, 13004, "invalid_credentials")
        else:
            timestamp, nonce = params.get("timestamp"), params.get("nonce", "")
            signature = params.get("signature")
            if not isinstance(timestamp, int) or not isinstance(signature, str):
                return self._refused(rid, 13009, "unauthorized")
            expected = client_signature(secret, timestamp, str(nonce), str(params.get("data", "")))
            if not hmac.compare_digest(signature, expected):
                return self._refused(rid, 13009, "unauthorized")
        self._authed[conn] = str(client_id)
        self.auths.append("ok")
        token = f"{now_ms}.{secrets.token_hex(8)}"
        return rpc_result(rid, {"access_token": token, "expires_in": 31536000, "refresh_token": token + "r",
                                "scope": "connection mainaccount", "enabled_features": [], "token_type": "bearer"},
                          now_ms)  # fmt: skip

    def _refused(self, rid: Any, code: int, message: str) -> str:
        self.auths.append(message)
        return rpc_error(rid, code, message)

    def subscribe(self, conn: SimConnection, channels: list[str]) -> list[str]:
        """Subscribe ``conn`` to the served ``user.*`` channels among ``channels``; return them."""
        served = [c for c in channels if self._served(c)]
        self._subs.setdefault(conn, set()).update(served)
        return served

    def unsubscribe(self, conn: SimConnection, channels: list[str]) -> list[str]:
        """Unsubscribe ``conn`` from ``channels``; return those it had."""
        mine = self._subs.get(conn, set())
        gone = [c for c in channels if c in mine]
        mine.difference_update(gone)
        return gone

    def forget(self, conn: SimConnection) -> None:
        """Drop the state of a closed connection."""
        self._authed.pop(conn, None)
        self._subs.pop(conn, None)

    def _served(self, channel: str) -> bool:
        for prefix in (_ORDERS, _TRADES):
            if channel.startswith(prefix) and channel.endswith(".raw"):
                return channel[len(prefix) : -len(".raw")] in self.private.engine.rules
        return False

    def _on_order(self, order: SimOrder, exec_type: str, trade: SimTrade | None) -> None:
        frames: list[tuple[str, Any]] = []
        if trade is not None:
            direction = tick_directions(self.private.engine.trades)[trade.trade_id]
            row = trade_json(trade, order.client_order_id, order_type=WIRE_TYPES[order.type],
                             tick_direction=direction, prefixes=self.private.prefixes(order.symbol))  # fmt: skip
            frames.append((f"{_TRADES}{order.symbol}.raw", [row]))
        frames.append(
            (f"{_ORDERS}{order.symbol}.raw", order_json(order, self.private.prefixes(order.symbol)[0]))
        )
        for conn, channels in self._subs.items():
            for channel, data in frames:
                if channel in channels:
                    self.faults.user.push(notification(channel, data), conn.send)
