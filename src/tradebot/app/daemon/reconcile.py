"""Reconciliation of the database/ledger with the venue: at start (before any new order) and periodically.

:func:`reconcile` fetches the venue's open orders, our recent trades and the balances, then:

1. **Orders.** Every order the database holds as not terminal (PENDING_SUBMIT, UNKNOWN, ACCEPTED,
   PARTIALLY_FILLED) is handed to the :class:`~tradebot.app.daemon.execution.OrderExecutor`, which resolves
   it by client order id (never by re-sending). Open orders at the venue that the database does not
   know are *adopted* (a row is written and the executor tracks them).
2. **Fills.** Venue trades whose (symbol, trade id) is not among the applied fills are returned for
   the engine, each once (an adopted or resolved order's fills come through the executor).
3. **Balances.** :func:`compare_balances` (pure) checks, per traded base asset and the quote asset,
   ``venue balance − ledger`` against the net of the missing fills: within dust → fine; equal to
   the missing fills → a ``reconcile_adjustment`` position event (the fills are the adjustment);
   otherwise the rest is external activity: with ``balance_changes="cash_flow"`` (default) a
   deposit or withdrawal for the engine (:attr:`ReconcileReport.flows`: it moves equity, not PnL, and
   becomes a ``cash_flow`` position event), with ``"refuse"`` a ``reconcile_mismatch`` event and new
   entries are refused with a message naming the asset, both amounts and the difference.

Periodic runs go on while orders are in flight: their fills can move balances between the requests,
so after the balances the trades are listed again, and while new ones appear the balances are
fetched again (up to ``settle_attempts`` times); a comparison that never settles is skipped for
that round, never judged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import structlog

from tradebot.app.daemon.execution import Event, OrderExecutor
from tradebot.core.domain import (
    ZERO,
    ClientOrderId,
    Fill,
    Instrument,
    OrderRecord,
    OrderStatus,
    PlaceOrder,
    PositionEvent,
    PositionEventType,
    Side,
    Symbol,
    TradeId,
    position_event_id,
)
from tradebot.errors import ConfigError
from tradebot.ports import OrderReport, Venue

log = structlog.get_logger("tradebot.reconcile")

#: Builds a position event: (type, symbol, time ms, trigger reason, action, size before, size after).
EventFactory = Callable[[PositionEventType, Symbol, int, str, str, Decimal, Decimal], PositionEvent]


class SequencedEvents:
    """An :data:`EventFactory` numbering its events from ``first_seq`` (ids ``uuid5(run:seq)``).

    The daemon should number reconciliation events in the engine's own sequence (see the report);
    this class is for callers that reserve a separate range.
    """

    def __init__(self, run_id: str, first_seq: int) -> None:
        self.run_id, self.next_seq = run_id, first_seq

    def __call__(self, kind: PositionEventType, symbol: Symbol, t: int, reason: str, action: str,
                 before: Decimal, after: Decimal) -> PositionEvent:  # fmt: skip
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        return PositionEvent(event_id=position_event_id(self.run_id, seq), seq=seq, position_id=None,
                             event_type=kind, symbol=symbol, event_time_ms=t, price=ZERO, size_before=before,
                             size_after=after, trigger_reason=reason, action_taken=action)  # fmt: skip


class ReconciliationRefused(ConfigError):
    """The start-up reconciliation refuses to trade (the message says why).

    ``records`` is the engine's output of that reconciliation (its ``reconcile_mismatch`` events
    first): the caller stores it with the engine state that numbered the events before stopping.
    """

    def __init__(self, message: str, records: Sequence[object]) -> None:
        super().__init__(message)
        self.records = list(records)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileConfig:
    """Tolerances and windows.

    Attributes
    ----------
    quote_dust
        Largest ignored difference of the quote balance, quote currency (default 0.01).
    base_dust_steps
        Largest ignored difference of a base asset, in steps of the instrument (default 1).
    resolve_timeout_s
        How long the start-up run waits for open / unknown orders to resolve (default 60 s).
    trades_lookback_ms
        Trades are listed from ``since_ms − lookback`` (default 1 h).
    balance_changes
        ``"cash_flow"`` (default): an unexplained difference is a deposit or withdrawal;
        ``"refuse"``: it is a mismatch that refuses new entries (module docstring).
    settle_attempts
        How many times the balances are fetched again while fills keep arriving (default 3).
    """

    quote_dust: Decimal = Decimal("0.01")
    base_dust_steps: Decimal = Decimal(1)
    resolve_timeout_s: float = 60.0
    trades_lookback_ms: int = 3_600_000
    balance_changes: str = "cash_flow"
    settle_attempts: int = 3


@dataclass(frozen=True, slots=True)
class AssetCheck:
    """One asset's comparison: ledger and venue amounts, net of missing fills, verdict."""

    asset: str
    ledger: Decimal
    venue: Decimal
    missing_fills: Decimal
    dust: Decimal

    @property
    def gap(self) -> Decimal:
        """``venue − ledger``."""
        return self.venue - self.ledger

    @property
    def verdict(self) -> str:
        """``"ok"`` (within dust), ``"adjusted"`` (explained by the missing fills) or ``"mismatch"``."""
        if abs(self.gap) <= self.dust and self.missing_fills == 0:
            return "ok"
        if abs(self.gap - self.missing_fills) <= self.dust:
            return "adjusted"
        return "mismatch"

    def describe(self) -> str:
        """Human-readable line naming the amounts."""
        return (f"{self.asset}: ledger {self.ledger} + missing fills {self.missing_fills} vs venue {self.venue} "
                f"(difference {self.gap - self.missing_fills}, dust {self.dust})")  # fmt: skip


@dataclass(slots=True)
class ReconcileReport:
    """Outcome of one reconciliation.

    Attributes
    ----------
    events
        Fills and order updates for the engine, in order (apply before trading).
    position_events
        ``reconcile_adjustment`` / ``reconcile_mismatch`` events, not written: the caller stores them
        with the checkpoint of the sequence that numbered them (the daemon's ``commit_step``).
    checks
        The per-asset comparisons.
    adopted
        Client order ids of venue orders the database did not know.
    flows
        Asset checks whose rest (``gap − missing_fills``) is a deposit (> 0) or withdrawal (< 0),
        for the caller to book as cash flows (``balance_changes="cash_flow"``).
    ok
        False when trading must be refused; ``message`` says why.
    """

    events: list[Event] = field(default_factory=list)
    position_events: list[PositionEvent] = field(default_factory=list)
    checks: list[AssetCheck] = field(default_factory=list)
    adopted: list[ClientOrderId] = field(default_factory=list)
    flows: list[AssetCheck] = field(default_factory=list)
    ok: bool = True
    message: str = "reconciled"


def compare_balances(instruments: Mapping[Symbol, Instrument], quote: str, ledger_positions: Mapping[Symbol, Decimal],
                     ledger_cash: Decimal, venue_balances: Mapping[str, Decimal], missing: Sequence[Fill],
                     config: ReconcileConfig) -> list[AssetCheck]:  # fmt: skip
    """Compare the ledger with the venue per traded base asset and the quote asset (pure).

    ``missing`` are venue fills the ledger has not applied; their net base quantity and cash flow
    (``−Σ signed qty × price − fees``) are what may explain a difference. A buy whose commission
    the venue took in the base asset (Binance without BNB) moves the base by ``qty − fee`` and the
    cash by ``−qty × price`` only, exactly as :meth:`Ledger.apply` books it.
    """
    checks = []
    cash_flow = ZERO
    for sym, inst in instruments.items():
        mine = [f for f in missing if f.symbol == sym]
        net = ZERO
        for f in mine:
            signed = f.qty if f.side is Side.BUY else -f.qty
            base_fee = f.fee if f.fee > 0 and f.fee_currency == inst.base and signed > 0 else ZERO
            net += signed - base_fee
            cash_flow -= signed * f.price + f.fee_quote - base_fee * f.price
        checks.append(AssetCheck(inst.base, ledger_positions.get(sym, ZERO), venue_balances.get(inst.base, ZERO),
                                 net, inst.step_size * config.base_dust_steps))  # fmt: skip
    checks.append(
        AssetCheck(quote, ledger_cash, venue_balances.get(quote, ZERO), cash_flow, config.quote_dust)
    )
    return checks


def order_from_record(r: OrderRecord) -> PlaceOrder:
    """The command a stored order row stands for (to track it; it is never sent again)."""
    return PlaceOrder(client_order_id=r.client_order_id, symbol=r.symbol, side=r.side, qty=r.qty,
                      ref_price=r.ref_price, reason=r.reason, intent_id=r.intent_id, created_ms=r.created_ms,
                      order_type=r.order_type, stop_price=r.stop_price, limit_price=r.limit_price,
                      reduce_only=r.order_type.is_stop)  # fmt: skip


def _adopted(report: OrderReport, now_ms: int) -> PlaceOrder:
    # the venue's side (a manual SELL stays a sell), else its fills'; BUY only when nothing says
    side = report.side or next((f.side for f in report.fills), Side.BUY)
    return PlaceOrder(client_order_id=report.client_order_id, symbol=report.symbol, side=side, qty=report.qty,
                      ref_price=report.avg_price or ZERO, reason="adopted at reconciliation", intent_id="adopted",
                      created_ms=min(report.ts_ms, now_ms))  # fmt: skip


async def reconcile(executor: OrderExecutor, *, db_orders: Sequence[OrderRecord], applied: Iterable[Fill],
                    ledger_positions: Mapping[Symbol, Decimal], ledger_cash: Decimal, quote: str, since_ms: int,
                    now_ms: int, events: EventFactory, config: ReconcileConfig | None = None,
                    startup: bool = True) -> ReconcileReport:  # fmt: skip
    """Compare the database and ledger with the venue and repair what can be explained (module docstring).

    Parameters
    ----------
    executor
        The executor (its venue, store and instruments are used; it adopts the open orders).
    db_orders
        The run's order rows (``store.orders(run_id)``).
    applied
        Fills already applied to the ledger (by (symbol, trade id)).
    ledger_positions, ledger_cash
        The ledger's base quantity per symbol and quote cash before this reconciliation.
    quote
        Quote asset code.
    since_ms
        Start of the trade window (the run's start, or the previous reconciliation), ms UTC.
    now_ms
        Event time of the position events, ms UTC.
    events
        Builds the position events (the engine's sequence).
    startup
        At start: wait for open / unknown orders to resolve. Periodic: look the orders up once.

    Returns
    -------
    ReconcileReport
        ``ok`` False (trading refused) on an unexplained balance mismatch or unresolved orders.
    """
    cfg = config or ReconcileConfig()
    report = ReconcileReport()
    venue, instruments = executor.venue, executor.instruments
    applied = list(applied)
    executor.mark_seen(applied)
    known = {r.client_order_id for r in db_orders}
    for r in db_orders:
        if not r.status.is_terminal and r.client_order_id not in executor.orders:
            executor.adopt(order_from_record(r), r.status, exchange_order_id=r.exchange_order_id,
                           fills=[f for f in applied if f.client_order_id == r.client_order_id])  # fmt: skip
    for open_report in await venue.fetch_open_orders(None):
        cid = open_report.client_order_id
        if cid not in known and cid not in executor.orders:
            log.warning("order_adopted", client_order_id=cid, symbol=open_report.symbol)
            executor.adopt(_adopted(open_report, now_ms), OrderStatus.ACCEPTED,
                           exchange_order_id=open_report.exchange_order_id)  # fmt: skip
            report.adopted.append(cid)
    report.events.extend(await _settle(executor, cfg.resolve_timeout_s if startup else 0.0))
    seen = {(f.symbol, f.trade_id) for f in applied}
    seen.update((e.symbol, e.trade_id) for e in report.events if isinstance(e, Fill))
    window_ms = since_ms - cfg.trades_lookback_ms
    missing = await _new_trades(venue, instruments, window_ms, seen)
    balances = await venue.fetch_balances()
    settled = False
    for _ in range(max(1, cfg.settle_attempts)):  # fills that landed while the balances were read
        later = await _new_trades(venue, instruments, window_ms, seen)
        if not later:
            settled = True
            break
        missing.extend(later)
        balances = await venue.fetch_balances()
    executor.mark_seen(missing)
    if missing:
        await executor.store.write(missing)
    report.events.extend(missing)
    from_executor = [e for e in report.events if isinstance(e, Fill) and e not in missing]
    report.checks = compare_balances(instruments, quote, ledger_positions, ledger_cash, balances,
                                     [*from_executor, *missing], cfg)  # fmt: skip
    if not settled and any(c.verdict == "mismatch" for c in report.checks):
        report.checks = [c for c in report.checks if c.verdict != "mismatch"]
        report.message = "balances not compared: fills kept arriving while they were read"
        log.warning("reconcile_unsettled", attempts=cfg.settle_attempts)
    await _judge(report, executor, instruments, events, now_ms, cfg.balance_changes)
    return report


async def _new_trades(venue: Venue, instruments: Mapping[Symbol, Instrument], since_ms: int,
                      seen: set[tuple[Symbol, TradeId]]) -> list[Fill]:  # fmt: skip
    # the venue's trades since since_ms not in seen (added to it), per symbol in order
    out: list[Fill] = []
    for sym in instruments:
        for f in await venue.fetch_my_trades(sym, since_ms):
            if (f.symbol, f.trade_id) not in seen:
                seen.add((f.symbol, f.trade_id))
                out.append(f)
    return out


async def _settle(executor: OrderExecutor, timeout_s: float) -> list[Event]:
    # one lookup of every order, then more only for the unresolved ones, until resolved or timeout
    out = await executor.poll()
    deadline = time.monotonic() + timeout_s
    while executor.unresolved() and time.monotonic() < deadline:
        await asyncio.sleep(min(executor.config.lookup_initial_s, max(0.0, deadline - time.monotonic())))
        out.extend(await executor.poll())
    return out


async def _judge(report: ReconcileReport, executor: OrderExecutor, instruments: Mapping[Symbol, Instrument],
                 events: EventFactory, now_ms: int, balance_changes: str) -> None:  # fmt: skip
    by_asset: dict[str, Symbol] = {inst.base: sym for sym, inst in instruments.items()}
    anchor = next(iter(instruments))
    problems = []
    for check in report.checks:
        if check.verdict == "ok":
            continue
        sym = by_asset.get(check.asset, anchor)
        cash_flow = check.verdict == "mismatch" and balance_changes == "cash_flow"
        if cash_flow:
            report.flows.append(check)  # booked by the caller as a deposit / withdrawal
            log.warning("cash_flow_found", asset=check.asset, amount=str(check.gap - check.missing_fills),
                        detail=check.describe())  # fmt: skip
            if check.missing_fills == 0:
                continue
        if check.verdict == "adjusted" or cash_flow:
            kind = PositionEventType.RECONCILE_ADJUSTMENT
            action = f"applied missing fills: {check.missing_fills:+f}"
        else:
            kind = PositionEventType.RECONCILE_MISMATCH
            action = "new entries refused until the account is checked (exits and reductions go on)"
            problems.append(check.describe())
        after = check.ledger + check.missing_fills
        event = events(kind, sym, now_ms, check.describe(), action, check.ledger, after)
        report.position_events.append(event)
        (log.error if kind is PositionEventType.RECONCILE_MISMATCH else log.warning)(
            str(kind), detail=check.describe()
        )
    unresolved = executor.unresolved()
    if unresolved:
        problems.append(f"orders still unresolved at the venue: {unresolved}")
    if problems:
        report.ok = False
        report.message = "refusing to trade: " + "; ".join(problems)
        log.error("reconcile_refused", message=report.message)
