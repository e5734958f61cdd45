"""Testnet / live execution for the daemon: engine orders → :class:`OrderExecutor` → a ccxt venue.

:class:`VenueRouter` has the daemon-facing shape of :class:`~tradebot.app.paper.PaperRouter`
(``submit`` / ``cancel`` / ``on_candle`` / ``open_orders`` / ``state``) plus the start-up and periodic
reconciliation and the executor's polling.

**When the engine sees the venue's answers.** A submit's leading status updates (ACCEPTED,
REJECTED, DENIED) go to the engine at once, stamped with the order's decision time. Fills, and
whatever follows a fill, are held per symbol and handed to the engine just before that symbol's
next closed candle (:meth:`VenueRouter.on_candle`), exactly when the backtest's simulated venue
delivers them. So the daemon decides like a backtest of the same candles; the price is that the
ledger learns of a fill up to one base candle (1 minute) after the venue. Held events are part of
the daemon's checkpoint (:meth:`state`), so a restart hands them over at the same point.

**Restart** (:meth:`start`): see the method. In short, every order the restored engine has in flight
is resolved at the venue by client order id; an in-flight order without any database row was never
sent (the executor commits the ``PENDING_SUBMIT`` row before every send, and the daemon never
stores the engine's own order rows in this mode), so it is sent now.

**Balances.** The ledger covers the bot's own money: a fresh run records the venue's balances as
its baseline, and reconciliation compares ``venue − baseline`` with ``ledger − initial cash`` (plus
the fills held for the engine).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import structlog

from tradebot.app.execution import Event, OrderExecutor
from tradebot.app.reconcile import ReconcileConfig, reconcile
from tradebot.core.domain import (
    ZERO,
    CancelOrder,
    Candle,
    ClientOrderId,
    ExchangeOrderId,
    Fill,
    OrderRecord,
    OrderStatus,
    OrderUpdate,
    PlaceOrder,
    PositionEvent,
    PositionEventType,
    Side,
    Symbol,
    TradeId,
    to_decimal,
)
from tradebot.core.engine import Engine
from tradebot.errors import ConfigError

log = structlog.get_logger("tradebot.daemon")

_IMMEDIATE = frozenset({OrderStatus.ACCEPTED, OrderStatus.REJECTED, OrderStatus.DENIED})


class VenueRouter:
    """Routes engine orders to a real venue through the executor; see the module docstring.

    Parameters
    ----------
    executor
        The order executor (its venue is the ccxt venue; its store commits before returning).
    quote
        Quote asset code (``"USDT"``).
    reconcile_config
        Tolerances and windows of reconciliation.
    """

    def __init__(
        self, executor: OrderExecutor, *, quote: str, reconcile_config: ReconcileConfig | None = None
    ) -> None:
        self.executor = executor
        self.venue = executor.venue
        self.name = getattr(self.venue, "name", "venue")
        self.quote = quote
        self.reconcile_config = reconcile_config or ReconcileConfig()
        self.baseline: dict[str, Decimal] = {}
        self.refusing: str | None = None
        self._held: dict[str, deque[Event]] = {s: deque() for s in executor.instruments}
        self._known: dict[tuple[str, str], Fill] = {}
        self._engine: Engine | None = None
        self._since_ms = 0

    # -- orders -----------------------------------------------------------------------------------
    async def submit(self, cmd: PlaceOrder) -> list[OrderUpdate]:
        """Send ``cmd`` through the executor; return the leading status updates for the engine now
        (fills and later updates are held for the symbol's next candle)."""
        if self.refusing is not None:
            return [_update(cmd.client_order_id, cmd.symbol, OrderStatus.REJECTED, cmd.created_ms,
                            f"not sent: {self.refusing}"[:300])]  # fmt: skip
        return self._route(await self.executor.submit(cmd), decided_ms=cmd.created_ms)

    async def cancel(self, cmd: CancelOrder, now_ms: int) -> list[OrderUpdate]:
        """Cancel through the executor; its answers (the order's true final state) are held like fills."""
        self._hold(await self.executor.cancel(cmd))
        return []

    async def poll(self) -> int:
        """Look up the orders not yet done (call periodically); their news is held for the engine.
        Returns the number of new events."""
        if not self.executor.open_orders():
            return 0
        events = await self.executor.poll()
        self._hold(events)
        return len(events)

    def on_candle(self, candle: Candle) -> list[Fill | OrderUpdate]:
        """Return the events held for ``candle.symbol``, updates stamped with the candle's open time."""
        held = self._held.get(candle.symbol)
        if not held:
            return []
        out: list[Fill | OrderUpdate] = []
        while held:
            ev = held.popleft()
            out.append(ev if type(ev) is Fill else dataclasses.replace(ev, ts_ms=candle.open_time_ms))
        return out

    def open_orders(self) -> int:
        """Orders the executor still tracks (open, unknown, or fills outstanding)."""
        return self.executor.open_orders()

    def held(self) -> list[Event]:
        """Every event held for the engine, per symbol in arrival order."""
        return [ev for q in self._held.values() for ev in q]

    def _route(self, events: Sequence[Event], *, decided_ms: int) -> list[OrderUpdate]:
        now: list[OrderUpdate] = []
        held_ids: set[str] = set()
        for ev in events:
            if type(ev) is OrderUpdate and ev.client_order_id not in held_ids and ev.status in _IMMEDIATE:
                now.append(dataclasses.replace(ev, ts_ms=decided_ms))
            else:
                held_ids.add(ev.client_order_id)
                self._hold([ev])
        return now

    def _hold(self, events: Iterable[Event]) -> None:
        for ev in events:
            if type(ev) is Fill:
                self._known[(ev.symbol, ev.trade_id)] = ev
            self._held.setdefault(ev.symbol, deque()).append(ev)

    # -- checkpoint -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The baseline balances and the held events as JSON data (Decimals as strings)."""
        return {
            "baseline": {a: str(v) for a, v in sorted(self.baseline.items())},
            "held": [event_to_json(ev) for ev in self.held()],
            "since_ms": self._since_ms,
        }

    # -- reconciliation ---------------------------------------------------------------------------
    def _ledger(self, engine: Engine) -> tuple[dict[str, Decimal], Decimal]:
        """The ledger as the venue should see it: held fills applied, baseline added."""
        positions = {s: engine.ledger.position(s) for s in engine.symbols}
        cash = engine.ledger.cash
        for ev in self.held():
            if type(ev) is Fill:
                sign = 1 if ev.side is Side.BUY else -1
                positions[ev.symbol] = positions.get(ev.symbol, ZERO) + sign * ev.qty
                cash -= sign * ev.qty * ev.price + ev.fee_quote
        for sym in positions:
            positions[sym] += self.baseline.get(engine.instruments[sym].base, ZERO)
        cash += self.baseline.get(self.quote, ZERO) - engine.config.initial_cash
        return positions, cash

    def _event_factory(self, engine: Engine) -> Callable[..., PositionEvent]:
        def make(kind: PositionEventType, symbol: Symbol, t: int, reason: str, action: str,
                 before: Decimal, after: Decimal) -> PositionEvent:  # fmt: skip
            return engine.record_event(kind, symbol, t, reason, action, size_before=before, size_after=after)

        return make

    async def start(self, engine: Engine, *, db_orders: Sequence[OrderRecord], db_fills: Sequence[Fill],
                    saved: Mapping[str, Any] | None, fresh_since_ms: int) -> list[object]:  # fmt: skip
        """Reconcile at start, before any order; return the engine's output for the records.

        ``saved`` is this router's part of the checkpoint (``None`` for a fresh run). Steps:

        1. a fresh run records the venue balances as its baseline (refused when the free quote
           balance is below the configured initial cash); a resumed run reloads baseline and held
           events;
        2. fills count as applied when the engine applied them, holds them, or their order is no
           longer in flight in the engine;
        3. every order the engine has in flight and the database knows is looked up at the venue
           (a row the venue refused definitively is answered from the row); the database's other
           open orders and unknown venue orders are adopted (:func:`~tradebot.app.reconcile.reconcile`);
        4. balances are compared (``ok`` False → :class:`ConfigError` with the report's message);
        5. in-flight orders without a database row were never sent: they are sent now.

        Raises
        ------
        ConfigError
            When reconciliation refuses to trade, or the account lacks the initial cash.
        """
        self._engine = engine
        out: list[object] = []
        if saved is None:
            self.baseline = await self.venue.fetch_balances()
            have, need = self.baseline.get(self.quote, ZERO), engine.config.initial_cash
            if have < need:
                raise ConfigError(f"the {self.name} account holds {have} {self.quote}, less than the configured "
                                  f"initial cash {need} (TRADEBOT_BACKTEST__INITIAL_CASH)")  # fmt: skip
            self._since_ms = fresh_since_ms
        else:
            self.baseline = {a: Decimal(v) for a, v in saved["baseline"].items()}
            self._hold(event_from_json(e) for e in saved["held"])
            self._since_ms = int(saved.get("since_ms", fresh_since_ms))
        in_flight = engine.in_flight
        held = {(f.symbol, f.trade_id) for f in self.held() if type(f) is Fill}
        applied = [f for f in db_fills if f.client_order_id not in in_flight or (f.symbol, f.trade_id) in held
                   or f.trade_id in engine.orders[ClientOrderId(f.client_order_id)].fill_ids]  # fmt: skip
        rows: list[OrderRecord] = []
        known = set()
        for r in db_orders:
            known.add(r.client_order_id)
            if r.client_order_id in in_flight:
                if r.status in (OrderStatus.REJECTED, OrderStatus.DENIED) and not r.exchange_order_id:
                    update = _update(
                        r.client_order_id, r.symbol, r.status, engine.last_time_ms, r.status_reason
                    )
                    out.extend(engine.on_order_update(update))
                    continue
                if r.status.is_terminal:  # the engine has not seen its end: look it up again
                    r = dataclasses.replace(r, status=OrderStatus.ACCEPTED)
            rows.append(r)
        out.extend(await self._reconcile(engine, rows, applied, startup=True))
        for cid in sorted(in_flight - known):
            order = engine.orders[cid]
            cmd = PlaceOrder(client_order_id=cid, symbol=order.symbol, side=order.side, qty=order.qty,
                             ref_price=to_decimal(engine.mark(order.symbol)), reason=order.reason,
                             intent_id=cid.rsplit("-", 1)[0], created_ms=order.created_ms,
                             order_type=order.order_type, limit_price=order.limit_price)  # fmt: skip
            log.info("order_sent_after_restart", client_order_id=cid, symbol=order.symbol)
            for update in await self.submit(cmd):
                out.extend(engine.on_order_update(update))
        return out

    async def _reconcile(self, engine: Engine, rows: Sequence[OrderRecord], applied: Iterable[Fill], *,
                         startup: bool) -> list[object]:  # fmt: skip
        applied = list(applied)
        for f in applied:
            self._known[(f.symbol, f.trade_id)] = f
        positions, cash = self._ledger(engine)
        now = engine.last_time_ms
        report = await reconcile(self.executor, db_orders=rows, applied=list(self._known.values()),
                                 ledger_positions=positions, ledger_cash=cash, quote=self.quote,
                                 since_ms=self._since_ms, now_ms=now, events=self._event_factory(engine),
                                 config=self.reconcile_config, startup=startup)  # fmt: skip
        if startup:
            immediate = self._route(report.events, decided_ms=now)
            out: list[object] = []
            for update in immediate:
                out.extend(engine.on_order_update(update))
        else:
            self._hold(report.events)
            out = []
        self._since_ms = max(self._since_ms, now)
        log.info("reconciled", execution=self.name, startup=startup, ok=report.ok, message=report.message,
                 adopted=list(report.adopted), events=len(report.events), open_orders=self.open_orders(),
                 checks={c.asset: c.verdict for c in report.checks})  # fmt: skip
        if not report.ok:
            if startup:
                raise ConfigError(f"{self.name} reconciliation: {report.message}")
            self.refusing = report.message
            log.error("trading_refused", message=report.message)
        return out

    async def reconcile_periodic(self) -> bool:
        """Run a periodic reconciliation (skipped while orders are in flight); True when it ran."""
        engine = self._engine
        if engine is None or self.refusing is not None or self.executor.open_orders():
            return False
        await self._reconcile(engine, [], [], startup=False)
        return True


def _update(cid: str, symbol: str, status: OrderStatus, ts_ms: int, reason: str) -> OrderUpdate:
    return OrderUpdate(client_order_id=ClientOrderId(cid), symbol=Symbol(symbol), status=status, ts_ms=ts_ms,
                       reason=reason)  # fmt: skip


def event_to_json(ev: Event) -> dict[str, Any]:
    """A held :class:`Fill` / :class:`OrderUpdate` as JSON data (Decimals as strings)."""
    if type(ev) is Fill:
        return {"fill": {"venue": ev.venue, "symbol": ev.symbol, "trade_id": ev.trade_id,
                         "client_order_id": ev.client_order_id, "side": ev.side.value, "qty": str(ev.qty),
                         "price": str(ev.price), "fee_quote": str(ev.fee_quote), "ts_ms": ev.ts_ms,
                         "exchange_order_id": ev.exchange_order_id, "fee": str(ev.fee),
                         "fee_currency": ev.fee_currency}}  # fmt: skip
    return {"update": {"client_order_id": ev.client_order_id, "symbol": ev.symbol, "status": ev.status.value,
                       "ts_ms": ev.ts_ms, "exchange_order_id": ev.exchange_order_id, "reason": ev.reason}}  # fmt: skip


def event_from_json(data: Mapping[str, Any]) -> Event:
    """Inverse of :func:`event_to_json`."""
    if "fill" in data:
        f = data["fill"]
        xid = f["exchange_order_id"]
        return Fill(venue=f["venue"], symbol=Symbol(f["symbol"]), trade_id=TradeId(f["trade_id"]),
                    client_order_id=ClientOrderId(f["client_order_id"]), side=Side(f["side"]),
                    qty=Decimal(f["qty"]), price=Decimal(f["price"]), fee_quote=Decimal(f["fee_quote"]),
                    ts_ms=int(f["ts_ms"]), exchange_order_id=ExchangeOrderId(xid) if xid else None,
                    fee=Decimal(f["fee"]), fee_currency=f["fee_currency"])  # fmt: skip
    u = data["update"]
    xid = u["exchange_order_id"]
    return OrderUpdate(client_order_id=ClientOrderId(u["client_order_id"]), symbol=Symbol(u["symbol"]),
                       status=OrderStatus(u["status"]), ts_ms=int(u["ts_ms"]),
                       exchange_order_id=ExchangeOrderId(xid) if xid else None, reason=u["reason"])  # fmt: skip


__all__ = ["VenueRouter", "event_from_json", "event_to_json"]
