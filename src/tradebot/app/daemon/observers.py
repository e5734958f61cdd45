"""Observers of a running daemon: metrics, alerts and anything else that watches without steering.

The daemon calls every observer from its engine task, synchronously, at fixed points: started,
each record it stores (fills, position events, trades, stream signals, order rows), each venue
order update, each order it sends (with the latency from the candle close that caused it), each
feed status, each status line, and stopped. An observer must return quickly and never raise into
the daemon: a failing observer is logged and the daemon goes on (:func:`notify`).

An observer that needs its own loop (an HTTP server, a Telegram long-poll) returns it from
:meth:`DaemonObserver.task`; the daemon runs it in its task group and cancels it at shutdown.
An observer that steers (Telegram ``/pause``) does so only through :meth:`DaemonControl.submit`,
which queues a control event for the engine task: the engine stays the only code that changes
the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import structlog

if TYPE_CHECKING:
    from tradebot.app.daemon.daemon import Daemon
    from tradebot.app.settings import Settings
    from tradebot.core.domain import FeedStatus, OrderUpdate, PlaceOrder

log = structlog.get_logger("tradebot.daemon")


class DaemonControl(Protocol):
    """What an observer may do to the daemon: queue an event for the engine task."""

    def submit(self, event: object) -> None:
        """Queue ``event`` (e.g. a trading-state control) for the engine task, in arrival order."""


class DaemonObserver:
    """Base observer: every hook does nothing. Subclass and override what you need.

    All hooks run on the engine task; times are ms UTC by the daemon's clock.
    """

    name = "observer"

    def on_started(self, daemon: Daemon) -> None:
        """The daemon has bootstrapped and is about to take candles (``daemon.c`` is set)."""

    def on_record(self, record: object) -> None:
        """A record the daemon stores: ``Fill``, ``PositionEvent``, ``TradeRecord``, ``StreamSignal``,
        ``OrderRecord`` (paper only) or any other store record."""

    def on_order_update(self, update: OrderUpdate) -> None:
        """A venue's answer about an order (status change, rejection, cancel)."""

    def on_order_sent(self, order: PlaceOrder, latency_ms: int | None) -> None:
        """``order`` went to the venue; ``latency_ms`` = clock now − close of the last candle (ms),
        ``None`` before the first candle (a restart re-sending an order)."""

    def on_feed_status(self, status: FeedStatus) -> None:
        """A feed went stale or recovered for ``status.symbol``."""

    def on_status(self, fields: dict[str, Any]) -> None:
        """One status line (:func:`tradebot.app.daemon.status.status_fields` plus ``run_id``)."""

    def on_stopped(self, reason: str) -> None:
        """The daemon stopped taking candles (``reason``: ``SIGTERM``, ``end_of_data``, …)."""

    def task(self, control: DaemonControl) -> Coroutine[Any, Any, None] | None:
        """A coroutine the daemon runs beside the engine until shutdown, or ``None``."""
        return None


def notify(observers: list[DaemonObserver], hook: str, *args: Any) -> None:
    """Call ``hook`` on every observer; an exception is logged (once per observer and hook) and
    swallowed, so a broken alert channel never stops trading."""
    for obs in observers:
        method: Callable[..., None] = getattr(obs, hook)
        try:
            method(*args)
        except Exception as exc:
            key = (obs.name, hook)
            failed: set[tuple[str, str]] = obs.__dict__.setdefault("_failed_hooks", set())
            if key not in failed:
                failed.add(key)
                log.warning("observer_failed", observer=obs.name, hook=hook, error=repr(exc))


def build_observers(settings: Settings) -> list[DaemonObserver]:
    """The observers ``settings`` switch on: Prometheus metrics when ``metrics.port`` is set,
    Telegram when ``telegram.enabled``. Their modules are imported only when used."""
    out: list[DaemonObserver] = []
    if settings.metrics.port is not None:
        from tradebot.app.daemon.metrics import MetricsObserver

        out.append(MetricsObserver(settings))
    if settings.telegram.enabled:
        from tradebot.app.daemon.telegram import TelegramObserver

        out.append(TelegramObserver(settings))
    return out
