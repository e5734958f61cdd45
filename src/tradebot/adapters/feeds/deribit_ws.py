"""Deribit 1m candle feed over JSON-RPC 2.0 websocket (``chart.trades.<instrument>.1``).

Deribit repeats the forming candle; the candle of tick ``t`` is final once a notification with a
later tick arrives on the same connection, or — when none arrives for ``final_grace_s`` — once
REST confirms it (a catch-up backfill up to the server time). Heartbeats are enabled with
``public/set_heartbeat`` and each ``test_request`` is answered with ``public/test``; heartbeats do
not count as data for the stale watchdog.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection

from tradebot.adapters.feeds import schemas_deribit as wire
from tradebot.adapters.feeds.ws_base import ConnectionConfig, Handled, LiveCandleFeed
from tradebot.core.domain import Candle
from tradebot.errors import VenueUnavailable

MAINNET_WS_URL = "wss://www.deribit.com/ws/api/v2"
TESTNET_WS_URL = "wss://test.deribit.com/ws/api/v2"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeribitFeedConfig(ConnectionConfig):
    """Settings of the Deribit chart feed (env prefix ``TRADEBOT_FEEDS__DERIBIT__``).

    Attributes
    ----------
    ws_url
        JSON-RPC websocket URL (default mainnet ``wss://www.deribit.com/ws/api/v2``; testnet
        ``wss://test.deribit.com/ws/api/v2``).
    instruments
        Perpetuals to stream (default the USDC linear BTC/ETH/SOL perpetuals; the inverse
        ``BTC-PERPETUAL`` / ``ETH-PERPETUAL`` work too). Candle symbols are ccxt unified
        (``BTC/USDC:USDC``, ``BTC/USD:BTC``).
    heartbeat_interval_s
        ``public/set_heartbeat`` interval, seconds (default 10, Deribit's minimum).
    final_grace_s
        Confirm a forming candle over REST when no later tick arrived this long after it was last
        updated, seconds (default 15).

    The connection, watchdog and reconnect fields are those of
    :class:`~tradebot.adapters.feeds.ws_base.ConnectionConfig`.
    """

    ws_url: str = MAINNET_WS_URL
    instruments: tuple[str, ...] = ("BTC_USDC-PERPETUAL", "ETH_USDC-PERPETUAL", "SOL_USDC-PERPETUAL")
    heartbeat_interval_s: float = 10.0
    final_grace_s: float = 15.0

    def wire_symbols(self) -> dict[str, str]:
        """Return instrument → unified symbol (``{"BTC_USDC-PERPETUAL": "BTC/USDC:USDC", …}``)."""
        return {i: wire.unified_symbol(i) for i in self.instruments}


class DeribitChartFeed(LiveCandleFeed):
    """Deribit ``chart.trades.<instrument>.1`` feed; run :meth:`run` in the daemon's ``TaskGroup``."""

    venue = "deribit"

    def __init__(self, *, config: DeribitFeedConfig, **kwargs: object) -> None:
        kwargs.setdefault("symbols", config.wire_symbols())
        super().__init__(config=config, **kwargs)  # type: ignore[arg-type]
        self._dcfg = config
        self._ids = itertools.count(1)
        self._pending: dict[str, Candle] = {}
        self._pending_since: dict[str, float] = {}

    def _url(self) -> str:
        return self._dcfg.ws_url

    def _reset_session_state(self) -> None:
        self._pending.clear()
        self._pending_since.clear()

    async def _rpc(self, ws: ClientConnection, method: str, params: dict[str, object]) -> int:
        request_id = next(self._ids)
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
        return request_id

    async def _on_connected(self, ws: ClientConnection) -> None:
        """Enable heartbeats and subscribe; wait for the subscription answer (chart frames that
        arrive first are handled normally)."""
        self._reset_session_state()
        await self._rpc(ws, "public/set_heartbeat", {"interval": self._dcfg.heartbeat_interval_s})
        channels = [wire.chart_channel(i) for i in self.symbols]
        sub_id = await self._rpc(ws, "public/subscribe", {"channels": channels})
        async with asyncio.timeout(self._dcfg.open_timeout_s):
            while True:
                raw = await ws.recv()
                msg = self._decode(wire.decode_frame, raw)
                if isinstance(msg, wire.RpcResponse) and msg.request_id == sub_id:
                    if msg.error_code is not None or not isinstance(msg.result, list):
                        raise VenueUnavailable(f"subscribe failed: {msg.error_code} {msg.error_message}")
                    missing = set(channels) - set(msg.result)
                    if missing:
                        raise VenueUnavailable(f"subscribe refused channels {sorted(missing)}")
                    return
                if isinstance(msg, wire.Heartbeat):
                    await self._answer_heartbeat(ws, msg)

    async def _answer_heartbeat(self, ws: ClientConnection, msg: wire.Heartbeat) -> None:
        if msg.kind == "test_request":
            await self._rpc(ws, "public/test", {})

    async def _handle_frame(self, ws: ClientConnection, raw: str | bytes) -> Handled:
        msg = self._decode(wire.decode_frame, raw)
        if isinstance(msg, wire.ChartUpdate):
            return Handled(data=True, closed=self._on_chart(msg.candle))
        if isinstance(msg, wire.Heartbeat):
            await self._answer_heartbeat(ws, msg)
        elif isinstance(msg, wire.RpcResponse) and msg.error_code is not None:
            self._log.warning("feed_rpc_error", code=msg.error_code, message=msg.error_message)
        return Handled()

    def _on_chart(self, candle: Candle) -> tuple[Candle, ...]:
        symbol = candle.symbol
        pending = self._pending.get(symbol)
        now = asyncio.get_running_loop().time()
        if pending is None or candle.open_time_ms == pending.open_time_ms:
            self._pending[symbol], self._pending_since[symbol] = candle, now
            return ()
        if candle.open_time_ms < pending.open_time_ms:  # an older tick after a newer one
            self.stats.out_of_order_dropped += 1
            self._log.info(
                "feed_candle_dropped",
                symbol=symbol,
                open_time_ms=candle.open_time_ms,
                last_open_ms=pending.open_time_ms,
                why="out_of_order",
            )
            return ()
        self._pending[symbol], self._pending_since[symbol] = candle, now
        return (pending,)

    async def _on_idle(self, ws: ClientConnection) -> Handled:
        """Confirm over REST the forming candles left without a later tick for ``final_grace_s``."""
        now = asyncio.get_running_loop().time()
        overdue = [s for s, t in self._pending_since.items() if now - t >= self._dcfg.final_grace_s]
        if overdue:
            self._log.info("feed_grace_confirm", symbols=overdue)
            await self._catch_up_all()
            for symbol in overdue:
                last = self._last.get(symbol)
                if last is not None and self._pending[symbol].open_time_ms <= last:
                    del self._pending[symbol], self._pending_since[symbol]
                else:
                    self._pending_since[symbol] = now
        return Handled()
