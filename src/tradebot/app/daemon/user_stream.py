"""The venue's private stream for the daemon (testnet / live): order updates and fills pushed as they
happen, onto the engine's queue. The engine task applies them through
:meth:`VenueRouter.on_pushed <tradebot.app.daemon.venue_router.VenueRouter.on_pushed>` (the executor
de-duplicates fills by trade id, so a fill seen by the stream and by a poll is applied once); polling
stays the fallback, and a stream that comes back after an outage triggers an immediate poll
(:mod:`tradebot.app.daemon.daemon`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tradebot.adapters.venues.binance_user_stream import BinanceUserStream
from tradebot.adapters.venues.ccxt_venue import CcxtVenue
from tradebot.adapters.venues.deribit_user_stream import DeribitUserStream
from tradebot.adapters.venues.user_stream import UserStream, UserStreamConfig
from tradebot.app.daemon.interlock import ResolvedEndpoints
from tradebot.app.daemon.venue_router import mode_keys
from tradebot.app.settings import Settings


def build_user_stream(settings: Settings, endpoints: ResolvedEndpoints, venue: CcxtVenue,
                      queue: asyncio.Queue[Any]) -> UserStream | None:  # fmt: skip
    """The venue's private stream onto the engine's ``queue`` (``None`` with
    ``TRADEBOT_DAEMON__USER_STREAM=false``), after :meth:`CcxtVenue.load_instruments`.

    URL: the mode's private websocket (``TRADEBOT_EXCHANGE__<VENUE>__WS_URL``, else the mode's default,
    checked by the interlock); keys: the mode's own, as for REST. Handshake, ping, session and back-off
    settings are the venue's market-data feed's (``TRADEBOT_FEEDS__<VENUE>__*``), the Binance receive
    window the execution endpoint's.
    """
    if not settings.daemon.user_stream:
        return None
    key, secret = mode_keys(settings)
    feed = settings.feeds.binance if settings.venue == "binance" else settings.feeds.deribit
    limits = settings.exchange.binance if settings.venue == "binance" else settings.exchange.deribit
    config = UserStreamConfig(open_timeout_s=feed.open_timeout_s, ping_interval_s=feed.ping_interval_s,
                              ping_timeout_s=feed.ping_timeout_s, max_session_s=feed.max_session_s,
                              backoff_initial_s=feed.backoff_initial_s, backoff_max_s=feed.backoff_max_s,
                              backoff_factor=feed.backoff_factor, backoff_jitter=feed.backoff_jitter,
                              recv_window_ms=limits.recv_window_ms)  # fmt: skip
    common: dict[str, Any] = {"url": endpoints.exchange_ws.url, "queue": queue, "config": config}
    markets = venue.markets_by_wire()
    if settings.venue == "binance":
        return BinanceUserStream(api_key=key.get_secret_value(), secret=secret.get_secret_value(), markets=markets,
                                 client_order_id=venue.own_client_order_id, **common)  # fmt: skip
    inverse = {wire: (inst, venue.is_inverse(inst.symbol)) for wire, inst in markets.items()}
    return DeribitUserStream(client_id=key.get_secret_value(), secret=secret.get_secret_value(), markets=inverse,
                             **common)  # fmt: skip


__all__ = ["build_user_stream"]
