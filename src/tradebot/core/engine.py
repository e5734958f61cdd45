"""The engine: one synchronous state machine for every mode (backtest, paper, testnet, live).

``Engine.handle(event) -> list[command]`` applies one input event and returns what to do:
:class:`~tradebot.core.domain.PlaceOrder` / :class:`~tradebot.core.domain.CancelOrder` for the venue
and records (``PositionEvent``, ``OrderRecord``, ``Fill``, ``TradeRecord``, ``EquitySnapshot``,
``StreamSignal``) for the event store. It never does I/O and never reads a clock: time comes from the
events (a candle's close time, a fill's time).

Flow of one closed base candle (the hot path, kept lean):

1. the mark of its symbol is updated; if a position is open, MAE/MFE and the overlay's stop rules run;
2. the signal book aggregates it; closed 1h/4h/1d candles update the trend streams;
3. on the rebalance clock (each ``rebalance_timeframe`` close, once every symbol has reached it) the
   engine snapshots equity, applies the risk limits, computes targets (rebalancer × overlay
   multiplier), and the planner turns them into child orders (sells first; buys after the sells fill).

A backtest hands stretches of candles that can only move marks to :meth:`Engine.on_quiet_run` as one
run per symbol (:mod:`tradebot.core.engine_quiet`); the daemon feeds every candle to :meth:`handle`.
Both give the same state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from tradebot.core import engine_state
from tradebot.core.config import EngineConfig
from tradebot.core.domain import (
    ZERO,
    Candle,
    ClientOrderId,
    EquitySnapshot,
    FeedStatus,
    Fill,
    Instrument,
    Order,
    OrderStatus,
    OrderUpdate,
    PositionEventType,
    StreamSignal,
    StreamState,
    Symbol,
    TradingState,
    stream_id,
    to_decimal,
)
from tradebot.core.engine_parts import EngineStats, Overlay, SymState
from tradebot.core.engine_quiet import QuietRuns
from tradebot.core.engine_records import EngineRecords, link_orders, relabel_plan
from tradebot.core.execution.planner import plan_rebalance
from tradebot.core.management import ManagementConfig
from tradebot.core.portfolio.ledger import Ledger
from tradebot.core.portfolio.rebalancer import compute_targets
from tradebot.core.signals.book import SignalBook

_EMPTY: tuple = ()


class Engine(EngineRecords, QuietRuns):
    """The trading state machine shared by every driver.

    Parameters
    ----------
    config
        Frozen engine configuration.
    instruments
        Precision and filters per symbol (must cover every symbol of ``config.assets``).

    Raises
    ------
    ValueError
        If an instrument is missing for a configured symbol.
    """

    def __init__(self, config: EngineConfig, instruments: Mapping[str, Instrument]) -> None:
        missing = [s for s in config.assets if s not in instruments]
        if missing:
            raise ValueError(f"instruments missing for symbols {missing}")
        self.config = config
        self.instruments = dict(instruments)
        self.symbols: tuple[Symbol, ...] = tuple(Symbol(s) for s in config.assets)
        timeframes = tuple(sc.timeframe for sc in config.streams)
        self.streams_by_symbol = {
            s: tuple(stream_id(config.assets[s], tf) for tf in timeframes) for s in self.symbols
        }
        self.book = SignalBook(
            dict(config.assets),
            config.base_timeframe,
            config.streams,
            extra_timeframes=(config.rebalance_timeframe,),
        )
        self.ledger = Ledger(
            config.quote, config.initial_cash, self.symbols, self.streams_by_symbol, run_id=config.run_id
        )
        self.overlay = Overlay(config, self.symbols)
        self.orders: dict[ClientOrderId, Order] = {}
        self.in_flight: set[ClientOrderId] = set()
        self.stats = EngineStats(self.symbols, [sid for v in self.streams_by_symbol.values() for sid in v])
        self._managed = config.management != ManagementConfig.disabled()
        self.overlay.managed = self._managed
        self._force_reason: dict[str, str] = {}
        self._sym: dict[str, SymState] = {
            s: SymState(s, self.book.aggregator(s), self.overlay.managers[s], self._managed)
            for s in self.symbols
        }
        self._states = tuple(self._sym.values())
        self._stale: set[str] = set()
        self._weights: dict[str, float] | None = None
        self._dirty = True
        self._blackout = False
        self._uses_volatility = config.allocation.policy == "inverse_vol"
        self._always_plan = self._uses_volatility or config.allocation.confidence_weighting
        self._band = float(config.planner.band_fraction) * 0.999
        self._base_ms = config.base_timeframe.ms
        self._clock_ms = config.rebalance_timeframe.ms
        self._due_ms: int | None = None
        self._replan = False
        self._force: set[str] = set()
        self._intent_seq = 1
        self._event_seq = 0
        self.last_time_ms = 0

    # ------------------------------------------------------------------ inputs
    def handle(self, event: object) -> list:
        """Apply one input event and return the commands and records it causes.

        Parameters
        ----------
        event
            A closed base :class:`Candle`, a :class:`Fill`, an :class:`OrderUpdate` or a
            :class:`FeedStatus`.

        Returns
        -------
        list
            ``PlaceOrder`` / ``CancelOrder`` commands for the venue and records for the store, in
            the order they must be acted on. May be an empty (shared, read-only) sequence.

        Raises
        ------
        TypeError
            For an event type the engine does not know.
        """
        kind = type(event)
        if kind is Candle:
            return self.on_candle(event)  # type: ignore[arg-type]
        if kind is Fill:
            return self.on_fill(event)  # type: ignore[arg-type]
        if kind is OrderUpdate:
            return self.on_order_update(event)  # type: ignore[arg-type]
        if kind is FeedStatus:
            return self.on_feed_status(event)  # type: ignore[arg-type]
        raise TypeError(f"engine cannot handle event of type {kind.__name__}: {event!r}")

    def warm_up(self, candles: Iterable[Candle]) -> list[StreamSignal]:
        """Warm the streams from native candles of their own timeframes (before trading starts).

        Returns the streams' state after warm-up (one signal per stream) for the record.
        """
        signals = self.book.warm_up(candles)
        for sig in signals:
            if sig.state is StreamState.IN:
                self.stats.on_flip(sig)
        return signals

    def snapshot(self) -> dict:
        """Return the engine's state as JSON-able data (see :mod:`tradebot.core.engine_state`)."""
        return engine_state.snapshot(self)

    def restore(self, data: dict) -> None:
        """Load a :meth:`snapshot` into this freshly built engine; then warm up and :meth:`prime` the book.

        Raises
        ------
        ValueError
            If the snapshot's version or run id does not match.
        """
        engine_state.restore(self, data)

    def prime(self, candles: Iterable[Candle]) -> None:
        """Feed base candles to the signal book and the marks only, deciding nothing.

        Used after a restart to rebuild the periods still open (a 1d stream's day so far) from base
        candles whose decisions were already taken before the restart. Aggregated periods that the
        warm-up already covered are skipped by the book.
        """
        for candle in candles:
            st = self._sym[candle.symbol]
            st.mark = candle.close
            st.time = max(st.time, candle.open_time_ms + self._base_ms)
            closed = st.agg.update(candle)
            if closed:
                self.book.on_closed(st.symbol, closed, flips_only=True)

    def on_candle(self, candle: Candle) -> list:
        """Apply one closed base candle (hot path). See :meth:`handle`.

        Per candle only the mark, the running high/low of an open position (MAE/MFE) and the
        aggregator are touched; stream closes, overlay actions and the rebalance clock do the rest.
        """
        st = self._sym[candle[0]]
        t = candle[2] + self._base_ms
        st.mark = candle[6]
        st.time = t
        self.last_time_ms = t
        out: list | None = None
        if st.open:
            if candle[4] > st.hi:
                st.hi = candle[4]
            if candle[5] < st.lo:
                st.lo = candle[5]
            if st.managed:
                actions = st.manager.on_bar(
                    time_ms=t, open=candle[3], high=candle[4], low=candle[5], close=candle[6]
                )
                if actions:
                    out = self._apply_actions(st.symbol, actions, t)
        closed = st.agg.update(candle)
        if closed:
            signals = self.book.on_closed(st.symbol, closed, flips_only=True)
            if signals:
                out = self._on_signals(st.symbol, signals, t, out)
        if (closed or t % self._clock_ms == 0) and (self._due_ms is None or t > self._due_ms):
            self._due_ms = t
        if self._due_ms is not None and self._caught_up(self._due_ms):
            due = self._due_ms
            self._due_ms = None
            out = out if out is not None else []
            out.extend(self._on_clock(due))
        elif self._force and not self.in_flight:
            out = out if out is not None else []
            out.extend(self._plan(t, reason="overlay"))
        if out is None:
            return _EMPTY  # type: ignore[return-value]
        link_orders(out)
        return out

    def on_fill(self, fill: Fill) -> list:
        """Apply one execution: order state, ledger (exactly once), trade lifecycle, overlay state."""
        order = self.orders.get(ClientOrderId(fill.client_order_id))
        out: list = []
        if order is not None:
            if fill.trade_id in order.fill_ids:
                return out
            order.apply_fill(fill)
        self._flush_extremes(fill.symbol)
        result = self.ledger.apply(fill)
        if not result:
            return out
        out.append(fill)
        if order is not None:
            out.append(self._order_record(order, fill.ts_ms))
        sym = fill.symbol
        self.stats.on_fill(fill)
        out.extend(self._on_position_change(sym, fill, result))
        if order is not None and order.status.is_terminal:
            out.extend(self._order_done(order, fill.ts_ms))
        return out

    def on_order_update(self, update: OrderUpdate) -> list:
        """Apply a venue status report (accepted, rejected, canceled, expired)."""
        order = self.orders.get(update.client_order_id)
        if order is None:
            return []
        if update.exchange_order_id and order.exchange_order_id is None:
            order.exchange_order_id = update.exchange_order_id
        if not order.transition(update.status):
            return []
        out: list = [self._order_record(order, update.ts_ms, update.reason)]
        if update.status is OrderStatus.DENIED:
            out.append(
                self._event(
                    PositionEventType.ORDER_DENIED,
                    order.symbol,
                    update.ts_ms,
                    update.reason or "refused locally",
                    f"{order.side} {order.qty} {order.symbol} not sent",
                    client_order_ids=(order.client_order_id,),
                )
            )
        elif update.status in (OrderStatus.REJECTED, OrderStatus.EXPIRED) or (
            update.status is OrderStatus.CANCELED and order.filled_qty < order.qty
        ):
            out.append(
                self._event(
                    PositionEventType.ORDER_REJECTED,
                    order.symbol,
                    update.ts_ms,
                    f"{order.side} {order.qty} {order.symbol} {update.status}: {update.reason or 'no reason'}",
                    f"order {order.client_order_id} {update.status}",
                    client_order_ids=(order.client_order_id,),
                )
            )
        if order.status.is_terminal:
            out.extend(self._order_done(order, update.ts_ms, replan=update.status is OrderStatus.FILLED))
        return out

    def on_feed_status(self, status: FeedStatus) -> list:
        """Block (stale) or unblock (recovered) new entries on a symbol."""
        if status.stale == (status.symbol in self._stale):
            return []
        self._dirty = True
        if status.stale:
            self._stale.add(status.symbol)
            kind = PositionEventType.FEED_STALE
            action = "new entries and increases blocked"
        else:
            self._stale.discard(status.symbol)
            kind = PositionEventType.FEED_RECOVERED
            action = "entries allowed again"
        return [self._event(kind, status.symbol, status.ts_ms, status.reason or str(kind), action)]

    def finish(self) -> list:
        """Close the books at the last event time: final equity snapshot and open trades' records."""
        t = self.last_time_ms
        marks = self.marks_decimal()
        for sym in self.symbols:
            self._flush_extremes(sym)
        out: list = [self._snapshot(t, marks)]
        out.extend(t for s in self.symbols if (t := self.ledger.open_trade(s)) is not None)
        return out

    # ------------------------------------------------------------------ clock and planning
    def _caught_up(self, due_ms: int) -> bool:
        stale = self._stale
        for st in self._states:  # noqa: SIM110 - a plain loop is faster than all() on this path
            if st.time < due_ms and st.symbol not in stale:
                return False
        return True

    def mark(self, symbol: str) -> float:
        """Last close of ``symbol`` (quote currency), 0.0 before its first candle."""
        return self._sym[symbol].mark

    def marks_decimal(self) -> dict[Symbol, Decimal]:
        """Last closes as exact decimals, for symbols that have one."""
        return {st.symbol: to_decimal(st.mark) for st in self._states if st.mark > 0}

    def _flush_extremes(self, sym: str) -> None:
        # Hand the running high/low of an open position to the trade tracker (MAE/MFE), then reset.
        st = self._sym[sym]
        if st.open and st.hi >= st.lo:
            self.ledger.on_bar(sym, st.hi, st.lo)
        st.hi = float("-inf")
        st.lo = float("inf")

    def _needs_plan(self, equity: float) -> bool:
        # Cheap float check on the clock: does any symbol drift from its last target weight by more
        # than the planner's band? Stream flips, overlay actions and pending replans set _dirty.
        if self._dirty or self._always_plan or self._force or self._weights is None:
            return True
        threshold = self._band * equity
        for sym, st in self._sym.items():
            held = st.qty * st.mark
            if abs(held - self._weights[sym] * equity) > threshold:
                return True
        return False

    def _snapshot(self, t: int, marks: Mapping[Symbol, Decimal]) -> EquitySnapshot:
        equity = self.ledger.equity(marks)
        positions = self.ledger.positions()
        self.stats.on_equity(t, equity, any([st.qty for st in self._states]))
        return EquitySnapshot(
            time_ms=t, equity=equity, cash=self.ledger.cash, positions=positions, marks=dict(marks)
        )

    def _on_clock(self, t: int) -> list:
        marks = self.marks_decimal()
        if len(marks) < len(self.symbols):
            return []
        for st in self._states:
            if st.open:
                self._flush_extremes(st.symbol)
        snap = self._snapshot(t, marks)
        out: list = [snap]
        if self._managed:
            for sym in self.symbols:
                candle = self.book.last_closed(sym, self.config.rebalance_timeframe)
                if candle is not None and candle.open_time_ms + candle.timeframe.ms == t:
                    out.extend(self._apply_actions(sym, self.overlay.on_period(sym, candle, self.book), t))
        blackout = self.overlay.risk.in_blackout(t)
        if blackout != self._blackout:
            self._blackout = blackout
            self._dirty = True
        state_before = self.overlay.trading_state
        events, state = self.overlay.on_equity(t, snap.equity)
        if state is not state_before:
            self._dirty = True
        if events:
            out.extend(self._risk_events(events, t))
        if self.in_flight:
            self._replan = True
            return out
        if self._needs_plan(float(snap.equity)):
            out.extend(self._plan(t, reason="rebalance", marks=marks, equity=snap.equity))
        return out

    def _plan(
        self,
        t: int,
        *,
        reason: str,
        marks: Mapping[Symbol, Decimal] | None = None,
        equity: Decimal | None = None,
    ) -> list:
        self._replan = False
        self._dirty = False
        marks = marks if marks is not None else self.marks_decimal()
        if len(marks) < len(self.symbols):
            return []
        equity = equity if equity is not None else self.ledger.equity(marks)
        views = self.book.states()
        vol = self.book.volatility(self.config.rebalance_timeframe) if self._uses_volatility else None
        alloc = compute_targets(self.config.allocation, views, equity, marks, vol)
        holdings = {s: self.ledger.position(s) for s in self.symbols}
        targets, _multipliers, risk_events, blocked = self.overlay.managed_targets(
            t,
            alloc.asset_notional,
            holdings,
            marks,
            equity,
            self._stale,
            frozenset(st.symbol for st in self._states if st.open),
        )
        out: list = self._risk_events(risk_events, t)
        force = frozenset(self._force)
        self._force.clear()
        reasons, self._force_reason = self._force_reason, {}
        plan = plan_rebalance(
            targets=targets,
            holdings=holdings,
            marks=marks,
            cash=self.ledger.cash,
            equity=equity,
            instruments=self.instruments,
            config=self.config.planner,
            run_id=self.config.run_id,
            next_intent_seq=self._intent_seq,
            time_ms=t,
            reason=reason,
            blocked_increase=frozenset(blocked),
            force=force,
        )
        self._intent_seq = plan.next_intent_seq
        if reasons:
            plan = relabel_plan(plan, reasons)
        if plan.deferred_buys:
            self._replan = True
        eq = float(equity)
        self._weights = {s: (float(targets[s]) / eq if eq > 0 else 0.0) for s in self.symbols}
        traded = {o.symbol for o in plan.orders}
        for sym in self.symbols:
            if sym in traded or self.stats.streams_changed(sym):
                self._set_stream_targets(
                    sym, alloc.stream_notional, targets[sym], alloc.asset_notional[sym], marks[sym]
                )
                if sym not in traded:
                    self.ledger.clear_pending(sym)
        out.extend(self._emit_plan(plan, t, marks))
        return out

    def _set_stream_targets(
        self,
        sym: Symbol,
        stream_notional: Mapping[str, Decimal],
        managed: Decimal,
        raw: Decimal,
        mark: Decimal,
    ) -> None:
        scale = managed / raw if raw > 0 else ZERO
        units = {sid: (stream_notional.get(sid, ZERO) * scale / mark) for sid in self.streams_by_symbol[sym]}
        self.ledger.set_stream_targets(sym, units, mark)

    def _order_done(self, order: Order, t: int, *, replan: bool = True) -> list:
        self.in_flight.discard(order.client_order_id)
        if not any(self.orders[c].symbol == order.symbol for c in self.in_flight):
            self.ledger.clear_pending(order.symbol)
            if self._managed and self._sym[order.symbol].open:
                self.overlay.settle_reference(order.symbol, self.ledger.position(order.symbol))
        if not self.in_flight and self._replan and replan:
            return self._plan(t, reason="rebalance")
        return []

    # ------------------------------------------------------------------ signals, overlay, fills
    def _on_signals(self, sym: str, signals: list[StreamSignal], t: int, out: list | None) -> list:
        out = out if out is not None else []
        changed = False
        for sig in signals:
            if sig.flipped:
                changed = True
                self._dirty = True
                self.overlay.reallocate = True
                self.stats.on_flip(sig)
                out.append(sig)
        if changed:
            self.stats.mark_streams_changed(Symbol(sym))
            out.extend(self._apply_actions(Symbol(sym), self.overlay.on_streams(sym, self.book), t))
        return out

    # ------------------------------------------------------------------ views
    @property
    def trading_state(self) -> TradingState:
        """The risk state (ACTIVE / REDUCING / HALTED)."""
        return self.overlay.trading_state
