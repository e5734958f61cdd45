"""Helpers of the engine: run statistics and the glue between the engine and the overlay.

Kept apart from ``engine.py`` so the state machine stays readable. Pure, like the rest of the core.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from tradebot.core.config import EngineConfig
from tradebot.core.domain import (
    ZERO,
    Candle,
    Fill,
    PositionEventType,
    StreamSignal,
    StreamState,
    Symbol,
    TradingState,
    to_decimal,
)
from tradebot.core.management import PositionManager, RiskManager


class EngineStats:
    """Counters the reports need: fills, fees, turnover, stream time-in and flips, event counts.

    All money in quote currency (``Decimal``); times in ms UTC.
    """

    def __init__(self, symbols: Iterable[str], streams: Iterable[str]) -> None:
        self.n_fills = 0
        self.fees_quote = ZERO
        self.traded_notional = ZERO
        self.traded_notional_by_symbol: dict[str, Decimal] = dict.fromkeys(symbols, ZERO)
        self.fees_by_symbol: dict[str, Decimal] = dict.fromkeys(symbols, ZERO)
        self.flips: dict[str, int] = dict.fromkeys(streams, 0)
        self.in_since: dict[str, int | None] = dict.fromkeys(streams, None)
        self.in_ms: dict[str, int] = dict.fromkeys(streams, 0)
        self.state: dict[str, StreamState] = dict.fromkeys(streams, StreamState.OUT)
        self.event_counts: dict[str, int] = {}
        self.event_amounts: dict[str, Decimal] = {}
        self.equity_curve: list[tuple[int, Decimal]] = []
        self.exposure_ms = 0
        self._last_equity_ms: int | None = None
        self._last_exposed = False
        self._changed: set[str] = set()
        self.scaled_in_positions: set[str] = set()

    def on_fill(self, fill: Fill) -> None:
        """Count one applied fill."""
        self.n_fills += 1
        self.fees_quote += fill.fee_quote
        self.traded_notional += fill.notional
        self.traded_notional_by_symbol[fill.symbol] = (
            self.traded_notional_by_symbol.get(fill.symbol, ZERO) + fill.notional
        )
        self.fees_by_symbol[fill.symbol] = self.fees_by_symbol.get(fill.symbol, ZERO) + fill.fee_quote

    def on_flip(self, sig: StreamSignal) -> None:
        """Record a stream flip at ``sig.time_ms`` (time-in accounting)."""
        sid = sig.stream
        self.flips[sid] = self.flips.get(sid, 0) + 1
        if sig.state is StreamState.IN:
            self.in_since[sid] = sig.time_ms
        else:
            since = self.in_since.get(sid)
            if since is not None:
                self.in_ms[sid] = self.in_ms.get(sid, 0) + sig.time_ms - since
            self.in_since[sid] = None
        self.state[sid] = sig.state

    def time_in_ms(self, sid: str, until_ms: int) -> int:
        """Total time stream ``sid`` was ``in`` up to ``until_ms``."""
        since = self.in_since.get(sid)
        return self.in_ms.get(sid, 0) + (until_ms - since if since is not None else 0)

    def mark_streams_changed(self, sym: Symbol) -> None:
        """Note that a stream of ``sym`` flipped since the last plan (attribution must be updated)."""
        self._changed.add(sym)

    def streams_changed(self, sym: Symbol) -> bool:
        """Return and clear the "a stream flipped" flag of ``sym``."""
        if sym in self._changed:
            self._changed.discard(sym)
            return True
        return False

    def streams_in(self, sym: str) -> int:
        """Number of streams of ``sym``'s asset that are in (by stream id prefix)."""
        asset = sym.split("/")[0]
        return sum(
            1 for sid, st in self.state.items() if st is StreamState.IN and sid.startswith(asset + ":")
        )

    def on_event(self, kind: PositionEventType, amount: Decimal | None, position_id: str | None) -> None:
        """Count a position event, sum its measured amount, remember positions that scaled in."""
        self.event_counts[kind.value] = self.event_counts.get(kind.value, 0) + 1
        if kind is PositionEventType.SCALE_IN and position_id is not None:
            self.scaled_in_positions.add(position_id)
        if amount is not None:
            self.event_amounts[kind.value] = self.event_amounts.get(kind.value, ZERO) + amount

    def on_equity(self, t: int, equity: Decimal, exposed: bool) -> None:
        """Append an equity sample and accumulate exposure time (time with any position open)."""
        if self.equity_curve and self.equity_curve[-1][0] == t:
            self.equity_curve[-1] = (t, equity)
        else:
            self.equity_curve.append((t, equity))
        if self._last_equity_ms is not None and self._last_exposed:
            self.exposure_ms += t - self._last_equity_ms
        self._last_equity_ms = t
        self._last_exposed = exposed


class Overlay:
    """The engine's view of the management overlay and the risk limits, per symbol.

    Wraps one :class:`PositionManager` per symbol and one :class:`RiskManager`; converts between the
    engine's Decimal world and the overlay's float maths.
    """

    def __init__(self, config: EngineConfig, symbols: Iterable[Symbol]) -> None:
        self.config = config
        self.managers = {s: PositionManager(s, config.management) for s in symbols}
        self.risk = RiskManager(config.risk)
        self._period_tf = config.rebalance_timeframe
        self._blocks: set[tuple] = set()
        self._ref_units: dict[str, Decimal] = {}
        self.reallocate = True
        self.managed = True

    @property
    def trading_state(self) -> TradingState:
        """Current risk state."""
        return self.risk.trading_state

    def on_period(self, sym: str, candle: Candle, book) -> tuple:
        """On each rebalance-clock candle close: slower rules (scale-in, time stop, early exits)."""
        return self.managers[sym].on_period(candle, book.atr(sym, self._period_tf))

    def on_streams(self, sym: str, book) -> tuple:
        """A stream of ``sym`` flipped: tell the manager how many are in (re-entry lock)."""
        asset = self.config.assets[sym]
        in_count = sum(1 for v in book.states() if v.asset == asset and v.state is StreamState.IN)
        return self.managers[sym].on_streams(in_count) or ()

    def on_equity(self, t: int, equity: Decimal) -> tuple[list, TradingState]:
        """Daily-loss accounting on the equity sample (includes unrealized PnL and paid fees)."""
        events = self.risk.on_equity(t, equity)
        return list(events), self.risk.trading_state

    def managed_targets(
        self,
        t: int,
        asset_notional: Mapping[Symbol, Decimal],
        holdings: Mapping[Symbol, Decimal],
        marks: Mapping[Symbol, Decimal],
        equity: Decimal,
        stale: set[str],
        open_symbols: frozenset[str] = frozenset(),
    ) -> tuple[dict[Symbol, Decimal], dict[Symbol, Decimal], list, set[str]]:
        """Return (managed targets, multipliers, risk events, symbols blocked from increasing).

        The overlay's multiplier m scales a *reference size* in base units: the rebalancer's target
        converted to units at the plan that opened the position or last changed the allocation (a
        stream flip anywhere). While a managed position is open and no stream flips, its target is
        ``ref_units × m × mark``, so a rule acts on the position it manages (take 50 %, hold 0.4 of
        the trailed size) instead of also trading the drift of a winner against its notional target.
        """
        targets: dict[Symbol, Decimal] = {}
        multipliers: dict[Symbol, Decimal] = {}
        realloc = self.reallocate
        for sym, raw in asset_notional.items():
            mgr = self.managers[sym]
            m = ZERO if mgr.locked else to_decimal(round(mgr.multiplier, 6))
            multipliers[sym] = m
            mark = marks[sym]
            ref = self._ref_units.get(sym)
            if self.managed and sym in open_symbols and ref is not None and not realloc:
                base = (ref * mark).quantize(Decimal("0.00000001"))
            else:
                base = raw
                self._ref_units[sym] = raw / mark
            targets[sym] = (base * m).quantize(Decimal("0.00000001"))
            mgr.notional_per_m = float(base)
        self.reallocate = False
        holdings_notional = {s: holdings[s] * marks[s] for s in holdings}
        clipped, events = self.risk.apply_limits(
            targets, holdings_notional, equity, t, stale=frozenset(stale)
        )
        blocked = set(stale)
        if self.risk.trading_state is not TradingState.ACTIVE:
            blocked.update(asset_notional)
        return dict(clipped), multipliers, self._new_blocks(events), blocked

    def settle_reference(self, sym: str, position: Decimal) -> None:
        """The orders of ``sym`` are done: its reference size becomes what is actually held / m, so the
        next rule acts on the real position (rounding and partial fills included)."""
        mgr = self.managers[sym]
        m = to_decimal(round(mgr.multiplier, 6))
        if m > 0 and not mgr.locked and position > 0:
            self._ref_units[sym] = position / m

    def _new_blocks(self, events) -> list:
        # A limit that keeps clipping the same symbol is recorded once, when it starts, not every tick.
        active: set[tuple] = set()
        fresh = []
        for ev in events:
            if ev.event_type is PositionEventType.RISK_BLOCK:
                rule = ev.indicators.get("rule", ev.trigger_reason.split(":")[0])
                if rule == "min_order_notional":
                    continue  # dust suppression, not a decision worth a row (the planner's band is wider)
                key = (ev.symbol, rule)
                active.add(key)
                if key in self._blocks:
                    continue
            fresh.append(ev)
        self._blocks = active
        return fresh

    def on_open(self, sym: str, fill: Fill, atr: float | None):
        """A position lifecycle opened with ``fill``."""
        return self.managers[sym].on_open(
            time_ms=fill.ts_ms, entry_price=float(fill.price), qty=float(fill.qty), atr=atr
        )

    def on_fill(self, sym: str, fill: Fill, qty_after: Decimal) -> None:
        """A fill changed an open position."""
        self.managers[sym].on_fill(
            time_ms=fill.ts_ms,
            side=fill.side,
            qty=float(fill.qty),
            price=float(fill.price),
            position_qty_after=float(qty_after),
        )

    def on_close(self, sym: str, t: int) -> None:
        """The position of ``sym`` is flat again."""
        self.managers[sym].on_close(time_ms=t)

    def initial_risk(self, sym: str) -> float | None:
        """R per unit of the open position (entry − initial stop), or None."""
        return self.managers[sym].initial_risk


class SymState:
    """Per-symbol hot-path state of the engine (one dict lookup per candle, then attributes)."""

    __slots__ = ("agg", "hi", "lo", "managed", "manager", "mark", "open", "qty", "symbol", "time")

    def __init__(self, symbol: str, agg, manager, managed: bool) -> None:
        self.symbol = Symbol(symbol)
        self.agg = agg
        self.manager = manager
        self.managed = managed
        self.mark = 0.0
        self.time = 0
        self.qty = 0.0
        self.open = False
        self.hi = float("-inf")
        self.lo = float("inf")
