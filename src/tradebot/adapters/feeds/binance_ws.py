"""Binance spot 1m kline feed over one combined-stream websocket connection.

Emits a :class:`~tradebot.core.domain.Candle` only for klines with ``x: true``, in order per
symbol, with holes backfilled over REST (see :mod:`tradebot.adapters.feeds.ws_base`), and
:class:`~tradebot.core.domain.FeedStatus` events on the same queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection

from tradebot.adapters.feeds import schemas_binance as wire
from tradebot.adapters.feeds.ws_base import ConnectionConfig, Handled, LiveCandleFeed

MAINNET_WS_URL = "wss://stream.binance.com:9443"
TESTNET_WS_URL = "wss://stream.testnet.binance.vision"


@dataclass(frozen=True, slots=True, kw_only=True)
class BinanceFeedConfig(ConnectionConfig):
    """Settings of the Binance kline feed (env prefix ``TRADEBOT_FEEDS__BINANCE__``).

    Attributes
    ----------
    ws_url
        Websocket base URL without path (default mainnet ``wss://stream.binance.com:9443``; testnet
        ``wss://stream.testnet.binance.vision``). The feed appends ``/stream?streams=…``.
    symbols
        ccxt unified spot symbols (default BTC/USDT, ETH/USDT, SOL/USDT).

    The connection, watchdog and reconnect fields are those of
    :class:`~tradebot.adapters.feeds.ws_base.ConnectionConfig` (Binance pushes klines every ~2 s, so
    the 30 s staleness default is generous).
    """

    ws_url: str = MAINNET_WS_URL
    symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT", "SOL/USDT")

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
