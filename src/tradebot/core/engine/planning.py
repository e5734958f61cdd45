"""When the engine trades and what: the rebalance clock, the plan triggers and the orders in flight.

:class:`Planning` keeps the triggers (a clock tick due, symbols an overlay decision forces to trade,
"something changed", a plan deferred until the orders in flight are done, the last target weights)
and turns the current state into a plan: rebalancer targets → overlay multiplier and risk limits →
planner child orders, registered as in flight, with their rows. Pure, like the rest of the core.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from tradebot.core.config import EngineConfig
from tradebot.core.domain import (
    ZERO,
    Candle,
    ClientOrderId,
    Instrument,
    Order,
    PositionEventType,
    TradingState,
)
from tradebot.core.engine.ml import MlStage
from tradebot.core.engine.overlay import Overlay
from tradebot.core.engine.records import Output, RecordBuilder, relabel_plan
from tradebot.core.engine.snapshot import order_from_state, order_state
from tradebot.core.engine.stats import EngineStats
from tradebot.core.engine.stops import VenueStops
from tradebot.core.engine.symbols import SymState, flush_extremes, marks_decimal
from tradebot.core.execution.planner import Plan, plan_rebalance
from tradebot.core.management import Action, RiskEvent
from tradebot.core.portfolio.ledger import Ledger
from tradebot.core.portfolio.rebalancer import compute_targets
from tradebot.core.signals.book import SignalBook


class Planning:
    """The rebalance clock and the plans it makes, for one engine.

    Parameters
    ----------
    config
        The engine configuration.
    instruments
        Precision and filters per symbol.
    book
        The signal book (stream states, ATR, volatility, last closed candles).
    ledger
        The ledger the plans read (positions, cash, equity) and set stream targets on.
    overlay
        Management and risk limits.
    records
        Builds the rows of plans, overlay actions and risk events.
    stats
        The run statistics (which symbols' streams flipped since the last plan).
    symbols
        The engine's per-symbol state (marks, quantities, open positions).
    streams_by_symbol
        The stream ids of each symbol.

    Attributes
    ----------
    due_ms
        Close time (ms UTC) of a rebalance-clock tick that waits until every live symbol reached it.
    force
        Symbols an urgent overlay decision makes trade at the next opportunity, inside the band too.
    orders, in_flight
        Orders by client order id, and the ids of those not yet terminal.
    respected
        Symbols a manual trade or a base-asset deposit/withdrawal left alone (``manual_trades =
        "respect"``), with the reason: their holdings are the target until one of their streams
        changes state. An urgent overlay exit and a daily-loss close-all still trade them.
    """

    def __init__(
        self,
        config: EngineConfig,
        instruments: Mapping[str, Instrument],
        book: SignalBook,
        ledger: Ledger,
        overlay: Overlay,
        records: RecordBuilder,
        stats: EngineStats,
        symbols: Mapping[str, SymState],
        streams_by_symbol: Mapping[str, tuple[str, ...]],
    ) -> None:
        self.config = config
        self.instruments = instruments
        self.book = book
        self.ledger = ledger
        self.overlay = overlay
        self.records = records
        self.stats = stats
        self._sym = symbols
        self._states = tuple(symbols.values())
        self._symbols = tuple(symbols)
        self._streams_by_symbol = streams_by_symbol
        self._managed = overlay.managed
        self._uses_volatility = config.allocation.policy == "inverse_vol"
        self._always_plan = self._uses_volatility or config.allocation.confidence_weighting
        self._band = float(config.planner.band_fraction) * 0.999
        self.orders: dict[ClientOrderId, Order] = {}
        self.in_flight: set[ClientOrderId] = set()
        self.due_ms: int | None = None
        self.force: set[str] = set()
        self.force_reason: dict[str, str] = {}
        self.dirty = True
        self.replan = False
        self.weights: dict[str, float] | None = None
        self.blackout = False
        self.stale: set[str] = set()
        self.respected: dict[str, str] = {}
        self.intent_seq = 1
        #: The engine's protective stops at the venue (None when off): overlay actions mark them due.
        self.stops: VenueStops | None = None
        #: The learned position management (None without a model), run after the period rules.
        self.ml: MlStage | None = None

    # ------------------------------------------------------------------ triggers
    def caught_up(self, due_ms: int) -> bool:
        """True when every symbol whose feed is not stale has reached ``due_ms`` (ms UTC)."""
        stale = self.stale
        for st in self._states:  # noqa: SIM110 - a plain loop is faster than all() on this path
            if st.time < due_ms and st.symbol not in stale:
                return False
        return True

    def on_actions(self, sym: str, actions: Sequence[Action]) -> list[Output]:
        """Record overlay actions on ``sym``; an urgent one (every change of m) forces it to trade."""
        if self.stops is not None and actions:
            self.stops.dirty.add(sym)
        for action in actions:
            if action.urgent:
                self.force.add(sym)
                self.force_reason[sym] = action.event_type.value
                self.dirty = True
        return list(self.records.action_rows(sym, actions))

    def on_risk_events(self, events: Sequence[RiskEvent], t: int) -> list[Output]:
        """Record risk events; a daily-loss halt that closes all forces every symbol to trade now (one
        that only blocks entries, ``risk.daily_loss_action = "block_entries"``, forces nothing)."""
        if not self.overlay.risk.blocks_only and any(
            ev.event_type is PositionEventType.DAILY_LOSS_HALT for ev in events
        ):
            self.force.update(self._symbols)
        return list(self.records.risk_rows(events, t, self._symbols[0]))

    def needs_plan(self, equity: float) -> bool:
        """Cheap float check on the clock: did anything change (a flip, an overlay action, a deferred
        plan), or does a symbol drift from its last target weight by more than the planner's band?"""
        if self.dirty or self._always_plan or self.force or self.weights is None:
            return True
        threshold = self._band * equity
        for sym, st in self._sym.items():
            held = st.qty * st.mark
            if abs(held - self.weights[sym] * equity) > threshold:
                return True
        return False

    # ------------------------------------------------------------------ the clock and the plan
    def on_clock(self, t: int) -> list[Output]:
        """One rebalance-clock tick at ``t`` (ms UTC): equity sample, the overlay's period rules, blackout
        and daily-loss limits, then a plan if one is needed (deferred while orders are in flight)."""
        marks = marks_decimal(self._states)
        if len(marks) < len(self._symbols):
            return []
        for st in self._states:
            if st.open:
                flush_extremes(st, self.ledger)
        snap = self.records.equity_snapshot(t, marks)
        out: list[Output] = [snap]
        if self._managed:
            tf = self.config.rebalance_timeframe
            ml = self.ml
            closed: dict[str, Candle] = {}
            for sym in self._symbols:
                candle = self.book.last_closed(sym, tf)
                if candle is not None and candle.open_time_ms + candle.timeframe.ms == t:
                    closed[sym] = candle
                    if ml is not None:
                        ml.on_clock_candle(sym, candle)
                    out.extend(self.on_actions(sym, self.overlay.on_period(sym, candle, self.book)))
            if ml is not None and closed:
                out.extend(
                    ml.step(snap, self.ledger, self.book, self.overlay.managers, closed, self.on_actions)
                )
        blackout = self.overlay.risk.in_blackout(t)
        if blackout != self.blackout:
            self.blackout = blackout
            self.dirty = True
        state_before = self.overlay.trading_state
        events, state = self.overlay.on_equity(t, snap.equity)
        if state is not state_before:
            self.dirty = True
        if events:
            out.extend(self.on_risk_events(events, t))
        if self.in_flight:
            self.replan = True
            return out
        if self.needs_plan(float(snap.equity)):
            out.extend(self.plan(t, reason="rebalance", marks=marks, equity=snap.equity))
        return out

    def plan(
        self,
        t: int,
        *,
        reason: str,
        marks: Mapping[str, Decimal] | None = None,
        equity: Decimal | None = None,
    ) -> list[Output]:
        """Plan at ``t`` (ms UTC): targets, overlay and limits, child orders (registered in flight),
        and their rows. ``marks`` and ``equity`` default to the current ones."""
        self.replan = False
        self.dirty = False
        marks = marks if marks is not None else marks_decimal(self._states)
        if len(marks) < len(self._symbols):
            return []
        equity = equity if equity is not None else self.ledger.equity(marks)
        views = self.book.states()
        vol = self.book.volatility(self.config.rebalance_timeframe) if self._uses_volatility else None
        alloc = compute_targets(self.config.allocation, views, equity, marks, vol)
        holdings = {s: self.ledger.position(s) for s in self._symbols}
        targets, _multipliers, risk_events, blocked = self.overlay.managed_targets(
            t,
            alloc.asset_notional,
            holdings,
            marks,
            equity,
            self.stale,
            frozenset(st.symbol for st in self._states if st.open),
        )
        out: list[Output] = self.on_risk_events(risk_events, t)
        if self.respected:
            close_all = (
                self.overlay.trading_state is TradingState.HALTED and not self.overlay.risk.blocks_only
            )
            targets = dict(targets)
            for sym in self.respected:
                if not close_all and sym not in self.force:
                    targets[sym] = holdings[sym] * marks[sym]
        force = frozenset(self.force)
        self.force.clear()
        reasons, self.force_reason = self.force_reason, {}
        plan = plan_rebalance(
            targets=targets,
            holdings=holdings,
            marks=marks,
            cash=self.ledger.cash,
            equity=equity,
            instruments=self.instruments,
            config=self.config.planner,
            run_id=self.config.run_id,
            next_intent_seq=self.intent_seq,
            time_ms=t,
            reason=reason,
            blocked_increase=frozenset(blocked),
            force=force,
        )
        self.intent_seq = plan.next_intent_seq
        if reasons:
            plan = relabel_plan(plan, reasons)
        if plan.deferred_buys:
            self.replan = True
        eq = float(equity)
        self.weights = {s: (float(targets[s]) / eq if eq > 0 else 0.0) for s in self._symbols}
        traded = {o.symbol for o in plan.orders}
        for sym in self._symbols:
            if sym in traded or self.stats.streams_changed(sym):
                self._set_stream_targets(
                    sym, alloc.stream_notional, targets[sym], alloc.asset_notional[sym], marks[sym]
                )
                if sym not in traded:
                    self.ledger.clear_pending(sym)
        out.extend(self._emit(plan, t))
        return out

    def order_done(self, order: Order, t: int, *, replan: bool = True) -> list[Output]:
        """``order`` reached a terminal state at ``t``: settle its symbol, and make the deferred plan
        once nothing is in flight (unless ``replan`` is False)."""
        self.in_flight.discard(order.client_order_id)
        if not any(self.orders[c].symbol == order.symbol for c in self.in_flight):
            self.ledger.clear_pending(order.symbol)
            if self._managed and self._sym[order.symbol].open:
                self.overlay.settle_reference(order.symbol, self.ledger.position(order.symbol))
        if not self.in_flight and self.replan and replan:
            return self.plan(t, reason="rebalance")
        return []

    def _set_stream_targets(
        self,
        sym: str,
        stream_notional: Mapping[str, Decimal],
        managed: Decimal,
        raw: Decimal,
        mark: Decimal,
    ) -> None:
        scale = managed / raw if raw > 0 else ZERO
        units = {sid: (stream_notional.get(sid, ZERO) * scale / mark) for sid in self._streams_by_symbol[sym]}
        self.ledger.set_stream_targets(sym, units, mark)

    def _emit(self, plan: Plan, t: int) -> list[Output]:
        # Register the plan's child orders as in flight; their records and commands, then the rows.
        out: list[Output] = []
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
            out.append(self.records.order_record(order, t, ref_price=cmd.ref_price, intent_id=cmd.intent_id))
            out.append(cmd)
        out.extend(self.records.plan_rows(plan, t))
        return out

    # ------------------------------------------------------------------ snapshot
    def state(self) -> dict[str, Any]:
        """Return the triggers as JSON-able data (the snapshot's ``counters``, less the engine's own)."""
        return {
            "intent_seq": self.intent_seq,
            "replan": self.replan,
            "dirty": self.dirty,
            "blackout": self.blackout,
            "force": sorted(self.force),
            "force_reason": self.force_reason,
            "stale": sorted(self.stale),
            "weights": self.weights,
            "due_ms": self.due_ms,
            "respected": dict(sorted(self.respected.items())),
        }

    def orders_state(self) -> dict[str, Any]:
        """Return the orders in flight as JSON-able data, by client order id."""
        return {cid: order_state(self.orders[cid]) for cid in sorted(self.in_flight)}

    def restore(self, counters: dict[str, Any], orders: Mapping[str, dict[str, Any]]) -> None:
        """Load :meth:`state` and :meth:`orders_state` data."""
        self.orders = {ClientOrderId(cid): order_from_state(o) for cid, o in orders.items()}
        self.in_flight = set(self.orders)
        self.intent_seq = counters["intent_seq"]
        self.replan = counters["replan"]
        self.dirty = counters["dirty"]
        self.blackout = counters["blackout"]
        self.force = set(counters["force"])
        self.force_reason = dict(counters["force_reason"])
        self.stale = set(counters["stale"])
        self.weights = counters["weights"]
        self.due_ms = counters["due_ms"]
        self.respected = dict(counters.get("respected", {}))
