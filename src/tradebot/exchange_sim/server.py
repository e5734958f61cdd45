"""The exchange simulator process: one websocket server (Binance ``/stream`` and the WebSocket API
``/ws-api/v3``, Deribit ``/ws/api/v2``) and one HTTP server (Binance ``/api/v3/*``, Deribit ``/api/v2/public/*``) on 127.0.0.1.

Use in tests::

    async with ExchangeSim(SimConfig(data_dir=..., start_ms=..., minute_wall_s=0.05)) as sim:
        sim.binance_ws_url, sim.binance_rest_url, sim.deribit_ws_url, sim.deribit_rest_url
        sim.binance_ws_api_url  # user-data subscriptions (binance_ws_api.py)
        sim.faults.binance.drop()
        sim.faults.binance.user.duplicate(3)  # the account's private streams (faults.UserStreamFaults)

or from the command line: ``tradebot exchange-sim --data-dir /work/shared/data --speedup 60``
(wired by the CLI through :func:`add_arguments` and :func:`main`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import TracebackType

from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from tradebot.exchange_sim.binance_private import BinancePrivate, binance_rules
from tradebot.exchange_sim.binance_rest import BinanceRest
from tradebot.exchange_sim.binance_ws import BinanceStreams, requested_symbols
from tradebot.exchange_sim.binance_ws_api import WS_API_PATH, BinanceWsApi
from tradebot.exchange_sim.deribit_private import DeribitPrivate, deribit_rules
from tradebot.exchange_sim.deribit_rest import DeribitRest, load_instruments
from tradebot.exchange_sim.deribit_user import DeribitUserStreams
from tradebot.exchange_sim.deribit_ws import DeribitStreams
from tradebot.exchange_sim.faults import Faults, RandomFaults
from tradebot.exchange_sim.market import MINUTE_MS, Market, Tape
from tradebot.exchange_sim.orders import OrderEngine

#: Initial balances of the simulated accounts (tests may set ``sim.binance_orders.free`` / ``deribit_orders``;
#: the Deribit coin accounts settling inverse perpetuals, ``deribit_orders.coin_accounts``, start empty).
DEFAULT_BALANCES = {"USDT": Decimal("10000")}
DERIBIT_BALANCES = {"USDC": Decimal("10000")}

DERIBIT_WS_PATH = "/ws/api/v2"


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """Settings of the simulator.

    Attributes
    ----------
    data_dir
        Directory of ``binance_<SYM>_<tf>.csv.gz`` files (``/work/shared/data`` or a sample with the
        same format); 1m files are required, 1h/4h/1d are served for warm-up when present.
    symbols
        Binance wire symbols replayed (Deribit instruments replay them by base currency).
    start_ms
        Simulated start time, ms UTC (minute boundary; default: first 1m candle + 1 day, so a day
        of history exists for warm-up).
    end_ms
        Simulated end time, ms UTC (default: end of the data).
    minute_wall_s
        Wall seconds per simulated minute (1.0 = 60× speed-up; 60.0 = real time).
    host, ws_port, http_port
        Bind address and ports (0 = any free port).
    ping_interval_s
        Server keepalive pings, seconds (Binance: 20).
    session_limit_s
        Close every websocket after this many wall seconds (``None``: no limit; Binance: 24 h).
    random_faults_seed, random_faults_rate
        When the seed is set, trigger random faults on each simulated minute with this probability
        per venue (see :class:`RandomFaults`).
    random_stall_s, random_refuse_s
        Durations of random stalls and handshake refusals, wall seconds.
    binance_buy_fee_in_base
        Charge Binance buy commissions in the base asset as the exchange does (default ``False``:
        in quote, as the backtest's simulated venue does; see :mod:`tradebot.exchange_sim.orders`).
    """

    data_dir: Path
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    start_ms: int | None = None
    end_ms: int | None = None
    minute_wall_s: float = 1.0
    host: str = "127.0.0.1"
    ws_port: int = 0
    http_port: int = 0
    ping_interval_s: float | None = 20.0
    session_limit_s: float | None = None
    random_faults_seed: int | None = None
    random_faults_rate: float = 0.0
    random_stall_s: float = 5.0
    random_refuse_s: float = 2.0
    random_kinds: tuple[str, ...] = field(default=RandomFaults.KINDS)
    binance_buy_fee_in_base: bool = False


class ExchangeSim:
    """Async context manager running the simulator; the market clock starts on entry."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.faults = Faults()
        self.faults.binance.session_limit_s = config.session_limit_s
        self.faults.deribit.session_limit_s = config.session_limit_s
        self.tape = Tape(config.data_dir, config.symbols)
        start = config.start_ms
        if start is None:
            start = min(self.tape.first_open_ms(s) for s in config.symbols) + 1440 * MINUTE_MS
        self.random_faults: RandomFaults | None = None
        if config.random_faults_seed is not None:
            self.random_faults = RandomFaults(
                self.faults,
                seed=config.random_faults_seed,
                rate=config.random_faults_rate,
                stall_s=config.random_stall_s,
                refuse_s=config.random_refuse_s,
                kinds=config.random_kinds,
            )
        self.market = Market(
            self.tape,
            start_ms=start,
            minute_wall_s=config.minute_wall_s,
            end_ms=config.end_ms,
            on_minute=self.random_faults,
        )
        instruments = [i["instrument_name"] for i in load_instruments()]
        self.binance_streams = BinanceStreams(self.market, self.faults.binance)
        self.deribit_streams = DeribitStreams(self.market, self.faults.deribit, instruments)
        self.binance_rest = BinanceRest(self.market, self.faults.binance)
        self.deribit_rest = DeribitRest(self.market, self.faults.deribit)
        self.binance_orders = OrderEngine(
            self.market,
            binance_rules(self.binance_rest.exchange_info),
            dict(DEFAULT_BALANCES),
            buy_fee_in_base=config.binance_buy_fee_in_base,
        )
        self.binance_private = BinancePrivate(self.binance_orders)
        self.deribit_orders = OrderEngine(
            self.market,
            deribit_rules(self.deribit_rest.instruments),
            dict(DERIBIT_BALANCES),
            fee_rate=Decimal("0.0005"),
        )
        self.deribit_private = DeribitPrivate(self.deribit_orders, self.market)
        self.binance_ws_api = BinanceWsApi(
            self.binance_private, self.faults.binance, lambda: self.market.now_ms
        )
        self.deribit_user = DeribitUserStreams(self.deribit_private, self.faults.deribit)
        self.deribit_streams.user = self.deribit_user
        self._ws_server: Server | None = None
        self._runner: web.AppRunner | None = None
        self._clock_task: asyncio.Task[None] | None = None
        self.ws_port = 0
        self.http_port = 0

    # -- URLs ----------------------------------------------------------------------------------
    @property
    def binance_ws_url(self) -> str:
        """Binance websocket base URL (the feed appends ``/stream?streams=…``)."""
        return f"ws://{self.config.host}:{self.ws_port}"

    @property
    def binance_ws_api_url(self) -> str:
        """Binance WebSocket API URL (``wss://ws-api.binance.com:443/ws-api/v3`` on the exchange)."""
        return f"ws://{self.config.host}:{self.ws_port}{WS_API_PATH}"

    @property
    def deribit_ws_url(self) -> str:
        """Deribit JSON-RPC websocket URL."""
        return f"ws://{self.config.host}:{self.ws_port}{DERIBIT_WS_PATH}"

    @property
    def binance_rest_url(self) -> str:
        """Binance REST base URL (ccxt ``urls['api']['public'] = <this>/api/v3``)."""
        return f"http://{self.config.host}:{self.http_port}"

    @property
    def deribit_rest_url(self) -> str:
        """Deribit REST base URL (ccxt ``urls['api']['rest']``)."""
        return f"http://{self.config.host}:{self.http_port}"

    # -- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> ExchangeSim:
        app = web.Application()
        app.add_routes(
            self.binance_rest.routes()
            + self.deribit_rest.routes()
            + self.binance_private.routes()
            + self.deribit_private.routes()
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.http_port)
        await site.start()
        self.http_port = self._runner.addresses[0][1]
        self._ws_server = await serve(
            self._handle_ws,
            self.config.host,
            self.config.ws_port,
            process_request=self._process_request,
            ping_interval=self.config.ping_interval_s,
            ping_timeout=None,
        )
        self.ws_port = next(iter(self._ws_server.sockets)).getsockname()[1]
        self._clock_task = asyncio.get_running_loop().create_task(self.market.run(), name="sim-market-clock")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._clock_task is not None:
            self._clock_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock_task
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
        if self._runner is not None:
            await self._runner.cleanup()

    async def serve_forever(self) -> None:
        """Run until the market reaches its end time (or cancelled)."""
        if self._clock_task is not None:
            await self._clock_task

    # -- websocket routing ---------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path
        if path == WS_API_PATH:
            if self.faults.binance.refusing() or self.faults.binance.user.refusing():
                return connection.respond(503, "Service Unavailable\n")
            return None
        if path.startswith("/stream"):
            if self.faults.binance.refusing():
                return connection.respond(503, "Service Unavailable\n")
            if requested_symbols(path) is None:
                return connection.respond(400, "Invalid request\n")
            return None
        if path == DERIBIT_WS_PATH:
            if self.faults.deribit.refusing():
                return connection.respond(503, "Service Unavailable\n")
            return None
        return connection.respond(404, "Not Found\n")

    async def _handle_ws(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        if path.startswith("/stream"):
            await self.binance_streams.handle(ws, path)
        elif path == WS_API_PATH:
            await self.binance_ws_api.handle(ws)
        else:
            await self.deribit_streams.handle(ws)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``exchange-sim`` options to ``parser``."""
    parser.add_argument("--data-dir", type=Path, required=True, help="dir of binance_<SYM>_<tf>.csv.gz files")
    parser.add_argument("--speedup", type=float, default=1.0, help="simulated seconds per wall second")
    parser.add_argument(
        "--start-ms", type=int, default=None, help="simulated start, ms UTC (minute boundary)"
    )
    parser.add_argument("--ws-port", type=int, default=9443)
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--fault-seed", type=int, default=None, help="enable seeded random faults")
    parser.add_argument(
        "--fault-rate", type=float, default=0.02, help="fault probability per venue and minute"
    )


async def main(args: argparse.Namespace) -> int:
    """Run the simulator until the data ends; prints the endpoint URLs. Returns the exit code."""
    config = SimConfig(
        data_dir=args.data_dir,
        minute_wall_s=60.0 / args.speedup,
        start_ms=args.start_ms,
        ws_port=args.ws_port,
        http_port=args.http_port,
        random_faults_seed=args.fault_seed,
        random_faults_rate=args.fault_rate if args.fault_seed is not None else 0.0,
    )
    async with ExchangeSim(config) as sim:
        print(
            f"binance ws   {sim.binance_ws_url}\nbinance rest {sim.binance_rest_url}\n"
            f"binance ws-api {sim.binance_ws_api_url}\n"
            f"deribit ws   {sim.deribit_ws_url}\nderibit rest {sim.deribit_rest_url}",
            flush=True,
        )
        await sim.serve_forever()
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """Standalone entry: ``python -m tradebot.exchange_sim.server --data-dir …``."""
    parser = argparse.ArgumentParser(prog="tradebot exchange-sim", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return asyncio.run(main(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(cli())
