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
run per symbol (:mod:`tradebot.core.engine.quiet`); the daemon feeds every candle to :meth:`handle`.
Both give the same state.

The engine is composed of parts that each own their state and get what they read through their
constructor: the signal book, the :class:`~tradebot.core.portfolio.ledger.Ledger`, the
:class:`~tradebot.core.engine.overlay.Overlay` (management and risk limits), the
:class:`~tradebot.core.engine.records.RecordBuilder` (rows and the event sequence), the
:class:`~tradebot.core.engine.quiet.QuietReplayer` and the run's
:class:`~tradebot.core.engine.stats.EngineStats`. The engine itself keeps the plan triggers (clock tick
due, forced symbols, dirty flag) and the orders in flight; :mod:`tradebot.core.engine.snapshot` is the
format in which all of it is saved for a restart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from tradebot.core.config import EngineConfig
from tradebot.core.domain import (
    CancelOrder,
    Candle,
    CashFlow,
    ClientOrderId,
    FeedStatus,
    Fill,
    Instrument,
    Order,
    OrderStatus,
    OrderUpdate,
    PlaceOrder,
    PositionEvent,
    PositionEventType,
    Side,
    StreamSignal,
    StreamState,
    Symbol,
    TradingControl,
    TradingState,
    stream_id,
    to_decimal,
)
from tradebot.core.engine.ml import MlStage
from tradebot.core.engine.overlay import Overlay
from tradebot.core.engine.planning import Planning
from tradebot.core.engine.quiet import QuietReplayer
from tradebot.core.engine.records import Output, RecordBuilder, link_orders
from tradebot.core.engine.snapshot import SNAPSHOT_VERSION, check_snapshot
from tradebot.core.engine.stats import EngineStats
from tradebot.core.engine.stops import VenueStops
from tradebot.core.engine.symbols import SymState, flush_extremes, marks_decimal
from tradebot.core.ml.predictor import Predictor
from tradebot.core.portfolio.ledger import ApplyResult, Ledger
from tradebot.core.signals.book import SignalBook
from tradebot.core.signals.state import book_state, restore_book

_EMPTY: tuple[Output, ...] = ()


class Engine:
    """The trading state machine shared by every driver.

    Parameters
    ----------
    config
        Frozen engine configuration.
    instruments
        Precision and filters per symbol (must cover every symbol of ``config.assets``).
    predictor
        The position-management models (:class:`~tradebot.core.ml.predictor.Predictor`), required
        when ``config.management.ml.model`` is set (and used only then, with management on).

    Raises
    ------
    ValueError
        If an instrument is missing for a configured symbol, a model is configured without a
        predictor, or the predictor's features are not this configuration's.
    """

    def __init__(
        self,
        config: EngineConfig,
        instruments: Mapping[Symbol, Instrument],
        predictor: Predictor | None = None,
    ) -> None:
        missing = [s for s in config.assets if s not in instruments]
        if missing:
            raise ValueError(f"instruments missing for symbols {missing}")
        self.config = config
        self.instruments: dict[str, Instrument] = {s: i for s, i in instruments.items()}
        self.symbols: tuple[Symbol, ...] = tuple(Symbol(s) for s in config.assets)
        timeframes = tuple(sc.timeframe for sc in config.streams)
        self.streams_by_symbol: dict[str, tuple[str, ...]] = {
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
        self.stats = EngineStats(self.symbols, [sid for v in self.streams_by_symbol.values() for sid in v])
        self._managed = not config.management.is_off
        self.overlay.managed = self._managed
        self._sym: dict[str, SymState] = {
            s: SymState(s, self.book.aggregator(s), self.overlay.managers[s], self._managed)
            for s in self.symbols
        }
        self._states = tuple(self._sym.values())
        self._base_ms = config.base_timeframe.ms
        self._clock_ms = config.rebalance_timeframe.ms
        self._quiet = QuietReplayer(self._sym, self._base_ms, self._clock_ms)
        self.records = RecordBuilder(config.run_id, self.ledger, self.stats, self._sym)
        self._planning = Planning(
            config,
            self.instruments,
            self.book,
            self.ledger,
            self.overlay,
            self.records,
            self.stats,
            self._sym,
            self.streams_by_symbol,
        )
        #: Protective stops resting at the venue (``config.stops_at_venue`` with management on).
        self._stops: VenueStops | None = None
        if config.stops_at_venue and self._managed:
            self._stops = VenueStops(
                config.run_id, self.instruments, lambda: self._planning.orders, self.records
            )
        self._planning.stops = self._stops
        #: The learned position management (``[management.ml]`` with a model), else None.
        self.ml: MlStage | None = None
        ml_cfg = config.management.ml
        if ml_cfg.enabled and self._managed:
            if predictor is None:
                raise ValueError(f"management.ml.model is {ml_cfg.model!r} but no predictor was given")
            self.ml = MlStage(
                predictor,
                ml_cfg.thresholds(),
                run_id=config.run_id,
                symbols=self.symbols,
                stream_timeframes=tuple(str(sc.timeframe) for sc in config.streams),
                horizon_ms=predictor.horizon_ms,
                fee_rate=config.management.fee_rate,
            )
            if "scale_in_success" in predictor.models:  # the model judges the rule's adds
                for mgr in self.overlay.managers.values():
                    mgr.defer_scale_in = True
        self._planning.ml = self.ml
        self.last_time_ms = 0

    # ------------------------------------------------------------------ inputs
    def handle(self, event: object) -> Sequence[Output]:
        """Apply one input event and return the commands and records it causes.

        Parameters
        ----------
        event
            A closed base :class:`Candle`, a :class:`Fill`, an :class:`OrderUpdate`, a
            :class:`FeedStatus`, a :class:`TradingControl` or a :class:`CashFlow`.

        Returns
        -------
        Sequence[Output]
            ``PlaceOrder`` / ``CancelOrder`` commands for the venue and records for the store, in
            the order they must be acted on. May be an empty (shared, read-only) sequence.

        Raises
        ------
        TypeError
            For an event type the engine does not know.
        """
        if isinstance(event, Candle):
            return self.on_candle(event)
        if isinstance(event, Fill):
            return self.on_fill(event)
        if isinstance(event, OrderUpdate):
            return self.on_order_update(event)
        if isinstance(event, FeedStatus):
            return self.on_feed_status(event)
        if isinstance(event, TradingControl):
            return self.on_trading_control(event)
        if isinstance(event, CashFlow):
            return self.on_cash_flow(event)
        raise TypeError(f"engine cannot handle event of type {type(event).__name__}: {event!r}")

    def warm_up(self, candles: Iterable[Candle]) -> list[StreamSignal]:
        """Warm the streams from native candles of their own timeframes (before trading starts).

        Returns the streams' state after warm-up (one signal per stream) for the record.
        """
        candles = list(candles)
        signals = self.book.warm_up(candles)
        if self.ml is not None:
            self.ml.warm_up(candles, str(self.config.rebalance_timeframe))
        for sig in signals:
            if sig.state is StreamState.IN:
                self.stats.on_flip(sig)
        return signals

    def snapshot(self) -> dict[str, Any]:
        """Return the engine's state as JSON-able data (see :mod:`tradebot.core.engine.snapshot`)."""
        return {
            "version": SNAPSHOT_VERSION,
            "run_id": self.config.run_id,
            "ledger": self.ledger.snapshot(),
            "overlay": self.overlay.state(),
            "orders": self._planning.orders_state(),
            "counters": {
                **self._planning.state(),
                "event_seq": self.records.event_seq,
                "last_time_ms": self.last_time_ms,
            },
            "symbols": {s: st.state() for s, st in self._sym.items()},
            "stats": self.stats.state(),
            # the signal book as of now (None for a custom stream rule): a restart restores it
            # instead of replaying every base candle since the run's start
            "book": book_state(self.book),
            **({"stops": self._stops.state()} if self._stops is not None else {}),
            **({"ml": self.ml.state()} if self.ml is not None else {}),
        }

    def restore(self, data: dict[str, Any]) -> bool:
        """Load a :meth:`snapshot` into this freshly built engine.

        Returns True when the snapshot carried the signal book, which is then restored too: the
        engine is ready for the candles after the snapshot. False for a snapshot without one (older,
        or a custom stream rule): then warm the book up and :meth:`prime` it as before.

        Raises
        ------
        ValueError
            If the snapshot's version or run id does not match.
        """
        check_snapshot(data, self.config.run_id)
        # The restored ledger replaces the fresh one in every part that reads it.
        self.ledger = self.records.ledger = self._planning.ledger = Ledger.restore(data["ledger"])
        self.overlay.restore(data["overlay"])
        c = data["counters"]
        self._planning.restore(c, data["orders"])
        self.records.event_seq = c["event_seq"]
        self.last_time_ms = c["last_time_ms"]
        for sym, state in data["symbols"].items():
            self._sym[sym].restore(state)
        self.stats.restore(data["stats"])
        if self._stops is not None and data.get("stops") is not None:
            self._stops.restore(data["stops"])
        if self.ml is not None and data.get("ml") is not None:
            self.ml.restore(data["ml"])
        book = data.get("book")
        if book is None:
            return False
        restore_book(self.book, book)
        return True

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

    def on_candle(self, candle: Candle) -> Sequence[Output]:
        """Apply one closed base candle (hot path). See :meth:`handle`.

        Per candle only the mark, the running high/low of an open position (MAE/MFE) and the
        aggregator are touched; stream closes, overlay actions and the rebalance clock do the rest.
        """
        st = self._sym[candle[0]]
        t = candle[2] + self._base_ms
        st.mark = candle[6]
        st.time = t
        self.last_time_ms = t
        out: list[Output] | None = None
        if st.open:
            if candle[4] > st.hi:
                st.hi = candle[4]
            if candle[5] < st.lo:
                st.lo = candle[5]
            if st.managed:
                stops = self._stops
                if stops is not None and st.symbol in stops.live and self._stop_reached(st, candle):
                    out = self._stop_wait(st, t)
                else:
                    actions = st.manager.on_bar(
                        time_ms=t, open=candle[3], high=candle[4], low=candle[5], close=candle[6]
                    )
                    if actions:
                        out = self._planning.on_actions(st.symbol, actions)
        closed = st.agg.update(candle)
        if closed:
            signals = self.book.on_closed(st.symbol, closed, flips_only=True)
            if signals:
                out = self._on_signals(st.symbol, signals, t, out)
        pl = self._planning
        if (closed or t % self._clock_ms == 0) and (pl.due_ms is None or t > pl.due_ms):
            pl.due_ms = t
        if pl.due_ms is not None and pl.caught_up(pl.due_ms):
            due = pl.due_ms
            pl.due_ms = None
            out = out if out is not None else []
            out.extend(pl.on_clock(due))
        elif pl.force and not pl.in_flight:
            out = out if out is not None else []
            out.extend(pl.plan(t, reason="overlay"))
        if self._stops is not None and (out or self._stops.dirty):
            out = self._stops_out(out if out is not None else [], t)
        if not out:
            return _EMPTY
        link_orders(out)
        return out

    # ------------------------------------------------------------------ stops at the venue
    def _stop_reached(self, st: SymState, candle: Candle) -> bool:
        # True when the candle's low reaches the symbol's resting stop order: the venue fills it
        stops = self._stops
        assert stops is not None
        price = stops.resting_price(st.symbol)
        return price is not None and candle[5] <= price

    def _stop_wait(self, st: SymState, t: int) -> list[Output] | None:
        # A candle reached the resting stop: no bar rules while its fill is awaited; at the second such
        # candle without a fill, cancel it (the venue's answer carries any fill) and let the overlay
        # decide again once it is gone.
        stops = self._stops
        assert stops is not None
        if st.symbol not in stops.triggered:
            stops.triggered.add(st.symbol)
            return None
        stops.triggered.discard(st.symbol)
        return stops.cancel(st.symbol, t, "protective stop reached without a fill")

    def _stops_out(self, out: list[Output], t: int) -> list[Output]:
        # The engine's output with the stops kept in step: a planned sell of a symbol with a resting
        # stop is preceded by the stop's cancel (the venue locks its units), and the symbols whose
        # position or stop level changed get their stop placed, replaced or cancelled (not while
        # their planned orders are in flight).
        stops = self._stops
        assert stops is not None
        if stops.live:
            freed: list[Output] = []
            for cmd in out:
                if (
                    type(cmd) is PlaceOrder
                    and cmd.side is Side.SELL
                    and cmd.symbol in stops.live
                    and not stops.is_stop(cmd.client_order_id)
                ):
                    freed.extend(stops.cancel(cmd.symbol, t, f"units freed for {cmd.client_order_id}"))
                freed.append(cmd)
            out = freed
        if stops.dirty:
            planning = self._planning
            busy = {planning.orders[c].symbol for c in planning.in_flight}
            for sym in sorted(stops.dirty - busy):
                st = self._sym[sym]
                wanted = stops.wanted(sym, self.ledger.position(sym), st.manager.protective_stop, st.mark)
                out.extend(stops.sync(sym, stops.due_ms.pop(sym, t), wanted, st.mark))
        return out

    def on_fill(self, fill: Fill) -> list[Output]:
        """Apply one execution: order state, ledger (exactly once), trade lifecycle, overlay state.

        A fill of an order the engine did not place (a manual trade at the venue: no such order and
        no client order id of this run) is adopted with its true side and recorded as a
        ``MANUAL_TRADE`` position event; its asset is then left alone or rebalanced
        (:attr:`EngineConfig.manual_trades`).
        """
        order = self.orders.get(ClientOrderId(fill.client_order_id))
        out: list[Output] = []
        stops = self._stops
        is_stop = stops is not None and stops.is_stop(fill.client_order_id)
        if order is not None:
            if fill.trade_id in order.fill_ids:
                return out
            order.apply_fill(fill)
        flush_extremes(self._sym[fill.symbol], self.ledger)
        result = self.ledger.apply(fill)
        if not result:
            return out
        out.append(fill)
        if order is not None:
            out.append(self.records.order_record(order, fill.ts_ms))
        sym = fill.symbol
        self.stats.on_fill(fill)
        if order is None and not fill.client_order_id.startswith(f"{self.config.run_id}-"):
            action = self._external_change(sym, f"manual {fill.side} {fill.qty} @ {fill.price}")
            out.append(
                self.records.event(
                    PositionEventType.MANUAL_TRADE,
                    sym,
                    fill.ts_ms,
                    f"fill {fill.trade_id} of order {fill.client_order_id!r} not placed by the bot: "
                    f"{fill.side} {fill.qty} @ {fill.price}",
                    f"adopted into the ledger; {action}",
                    price=fill.price,
                    size_before=result.position_before,
                    size_after=result.position_after,
                    client_order_ids=(fill.client_order_id,),
                    indicators={
                        "side": str(fill.side),
                        "qty": str(fill.qty),
                        "policy": self.config.manual_trades,
                    },
                )
            )
        if is_stop and order is not None and order.stop_price is not None:
            stop_exit = self._sym[sym].manager.venue_stop_filled(
                time_ms=fill.ts_ms, stop=float(order.stop_price), fill_price=float(fill.price)
            )
            if stop_exit is not None:  # the exit's event names the stop order that made it
                cids = (fill.client_order_id,)
                out.extend(
                    dataclasses.replace(r, client_order_ids=cids) if type(r) is PositionEvent else r
                    for r in self._planning.on_actions(sym, [stop_exit])
                )
        out.extend(self._on_position_change(sym, fill, result))
        if order is not None and order.status.is_terminal:
            if stops is not None and is_stop:
                stops.on_terminal(order)
            else:
                out.extend(self._planning.order_done(order, fill.ts_ms))
        if stops is not None:
            stops.dirty.add(sym)
            out = self._stops_out(out, fill.ts_ms)
        return out

    def on_cash_flow(self, flow: CashFlow) -> list[Output]:
        """Apply a deposit or withdrawal once: equity moves, PnL does not.

        The ledger books it (:meth:`Ledger.apply_cash_flow`), the daily-loss rule's start-of-day
        equity and the time-weighted return's units move by its value, a ``CASH_FLOW`` position event
        records it, and the next clock tick plans with the new equity (a deposit gets invested, a
        withdrawal is taken out of the targets). A base-asset flow changes its position like a
        manual trade (:attr:`EngineConfig.manual_trades` applies).

        Raises
        ------
        ValueError
            If the flow's asset is not the quote or a traded base asset, or a withdrawal exceeds
            what the ledger holds.
        """
        if self.ledger.has_flow(flow.flow_id):
            return []
        marks = self.marks_decimal()
        held = {s: q for s, q in self.ledger.positions().items() if q}
        equity_before = self.ledger.equity(marks) if all(s in marks for s in held) else self.ledger.cash
        sym = Symbol(flow.symbol) if flow.symbol is not None else self.symbols[0]
        if flow.symbol is not None:
            flush_extremes(self._sym[sym], self.ledger)
        result = self.ledger.apply_cash_flow(flow)
        self.overlay.risk.on_cash_flow(flow.value)
        self.stats.on_cash_flow(flow.ts_ms, flow.value, equity_before)
        self._planning.dirty = True
        kind = "deposit" if flow.amount > 0 else "withdrawal"
        action = "equity moved, not PnL; targets re-planned at the next rebalance"
        if result is not None:
            action = f"position moved, not PnL; {self._external_change(sym, f'{kind} of {flow.asset}')}"
        out: list[Output] = [
            self.records.event(
                PositionEventType.CASH_FLOW,
                sym,
                flow.ts_ms,
                f"{kind} of {abs(flow.amount)} {flow.asset}: {flow.reason}"[:500],
                action,
                price=flow.price,
                size_before=result.position_before if result is not None else None,
                size_after=result.position_after if result is not None else None,
                indicators={
                    "asset": flow.asset,
                    "amount": str(flow.amount),
                    "value_quote": str(flow.value),
                    "equity_before": str(equity_before),
                    "net_flows": str(self.ledger.net_flows),
                },
            )
        ]
        if result is not None:
            out.extend(self._on_position_change(sym, result.fill, result))
            if self._stops is not None:
                self._stops.dirty.add(sym)
                out = self._stops_out(out, flow.ts_ms)
        return out

    def _external_change(self, sym: Symbol, what: str) -> str:
        # The manual-trade policy for sym after a change the bot did not make; returns the action text.
        self._planning.dirty = True
        if self.config.manual_trades == "respect":
            self._planning.respected[sym] = what
            return f"{sym} left at its new holding until its streams change (manual_trades=respect)"
        return f"{sym} re-planned to its target at the next rebalance (manual_trades=rebalance)"

    def on_order_update(self, update: OrderUpdate) -> list[Output]:
        """Apply a venue status report (accepted, rejected, canceled, expired)."""
        order = self.orders.get(update.client_order_id)
        if order is None:
            return []
        if update.exchange_order_id and order.exchange_order_id is None:
            order.exchange_order_id = update.exchange_order_id
        if not order.transition(update.status):
            return []
        out: list[Output] = [self.records.order_record(order, update.ts_ms, update.reason)]
        stops = self._stops
        ours = (  # a protective stop the engine itself cancelled (replaced, or units freed): no failure
            stops is not None
            and update.status is OrderStatus.CANCELED
            and order.client_order_id in stops.cancelling
        )
        failed = None if ours else self.records.order_failure(order, update)
        if failed is not None:
            out.append(failed)
        if order.status.is_terminal:
            if stops is not None and stops.is_stop(order.client_order_id):
                stops.on_terminal(order)
            else:
                out.extend(
                    self._planning.order_done(order, update.ts_ms, replan=update.status is OrderStatus.FILLED)
                )
        if stops is not None:
            out = self._stops_out(out, update.ts_ms)
        return out

    def on_feed_status(self, status: FeedStatus) -> list[Output]:
        """Block (stale) or unblock (recovered) new entries on a symbol."""
        stale = self._planning.stale
        if status.stale == (status.symbol in stale):
            return []
        self._planning.dirty = True
        if status.stale:
            stale.add(status.symbol)
            kind = PositionEventType.FEED_STALE
            action = "new entries and increases blocked"
        else:
            stale.discard(status.symbol)
            kind = PositionEventType.FEED_RECOVERED
            action = "entries allowed again"
        return [self.records.event(kind, status.symbol, status.ts_ms, status.reason or str(kind), action)]

    def on_trading_control(self, control: TradingControl) -> list[Output]:
        """Pause (``REDUCING``: no entries or increases; exits and stops go on) or resume new entries.

        A resume lifts only the pause, never a daily-loss halt. The change is recorded as a
        ``RISK_BLOCK`` / ``TRADING_RESUMED`` position event and the next clock tick plans again.
        """
        events = self.overlay.risk.set_paused(
            control.state is TradingState.REDUCING,
            time_ms=control.ts_ms,
            reason=control.reason,
            source=control.source,
        )
        if not events:
            return []
        self._planning.dirty = True
        return self._planning.on_risk_events(events, control.ts_ms)

    def finish(self) -> list[Output]:
        """Close the books at the last event time: final equity snapshot and open trades' records."""
        t = self.last_time_ms
        marks = marks_decimal(self._states)
        for st in self._states:
            flush_extremes(st, self.ledger)
        out: list[Output] = [self.records.equity_snapshot(t, marks)]
        out.extend(tr for s in self.symbols if (tr := self.ledger.open_trade(s)) is not None)
        return out

    # ------------------------------------------------------------------ marks
    def mark(self, symbol: str) -> float:
        """Last close of ``symbol`` (quote currency), 0.0 before its first candle."""
        return self._sym[Symbol(symbol)].mark

    def marks_decimal(self) -> dict[str, Decimal]:
        """Last closes as exact decimals, for symbols that have one."""
        return marks_decimal(self._states)

    # ------------------------------------------------------------------ signals, overlay, fills
    def _on_signals(
        self, sym: str, signals: Sequence[StreamSignal], t: int, out: list[Output] | None
    ) -> list[Output]:
        out = out if out is not None else []
        changed = False
        for sig in signals:
            if sig.flipped:
                changed = True
                self._planning.dirty = True
                self.overlay.reallocate = True
                self.stats.on_flip(sig)
                out.append(sig)
        if changed:
            self._planning.respected.pop(sym, None)  # a manual change is respected until now
            self.stats.mark_streams_changed(Symbol(sym))
            out.extend(self._planning.on_actions(Symbol(sym), self.overlay.on_streams(sym, self.book)))
        return out

    def _on_position_change(self, sym: Symbol, fill: Fill, result: ApplyResult) -> list[Output]:
        # A fill changed the position of sym: open/close the overlay's lifecycle or tell it the size.
        out: list[Output] = []
        before, after = result.position_before, result.position_after
        st = self._sym[sym]
        st.qty = float(after)
        if before == 0 and after != 0:
            st.open = True
            actions = self.overlay.on_open(sym, fill, self.overlay.atr(sym, self.book))
            risk = self.overlay.initial_risk(sym)
            if risk:
                self.ledger.set_initial_risk(sym, to_decimal(risk))
            out.append(self.records.fill_event(PositionEventType.ENTRY, sym, fill, before, after))
            out.extend(self._planning.on_actions(sym, actions))
            if self.ml is not None:
                self.ml.on_open(sym)
        elif after == 0 and before != 0:
            st.open = False
            self.overlay.on_close(sym, fill.ts_ms)
            out.append(
                self.records.fill_event(PositionEventType.EXIT, sym, fill, before, after, result.closed)
            )
            if self.ml is not None:
                out.extend(self.ml.on_close(sym, fill.ts_ms, float(fill.price)))
        else:
            self.overlay.on_fill(sym, fill, after)
        if result.closed is not None:
            out.append(result.closed)
        return out

    # ------------------------------------------------------------------ quiet runs (backtest)
    def quiet_until(self) -> int:
        """Open time (ms UTC) before which base candles, of every symbol, can only move marks.

        Until then no candle closes a stream period or the rebalance clock, no overlay rule watches
        an open position bar by bar, and no plan is waiting, so :meth:`on_quiet_run` may take each
        symbol's candles as one run. Returns ``0`` when that is not the case now. A driver must also
        know that its venue has no order waiting to fill at those candles' opens.
        """
        if self._planning.due_ms is not None or self._planning.force:
            return 0
        return self._quiet.until()

    def on_quiet_run(
        self,
        symbol: str,
        first_open_ms: int,
        last_open_ms: int,
        n: int,
        open_: float,
        high: float,
        low: float,
        close: float,
        volumes: Iterable[float],
    ) -> bool:
        """Apply a run of ``n`` contiguous closed base candles of ``symbol`` that change only marks.

        The bulk form of :meth:`on_candle` for a backtest's quiet stretches (see :meth:`quiet_until`;
        parameters as :meth:`QuietReplayer.apply <tradebot.core.engine.quiet.QuietReplayer.apply>`).
        Returns ``True`` if applied; ``False``, with nothing changed, if the run is not quiet (then
        feed its candles to :meth:`on_candle`).
        """
        if self._planning.due_ms is not None or self._planning.force:
            return False
        t = self._quiet.apply(symbol, first_open_ms, last_open_ms, n, open_, high, low, close, volumes)
        if not t:
            return False
        if t > self.last_time_ms:
            self.last_time_ms = t
        return True

    # ------------------------------------------------------------------ records for the runtime
    def record_event(
        self, kind: PositionEventType, symbol: str, time_ms: int, reason: str, action: str, **details: Any
    ) -> PositionEvent:
        """Create a position event in the engine's own sequence (for reconciliation and feeds).

        ``details`` are the optional fields of :class:`PositionEvent` accepted by the engine: ``price``,
        ``size_before``, ``size_after``, ``client_order_ids``, ``indicators``, ``amount``.
        """
        return self.records.event(kind, Symbol(symbol), time_ms, reason, action, **details)

    # ------------------------------------------------------------------ views
    @property
    def orders(self) -> dict[ClientOrderId, Order]:
        """Orders of the run by client order id (the planner's registry; in flight and done)."""
        return self._planning.orders

    @property
    def in_flight(self) -> set[ClientOrderId]:
        """Client order ids of the orders not yet in a terminal state."""
        return self._planning.in_flight

    @property
    def at_venue(self) -> set[ClientOrderId]:
        """Client order ids of every order the venue may still hold: the plans' orders in flight and
        the protective stops resting (or being cancelled). A restart looks each one up."""
        stops = self._stops
        if stops is None:
            return set(self._planning.in_flight)
        return self._planning.in_flight | set(stops.live.values()) | stops.cancelling

    def resting_stop(self, symbol: str) -> tuple[ClientOrderId, Decimal] | None:
        """The protective stop order resting at the venue for ``symbol``: ``(client order id, stop
        price in quote currency)``, or ``None``."""
        stops = self._stops
        if stops is None:
            return None
        cid = stops.live.get(symbol)
        price = stops.resting_price(symbol)
        return None if cid is None or price is None else (cid, price)

    def pending_cancels(self) -> list[CancelOrder]:
        """Cancels of protective stops the engine decided and the venue has not answered (after a
        restart they are sent again: the earlier request may never have left)."""
        stops = self._stops
        if stops is None:
            return []
        return [
            CancelOrder(
                client_order_id=c, symbol=self._planning.orders[c].symbol, reason="cancel after restart"
            )
            for c in sorted(stops.cancelling)
            if c in self._planning.orders and not self._planning.orders[c].status.is_terminal
        ]

    @property
    def trading_state(self) -> TradingState:
        """The risk state (ACTIVE / REDUCING / HALTED)."""
        return self.overlay.trading_state

    @property
    def paused(self) -> bool:
        """True while a pause (:class:`TradingControl`, any source) is in force."""
        return self.overlay.risk.paused

    @property
    def pauses(self) -> tuple[str, ...]:
        """Sources whose pause is in force (``"operator"``, ``"venue"``), sorted."""
        return self.overlay.risk.pauses
