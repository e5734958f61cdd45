"""Binance spot 1m kline feed over one combined-stream websocket connection.

Emits a :class:`~tradebot.core.domain.Candle` only for klines with ``x: true``, in order per
symbol, with holes backfilled over REST (see :mod:`tradebot.adapters.feeds.ws_base`), and
:class:`~tradebot.core.domain.FeedStatus` events on the same queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection

from tradebot.adapters.feeds import schemas_binance as wire
from tradebot.adapters.feeds.ws_base import Handled, LiveCandleFeed

MAINNET_WS_URL = "wss://stream.binance.com:9443"
TESTNET_WS_URL = "wss://stream.testnet.binance.vision"


@dataclass(frozen=True, slots=True, kw_only=True)
class BinanceFeedConfig:
    """Settings of the Binance kline feed (env prefix ``TRADEBOT_FEEDS__BINANCE__``).

    Attributes
    ----------
    ws_url
        Websocket base URL without path (default mainnet ``wss://stream.binance.com:9443``; testnet
        ``wss://stream.testnet.binance.vision``). The feed appends ``/stream?streams=…``.
    symbols
        ccxt unified spot symbols (default BTC/USDT, ETH/USDT, SOL/USDT).
    stale_after_s
        Reconnect when no kline update (open or closed) arrives for this long, seconds (default 30;
        Binance pushes klines every ~2 s). Pings do not count.
    max_session_s
        Reconnect proactively after this long on one connection, seconds (default 23.5 h; Binance
        drops connections at 24 h).
    open_timeout_s
        Timeout of the websocket handshake, seconds (default 10).
    ping_interval_s, ping_timeout_s
        Client keepalive pings, seconds (default 20 / 20; ``None`` disables).
    backoff_initial_s, backoff_max_s, backoff_factor, backoff_jitter
        Reconnect delay ``min(max, initial·factor**n)·(1 − jitter·u)``, reset after a successful
        connect (defaults 0.5 s, 30 s, 2.0, 0.5 — jitter is a fraction).
    banned_backoff_s
        Minimum wait after an HTTP 418 (IP ban) on backfill without Retry-After, seconds (default 120).
    idle_check_s
        Wake-up period of the read loop without frames, seconds (default 1).
    max_lag_ms
        A live closed candle counts as fresh only if received within this long after its close,
        ms (default 15000); later ones are delivered while the symbol is stale.
    """

    ws_url: str = MAINNET_WS_URL
    symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
    stale_after_s: float = 30.0
    max_session_s: float = 23.5 * 3600
    open_timeout_s: float = 10.0
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_factor: float = 2.0
    backoff_jitter: float = 0.5
    banned_backoff_s: float = 120.0
    idle_check_s: float = 1.0
    max_lag_ms: int = 15_000

    def wire_symbols(self) -> dict[str, str]:
        """Return Binance id → unified symbol of :attr:`symbols` (``{"BTCUSDT": "BTC/USDT", …}``)."""
        return {wire.wire_symbol(s): s for s in self.symbols}


class BinanceKlineFeed(LiveCandleFeed):
    """Binance spot ``<symbol>@kline_1m`` combined-stream feed.

    Construct with ``BinanceKlineFeed(config=cfg, symbols=cfg.wire_symbols(), history=…, queue=…)``
    and run :meth:`run` as a task of the daemon's ``TaskGroup``. ``serverShutdown`` ends the session
    and reconnects immediately; the 24 h limit is pre-empted by ``max_session_s``.
    """

    venue = "binance"

    def __init__(self, *, config: BinanceFeedConfig, **kwargs: object) -> None:
        kwargs.setdefault("symbols", config.wire_symbols())
        super().__init__(config=config, **kwargs)  # type: ignore[arg-type]
        self._path = wire.combined_stream_path(tuple(self.symbols))
        self._base = config.ws_url.rstrip("/")

    def _url(self) -> str:
        return self._base + self._path

    async def _on_connected(self, ws: ClientConnection) -> None:
        return None  # combined-stream URL subscribes; nothing to send

    async def _handle_frame(self, ws: ClientConnection, raw: str | bytes) -> Handled:
        msg = self._decode(wire.decode_frame, raw)
        if isinstance(msg, wire.KlineUpdate):
            return Handled(data=True, closed=(msg.candle,) if msg.closed else ())
        if isinstance(msg, wire.ServerShutdown):
            self._log.info("feed_server_shutdown", event_time_ms=msg.event_time_ms)
            return Handled(end_session="server_shutdown")
        if isinstance(msg, wire.ControlResponse) and msg.error_code is not None:
            self._log.warning("feed_control_error", code=msg.error_code, msg=msg.error_msg)
        return Handled()
