"""Order execution for the live daemon: engine ``PlaceOrder`` → venue → engine ``Fill`` / ``OrderUpdate``.

Guarantees (the "never duplicated, never lost" rules):

1. **Persist before send.** The order row is committed with status ``PENDING_SUBMIT`` (``await
   store.write``) before the request leaves; a crash after the send leaves a row that restart
   reconciliation resolves by client order id (:mod:`tradebot.app.daemon.reconcile`).
2. **Send once.** A submit is never retried as such. Its outcome is ACCEPTED (or already filled),
   REJECTED (definitive, with the venue's reason), DENIED (refused locally by the instrument
   filters, never sent) or UNKNOWN. A request the venue refused *before processing* (HTTP 429,
   ``-1021``; the venue raises ``VenueUnavailable``) placed nothing and is sent again with the same
   client order id, at most ``resend_limit`` times.
3. **UNKNOWN is resolved by lookup only**: ``fetch_order`` by client order id with backoff; while it
   says "not found", recent trades are searched for the id; only after ``not_placed_after_s``
   (beyond the venue's receive window, after which the request can no longer execute) *and* many
   lookups is the order concluded never placed (REJECTED). Unresolved orders stay UNKNOWN and are
   looked up again by :meth:`OrderExecutor.poll`.
4. **Every fill exactly once.** Fills (from the submit answer, lookups and trade listings) are
   de-duplicated by (symbol, trade id) before they are returned or persisted; a fill reported after
   a cancel is still returned. Orders are tracked until terminal *and* their fills add up to the
   venue's filled quantity.

Returned events are in the order the engine must apply them: status updates that carry the
exchange id first, then fills, then a terminal CANCELED / EXPIRED / REJECTED update (FILLED is
implied by the fills).

Pushed reports (the venues' private streams, :meth:`OrderExecutor.apply_pushed`) go through the same
path as lookups, so a fill seen by the stream and by a poll is returned once. A venue may push a
report twice, late or out of order: a pushed status only moves forward (accepted → partially filled
→ a terminal one), and a report that adds nothing writes nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

import structlog

from tradebot.core.domain import (
    ZERO,
    CancelOrder,
    ClientOrderId,
    Fill,
    Instrument,
    OrderRecord,
    OrderStatus,
    OrderUpdate,
    PlaceOrder,
    Side,
    Symbol,
)
from tradebot.errors import OrderRejected, VenueBanned, VenueError, VenueUnavailable
from tradebot.ports import OrderReport, Venue

log = structlog.get_logger("tradebot.execution")

Event = Fill | OrderUpdate


class RecordSink(Protocol):
    """Where the executor commits order rows and fills (``SqlEventStore``): ``write`` returns after the commit."""

    async def write(self, records: Sequence[object]) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionConfig:
    """Timing of the executor (wall seconds).

    Attributes
    ----------
    lookup_initial_s, lookup_max_s
        Backoff between lookups of an UNKNOWN order: doubles from ``initial`` up to ``max`` (0.5 / 5).
    not_placed_after_s
        An order still not found this long after its send (and after ``min_lookups``) is concluded
        never placed (default 30 s: three times ccxt's 10 s Binance ``recvWindow``).
    min_lookups
        Lookups that must say "not found" before that conclusion (default 5).
    resolve_timeout_s
        How long :meth:`OrderExecutor.submit` resolves inline before leaving the order UNKNOWN for
        :meth:`OrderExecutor.poll` (default 60 s).
    resend_limit
        Re-sends after a "not processed" refusal (429, clock skew) before giving up (default 3).
    trade_lookback_ms
        Trades are listed from ``created_ms − lookback`` (default 60 000).
    resting_poll_s
        A stop order resting at the venue is looked up at most this often by :meth:`OrderExecutor.poll`
        (default 30 s; it may rest for days — its fill comes by the private stream, by the daemon's
        look-up before a candle that reaches it, or by this poll).
    """

    lookup_initial_s: float = 0.5
    lookup_max_s: float = 5.0
    not_placed_after_s: float = 30.0
    min_lookups: int = 5
    resolve_timeout_s: float = 60.0
    resend_limit: int = 3
    trade_lookback_ms: int = 60_000
    resting_poll_s: float = 30.0


@dataclass(slots=True)
class TrackedOrder:
    """The executor's view of one order it is responsible for."""

    cmd: PlaceOrder
    status: OrderStatus = OrderStatus.PENDING_SUBMIT
    exchange_order_id: str | None = None
    venue_filled: Decimal = ZERO
    fills: dict[str, Fill] = field(default_factory=dict)
    sent_at_s: float = 0.0
    misses: int = 0
    reason: str = ""
    updated_ms: int = 0
    announced: bool = False  # the terminal CANCELED / EXPIRED / REJECTED update was returned
    polled_at_s: float = float("-inf")  # last poll look-up (monotonic), for resting stops

    @property
    def filled(self) -> Decimal:
        """Σ applied fill quantities, base units."""
        return sum((f.qty for f in self.fills.values()), ZERO)

    @property
    def done(self) -> bool:
        """Terminal, and every fill the venue reported has been applied."""
        return self.status.is_terminal and self.filled >= self.venue_filled


class OrderExecutor:
    """Submits engine orders through a :class:`~tradebot.ports.Venue` and tracks them to completion.

    Parameters
    ----------
    venue
        The execution venue (``CcxtVenue``, or ``SimulatedVenue`` in tests).
    store
        Commits ``OrderRecord`` and ``Fill`` rows (idempotent upserts / inserts).
    instruments
        Filters of the traded symbols (local DENIED checks).
    now_ms
        Clock for record times, ms UTC.
    config
        Timing (see :class:`ExecutionConfig`).
    sleep
        Awaitable sleep in seconds (tests may speed it up).
    """

    def __init__(self, venue: Venue, store: RecordSink, instruments: Mapping[Symbol, Instrument], *,
                 now_ms: Callable[[], int], config: ExecutionConfig | None = None,
                 sleep: Callable[[float], object] = asyncio.sleep,
                 monotonic: Callable[[], float] | None = None) -> None:  # fmt: skip
        self.venue, self.store, self.instruments = venue, store, dict(instruments)
        self.config = config or ExecutionConfig()
        self._now_ms, self._sleep = now_ms, sleep
        self._monotonic = monotonic or time.monotonic
        self.orders: dict[ClientOrderId, TrackedOrder] = {}
        self._seen: set[tuple[str, str]] = set()  # (symbol, trade id) of every fill returned

    # ------------------------------------------------------------------ public API
    def open_orders(self) -> int:
        """Number of orders not yet done (open at the venue, UNKNOWN, or with fills outstanding)."""
        return sum(1 for t in self.orders.values() if not t.done)

    def unresolved(self) -> list[ClientOrderId]:
        """Client order ids still UNKNOWN or PENDING_SUBMIT (trading on their symbols must wait)."""
        return [
            c for c, t in self.orders.items() if t.status in (OrderStatus.UNKNOWN, OrderStatus.PENDING_SUBMIT)
        ]

    def mark_seen(self, fills: Sequence[Fill]) -> None:
        """Record fills already applied to the ledger (after a restart), so they are not returned again."""
        self._seen.update((f.symbol, f.trade_id) for f in fills)

    def adopt(self, cmd: PlaceOrder, status: OrderStatus, *, exchange_order_id: str | None = None,
              fills: Sequence[Fill] = ()) -> None:  # fmt: skip
        """Track an order this process did not send (restart, or found at the venue by reconciliation).

        ``fills`` already applied are remembered; :meth:`poll` then drives it to completion (an
        UNKNOWN or PENDING_SUBMIT one is resolved by lookup first).
        """
        t = TrackedOrder(cmd, status, exchange_order_id, sent_at_s=self._monotonic())
        for f in fills:
            t.fills[f.trade_id] = f
            self._seen.add((f.symbol, f.trade_id))
        t.venue_filled = t.filled
        self.orders[cmd.client_order_id] = t

    async def submit(self, cmd: PlaceOrder) -> list[Event]:
        """Send ``cmd`` once (see the module docstring) and return the events for the engine.

        Submitting a client order id this executor already knows sends nothing and returns ``[]``.

        Raises
        ------
        Exception
            Whatever ``store.write`` raises for the PENDING_SUBMIT row (nothing is sent then).
        """
        cid = cmd.client_order_id
        if cid in self.orders:
            log.warning(
                "order_submit_ignored", client_order_id=cid, reason="client order id already submitted"
            )
            return []
        t = TrackedOrder(cmd)
        self.orders[cid] = t
        denial = self._local_denial(cmd)
        if denial is not None:
            return await self._finish_denied(t, denial)
        try:
            await self.store.write([self._record(t)])  # committed before the request is sent
        except BaseException:
            del self.orders[cid]  # nothing was sent: the same command may be submitted again
            raise
        t.sent_at_s = self._monotonic()
        report = await self._send(t)
        out: list[Event] = []
        if report is None:  # refused definitively (t.status and t.reason are set): nothing was placed
            log.warning("order_rejected", client_order_id=cid, reason=t.reason[:200])
            await self.store.write([self._record(t)])
            t.announced = True
            return [self._update(t)]
        if report.status is OrderStatus.UNKNOWN:
            t.status, t.reason = OrderStatus.UNKNOWN, report.reason
            await self.store.write([self._record(t)])
            out.append(self._update(t))
            report = await self._resolve(t, deadline_s=self._monotonic() + self.config.resolve_timeout_s)
            if report is None:
                return out
        return await self._emit(t, report, out)

    async def cancel(self, cmd: CancelOrder) -> list[Event]:
        """Cancel an order; its true final state (and any fill, even after the cancel) is returned.

        A "not found / not open" answer never marks the order cancelled: the order is looked up.
        """
        t = self.orders.get(cmd.client_order_id)
        if t is None:
            log.warning("cancel_unknown_order", client_order_id=cmd.client_order_id)
            return []
        try:
            report: OrderReport | None = await self.venue.cancel(cmd.symbol, cmd.client_order_id)
        except (OrderRejected, VenueError) as e:
            log.info("cancel_not_confirmed", client_order_id=cmd.client_order_id, error=str(e)[:200])
            report = await self._lookup(t)
        if report is None:
            return []
        return await self._emit(t, report, [])

    async def poll(self) -> list[Event]:
        """Look up every order not yet done once; return the new events (call periodically)."""
        out: list[Event] = []
        now = self._monotonic()
        for t in list(self.orders.values()):
            if t.done:
                continue
            if t.status in (OrderStatus.UNKNOWN, OrderStatus.PENDING_SUBMIT):
                report = await self._resolve(t, deadline_s=now)
            else:
                if t.cmd.order_type.is_stop and t.status is OrderStatus.ACCEPTED:
                    if now - t.polled_at_s < self.config.resting_poll_s:
                        continue  # resting: its fill comes by the stream or the candle look-up
                    t.polled_at_s = now
                report = await self._lookup(t)
            if report is not None:
                out = await self._emit(t, report, out)
        return out

    async def refresh(self, client_order_id: ClientOrderId) -> list[Event]:
        """Look one tracked order up now and return the new events (its fills once, its status);
        ``[]`` for an order not tracked or done. The daemon calls it for a resting stop before
        handing the engine a candle that reaches it, so the fill comes before the candle, as in the
        backtest."""
        t = self.orders.get(client_order_id)
        if t is None or t.done:
            return []
        return await self._emit(t, await self._lookup(t), [])

    async def apply_pushed(self, report: OrderReport) -> list[Event]:
        """Apply a report a venue pushed (private stream) and return the new events for the engine.

        The report goes through the path of a lookup's (fills once by (symbol, trade id), persisted
        before they are returned), but its status is taken only when it moves the order forward
        (module docstring). A report of an order this executor does not track (a manual order, or
        one of another client of the account) is ignored: reconciliation adopts such orders.
        """
        t = self.orders.get(report.client_order_id)
        if t is None:
            log.debug("pushed_report_untracked", client_order_id=report.client_order_id, symbol=report.symbol)
            return []
        report = self._forward(t, report)
        fresh = any(f.client_order_id == t.cmd.client_order_id and (f.symbol, f.trade_id) not in self._seen
                    for f in report.fills)  # fmt: skip
        moved = report.status is not OrderStatus.UNKNOWN and report.status is not t.status
        if not (fresh or moved or report.filled_qty > t.venue_filled
                or (report.exchange_order_id and report.exchange_order_id != t.exchange_order_id)):  # fmt: skip
            return []
        return await self._emit(t, report, [])

    async def drive(self, *, timeout_s: float, interval_s: float = 0.05) -> list[Event]:
        """Poll until every order is done or ``timeout_s`` passes (tests, shutdown); return the events."""
        out: list[Event] = []
        deadline = self._monotonic() + timeout_s
        while self.open_orders() and self._monotonic() < deadline:
            out.extend(await self.poll())
            if self.open_orders():
                await self._sleep(interval_s)  # type: ignore[misc]
        return out

    # ------------------------------------------------------------------ steps
    def _local_denial(self, cmd: PlaceOrder) -> str | None:
        inst = self.instruments.get(cmd.symbol)
        if inst is None:
            return f"unknown symbol {cmd.symbol!r}"
        # the price the venues check the notional at: a limit's, else a stop's trigger, else the mark
        price = cmd.limit_price or cmd.stop_price or cmd.ref_price
        return inst.check_order(cmd.qty, price)

    async def _finish_denied(self, t: TrackedOrder, reason: str) -> list[Event]:
        t.status, t.reason = OrderStatus.DENIED, reason
        log.warning("order_denied", client_order_id=t.cmd.client_order_id, symbol=t.cmd.symbol, reason=reason)
        await self.store.write([self._record(t)])
        return [self._update(t)]

    async def _send(self, t: TrackedOrder) -> OrderReport | None:
        cmd = t.cmd
        for attempt in range(self.config.resend_limit + 1):
            try:
                return await self.venue.submit(cmd)
            except OrderRejected as e:  # includes InsufficientFunds
                t.status, t.reason = OrderStatus.REJECTED, str(e).removeprefix(f"{cmd.client_order_id}: ")
                return None
            except VenueBanned as e:
                t.status, t.reason = OrderStatus.REJECTED, f"not placed: {e}"
                return None
            except VenueUnavailable as e:  # refused before processing: nothing was placed
                log.warning("order_not_processed", client_order_id=cmd.client_order_id, attempt=attempt + 1,
                            error=str(e)[:200])  # fmt: skip
                t.reason = str(e)
            except Exception as e:  # it may have been sent: the outcome is unknown
                return OrderReport(client_order_id=cmd.client_order_id, symbol=cmd.symbol, status=OrderStatus.UNKNOWN,
                                   qty=cmd.qty, filled_qty=ZERO, ts_ms=self._now_ms(), reason=repr(e)[:300])  # fmt: skip
        t.status = OrderStatus.REJECTED
        t.reason = f"not placed after {self.config.resend_limit + 1} refusals: {t.reason}"
        return None

    async def _lookup(self, t: TrackedOrder) -> OrderReport | None:
        try:
            report = await self.venue.fetch_order(t.cmd.symbol, t.cmd.client_order_id)
        except VenueError as e:
            log.warning("order_lookup_failed", client_order_id=t.cmd.client_order_id, error=str(e)[:200])
            return None
        if report is None:
            t.misses += 1
        return report

    async def _resolve(self, t: TrackedOrder, *, deadline_s: float) -> OrderReport | None:
        """Resolve an UNKNOWN / PENDING_SUBMIT order by lookups (never by re-sending)."""
        cfg, wait = self.config, self.config.lookup_initial_s
        while True:
            report = await self._lookup(t)
            if report is not None:
                log.info("order_state_resolved", client_order_id=t.cmd.client_order_id, status=report.status)
                return report
            fills = await self._trades_of(t)
            if fills:  # the venue executed it although the lookup cannot see it yet
                return OrderReport(client_order_id=t.cmd.client_order_id, symbol=t.cmd.symbol,
                                   status=OrderStatus.UNKNOWN, qty=t.cmd.qty,
                                   filled_qty=sum((f.qty for f in fills), ZERO), ts_ms=self._now_ms(),
                                   fills=tuple(fills))  # fmt: skip
            elapsed = self._monotonic() - t.sent_at_s
            if elapsed >= cfg.not_placed_after_s and t.misses >= cfg.min_lookups:
                return OrderReport(client_order_id=t.cmd.client_order_id, symbol=t.cmd.symbol,
                                   status=OrderStatus.REJECTED, qty=t.cmd.qty, filled_qty=ZERO,
                                   ts_ms=self._now_ms(),
                                   reason=f"never placed: not found in {t.misses} lookups over {elapsed:.0f} s")  # fmt: skip
            if self._monotonic() + wait > deadline_s:
                return None
            await self._sleep(wait)  # type: ignore[misc]
            wait = min(wait * 2, cfg.lookup_max_s)

    async def _trades_of(self, t: TrackedOrder) -> list[Fill]:
        try:
            trades = await self.venue.fetch_my_trades(
                t.cmd.symbol, t.cmd.created_ms - self.config.trade_lookback_ms
            )
        except VenueError as e:
            log.warning("trade_listing_failed", client_order_id=t.cmd.client_order_id, error=str(e)[:200])
            return []
        return [f for f in trades if f.client_order_id == t.cmd.client_order_id]

    async def _emit(self, t: TrackedOrder, report: OrderReport | None, out: list[Event]) -> list[Event]:
        """Apply a venue report: new fills (once), status changes; persist; append engine events."""
        before = t.status
        if report is not None:
            if report.exchange_order_id:
                t.exchange_order_id = report.exchange_order_id
            t.venue_filled = max(t.venue_filled, report.filled_qty)
            if report.status is not OrderStatus.UNKNOWN:
                t.status, t.reason = report.status, report.reason or t.reason
        new = self._new_fills(t, report.fills if report else ())
        if t.filled < t.venue_filled:  # the answer did not carry every fill: list the trades
            new += self._new_fills(t, await self._trades_of(t))
        if t.status is OrderStatus.UNKNOWN and t.venue_filled > 0 and t.filled >= t.cmd.qty:
            t.status = OrderStatus.FILLED
        await self.store.write([self._record(t), *new])
        if before in (OrderStatus.PENDING_SUBMIT, OrderStatus.UNKNOWN) and t.status is not before:
            if t.status is OrderStatus.REJECTED:
                log.warning("order_rejected", client_order_id=t.cmd.client_order_id, reason=t.reason[:200])
                t.announced = True
            out.append(self._update(t, OrderStatus.REJECTED if t.announced else OrderStatus.ACCEPTED))
        out.extend(new)
        if t.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED) and t.done and not t.announced:
            t.announced = True
            out.append(self._update(t))
        return out

    def _forward(self, t: TrackedOrder, report: OrderReport) -> OrderReport:
        # a pushed report older than what is known keeps its fills but not its status
        if report.status is OrderStatus.UNKNOWN or t.status is OrderStatus.UNKNOWN:
            return report
        if _RANK.get(report.status, 3) > _RANK.get(t.status, 3) or (report.status is t.status):
            return report
        return dataclasses.replace(report, status=OrderStatus.UNKNOWN, reason="")

    def _new_fills(self, t: TrackedOrder, fills: Sequence[Fill]) -> list[Fill]:
        new = []
        for f in fills:
            key = (f.symbol, f.trade_id)
            if f.client_order_id != t.cmd.client_order_id or key in self._seen:
                continue
            self._seen.add(key)
            t.fills[f.trade_id] = f
            new.append(f)
        return new

    # ------------------------------------------------------------------ records
    def _update(self, t: TrackedOrder, status: OrderStatus | None = None) -> OrderUpdate:
        return OrderUpdate(client_order_id=t.cmd.client_order_id, symbol=t.cmd.symbol, status=status or t.status,
                           ts_ms=self._now_ms(), exchange_order_id=t.exchange_order_id,  # type: ignore[arg-type]
                           reason=t.reason)  # fmt: skip

    def _record(self, t: TrackedOrder) -> OrderRecord:
        cmd = t.cmd
        filled = t.filled
        notional = sum((f.qty * f.price for f in t.fills.values()), ZERO)
        t.updated_ms = max(t.updated_ms, self._now_ms(), cmd.created_ms)
        return OrderRecord(
            client_order_id=cmd.client_order_id, symbol=cmd.symbol, side=cmd.side, order_type=cmd.order_type,
            qty=cmd.qty, status=t.status, filled_qty=filled, avg_fill_price=notional / filled if filled else ZERO,
            fees_quote=sum((f.fee_quote for f in t.fills.values()), ZERO), reason=cmd.reason,
            intent_id=cmd.intent_id, created_ms=cmd.created_ms, updated_ms=t.updated_ms, ref_price=cmd.ref_price,
            exchange_order_id=t.exchange_order_id, status_reason=t.reason[:500], stop_price=cmd.stop_price,
            limit_price=cmd.limit_price,
        )  # fmt: skip


#: How far an order has come: a pushed status of a lower rank is stale (terminal ones rank 3).
_RANK = {OrderStatus.PENDING_SUBMIT: 0, OrderStatus.ACCEPTED: 1, OrderStatus.PARTIALLY_FILLED: 2}


def signed_qty(fills: Sequence[Fill]) -> Decimal:
    """Σ signed fill quantities (buys positive), base units."""
    return sum((f.qty if f.side is Side.BUY else -f.qty for f in fills), ZERO)
