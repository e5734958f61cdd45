"""The engine's glue to the management overlay and the risk limits (STRATEGY.md §3–4).

:class:`Overlay` owns one :class:`~tradebot.core.management.PositionManager` per symbol and the
:class:`~tradebot.core.management.RiskManager`, and converts between the engine's Decimal world and
the overlay's float maths. Pure, like the rest of the core.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from decimal import Decimal
from typing import Any

from tradebot.core.config import EngineConfig
from tradebot.core.domain import (
    ZERO,
    Candle,
    Fill,
    PositionEventType,
    StreamState,
    Symbol,
    TradingState,
    to_decimal,
)
from tradebot.core.management import Action, PositionManager, RiskEvent, RiskManager
from tradebot.core.signals.book import SignalBook

_QUANTUM = Decimal("0.00000001")


class Overlay:
    """The engine's view of the management overlay and the risk limits, per symbol.

    Wraps one :class:`PositionManager` per symbol and one :class:`RiskManager`; converts between the
    engine's Decimal world and the overlay's float maths.
    """

    def __init__(self, config: EngineConfig, symbols: Iterable[Symbol]) -> None:
        self.config = config
        self.managers: dict[str, PositionManager] = {
            s: PositionManager(s, config.management) for s in symbols
        }
        self.risk = RiskManager(config.risk)
        self._atr_tf = config.management_atr_timeframe
        self._blocks: set[tuple[str | None, str]] = set()
        self._ref_units: dict[str, Decimal] = {}
        self.reallocate = True
        self.managed = True

    @property
    def trading_state(self) -> TradingState:
        """Current risk state."""
        return self.risk.trading_state

    def atr(self, sym: str, book: SignalBook) -> float | None:
        """ATR of ``sym`` (quote currency) on the overlay's ATR timeframe (``management.atr_timeframe``,
        default the rebalance timeframe), or ``None`` while it warms up."""
        return book.atr(sym, self._atr_tf)

    def on_period(self, sym: str, candle: Candle, book: SignalBook) -> Sequence[Action]:
        """On each rebalance-clock candle close: slower rules (scale-in, time stop, early exits) and
        the re-entry policy, with the ATR of :meth:`atr`."""
        return self.managers[sym].on_period(candle, self.atr(sym, book))

    def on_streams(self, sym: str, book: SignalBook) -> Sequence[Action]:
        """A stream of ``sym`` flipped: tell the manager how many are in (re-entry lock)."""
        asset = self.config.assets[sym]
        in_count = sum(1 for v in book.states() if v.asset == asset and v.state is StreamState.IN)
        return self.managers[sym].on_streams(in_count) or ()

    def on_equity(self, t: int, equity: Decimal) -> tuple[list[RiskEvent], TradingState]:
        """Daily-loss accounting on the equity sample (includes unrealized PnL and paid fees)."""
        events = self.risk.on_equity(t, equity)
        return list(events), self.risk.trading_state

    def managed_targets(
        self,
        t: int,
        asset_notional: Mapping[str, Decimal],
        holdings: Mapping[str, Decimal],
        marks: Mapping[str, Decimal],
        equity: Decimal,
        stale: AbstractSet[str],
        open_symbols: frozenset[str] = frozenset(),
    ) -> tuple[dict[str, Decimal], dict[str, Decimal], list[RiskEvent], set[str]]:
        """Return (managed targets, multipliers, risk events, symbols blocked from increasing).

        The overlay's multiplier m scales a *reference size* in base units: the rebalancer's target
        converted to units at the plan that opened the position or last changed the allocation (a
        stream flip anywhere). While a managed position is open and no stream flips, its target is
        ``ref_units × m × mark``, so a rule acts on the position it manages (take 50 %, hold 0.4 of
        the trailed size) instead of also trading the drift of a winner against its notional target.
        """
        targets: dict[str, Decimal] = {}
        multipliers: dict[str, Decimal] = {}
        realloc = self.reallocate
        for sym, raw in asset_notional.items():
            mgr = self.managers[sym]
            m = ZERO if mgr.locked else to_decimal(round(mgr.multiplier, 6))
            multipliers[sym] = m
            mark = marks[sym]
            ref = self._ref_units.get(sym)
            if self.managed and sym in open_symbols and ref is not None and not realloc:
                base = (ref * mark).quantize(_QUANTUM)
            else:
                base = raw
                self._ref_units[sym] = raw / mark
            targets[sym] = (base * m).quantize(_QUANTUM)
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

    def _new_blocks(self, events: Iterable[RiskEvent]) -> list[RiskEvent]:
        # A limit that keeps clipping the same symbol is recorded once, when it starts, not every tick.
        active: set[tuple[str | None, str]] = set()
        fresh: list[RiskEvent] = []
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

    def on_open(self, sym: str, fill: Fill, atr: float | None) -> list[Action]:
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

    def state(self) -> dict[str, Any]:
        """Return the JSON-able state: managers, risk, active blocks, reference sizes."""
        return {
            "managers": {s: m.state() for s, m in self.managers.items()},
            "risk": self.risk.state(),
            "blocks": sorted([list(k) for k in self._blocks], key=repr),
            "ref_units": {k: str(v) for k, v in self._ref_units.items()},
            "reallocate": self.reallocate,
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Load a :meth:`state` into this overlay (built from the same configuration)."""
        for sym, state in data["managers"].items():
            self.managers[sym].restore(state)
        self.risk.restore(data["risk"])
        self._blocks = {(k[0], k[1]) for k in data["blocks"]}
        self._ref_units = {k: Decimal(v) for k, v in data["ref_units"].items()}
        self.reallocate = data["reallocate"]
