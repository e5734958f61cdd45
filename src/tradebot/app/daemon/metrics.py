"""Prometheus metrics of a running daemon (``run`` and ``demo``), served on ``/metrics``.

Off unless ``TRADEBOT_METRICS__PORT`` (or ``--metrics-port``) is set; ``0`` picks a free port, read
back from :attr:`MetricsObserver.port`. The listening socket is bound when the observer is built, so
a port in use refuses the start (exit 2) before anything trades.

Two kinds of series, all in one registry per observer (several daemons in one process never collide):

* **counted as it happens** (observer hooks, O(1) each): orders by status, orders sent, fills,
  traded notional, position events by type, reconciliation mismatches, feed stale transitions, the
  candle-close → order-sent latency histogram;
* **read at scrape time** (:class:`_StateCollector`, on the event loop between engine steps, so the
  values are one consistent state and cost nothing per candle): equity, cash, position, exposure and
  PnL per asset, open orders, trading state, feed lag, feed reconnects, last reconciliation.

The HTTP server is aiohttp on the daemon's own loop (the scrape never reads the engine from another
thread); the same task samples the event-loop lag. Units are in the names: ``_quote`` (quote
currency, e.g. USDT), ``_base`` (base-asset units), ``_seconds``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tradebot.app.daemon.observers import DaemonControl, DaemonObserver
from tradebot.core.domain import Fill, PositionEvent, PositionEventType
from tradebot.errors import ConfigError

if TYPE_CHECKING:
    from tradebot.app.daemon.daemon import Daemon
    from tradebot.app.settings import Settings
    from tradebot.core.domain import FeedStatus, OrderUpdate, PlaceOrder

log = structlog.get_logger("tradebot.metrics")

#: Candle close → order sent, seconds: a daemon on the same host decides in milliseconds; a slow
#: venue round-trip or a blocked loop shows in the upper buckets.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: How often the event-loop lag is sampled, seconds.
LOOP_LAG_INTERVAL_S = 0.25


class MetricsObserver(DaemonObserver):
    """Counts what the daemon does and serves it with its state on ``http://host:port/metrics``.

    Parameters
    ----------
    settings
        ``settings.metrics.port`` (0 = any free port) and ``settings.metrics.host``.

    Raises
    ------
    ConfigError
        If the address cannot be bound (port in use, unknown host), naming ``TRADEBOT_METRICS__PORT``.
    """

    name = "metrics"

    def __init__(self, settings: Settings) -> None:
        host, port = settings.metrics.host, settings.metrics.port or 0
        self.venue = settings.venue
        self._sock = _bind(host, port)
        #: The bound TCP port (the chosen one when ``TRADEBOT_METRICS__PORT=0``).
        self.port: int = self._sock.getsockname()[1]
        self.host = host
        #: The daemon watched, from ``on_started`` (its state is read at each scrape).
        self.daemon: Daemon | None = None
        self.registry = CollectorRegistry()
        r = self.registry
        self.orders = Counter(
            "tradebot_orders", "Order status updates from the venue, by new status", ["status"], registry=r
        )
        self.orders_sent = Counter(
            "tradebot_orders_sent",
            "Orders sent to the venue, by symbol and side",
            ["symbol", "side"],
            registry=r,
        )
        self.fills = Counter(
            "tradebot_fills", "Fills applied, by symbol and side", ["symbol", "side"], registry=r
        )
        self.traded = Counter(
            "tradebot_traded_notional_quote",
            "Filled notional qty × price, quote currency",
            ["symbol"],
            registry=r,
        )
        self.fees = Counter(
            "tradebot_fees_quote", "Fees paid on fills, quote currency", ["symbol"], registry=r
        )
        self.position_events = Counter(
            "tradebot_position_events", "Position events stored, by event type", ["type"], registry=r
        )
        self.mismatches = Counter(
            "tradebot_reconciliation_mismatches",
            "Reconciliation checks where the venue and the ledger disagree (trading refused)",
            registry=r,
        )
        self.feed_stale = Counter(
            "tradebot_feed_stale",
            "Transitions of a symbol's feed to stale (disconnect, gap backfill, lag)",
            ["venue", "symbol"],
            registry=r,
        )
        self.feed_is_stale = Gauge(
            "tradebot_feed_is_stale",
            "1 while the symbol's feed is stale, else 0",
            ["venue", "symbol"],
            registry=r,
        )
        self.latency = Histogram(
            "tradebot_order_latency_seconds",
            "Candle close → order sent, seconds by the daemon's clock",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.loop_lag = Gauge(
            "tradebot_event_loop_lag_seconds",
            f"How late a {LOOP_LAG_INTERVAL_S} s sleep on the daemon's event loop woke up, seconds",
            registry=r,
        )
        self.info = Gauge(
            "tradebot_info", "1, labelled with the run", ["run_id", "mode", "venue"], registry=r
        )
        r.register(_StateCollector(self))

    # -- hooks (engine task) ----------------------------------------------------------------------
    def on_started(self, daemon: Daemon) -> None:
        self.daemon = daemon
        c = daemon.c
        if c is not None:
            self.info.labels(run_id=c.run_id, mode=daemon.settings.mode, venue=self.venue).set(1)

    def on_record(self, record: object) -> None:
        if isinstance(record, Fill):
            self.fills.labels(symbol=record.symbol, side=str(record.side)).inc()
            self.traded.labels(symbol=record.symbol).inc(float(record.qty * record.price))
            if record.fee_quote > 0:  # a maker rebate is not a fee paid (a counter only goes up)
                self.fees.labels(symbol=record.symbol).inc(float(record.fee_quote))
        elif isinstance(record, PositionEvent):
            self.position_events.labels(type=str(record.event_type)).inc()
            if record.event_type is PositionEventType.RECONCILE_MISMATCH:
                self.mismatches.inc()

    def on_order_update(self, update: OrderUpdate) -> None:
        self.orders.labels(status=str(update.status)).inc()

    def on_order_sent(self, order: PlaceOrder, latency_ms: int | None) -> None:
        self.orders_sent.labels(symbol=order.symbol, side=str(order.side)).inc()
        if latency_ms is not None:
            self.latency.observe(max(0, latency_ms) / 1000)

    def on_feed_status(self, status: FeedStatus) -> None:
        self.feed_is_stale.labels(venue=self.venue, symbol=status.symbol).set(1 if status.stale else 0)
        if status.stale:
            self.feed_stale.labels(venue=self.venue, symbol=status.symbol).inc()

    # -- server -----------------------------------------------------------------------------------
    def task(self, control: DaemonControl) -> Coroutine[Any, Any, None]:
        return self.serve()

    async def serve(self) -> None:
        """Serve ``/metrics`` on the bound socket and sample the event-loop lag until cancelled; then
        close the server and the socket."""
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        try:
            await runner.setup()
            await web.SockSite(runner, self._sock).start()
            log.info("metrics_serving", url=f"http://{self.host}:{self.port}/metrics")
            loop = asyncio.get_running_loop()
            while True:
                t0 = loop.time()
                await asyncio.sleep(LOOP_LAG_INTERVAL_S)
                self.loop_lag.set(max(0.0, loop.time() - t0 - LOOP_LAG_INTERVAL_S))
        finally:
            await runner.cleanup()
            self._sock.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def close(self) -> None:
        """Close the listening socket (when :meth:`serve` never ran, e.g. a start that failed)."""
        self._sock.close()


def _bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ConfigError(
            f"TRADEBOT_METRICS__PORT / --metrics-port: cannot listen on {host}:{port} ({exc.strerror or exc})"
        ) from None


class _StateCollector(Collector):
    """The daemon's state at scrape time (nothing before ``on_started``; the last state after a stop)."""

    def __init__(self, observer: MetricsObserver) -> None:
        self._obs = observer

    def describe(self) -> Iterable[Metric]:
        return []  # the series come and go with the daemon: no fixed description

    def collect(self) -> Iterable[Metric]:
        daemon = self._obs.daemon
        c = daemon.c if daemon is not None else None
        if daemon is None or c is None:
            return []
        fields = daemon.status()
        venue = self._obs.venue
        out: list[Metric] = []

        def gauge(name: str, doc: str, value: float | None, labels: dict[str, str] | None = None) -> None:
            if value is None:
                return
            family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
            family.add_metric(list((labels or {}).values()), value)
            out.append(family)

        equity = fields["equity_quote"]
        gauge("tradebot_equity_quote", "Equity cash + Σ position × mark, quote currency", _num(equity))
        gauge("tradebot_cash_quote", "Cash, quote currency", _num(fields["cash_quote"]))
        gauge("tradebot_open_orders", "Orders open at the venue", fields["open_orders"])
        now_ms = c.clock.now_ms()
        lag = GaugeMetricFamily(
            "tradebot_feed_lag_seconds",
            "Daemon clock − close of the symbol's last candle taken, seconds",
            labels=["venue", "symbol"],
        )
        for symbol, close_ms in daemon.last_candle_close_ms().items():
            lag.add_metric([venue, symbol], (now_ms - close_ms) / 1000)
        out.append(lag)
        state = GaugeMetricFamily(
            "tradebot_trading_state", "1 for the current trading state", labels=["state"]
        )
        state.add_metric([fields["trading_state"]], 1)
        out.append(state)
        candles = CounterMetricFamily("tradebot_candles", "Closed 1m candles taken by the engine")
        candles.add_metric([], daemon.candles)
        out.append(candles)
        stats = c.feed.stats
        reconnects = CounterMetricFamily(
            "tradebot_feed_reconnects",
            "Websocket sessions of the venue's feed that ended and were reconnected (one session serves every symbol)",
            labels=["venue"],
        )
        reconnects.add_metric([venue], stats.disconnects)
        out.append(reconnects)
        gauge(
            "tradebot_last_reconciliation_timestamp_seconds",
            "When orders, fills and balances last matched the venue, Unix seconds",
            c.last_reconciliation_ms / 1000 if c.last_reconciliation_ms else None,
        )

        engine = c.engine
        ledger, marks = engine.ledger, engine.marks_decimal()
        position = GaugeMetricFamily("tradebot_position_base", "Position, base-asset units", labels=["asset"])
        exposure = GaugeMetricFamily(
            "tradebot_exposure_quote", "Position × mark, quote currency", labels=["asset"]
        )
        realized = GaugeMetricFamily(
            "tradebot_realized_pnl_quote",
            "Realized PnL before fees since the run began, quote currency",
            labels=["asset"],
        )
        unrealized = GaugeMetricFamily(
            "tradebot_unrealized_pnl_quote",
            "(mark − average entry) × position, quote currency",
            labels=["asset"],
        )
        for symbol in engine.symbols:
            asset = symbol.split("/")[0]
            qty = ledger.position(symbol)
            position.add_metric([asset], float(qty))
            realized.add_metric([asset], float(ledger.realized(symbol)))
            if symbol in marks:
                exposure.add_metric([asset], float(qty * marks[symbol]))
                unrealized.add_metric([asset], float(ledger.unrealized(symbol, marks[symbol])))
        out += [position, exposure, realized, unrealized]
        return out


def _num(value: str | None) -> float | None:
    return None if value is None else float(value)
