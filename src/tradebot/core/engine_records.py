"""Turning the engine's decisions into records: position events, order records, plan and fill rows.

A mixin of :class:`~tradebot.core.engine.Engine` (it shares the engine's state); kept apart so the
engine module holds the state machine's flow and this one the shape of what it records (STRATEGY.md §6).
Pure, like the rest of the core.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING

from tradebot.core.domain import (
    ZERO,
    Fill,
    Order,
    OrderRecord,
    PlaceOrder,
    PositionEvent,
    PositionEventType,
    Side,
    Symbol,
    position_event_id,
    to_decimal,
)

if TYPE_CHECKING:
    from collections.abc import Mapping


class EngineRecords:
    """Record-building half of the engine (mixin; every attribute used here is set by ``Engine``)."""

    def _emit_plan(self, plan, t: int, marks: Mapping[Symbol, Decimal]) -> list:
        out: list = []
        children: dict[str, list[PlaceOrder]] = {}
        for cmd in plan.orders:
            order = Order(
                client_order_id=cmd.client_order_id,
                symbol=cmd.symbol,
                side=cmd.side,
                qty=cmd.qty,
                order_type=cmd.order_type,
                limit_price=cmd.limit_price,
                reason=cmd.reason,
                created_ms=t,
            )
            self.orders[cmd.client_order_id] = order
            self.in_flight.add(cmd.client_order_id)
            children.setdefault(cmd.intent_id, []).append(cmd)
            out.append(self._order_record(order, t, ref_price=cmd.ref_price, intent_id=cmd.intent_id))
            out.append(cmd)
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
                self._event(
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
                self._event(
                    PositionEventType.ORDER_DENIED,
                    denial.symbol,
                    t,
                    denial.reason,
                    f"{denial.side} {denial.qty} {denial.symbol} not sent",
                )
            )
        return out

    def _apply_actions(self, sym: Symbol, actions, t: int) -> list:
        out: list = []
        for action in actions:
            if action.urgent:
                self._force.add(sym)
                self._force_reason[sym] = action.event_type.value
                self._dirty = True
            qty = self.ledger.position(sym)
            out.append(
                self._event(
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
                )
            )
        return out

    def _saved(self, sym: Symbol, action) -> Decimal | None:
        per_unit = getattr(action, "amount_saved_or_gained_per_unit", None)
        if per_unit is None:
            return None
        return (to_decimal(per_unit) * self.ledger.position(sym)).quantize(Decimal("0.00000001"))

    def _risk_events(self, events, t: int) -> list:
        out: list = []
        for ev in events:
            if ev.event_type in (PositionEventType.DAILY_LOSS_HALT,):
                self._force.update(self.symbols)
            out.append(
                self._event(
                    ev.event_type,
                    Symbol(ev.symbol or self.symbols[0]),
                    t,
                    ev.trigger_reason,
                    ev.action_taken,
                    indicators=dict(ev.indicators),
                )
            )
        return out

    def _on_position_change(self, sym: Symbol, fill: Fill, result) -> list:
        out: list = []
        before, after = result.position_before, result.position_after
        st = self._sym[sym]
        st.qty = float(after)
        if before == 0 and after != 0:
            st.open = True
            atr = self.book.atr(sym, self.config.rebalance_timeframe)
            actions = self.overlay.on_open(sym, fill, atr)
            risk = self.overlay.initial_risk(sym)
            if risk:
                self.ledger.set_initial_risk(sym, to_decimal(risk))
            out.append(self._fill_event(PositionEventType.ENTRY, sym, fill, before, after))
            out.extend(self._apply_actions(sym, actions, fill.ts_ms))
        elif after == 0 and before != 0:
            st.open = False
            self.overlay.on_close(sym, fill.ts_ms)
            out.append(self._fill_event(PositionEventType.EXIT, sym, fill, before, after))
        else:
            self.overlay.on_fill(sym, fill, after)
        if result.closed is not None:
            out.append(result.closed)
        return out

    def _fill_event(
        self, kind: PositionEventType, sym: Symbol, fill: Fill, before: Decimal, after: Decimal
    ) -> PositionEvent:
        # The ENTRY / EXIT row of the fill that opened or closed a position.
        return self._event(
            kind,
            sym,
            fill.ts_ms,
            fill.client_order_id,
            f"{fill.side} {fill.qty} @ {fill.price}",
            price=fill.price,
            size_before=before,
            size_after=after,
            client_order_ids=(fill.client_order_id,),
        )

    # ------------------------------------------------------------------ records
    def record_event(
        self, kind: PositionEventType, symbol: str, time_ms: int, reason: str, action: str, **details
    ) -> PositionEvent:
        """Create a position event in the engine's own sequence (for reconciliation and feeds).

        ``details`` are the optional fields of :class:`PositionEvent` accepted by the engine: ``price``,
        ``size_before``, ``size_after``, ``client_order_ids``, ``indicators``, ``amount``.
        """
        return self._event(kind, Symbol(symbol), time_ms, reason, action, **details)

    def _event(
        self,
        kind: PositionEventType,
        sym: Symbol,
        t: int,
        reason: str,
        action: str,
        *,
        price: Decimal | None = None,
        size_before: Decimal | None = None,
        size_after: Decimal | None = None,
        client_order_ids: tuple[str, ...] = (),
        indicators: dict | None = None,
        r_multiple: float | None = None,
        profit_pct: float | None = None,
        amount: Decimal | None = None,
    ) -> PositionEvent:
        self._event_seq += 1
        qty = self.ledger.position(sym)
        mark = price if price is not None else to_decimal(self._sym[sym].mark)
        if profit_pct is None and qty:
            avg = self.ledger.avg_entry(sym)
            if avg:
                profit_pct = float((mark - avg) / avg * 100)
        position_id = self.ledger.trades.position_id(sym)
        self.stats.on_event(kind, amount, position_id)
        return PositionEvent(
            event_id=position_event_id(self.config.run_id, self._event_seq),
            seq=self._event_seq,
            position_id=position_id,
            event_type=kind,
            symbol=sym,
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
        )

    @staticmethod
    def _order_record(
        order: Order, t: int, reason: str = "", *, ref_price: Decimal = ZERO, intent_id: str = ""
    ) -> OrderRecord:
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
        PositionEventType.DAILY_LOSS_HALT,
    }
)


def link_orders(out: list) -> None:
    # Give the overlay's position events of this step the client order ids of the orders planned for
    # their symbol in the same step (the decision row names the orders it caused).
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


def relabel_plan(plan, reasons: Mapping[str, str]):
    # Orders caused by an overlay decision carry that decision as their reason, not "rebalance".
    orders = tuple(replace(o, reason=reasons[o.symbol]) if o.symbol in reasons else o for o in plan.orders)
    intents = tuple(replace(i, reason=reasons[i.symbol]) if i.symbol in reasons else i for i in plan.intents)
    return replace(plan, orders=orders, intents=intents)
