"""``tradebot run``: one asyncio service driving the engine from live candles.

One ``TaskGroup`` holds the feed (websocket + REST backfill), the engine loop, the status reporter
and — through the bootstrap's exit stack — the batched store writer. The engine loop is the only
task that touches the engine:

1. a closed 1m candle (or a feed status) comes off the feed's queue;
2. :class:`CandleSequencer` releases candles across symbols in open-time order (symbol order on
   ties), exactly the order of a backtest, holding a fast symbol at most
   ``TRADEBOT_DAEMON__SEQUENCER_TIMEOUT_S`` for a slow one;
   Every live candle is screened by :class:`~tradebot.app.daemon.candle_guard.CandleGuard`: one that
   moves more than ``TRADEBOT_DAEMON__SANITY__MAX_MOVE_FRACTION`` from the symbol's last accepted
   close is held and checked against that minute's REST candle (kept, replaced or discarded, with a
   ``market_data_suspect`` position event) before anything sees it. With a venue, a large decision
   or one taken on an unusual candle's minute is sent only when the venue's ticker agrees with the
   engine's marks; otherwise the unusual candle is taken back (engine restored, candle discarded) or
   the orders refused (:mod:`~tradebot.app.daemon.reference_check`);
3. the execution side sees the candle first (paper fills at its open), then the engine; the
   engine's orders go to the venue and the venue's answers back to the engine, recursively, as in
   the backtest's ``Dispatcher``; the records of a step that decided nothing (stream signals,
   equity snapshots: keyed by time, so a replay rewrites them alike) go to the batched writer;
4. the engine state is checkpointed after every step that produced orders, fills or position
   events, at least every ``TRADEBOT_DAEMON__CHECKPOINT_INTERVAL_S``, and — with a real venue —
   before any order not yet covered by a checkpoint is sent. A checkpoint flushes the writer, then
   commits the records held since the last one *and* the state in one transaction
   (:meth:`~tradebot.adapters.store.event_store.SqlEventStore.commit_step`). Position events —
   the engine's decisions, the feeds' stale/recovered and reconciliation's events, all numbered in
   the engine's one sequence — are therefore stored exactly once: a kill leaves a step's events
   with the state that numbered them, or neither, and the restart numbers the replayed ones from
   the state it resumes. A restart never decides a step with orders again: it only recomputes
   candle steps that decided nothing (every record is written idempotently under deterministic
   ids), looks up the orders that may have been sent and sends those that never were
   (:class:`~tradebot.app.daemon.venue_router.VenueRouter`);
5. testnet/live: the executor's open orders are polled every ``TRADEBOT_DAEMON__POLL_INTERVAL_S``
   and the account reconciled every ``TRADEBOT_DAEMON__RECONCILE_INTERVAL_S`` (between candles).
   With ``TRADEBOT_DAEMON__USER_STREAM`` (default on) the venue's private stream puts the order
   updates and fills it pushes on the same queue as the candles; the engine loop applies them
   between candle batches, like a poll's answers, through the executor (a fill seen by the stream
   and by a poll is applied once). When the stream (re)subscribes the orders are polled at once:
   what it pushed while it was down is lost.

Database outages (connection lost, disk full): the store's calls wait and retry with back-off
(:mod:`tradebot.adapters.store.resilient`), so the engine task — and with it every order, each
preceded by its ``PENDING_SUBMIT`` row or checkpoint — pauses until the store is back, then goes on
with nothing lost; the status task keeps writing the health file (``store_unavailable_since_ms``,
``store_error``). An outage longer than ``TRADEBOT_DAEMON__STORE_OUTAGE_GRACE_S`` (or a signal
during one) ends the run with :class:`~tradebot.errors.StoreUnavailable`: exit 1.

SIGTERM/SIGINT: stop taking candles (no new intents), keep in-flight orders in the checkpoint for the
next start (paper re-queues them; a venue reconciles them), flush the writer, commit the last records
with the state, close connections, exit 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog

from tradebot.adapters.venues.user_stream import UserStreamStatus
from tradebot.adapters.venues.user_stream_schemas import AccountPosition
from tradebot.app.daemon.bootstrap import Components, DaemonOptions, bootstrap, checkpoint_state
from tradebot.app.daemon.candle_guard import CandleGuard, GuardConfig
from tradebot.app.daemon.health import write_health
from tradebot.app.daemon.observers import DaemonObserver, build_observers, notify
from tradebot.app.daemon.reference_check import ReferenceConfig, SecondReference
from tradebot.app.daemon.sequencer import CandleSequencer
from tradebot.app.daemon.status import status_fields
from tradebot.app.daemon.venue_router import VenueRouter
from tradebot.app.reports.summary import build_run_summary
from tradebot.app.settings import SanitySettings, Settings
from tradebot.core.domain import (
    CancelOrder,
    Candle,
    FeedStatus,
    Fill,
    OrderRecord,
    OrderStatus,
    OrderUpdate,
    PlaceOrder,
    PositionEvent,
    PositionEventType,
    StreamSignal,
    Symbol,
    Timeframe,
    TradeRecord,
    to_decimal,
)
from tradebot.core.engine import Engine
from tradebot.errors import DataError, VenueError
from tradebot.ports import OrderReport

log = structlog.get_logger("tradebot.daemon")

#: Queue items of the venue's private stream (the rest are the feed's candles and statuses).
_PUSHED = (OrderReport, UserStreamStatus, AccountPosition)
_REBALANCE = (PositionEventType.REBALANCE_BUY, PositionEventType.REBALANCE_SELL)


class Daemon:
    """The running service. Build with settings and options; :meth:`run` returns the exit code."""

    def __init__(
        self,
        settings: Settings,
        options: DaemonOptions | None = None,
        on_progress: Callable[[Daemon], None] | None = None,
        on_ready: Callable[[Daemon], None] | None = None,
        observers: Sequence[DaemonObserver] | None = None,
    ) -> None:
        self.settings = settings
        self.options = options or DaemonOptions()
        self.c: Components | None = None
        self._stop = asyncio.Event()
        self._on_progress = on_progress
        self._on_ready = on_ready
        self.candles = 0
        self.n_orders = 0
        self.trades: dict[str, TradeRecord] = {}
        self._records: list[object] = []
        self._last_open: dict[str, int] = {}
        self._last_close_ms: int | None = None
        self.stopped_by: str = ""
        self.summary: dict[str, Any] | None = None
        self._changed = False  # the current step produced orders, fills or position events
        self._covered: set[str] = set()  # in-flight orders already in a saved checkpoint
        #: Watchers (metrics, alerts): the given ones, else those the settings switch on.
        self.observers: list[DaemonObserver] = (
            list(observers) if observers is not None else build_observers(settings)
        )
        self._controls: list[object] = []  # control events from observers, for the engine task
        self._guard: CandleGuard | None = None  # market-data sanity, built once the engine is warm
        self._ref_prices: dict[str, Decimal] = {}  # client order id → the price it was sized on
        #: Second reference before large decisions (testnet / live), built with the guard.
        self._reference: ReferenceConfig | None = None
        self._speculation: _Speculation | None = None  # the state before an unusual candle
        #: The last order rejection (for the health file and ``tradebot status``), or None.
        self.last_error: str | None = None
        #: The venue's private stream is subscribed (``None``: there is none, or not yet).
        self.user_stream_up: bool | None = None

    def submit(self, event: object) -> None:
        """Queue a control event (e.g. a trading-state change from Telegram ``/pause``) for the engine
        task, which applies it before its next step (:class:`~tradebot.app.daemon.observers.DaemonControl`)."""
        self._controls.append(event)

    def request_stop(self, why: str = "request") -> None:
        """Stop taking candles; the service then shuts down gracefully."""
        if not self._stop.is_set():
            self.stopped_by = why
            log.info("shutdown_requested", reason=why)
            self._stop.set()
            if self.c is not None and why != "end_of_data":  # a signal: do not wait out a store outage
                self.c.store.interrupt(why)

    async def run(self) -> int:
        """Start, trade until stopped, shut down; return 0 on a clean stop."""
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=100_000)
        async with AsyncExitStack() as stack:
            c = self.c = await bootstrap(self.settings, self.options, stack, queue)
            await self._dispatch(c.startup_records)
            await self._checkpoint()
            self._install_signals(stack)
            self._last_open = {s: c.last_open.get(s, -1) for s in c.symbols}
            self._guard = self._build_guard(c)
            self._reference = reference_config(c.settings.daemon.sanity)
            log.info("trading_started", symbols=list(c.symbols), resumed=c.resumed)
            if self._on_ready is not None:
                self._on_ready(self)
            notify(self.observers, "on_started", self)
            async with asyncio.TaskGroup() as tg:
                feed = tg.create_task(c.feed.run(), name="feed")
                status = tg.create_task(self._status_loop(), name="status")
                watchers = [
                    tg.create_task(coro, name=f"observer-{obs.name}")
                    for obs in self.observers
                    if (coro := obs.task(self)) is not None
                ]
                if c.user_stream is not None:
                    watchers.append(tg.create_task(c.user_stream.run(), name="user-stream"))
                tg.create_task(self._engine_loop(others=(feed, status, *watchers)), name="engine")
            notify(self.observers, "on_stopped", self.stopped_by)
            await self._checkpoint()
            if self.options.finish_run and self.stopped_by == "end_of_data":
                await self._finish()
            log.info(
                "daemon_stopped",
                reason=self.stopped_by,
                candles=self.candles,
                orders=self.n_orders,
                open_orders=c.router.open_orders(),
                last_time_ms=c.engine.last_time_ms,
            )
        return 0

    def _install_signals(self, stack: AsyncExitStack) -> None:
        if not self.options.handle_signals:
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
            stack.callback(loop.remove_signal_handler, sig)

    # -- engine loop ------------------------------------------------------------------------------
    async def _engine_loop(self, others: Sequence[asyncio.Task[Any]]) -> None:
        c = self.c
        assert c is not None
        ds = c.settings.daemon
        seq = CandleSequencer(c.symbols, ds.sequencer_timeout_s)
        if isinstance(c.router, VenueRouter):
            c.router.on_control = self.submit  # venue pause / resume of new entries, applied below
        every = ds.checkpoint_interval_s
        now = time.monotonic()
        next_checkpoint, next_poll, next_reconcile = (
            now + every,
            now + ds.poll_interval_s,
            now + ds.reconcile_interval_s,
        )
        try:
            while not self._stop.is_set():
                pushed: list[object] = []  # from the venue's private stream
                try:
                    event = await asyncio.wait_for(c.queue.get(), timeout=0.2)
                    if isinstance(event, _PUSHED):
                        pushed.append(event)
                        ready = seq.release(time.monotonic())
                    else:
                        ready = seq.push(event, time.monotonic())
                except TimeoutError:
                    ready = seq.release(time.monotonic())
                if self._controls:
                    controls, self._controls = self._controls, []
                    for control in controls:
                        await self._dispatch(c.engine.handle(control))
                for ev in ready:
                    await self._process(ev)
                self.end_speculation()
                if isinstance(c.router, VenueRouter):
                    for item in pushed:
                        if await self._on_pushed(item):
                            next_poll = 0.0  # (re)subscribed: look up what the stream may have missed
                    now = time.monotonic()
                    if now >= next_poll:
                        await self._apply(await c.router.poll())
                        next_poll = now + ds.poll_interval_s
                    if now >= next_reconcile:  # a venue refusal is skipped, never fatal (venue_health)
                        out = await c.router.reconcile_periodic()
                        if out is not None:
                            c.last_reconciliation_ms = c.clock.now_ms()
                            await self._dispatch(out)
                        retry = c.router.retry_in_s()  # after a failed round: retry after the back-off
                        next_reconcile = now + min(ds.reconcile_interval_s, retry or ds.reconcile_interval_s)
                if ready and not self._changed:  # decided nothing: only records a replay rewrites alike
                    await c.writer.put(self._take_records())
                if self._changed or time.monotonic() >= next_checkpoint:
                    await (
                        self._checkpoint()
                    )  # right after a step with orders, fills or events: never re-decided
                    next_checkpoint = time.monotonic() + every
                if ready:
                    log.debug(
                        "engine_step", through_open_ms=min(self._last_open.values()), candles=self.candles
                    )
                    if self._on_progress is not None:
                        self._on_progress(self)
                if self._reached_stop_time():
                    self.request_stop("end_of_data")
        finally:
            for task in others:
                task.cancel()

    async def _on_pushed(self, item: object) -> bool:
        """Apply one item of the venue's private stream (engine task only); return True when the
        stream has just subscribed, so that the orders are polled at once."""
        c = self.c
        assert c is not None and isinstance(c.router, VenueRouter)
        if isinstance(item, OrderReport):
            await self._apply(await c.router.on_pushed(item))
            return False
        if isinstance(item, UserStreamStatus):
            self.user_stream_up = item.up
            return item.up
        return False  # AccountPosition: balances are compared over REST by reconciliation

    def _reached_stop_time(self) -> bool:
        stop_at = self.options.stop_at_open_ms
        return stop_at is not None and all(t >= stop_at for t in self._last_open.values())

    async def _process(self, event: Candle | FeedStatus) -> None:
        c = self.c
        assert c is not None
        spec = self._speculation
        if spec is not None and not (
            isinstance(event, Candle) and event.open_time_ms == spec.candle.open_time_ms
        ):
            self.end_speculation()  # the unusual candle's minute is over: its steps stand
        if isinstance(event, FeedStatus):
            notify(self.observers, "on_feed_status", event)
            await self._dispatch(c.engine.on_feed_status(event))
            return
        candle = event
        if self._guard is not None:
            screened = await self._screen(candle, self._guard)
            if screened is None:  # discarded: the minute is over for this symbol, the engine sees a gap
                self._last_open[candle.symbol] = candle.open_time_ms
                return
            candle = screened
        self.candles += 1
        self._last_open[candle.symbol] = candle.open_time_ms
        self._last_close_ms = candle.open_time_ms + 60_000
        log.debug(
            "candle_closed", symbol=candle.symbol, open_time_ms=candle.open_time_ms, close_quote=candle.close
        )
        if self._speculation is None:
            self._speculation = self._speculate(candle)
        else:
            self._speculation.after.append(candle)
        try:
            if isinstance(c.router, VenueRouter):
                resting = c.engine.resting_stop(candle.symbol)
                if resting is not None and to_decimal(candle.low) <= resting[1]:
                    # the venue has filled (or is filling) the stop: its fill before the candle, as
                    # the backtest's venue has it
                    await self._apply(await c.router.refresh(resting[0]))
            for ev in c.router.on_candle(candle):
                await self._dispatch(c.engine.handle(ev))
            await self._dispatch(c.engine.on_candle(candle))
        except _DecisionRolledBack as rolled:
            await self._roll_back(rolled.check)

    def end_speculation(self) -> None:
        """The engine task calls this after each batch of candles, before any other engine input
        (polls, reconciliation, controls): from then on the steps of an unusual candle stand, and the
        observers (metrics, alerts) get the records held back since it."""
        spec, self._speculation = self._speculation, None
        if spec is not None and self.observers:
            for rec in spec.held:
                notify(self.observers, "on_record", rec)

    def _speculate(self, candle: Candle) -> _Speculation | None:
        """Before a candle whose close is further than the second reference's band from the symbol's
        mark: what undoing it takes (the engine state, the records and trades so far), so that a large
        decision the venue's prices refuse — at this candle or at the other symbols' candles of the same
        minute, where the rebalance clock ticks — can be taken back with it. The window ends with the
        minute, with the batch of candles, or when an order is sent. ``None`` (nothing saved, the usual
        case) for an ordinary candle, without a venue, or without the signal book in the snapshot (a
        custom stream rule)."""
        c = self.c
        assert c is not None
        config = self._reference
        if config is None or not isinstance(c.router, VenueRouter):
            return None
        mark = c.engine.mark(candle.symbol)
        if not mark > 0 or abs(candle.close / mark - 1.0) <= config.max_deviation_fraction:
            return None
        state = c.engine.snapshot()
        if state.get("book") is None:
            return None
        return _Speculation(
            candle=candle,
            engine=json.loads(json.dumps(state)),
            records=len(self._records),
            trades=dict(self.trades),
            candles=self.candles - 1,
        )

    async def _roll_back(self, check: SecondReference) -> None:
        """Take back the unusual candle: a fresh engine restored from the state before it (as a
        restart would), the records and trades since dropped (nothing was sent or stored), the candle
        discarded (the engine sees a gap; a ``reference_mismatch`` event records it), and the other
        symbols' candles of its minute processed again."""
        c = self.c
        spec = self._speculation
        assert c is not None and spec is not None and isinstance(c.router, VenueRouter)
        self._speculation = None
        candle = spec.candle
        old = c.engine
        predictor = old.ml.predictor if old.ml is not None else None
        engine = Engine(old.config, {Symbol(s): i for s, i in old.instruments.items()}, predictor)
        engine.restore(spec.engine)
        c.engine = engine
        c.router.rebind(engine)
        del self._records[spec.records :]
        self.trades = spec.trades
        self.candles = spec.candles
        prices = _prices(check)
        log.warning(
            "decision_rolled_back",
            symbol=candle.symbol,
            open_time_ms=candle.open_time_ms,
            close_quote=candle.close,
            prices=prices,
            reason=check.refused,
        )
        self.last_error = f"{candle.symbol} candle @ {candle.open_time_ms} discarded: {check.refused}"[:300]
        event = engine.record_event(
            PositionEventType.REFERENCE_MISMATCH,
            candle.symbol,
            candle.open_time_ms + 60_000,
            f"live 1m candle @ {candle.open_time_ms} (close {candle.close}) led to a large decision; "
            f"{check.refused}",
            "decision taken back, candle discarded",
            price=to_decimal(candle.close),
            indicators={"prices": prices, "live_close": candle.close, "outcome": "rolled_back"},
        )
        self._changed = True
        await self._dispatch([event])
        for later in spec.after:
            await self._process(later)

    @staticmethod
    def _build_guard(c: Components) -> CandleGuard | None:
        sanity = c.settings.daemon.sanity
        if not sanity.enabled:
            return None
        return CandleGuard(guard_config(sanity), {s: c.engine.mark(s) for s in c.symbols})

    async def _screen(self, candle: Candle, guard: CandleGuard) -> Candle | None:
        """Return the candle the engine gets: ``candle`` unless the guard holds it, else the outcome
        of its REST check (confirmed, the REST candle, or ``None``: discarded). A held candle is logged
        and recorded as a ``market_data_suspect`` position event."""
        suspect = guard.check(candle)
        if suspect is None:
            return candle
        c = self.c
        assert c is not None
        open_ms = candle.open_time_ms
        log.warning(
            "market_data_suspect",
            symbol=candle.symbol,
            open_time_ms=open_ms,
            close_quote=candle.close,
            high_quote=candle.high,
            low_quote=candle.low,
            reference_close_quote=suspect.reference_close,
            move_fraction=round(suspect.move_fraction, 6),
        )
        error = None
        try:
            rest = await c.history.fetch_candles(candle.symbol, Timeframe.M1, open_ms, open_ms + 60_000)
        except (VenueError, DataError) as e:
            rest, error = [], f"{type(e).__name__}: {e}"
        res = guard.resolve(suspect, rest[0] if rest else None, rest_error=error)
        log.warning(
            "market_data_checked",
            symbol=candle.symbol,
            open_time_ms=open_ms,
            outcome=res.outcome,
            rest_close_quote=None if res.rest is None else res.rest.close,
            action=res.action,
        )
        indicators = {
            "live_close": candle.close,
            "live_high": candle.high,
            "live_low": candle.low,
            "reference_close": suspect.reference_close,
            "move_fraction": suspect.move_fraction,
            "outcome": res.outcome,
        }
        if res.rest is not None:
            indicators |= {"rest_close": res.rest.close, "rest_high": res.rest.high, "rest_low": res.rest.low}
        event = c.engine.record_event(
            PositionEventType.MARKET_DATA_SUSPECT,
            candle.symbol,
            candle.close_time_ms,
            f"live 1m candle @ {open_ms} {suspect.reason}",
            res.action,
            price=to_decimal(candle.close),
            indicators=indicators,
        )
        await self._dispatch([event])
        return res.candle

    async def _second_reference(
        self, orders: list[PlaceOrder | CancelOrder], config: ReferenceConfig
    ) -> list[PlaceOrder | CancelOrder]:
        """Return the orders to send: all of them, or only the cancels when the venue's prices refuse
        the step's large decision; the refused orders get a REJECTED update and a
        ``reference_mismatch`` position event records the prices (see
        :mod:`tradebot.app.daemon.reference_check`)."""
        c = self.c
        assert c is not None and isinstance(c.router, VenueRouter)
        places = [o for o in orders if type(o) is PlaceOrder]
        check = await c.router.second_reference(places, config, always=self._speculation is not None)
        if check is None:
            return orders
        prices = _prices(check)
        if check.refused is None:
            log.info("second_reference_agrees", orders=len(places), prices=prices, error=check.error)
            return orders
        if check.found and self._speculation is not None:
            raise _DecisionRolledBack(check)  # nothing was sent since the unusual candle: undo it
        t = c.engine.last_time_ms
        cids = tuple(o.client_order_id for o in places)
        log.warning("decision_refused", orders=len(places), client_order_ids=list(cids), prices=prices,
                    reason=check.refused)  # fmt: skip
        self.last_error = check.refused[:300]
        worst = max(check.found, key=lambda d: d.deviation, default=None)
        symbol = worst.symbol if worst is not None else places[0].symbol
        notional = sum((o.notional for o in places), Decimal(0))
        event = c.engine.record_event(
            PositionEventType.REFERENCE_MISMATCH,
            symbol,
            t,
            check.refused,
            f"{len(places)} order(s) of {notional:.2f} quote not sent",
            price=None if worst is None else worst.reference,
            client_order_ids=cids,
            indicators={"prices": prices, "error": check.error, "notional_quote": str(notional)},
        )
        await self._dispatch([event])
        reason = f"not sent: {check.refused}"[:300]
        await self._apply([
            OrderUpdate(client_order_id=o.client_order_id, symbol=o.symbol, status=OrderStatus.REJECTED, ts_ms=t,
                        reason=reason) for o in places
        ])  # fmt: skip
        return [o for o in orders if type(o) is CancelOrder]

    def _fill_far_from_reference(self, fill: Fill) -> PositionEvent | None:
        """Return a ``fill_far_from_reference`` event (and log a warning) when ``fill`` is further than
        ``TRADEBOT_DAEMON__SANITY__MAX_FILL_DEVIATION_FRACTION`` from its order's reference price."""
        c = self.c
        assert c is not None
        ref = self._ref_prices.get(fill.client_order_id)
        if ref is None or not ref > 0:
            return None
        deviation = abs(fill.price / ref - 1)
        limit = c.settings.daemon.sanity.max_fill_deviation_fraction
        if deviation <= to_decimal(limit):
            return None
        log.warning(
            "fill_far_from_reference",
            client_order_id=fill.client_order_id,
            symbol=fill.symbol,
            side=str(fill.side),
            price_quote=str(fill.price),
            ref_price_quote=str(ref),
            deviation_fraction=f"{deviation:.4f}",
        )
        return c.engine.record_event(
            PositionEventType.FILL_FAR_FROM_REFERENCE,
            fill.symbol,
            fill.ts_ms,
            f"{fill.side} filled at {fill.price} for a reference price of {ref} "
            f"({deviation:.1%} off, band {limit:.1%})",
            "reported",
            price=fill.price,
            client_order_ids=(fill.client_order_id,),
            indicators={"ref_price": str(ref), "deviation_fraction": float(deviation)},
        )

    async def _dispatch(self, commands: Sequence[object]) -> None:
        """Act on engine output: records first (stored, logged), then orders in the engine's order.

        With a real venue the engine's own order rows are not stored (the executor writes every
        order row, ``PENDING_SUBMIT`` before the send), and the engine state is checkpointed before
        an order not yet covered by a checkpoint is sent: a restart then never decides it again.
        """
        c = self.c
        assert c is not None
        venue = isinstance(c.router, VenueRouter)
        orders: list[PlaceOrder | CancelOrder] = []
        for cmd in commands:
            if type(cmd) is PlaceOrder or type(cmd) is CancelOrder:
                orders.append(cmd)
                continue
            kind = type(cmd)
            if kind is OrderRecord and venue:
                continue
            if type(cmd) is TradeRecord:
                self.trades[cmd.position_id] = cmd
            elif kind is Fill or kind is PositionEvent:
                self._changed = True
            self._log_record(cmd)
            self._records.append(cmd)
            if self._speculation is not None:
                self._speculation.held.append(cmd)  # told once the step stands, never if taken back
            elif self.observers:
                notify(self.observers, "on_record", cmd)
            if kind is Fill:
                far = self._fill_far_from_reference(cmd)  # type: ignore[arg-type]
                if far is not None:
                    await self._dispatch([far])
        if venue and self._reference is not None and orders:
            orders = await self._second_reference(orders, self._reference)
        for cmd in orders:
            self.end_speculation()  # sent: what led here can no longer be taken back
            if isinstance(cmd, CancelOrder):
                self._changed = True
                await self._apply(await c.router.cancel(cmd, c.engine.last_time_ms))
                continue
            if venue and cmd.client_order_id not in self._covered:
                await self._checkpoint()
            self._changed = True
            self.n_orders += 1
            self._ref_prices[cmd.client_order_id] = cmd.ref_price
            log.info(
                "order_submitted",
                client_order_id=cmd.client_order_id,
                symbol=cmd.symbol,
                side=str(cmd.side),
                qty_base=str(cmd.qty),
                ref_price_quote=str(cmd.ref_price),
                notional_quote=f"{cmd.notional:.2f}",
                reason=cmd.reason,
            )
            if self.observers:
                lag = None if self._last_close_ms is None else c.clock.now_ms() - self._last_close_ms
                notify(self.observers, "on_order_sent", cmd, lag)
            await self._apply(await c.router.submit(cmd))

    async def _apply(self, events: Sequence[Fill | OrderUpdate]) -> None:
        """Hand the venue's answers to the engine in order and act on its output."""
        c = self.c
        assert c is not None
        for ev in events:
            if type(ev) is OrderUpdate:
                self._log_update(ev)
                if self.observers:
                    notify(self.observers, "on_order_update", ev)
            await self._dispatch(c.engine.handle(ev))

    def _take_records(self) -> list[object]:
        records, self._records = self._records, []
        return records

    def _log_update(self, update: OrderUpdate) -> None:
        if update.status in (OrderStatus.REJECTED, OrderStatus.EXPIRED):
            self.last_error = f"order {update.client_order_id} {update.status}: {update.reason}"[:300]
            log.warning(
                "order_rejected",
                client_order_id=update.client_order_id,
                symbol=update.symbol,
                status=str(update.status),
                reason=update.reason,
            )

    def _log_record(self, rec: object) -> None:
        if type(rec) is Fill:
            log.info(
                "order_filled",
                client_order_id=rec.client_order_id,
                symbol=rec.symbol,
                side=str(rec.side),
                qty_base=str(rec.qty),
                price_quote=str(rec.price),
                fee_quote=str(rec.fee_quote),
                trade_id=rec.trade_id,
                time_ms=rec.ts_ms,
            )
        elif type(rec) is StreamSignal and rec.flipped:
            log.info(
                "stream_flipped",
                stream=rec.stream,
                state=str(rec.state),
                confidence=round(rec.confidence, 4),
                time_ms=rec.time_ms,
            )
        elif type(rec) is PositionEvent:
            ev = rec
            name = (
                "rebalance_planned"
                if ev.event_type in _REBALANCE
                else "risk_halt"
                if ev.event_type is PositionEventType.DAILY_LOSS_HALT
                else "position_event"
            )
            log.info(
                name,
                event_type=str(ev.event_type),
                symbol=ev.symbol,
                time_ms=ev.event_time_ms,
                price_quote=str(ev.price),
                size_before_base=str(ev.size_before),
                size_after_base=str(ev.size_after),
                trigger=ev.trigger_reason,
                action=ev.action_taken,
            )

    # -- checkpoints, status ----------------------------------------------------------------------
    async def _checkpoint(self) -> None:
        # The records since the last checkpoint and the state that counted them, in one transaction:
        # position events are numbered by the engine, so they must never outlive a lost checkpoint.
        c = self.c
        assert c is not None
        await c.writer.flush()  # the earlier steps' records first (trades are upserted in order)
        await c.store.commit_step(
            self._take_records(), run_id=c.run_id, state=checkpoint_state(c), updated_ms=c.clock.now_ms()
        )
        self._covered = set(c.engine.in_flight)
        self._changed = False
        log.debug("checkpoint_saved", last_time_ms=c.engine.last_time_ms)

    async def _finish(self) -> None:
        c = self.c
        assert c is not None
        final = c.engine.finish()
        self._records.extend(final)
        self.summary = build_run_summary(
            engine=c.engine,
            trades=[*self.trades.values(), *(r for r in final if type(r) is TradeRecord)],
            n_orders=self.n_orders,
            run_id=c.run_id,
            base=Timeframe.M1,
            n_candles=self.candles,
            gaps={},
            mode=c.settings.mode,
        )
        await c.writer.put(self._take_records())
        await c.writer.flush()
        await c.store.finish_run(
            run_id=c.run_id, status="completed", summary=self.summary, finished_ms=c.engine.last_time_ms
        )
        log.info("run_completed", final_equity_quote=str(self.summary.get("final_equity", "")))

    def last_candle_close_ms(self) -> dict[str, int]:
        """Close time of the last 1m candle taken per symbol, ms UTC (a symbol without one is left out)."""
        return {s: t + 60_000 for s, t in self._last_open.items() if t >= 0}

    def status(self) -> dict[str, Any]:
        """The fields of the status line now (see :func:`tradebot.app.daemon.status.status_fields`)."""
        c = self.c
        assert c is not None
        lag = None if self._last_close_ms is None else c.clock.now_ms() - self._last_close_ms
        return status_fields(
            c.engine, feed_lag_ms=lag, candles_processed=self.candles, open_orders=c.router.open_orders()
        )

    def health_report(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The health file's content now (see :mod:`tradebot.app.daemon.health`) from a status line."""
        c = self.c
        assert c is not None
        ds = c.settings.daemon
        now = c.clock.now_ms()
        recon = c.last_reconciliation_ms if isinstance(c.router, VenueRouter) else None
        return {
            "written_wall_ms": time.time_ns() // 1_000_000,
            "run_id": c.run_id,
            "mode": c.settings.mode,
            "venue": c.settings.venue,
            "pid": os.getpid(),
            "feed_lag_ms": fields["feed_lag_ms"],
            "last_candle_close_ms": self._last_close_ms,
            "trading_state": fields["trading_state"],
            "halt_reason": c.engine.overlay.risk.state().get("halt_reason") or None,
            "trading_blocked": getattr(c.router, "refusing", None),
            "last_error": self.last_error,
            "last_reconciliation_ms": recon,
            "reconciliation_age_s": None if recon is None else round((now - recon) / 1000, 1),
            "reconcile_max_age_s": ds.health_max_reconcile_age_s or 2 * ds.reconcile_interval_s + 60,
            "equity_quote": fields["equity_quote"],
            "user_stream_up": self.user_stream_up,
            **c.store.health.report(),
        }

    async def _status_loop(self) -> None:
        c = self.c
        assert c is not None
        interval = c.settings.daemon.status_interval_s
        store = c.store.health
        while True:
            store.changed.clear()
            fields = self.status()
            outage = store.report() if store.down else {}
            log.info("status", **fields, **outage)
            if self.observers:
                notify(self.observers, "on_status", {"run_id": c.run_id, **fields})
            with suppress(OSError):
                write_health(c.settings.daemon.health_file, self.health_report(fields))
            # a store outage beginning or ending is reported at once (this task never waits on the store)
            with suppress(TimeoutError):
                await asyncio.wait_for(store.changed.wait(), timeout=interval)


async def run_daemon(settings: Settings, options: DaemonOptions | None = None) -> int:
    """Run the daemon until stopped; return the process exit code."""
    return await Daemon(settings, options).run()


def guard_config(sanity: SanitySettings) -> GuardConfig:
    """The candle guard's rules from ``TRADEBOT_DAEMON__SANITY__*`` (whether it runs is ``enabled``)."""
    return GuardConfig(
        max_move_fraction=sanity.max_move_fraction,
        max_move_atr=sanity.max_move_atr,
        atr_period=sanity.atr_period,
        confirm_tolerance_fraction=sanity.confirm_tolerance_fraction,
    )


def reference_config(sanity: SanitySettings) -> ReferenceConfig | None:
    """The second reference's rules from ``TRADEBOT_DAEMON__SANITY__*``; ``None`` when switched off."""
    if not sanity.second_reference:
        return None
    return ReferenceConfig(
        large_decision_fraction=sanity.large_decision_fraction,
        max_deviation_fraction=sanity.max_reference_deviation_fraction,
    )


@dataclass(frozen=True, slots=True)
class _Speculation:
    candle: Candle  # the unusual candle
    engine: dict[str, Any]  # the engine snapshot before it (JSON data, nothing shared)
    records: int  # len(daemon._records) before it
    trades: dict[str, TradeRecord]
    candles: int  # daemon.candles before it
    after: list[Candle] = field(default_factory=list)  # the other symbols' candles of its minute since
    held: list[object] = field(default_factory=list)  # records not yet told to the observers


class _DecisionRolledBack(Exception):
    """Raised inside a speculative step whose large decision the venue's prices refuse."""

    def __init__(self, check: SecondReference) -> None:
        super().__init__(check.refused)
        self.check = check


def _prices(check: SecondReference) -> dict[str, dict[str, str]]:
    return {str(s): {"mark": str(check.marks[s]), "venue": str(p)} for s, p in check.references.items()}
