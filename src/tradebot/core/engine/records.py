"""The shape of what the engine records: position events, order records, plan and fill rows.

:class:`RecordBuilder` turns the engine's decisions into rows (STRATEGY.md §6). It owns the position
events' sequence and reads, never writes, the ledger, the run statistics and the symbols' marks it
is given; the engine decides and keeps its own state. Pure, like the rest of the core.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any, TypeAlias

from tradebot.core.domain import (
    ZERO,
    CancelOrder,
    EquitySnapshot,
    Fill,
    MlPositionPrediction,
    MlPredictionOutcome,
    Order,
    OrderRecord,
    OrderStatus,
    OrderUpdate,
    PlaceOrder,
    PositionEvent,
    PositionEventType,
    Side,
    StreamSignal,
    Symbol,
    TradeRecord,
    position_event_id,
    to_decimal,
)
from tradebot.core.engine.stats import EngineStats
from tradebot.core.engine.symbols import SymState
from tradebot.core.execution.planner import Plan
from tradebot.core.management import Action, RiskEvent
from tradebot.core.portfolio.ledger import Ledger

#: A record for the event store.
Record: TypeAlias = (
    PositionEvent
    | OrderRecord
    | Fill
    | TradeRecord
    | EquitySnapshot
    | StreamSignal
    | MlPositionPrediction
    | MlPredictionOutcome
)
#: What the engine returns: commands for the venue and records for the store, in the order to act on.
Output: TypeAlias = PlaceOrder | CancelOrder | Record

_AMOUNT_QUANTUM = Decimal("0.00000001")


class RecordBuilder:
    """Builds the engine's rows and numbers its position events.

    Parameters
    ----------
    run_id
        The run the events belong to (part of each event's id).
    ledger
        The engine's ledger, read for sizes, average entries and position ids.
    stats
        The run statistics; every event built is counted there.
    symbols
        The engine's per-symbol state, read for marks.

    Attributes
    ----------
    event_seq
        Sequence number of the last event built (1 for the first); part of the engine snapshot.
    """

    def __init__(
        self, run_id: str, ledger: Ledger, stats: EngineStats, symbols: Mapping[str, SymState]
    ) -> None:
        self.run_id = run_id
        self.ledger = ledger
        self.stats = stats
        self._sym = symbols
        self.event_seq = 0

    # ------------------------------------------------------------------ rows of decisions
    def plan_rows(self, plan: Plan, t: int) -> list[PositionEvent]:
        """One ``rebalance_buy`` / ``rebalance_sell`` row per intent of ``plan``, one ``order_denied``
        row per denial; sizes are the ledger's before the plan's orders fill."""
        out: list[PositionEvent] = []
        children: dict[str, list[PlaceOrder]] = {}
        for cmd in plan.orders:
            children.setdefault(cmd.intent_id, []).append(cmd)
        for intent in plan.intents:
            kids = children.get(intent.intent_id, [])
            qty = self.ledger.position(intent.symbol)
            after = qty + intent.qty if intent.side is Side.BUY else qty - intent.qty
            kind = (
                PositionEventType.REBALANCE_BUY
                if intent.side is Side.BUY
                else PositionEventType.REBALANCE_SELL
            )
            out.append(
                self.event(
                    kind,
                    intent.symbol,
                    t,
                    intent.reason,
                    f"{intent.side} {intent.qty} {intent.symbol} in {len(kids)} order(s)",
                    size_before=qty,
                    size_after=after,
                    client_order_ids=tuple(k.client_order_id for k in kids),
                    indicators={"streams_in": self.stats.streams_in(intent.symbol)},
                )
            )
        for denial in plan.denied:
            out.append(
                self.event(
                    PositionEventType.ORDER_DENIED,
                    denial.symbol,
                    t,
                    denial.reason,
                    f"{denial.side} {denial.qty} {denial.symbol} not sent",
                )
            )
        return out

    def action_rows(self, sym: str, actions: Iterable[Action]) -> list[PositionEvent]:
        """One row per overlay action on ``sym``, with the size change its multiplier implies."""
        out: list[PositionEvent] = []
        for action in actions:
            qty = self.ledger.position(sym)
            out.append(
                self.event(
                    action.event_type,
                    sym,
                    action.time_ms,
                    action.trigger_reason,
                    f"multiplier {action.multiplier_before:.4f} -> {action.multiplier_after:.4f}",
                    price=to_decimal(action.price) if action.price else None,
                    size_before=qty,
                    size_after=qty * to_decimal(round(action.multiplier_after / action.multiplier_before, 8))
                    if action.multiplier_before
                    else qty,
                    indicators=action.indicators,
                    r_multiple=action.r_multiple,
                    profit_pct=action.profit_pct,
                    amount=self._saved(sym, action),
                    ml_prediction=action.ml_prediction,
                )
            )
        return out

    def _saved(self, sym: str, action: Action) -> Decimal | None:
        per_unit = action.amount_saved_or_gained_per_unit
        if per_unit is None:
            return None
        return (to_decimal(per_unit) * self.ledger.position(sym)).quantize(_AMOUNT_QUANTUM)

    def risk_rows(self, events: Iterable[RiskEvent], t: int, default_symbol: str) -> list[PositionEvent]:
        """One row per risk event; portfolio-wide events are filed under ``default_symbol``."""
        return [
            self.event(
                ev.event_type,
                ev.symbol or default_symbol,
                t,
                ev.trigger_reason,
                ev.action_taken,
                indicators=dict(ev.indicators),
            )
            for ev in events
        ]

    def fill_event(
        self,
        kind: PositionEventType,
        sym: str,
        fill: Fill,
        before: Decimal,
        after: Decimal,
        closed: TradeRecord | None = None,
    ) -> PositionEvent:
        """The ``entry`` / ``exit`` row of the fill that opened or closed a position.

        An ``exit`` row (``closed``: the trade the fill closed) carries the exit price against the
        trade's average entry price as ``profit_pct`` (percent) and the trade's R multiple.
        """
        profit_pct = r_multiple = None
        if closed is not None and closed.entry_avg_price:
            profit_pct = float((fill.price / closed.entry_avg_price - 1) * 100)
            r_multiple = closed.r_multiple
        return self.event(
            kind,
            sym,
            fill.ts_ms,
            fill.client_order_id,
            f"{fill.side} {fill.qty} @ {fill.price}",
            price=fill.price,
            size_before=before,
            size_after=after,
            client_order_ids=(fill.client_order_id,),
            profit_pct=profit_pct,
            r_multiple=r_multiple,
        )

    def order_failure(self, order: Order, update: OrderUpdate) -> PositionEvent | None:
        """The ``order_denied`` row of an order refused before sending, the ``order_rejected`` row of
        one the venue rejected, expired or canceled unfilled; ``None`` for any other update."""
        if update.status is OrderStatus.DENIED:
            return self.event(
                PositionEventType.ORDER_DENIED,
                order.symbol,
                update.ts_ms,
                update.reason or "refused locally",
                f"{order.side} {order.qty} {order.symbol} not sent",
                client_order_ids=(order.client_order_id,),
            )
        if update.status in (OrderStatus.REJECTED, OrderStatus.EXPIRED) or (
            update.status is OrderStatus.CANCELED and order.filled_qty < order.qty
        ):
            return self.event(
                PositionEventType.ORDER_REJECTED,
                order.symbol,
                update.ts_ms,
                f"{order.side} {order.qty} {order.symbol} {update.status}: {update.reason or 'no reason'}",
                f"order {order.client_order_id} {update.status}",
                client_order_ids=(order.client_order_id,),
            )
        return None

    # ------------------------------------------------------------------ the rows themselves
    def equity_snapshot(self, t: int, marks: Mapping[str, Decimal]) -> EquitySnapshot:
        """The equity row at ``t`` (ms UTC) at ``marks``; also an equity sample for the statistics."""
        equity = self.ledger.equity(marks)
        positions = self.ledger.positions()
        held = dict(marks)  # one copy, shared by the snapshot and the statistics' mark curve
        self.stats.on_equity(t, equity, any([st.qty for st in self._sym.values()]), held)
        return EquitySnapshot(
            time_ms=t, equity=equity, cash=self.ledger.cash, positions=positions, marks=held
        )

    def event(
        self,
        kind: PositionEventType,
        sym: str,
        t: int,
        reason: str,
        action: str,
        *,
        price: Decimal | None = None,
        size_before: Decimal | None = None,
        size_after: Decimal | None = None,
        client_order_ids: tuple[str, ...] = (),
        indicators: dict[str, Any] | None = None,
        r_multiple: float | None = None,
        profit_pct: float | None = None,
        amount: Decimal | None = None,
        ml_prediction: dict[str, Any] | None = None,
    ) -> PositionEvent:
        """Build the next position event of the run.

        Parameters
        ----------
        kind, sym, t
            Event type, symbol and event time (ms UTC).
        reason, action
            ``trigger_reason`` and ``action_taken`` texts.
        price
            Price of the event (quote currency); default the symbol's mark.
        size_before, size_after
            Position in base units around the event; default the ledger's position.
        client_order_ids
            Orders the event caused.
        indicators
            Values behind the decision (JSON-able).
        r_multiple, profit_pct
            R and profit in percent (2.5 = +2.5 %); profit defaults to the mark against the average
            entry while a position is held.
        amount
            ``amount_saved_or_gained`` in quote currency, where measurable.
        ml_prediction
            The model prediction behind the decision (JSON-able), or ``None``.
        """
        self.event_seq += 1
        qty = self.ledger.position(sym)
        mark = price if price is not None else to_decimal(self._sym[sym].mark)
        if profit_pct is None and qty:
            avg = self.ledger.avg_entry(sym)
            if avg:
                profit_pct = float((mark - avg) / avg * 100)
        position_id = self.ledger.trades.position_id(sym)
        self.stats.on_event(kind, amount, position_id)
        return PositionEvent(
            event_id=position_event_id(self.run_id, self.event_seq),
            seq=self.event_seq,
            position_id=position_id,
            event_type=kind,
            symbol=Symbol(sym),
            event_time_ms=t,
            price=mark,
            size_before=qty if size_before is None else size_before,
            size_after=qty if size_after is None else size_after,
            trigger_reason=reason,
            action_taken=action,
            profit_pct=profit_pct,
            r_multiple=r_multiple,
            indicators=indicators or {},
            amount_saved_or_gained=amount,
            client_order_ids=client_order_ids,
            ml_prediction=ml_prediction,
        )

    @staticmethod
    def order_record(
        order: Order, t: int, reason: str = "", *, ref_price: Decimal = ZERO, intent_id: str = ""
    ) -> OrderRecord:
        """The ``orders`` row of ``order`` as of ``t`` (ms UTC); ``reason`` is the status reason."""
        return OrderRecord(
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type,
            qty=order.qty,
            status=order.status,
            filled_qty=order.filled_qty,
            avg_fill_price=order.avg_fill_price,
            fees_quote=order.fees_quote,
            reason=order.reason,
            intent_id=intent_id or order.client_order_id.rsplit("-", 1)[0],
            created_ms=order.created_ms,
            updated_ms=t,
            ref_price=ref_price,
            exchange_order_id=order.exchange_order_id,
            status_reason=reason,
            stop_price=order.stop_price,
        )


#: Overlay decisions whose position-event row names the orders they cause (STRATEGY.md §6).
_ACTION_TYPES = frozenset(
    {
        PositionEventType.STOP_EXIT,
        PositionEventType.TAKE_PROFIT_EXIT,
        PositionEventType.PARTIAL_TAKE_PROFIT,
        PositionEventType.TRAILING_SCALE_OUT,
        PositionEventType.TRAILING_SCALE_IN,
        PositionEventType.SCALE_IN,
        PositionEventType.TIME_EXIT,
        PositionEventType.EARLY_EXIT,
        PositionEventType.MANAGEMENT_SCALE_OUT,
        PositionEventType.MANAGEMENT_RELOAD,
        PositionEventType.MANAGEMENT_QUIT,
        PositionEventType.REENTRY_ALLOWED,
        PositionEventType.DAILY_LOSS_HALT,
    }
)


def link_orders(out: list[Output]) -> None:
    """Give the overlay's position events in ``out`` the client order ids of the orders planned for
    their symbol in the same step (the decision row names the orders it caused); in place."""
    ids: dict[str, list[str]] = {}
    for r in out:
        if type(r) is PlaceOrder:
            ids.setdefault(r.symbol, []).append(r.client_order_id)
    if not ids:
        return
    for i, r in enumerate(out):
        if (
            type(r) is PositionEvent
            and not r.client_order_ids
            and r.event_type in _ACTION_TYPES
            and r.symbol in ids
        ):
            out[i] = replace(r, client_order_ids=tuple(ids[r.symbol]))


def relabel_plan(plan: Plan, reasons: Mapping[str, str]) -> Plan:
    """Return ``plan`` with the orders and intents of the symbols in ``reasons`` carrying that
    overlay decision as their reason instead of ``"rebalance"``."""
    orders = tuple(replace(o, reason=reasons[o.symbol]) if o.symbol in reasons else o for o in plan.orders)
    intents = tuple(replace(i, reason=reasons[i.symbol]) if i.symbol in reasons else i for i in plan.intents)
    return replace(plan, orders=orders, intents=intents)
