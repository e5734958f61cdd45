"""Testnet / live execution for the daemon: engine orders → :class:`OrderExecutor` → a ccxt venue.

:class:`VenueRouter` has the daemon-facing shape of :class:`~tradebot.app.daemon.paper.PaperRouter`
(``submit`` / ``cancel`` / ``on_candle`` / ``open_orders`` / ``state``) plus the start-up and periodic
reconciliation and the executor's polling. Every venue answer goes to the engine as soon as it is
known: a submit returns the order's status update and its fills (a market order fills at once), a
poll or a reconciliation returns what changed. Status updates are stamped with the engine's time
(the order's decision time, or the last candle's close), fills keep the venue's execution time.

**Restart** (:meth:`VenueRouter.start`): every order the restored engine has in flight is resolved at
the venue by client order id; an in-flight order without any database row was never sent (the
executor commits the ``PENDING_SUBMIT`` row before every send, and the daemon does not store the
engine's own order rows in this mode), so it is sent now.

**Balances.** The ledger covers the bot's own money: a fresh run records the venue's balances as
its baseline (kept in the daemon's checkpoint), and reconciliation compares ``venue − baseline``
with ``ledger − initial cash``. A difference no fill explains is external activity: a deposit goes
to the bot (a :class:`~tradebot.core.domain.CashFlow` for the engine: equity moves, PnL does not);
a withdrawal comes out of the ledger up to what it holds of the asset, and the rest out of the
baseline (money outside the bot's capital). With ``TRADEBOT_DAEMON__BALANCE_CHANGES=refuse`` it is a
mismatch instead, which refuses *new entries and increases* only: exits, stops and reductions are
still sent, and the refusal lifts at the first periodic reconciliation that agrees again.

**Rate limits and outages.** Polling and periodic reconciliation run inside
:meth:`VenueGate.background <tradebot.adapters.venues.gate.VenueGate.background>`: a request that
would wait for a 429 back-off or a ban fails at once, so the engine task is never held. A round the
venue refuses (429, 418, ``-1021``, 5xx, timeout) is skipped, never fatal; :class:`VenueHealth`
decides when the next round may run and pauses / resumes new entries through ``on_control``
(:mod:`tradebot.app.daemon.venue_health`). The start of a 418 ban is written to the ban file
(``TRADEBOT_DAEMON__BAN_FILE``) and honoured by the next start (:mod:`tradebot.app.daemon.venue_bans`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from decimal import Decimal
from typing import Any

import structlog
from pydantic import SecretStr

from tradebot.adapters.venues.ccxt_deribit import DeribitVenue, deribit_exchange
from tradebot.adapters.venues.ccxt_venue import CcxtVenue, VenueConfig, binance_exchange
from tradebot.adapters.venues.gate import VenueGate
from tradebot.app.daemon.execution import Event, OrderExecutor
from tradebot.app.daemon.interlock import ResolvedEndpoints
from tradebot.app.daemon.reconcile import AssetCheck, ReconcileConfig, ReconciliationRefused, reconcile
from tradebot.app.daemon.reference_check import (
    ReferenceConfig,
    SecondReference,
    disagreements,
    is_large,
    refusal,
)
from tradebot.app.daemon.venue_bans import ban_key, record_ban
from tradebot.app.daemon.venue_health import VenueHealth
from tradebot.app.settings import Settings
from tradebot.core.domain import (
    ZERO,
    CancelOrder,
    Candle,
    CashFlow,
    ClientOrderId,
    Fill,
    OrderRecord,
    OrderStatus,
    OrderUpdate,
    PlaceOrder,
    PositionEvent,
    PositionEventType,
    Side,
    Symbol,
    TradingControl,
    to_decimal,
)
from tradebot.core.engine import Engine
from tradebot.errors import ConfigError, DataError, VenueBanned, VenueError, VenueUnavailable
from tradebot.ports import OrderReport

log = structlog.get_logger("tradebot.daemon")


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
    health
        Back-off and pause of the periodic venue work (default thresholds when ``None``).
    """

    def __init__(self, executor: OrderExecutor, *, quote: str, reconcile_config: ReconcileConfig | None = None,
                 health: VenueHealth | None = None) -> None:  # fmt: skip
        self.executor = executor
        self.venue = executor.venue
        self.name: str = getattr(self.venue, "name", "venue")
        self.quote = quote
        self.reconcile_config = reconcile_config or ReconcileConfig()
        self.health = health or VenueHealth(self.name)
        #: Receives the pause / resume of new entries (the daemon's ``submit``); logged when ``None``.
        self.on_control: Callable[[TradingControl], None] | None = None
        self.baseline: dict[str, Decimal] = {}
        self.refusing: str | None = None
        self._known: dict[tuple[str, str], Fill] = {}
        self._engine: Engine | None = None
        self._since_ms = 0

    # -- orders -----------------------------------------------------------------------------------
    async def submit(self, cmd: PlaceOrder) -> list[Event]:
        """Send ``cmd`` through the executor; return its status update(s) and fills for the engine.

        While a reconciliation refuses trading, an order that would open or increase a position is
        not sent (the answer is a REJECTED update); exits and reductions are.
        """
        if self.refusing is not None and self._increases(cmd):
            reason = f"not sent: {self.refusing}"[:300]
            return [_update(cmd.client_order_id, cmd.symbol, OrderStatus.REJECTED, cmd.created_ms, reason)]
        return self._stamp(await self.executor.submit(cmd), cmd.created_ms)

    async def cancel(self, cmd: CancelOrder, now_ms: int) -> list[Event]:
        """Cancel through the executor; return the order's true final state (and any late fill)."""
        return self._stamp(await self.executor.cancel(cmd), now_ms)

    async def poll(self) -> list[Event]:
        """Look up the orders not yet done (call periodically); return what changed.

        Skipped (``[]``, nothing sent) while the venue's back-off, ban or failed-round wait is in
        force; lookups that fail are retried by the next poll (the executor keeps the orders).
        """
        if not self.executor.open_orders() or self.retry_in_s():
            return []
        now = self._engine.last_time_ms if self._engine is not None else 0
        with VenueGate.background():
            return self._stamp(await self.executor.poll(), now)

    async def on_pushed(self, report: OrderReport) -> list[Event]:
        """Apply an order report the venue's private stream pushed; return what changed (fills once:
        one also seen by a poll or a submit answer is not returned again). Status updates are
        stamped with the engine's time, like a poll's."""
        now = self._engine.last_time_ms if self._engine is not None else 0
        return self._stamp(await self.executor.apply_pushed(report), now)

    def _increases(self, cmd: PlaceOrder) -> bool:
        # True when cmd opens or adds to a position (a reduction or an exit is never refused)
        held = self._engine.ledger.position(cmd.symbol) if self._engine is not None else ZERO
        return held == 0 or (held > 0) == (cmd.side is Side.BUY)

    async def second_reference(
        self, orders: Sequence[PlaceOrder], config: ReferenceConfig, *, always: bool = False
    ) -> SecondReference | None:
        """Check a decision against the venue's own prices before it is sent (see
        :mod:`tradebot.app.daemon.reference_check`).

        Returns ``None`` when ``orders`` (one engine step's orders) are not large and ``always`` is
        False (the daemon sets it for a decision made on an unusual candle); else the prices
        read (the ordered symbols first, then the held ones: their marks set equity) and the refusal,
        if any. The reads go through the venue's gate like an order lookup; a price that cannot be
        read ends the reads (``error``).
        """
        engine = self._engine
        if engine is None or not orders:
            return None
        marks = engine.marks_decimal()
        if not always and not is_large(orders, engine.ledger.equity(marks), config):
            return None
        symbols = list(dict.fromkeys([o.symbol for o in orders] + [
            s for s in engine.symbols if engine.ledger.position(s) != 0]))  # fmt: skip
        references: dict[Symbol, Decimal] = {}
        error = None
        for sym in symbols:
            try:
                references[sym] = await self.venue.fetch_reference_price(sym)
            except (VenueError, DataError) as e:
                error = f"{sym}: {type(e).__name__}: {e}"[:300]
                break
        found = disagreements(marks, references, config)
        increases = any(self._increases(o) for o in orders)
        return SecondReference(
            marks={s: marks.get(s, ZERO) for s in symbols},
            references=references,
            found=found,
            error=error,
            refused=refusal(found, error, increases=increases, config=config),
        )

    def rebind(self, engine: Engine) -> None:
        """Use ``engine`` from now on (the daemon replaced its engine by a restored one)."""
        self._engine = engine

    def on_candle(self, candle: Candle) -> list[Event]:
        """Nothing: a real venue's answers come with the requests (the paper router's shape)."""
        return []

    def open_orders(self) -> int:
        """Orders the executor still tracks (open, unknown, or fills outstanding)."""
        return self.executor.open_orders()

    def _stamp(self, events: Sequence[Event], ts_ms: int) -> list[Event]:
        out: list[Event] = []
        for ev in events:
            if type(ev) is Fill:
                self._known[(ev.symbol, ev.trade_id)] = ev
                out.append(ev)
            else:
                out.append(dataclasses.replace(ev, ts_ms=ts_ms))
        return out

    # -- checkpoint -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The baseline balances and the trade window start as JSON data (Decimals as strings)."""
        return {"baseline": {a: str(v) for a, v in sorted(self.baseline.items())}, "since_ms": self._since_ms}

    # -- reconciliation ---------------------------------------------------------------------------
    def _ledger(self, engine: Engine) -> tuple[dict[Symbol, Decimal], Decimal]:
        """The ledger as the venue should see it (the baseline added)."""
        positions = {
            s: engine.ledger.position(s) + self.baseline.get(engine.instruments[s].base, ZERO)
            for s in engine.symbols
        }
        cash = engine.ledger.cash + self.baseline.get(self.quote, ZERO) - engine.config.initial_cash
        return positions, cash

    @staticmethod
    def _event_factory(engine: Engine) -> Callable[..., PositionEvent]:
        def make(kind: PositionEventType, symbol: Symbol, t: int, reason: str, action: str,
                 before: Decimal, after: Decimal) -> PositionEvent:  # fmt: skip
            return engine.record_event(kind, symbol, t, reason, action, size_before=before, size_after=after)

        return make

    async def start(self, engine: Engine, *, db_orders: Sequence[OrderRecord], db_fills: Sequence[Fill],
                    saved: Mapping[str, Any] | None, fresh_since_ms: int) -> list[object]:  # fmt: skip
        """Reconcile at start, before any order; return the engine's output (records, maybe orders).

        ``saved`` is this router's part of the checkpoint (``None`` for a fresh run). Steps:

        1. a fresh run records the venue balances as its baseline (refused when the quote balance
           is below the configured initial cash); a resumed run reloads it;
        2. a stored fill counts as applied unless its order is in flight in the engine and the
           engine has not applied it;
        3. every order the engine has in flight and the database knows is looked up at the venue
           (a row the venue refused definitively is answered from the row); the database's other
           open orders and unknown venue orders are adopted (:func:`~tradebot.app.daemon.reconcile.reconcile`);
           what the venue reports goes to the engine;
        4. balances are compared (``ok`` False → :class:`~tradebot.app.daemon.reconcile.ReconciliationRefused`,
           a :class:`ConfigError` with the report's message and the engine output so far, for the
           caller to store with the engine state);
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
            self._since_ms = int(saved.get("since_ms", fresh_since_ms))
        in_flight = engine.at_venue  # the plans' orders in flight and the resting protective stops
        applied = [f for f in db_fills if f.client_order_id not in in_flight
                   or f.trade_id in engine.orders[ClientOrderId(f.client_order_id)].fill_ids]  # fmt: skip
        rows: list[OrderRecord] = []
        for r in db_orders:
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
        try:
            out.extend(await self._reconcile(engine, rows, applied, startup=True))
        except ReconciliationRefused as e:
            raise ReconciliationRefused(str(e), [*out, *e.records]) from None
        known = {r.client_order_id for r in db_orders}
        for cid in sorted(c for c in in_flight if c not in known and c in engine.at_venue):
            order = engine.orders[cid]
            if order.status.is_terminal:
                continue
            cmd = PlaceOrder(client_order_id=cid, symbol=order.symbol, side=order.side, qty=order.qty,
                             ref_price=to_decimal(engine.mark(order.symbol)), reason=order.reason,
                             intent_id=cid.rsplit("-", 1)[0], created_ms=order.created_ms,
                             order_type=order.order_type, limit_price=order.limit_price,
                             stop_price=order.stop_price, reduce_only=order.reduce_only)  # fmt: skip
            log.info("order_sent_after_restart", client_order_id=cid, symbol=order.symbol)
            out.append(cmd)
        out.extend(engine.pending_cancels())  # a stop's cancel decided before the restart
        return out

    async def refresh(self, client_order_id: ClientOrderId) -> list[Event]:
        """Look one order up at the venue now (a resting stop a candle reached); return its news."""
        now = self._engine.last_time_ms if self._engine is not None else 0
        return self._stamp(await self.executor.refresh(client_order_id), now)

    async def _reconcile(self, engine: Engine, rows: Sequence[OrderRecord], applied: Iterable[Fill], *,
                         startup: bool) -> list[object]:  # fmt: skip
        for f in applied:
            self._known[(f.symbol, f.trade_id)] = f
        positions, cash = self._ledger(engine)
        now = engine.last_time_ms
        report = await reconcile(self.executor, db_orders=rows, applied=list(self._known.values()),
                                 ledger_positions=positions, ledger_cash=cash, quote=self.quote,
                                 since_ms=self._since_ms, now_ms=now, events=self._event_factory(engine),
                                 config=self.reconcile_config, startup=startup)  # fmt: skip
        out: list[object] = list(report.position_events)
        for ev in self._stamp(report.events, now):
            out.extend(engine.handle(ev))
        for flow in self._cash_flows(engine, report.flows, now):
            out.extend(engine.handle(flow))
        self._since_ms = max(self._since_ms, now)
        log.info("reconciled", execution=self.name, startup=startup, ok=report.ok, message=report.message,
                 adopted=list(report.adopted), events=len(report.events), open_orders=self.open_orders(),
                 checks={c.asset: c.verdict for c in report.checks})  # fmt: skip
        if not report.ok:
            if startup:
                hint = ""
                if any(c.verdict == "mismatch" for c in report.checks):
                    hint = ("; if it is a deposit, a withdrawal or a manual trade, "
                            "TRADEBOT_DAEMON__BALANCE_CHANGES=cash_flow books it as a cash flow")  # fmt: skip
                raise ReconciliationRefused(f"{self.name} reconciliation: {report.message}{hint}", out)
            self.refusing = report.message
            log.error("trading_refused", message=report.message, refused="new entries and increases")
        elif self.refusing is not None and not startup:
            log.warning("trading_unrefused", previous=self.refusing)
            self.refusing = None
        return out

    def _cash_flows(self, engine: Engine, checks: Sequence[AssetCheck], now: int) -> list[CashFlow]:
        """The deposits and withdrawals of ``checks`` as the engine's cash flows (module docstring):
        a withdrawal beyond what the ledger holds of the asset comes out of the baseline."""
        flows: list[CashFlow] = []
        symbol_of: dict[str, Symbol] = {str(engine.instruments[s].base): s for s in engine.symbols}
        for check in checks:
            amount = check.gap - check.missing_fills
            sym = symbol_of.get(check.asset)
            if sym is None:
                held, price = engine.ledger.cash, Decimal(1)
            else:
                held, price = engine.ledger.position(sym), to_decimal(engine.mark(sym))
            if not price > 0:
                log.error("cash_flow_unpriced", asset=check.asset, amount=str(amount))
                continue
            booked = amount if amount > 0 else max(amount, -max(held, ZERO))
            outside = amount - booked
            if outside:
                self.baseline[check.asset] = self.baseline.get(check.asset, ZERO) + outside
                log.warning("cash_flow_outside_bot", asset=check.asset, amount=str(outside),
                            baseline=str(self.baseline[check.asset]))  # fmt: skip
            if booked:
                n = engine.ledger.flow_count
                flows.append(CashFlow(flow_id=f"flow:{check.asset}:{now}:{n + len(flows)}", asset=check.asset,
                                      symbol=sym, amount=booked, price=price, ts_ms=now,
                                      reason=check.describe()))  # fmt: skip
                log.warning(
                    "cash_flow", asset=check.asset, amount=str(booked), value_quote=str(booked * price)
                )
        return flows

    async def reconcile_periodic(self) -> list[object] | None:
        """Run a periodic reconciliation; return the engine's output, ``None`` when skipped (the venue
        backing off) or refused by the venue. It runs with orders in flight too (a manual order
        resting at the venue never switches it off), and while trading is refused (to lift it).

        A venue refusal (:class:`VenueUnavailable`, :class:`VenueBanned`) never propagates: it is
        counted by :attr:`health`, which may pause new entries (``on_control``); the first round that
        succeeds again resumes them.
        """
        engine = self._engine
        if engine is None:
            return None
        if self.retry_in_s():
            return None
        try:
            with VenueGate.background():
                out = await self._reconcile(engine, [], [], startup=False)
        except (VenueUnavailable, VenueBanned) as e:
            gate = self._gate()
            self._control(self.health.failed("reconcile", e, gate_pause_s=gate.pause_left_s() if gate else 0.0,
                                             ts_ms=engine.last_time_ms))  # fmt: skip
            return None
        self._control(self.health.succeeded(ts_ms=engine.last_time_ms))
        return out

    def retry_in_s(self) -> float | None:
        """Seconds until the venue may be asked again after failed rounds or a back-off / ban (``0``:
        now), ``None`` when no round has failed and no back-off is in force."""
        gate = self._gate()
        pause = gate.pause_left_s() if gate is not None else 0.0
        if not self.health.failures and pause <= 0:
            return None
        return self.health.wait_s(pause)

    def _gate(self) -> VenueGate | None:
        gate = getattr(self.venue, "gate", None)
        return gate if isinstance(gate, VenueGate) else None

    def _control(self, control: TradingControl | None) -> None:
        if control is None:
            return
        if self.on_control is None:
            log.warning("trading_control_dropped", state=str(control.state), reason=control.reason)
            return
        self.on_control(control)


def build_venue(settings: Settings, endpoints: ResolvedEndpoints, stack: AsyncExitStack) -> CcxtVenue:
    """Open the ccxt execution venue of the mode (closed on ``stack``).

    The REST URL is the mode's execution endpoint (``TRADEBOT_EXCHANGE__<VENUE>__REST_URL``, else
    the mode's default host, already checked by the interlock); the keys are the mode's own
    (``TRADEBOT_TESTNET_API_*`` or ``TRADEBOT_LIVE_API_*``; the interlock refused the others).
    """
    key, secret = mode_keys(settings)
    url, timeout = endpoints.exchange_rest.url, settings.feeds.backfill.timeout_ms
    limits = settings.exchange.binance if settings.venue == "binance" else settings.exchange.deribit
    config = VenueConfig(backoff_initial_s=limits.backoff_initial_s, backoff_max_s=limits.backoff_max_s,
                         budget=limits.request_budget, budget_window_s=limits.budget_window_s,
                         recv_window_ms=limits.recv_window_ms)  # fmt: skip
    venue: CcxtVenue
    if settings.venue == "binance":
        exchange = binance_exchange(url, api_key=key.get_secret_value(), secret=secret.get_secret_value(),
                                    timeout_ms=timeout, recv_window_ms=limits.recv_window_ms)  # fmt: skip
        venue = CcxtVenue(exchange, name="binance", config=config)
    else:
        exchange = deribit_exchange(
            url, client_id=key.get_secret_value(), secret=secret.get_secret_value(), timeout_ms=timeout
        )
        venue = DeribitVenue(exchange, name="deribit", config=config)
    ban_file, key_of_ban = settings.daemon.ban_file, ban_key(settings.venue, url)
    venue.gate.on_ban = lambda until_ms: record_ban(ban_file, key_of_ban, until_ms)
    stack.push_async_callback(venue.close)
    return venue


def mode_keys(settings: Settings) -> tuple[SecretStr, SecretStr]:
    """The mode's own API key and secret (``TRADEBOT_TESTNET_API_*`` or ``TRADEBOT_LIVE_API_*``; the
    interlock refuses the others). Raises ``ConfigError`` when one is missing."""
    if settings.mode == "testnet":
        key, secret = settings.testnet_api_key, settings.testnet_api_secret
    else:
        key, secret = settings.live_api_key, settings.live_api_secret
    if key is None or secret is None:  # the interlock refuses this first; kept for direct callers
        raise ConfigError(f"{settings.mode} mode needs its API key and secret")
    return key, secret


def _update(cid: str, symbol: str, status: OrderStatus, ts_ms: int, reason: str) -> OrderUpdate:
    return OrderUpdate(client_order_id=ClientOrderId(cid), symbol=Symbol(symbol), status=status, ts_ms=ts_ms,
                       reason=reason)  # fmt: skip


__all__ = ["VenueRouter", "build_venue", "mode_keys"]
