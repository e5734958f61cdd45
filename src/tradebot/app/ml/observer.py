"""What the engine holds at each rebalance-clock close, read while a backtest replays.

:class:`ClockObserver` is the backtest's :class:`~tradebot.app.backtest.replay.Dispatcher` with one
addition: when the engine hands over an :class:`~tradebot.core.domain.EquitySnapshot` (the mark of
the rebalance clock), it reads, before any order of that close reaches the venue, every open
position's trade record, the overlay's stop and the streams' states and confidences. The engine's
state at that moment is the result of the candles that closed at or before the snapshot's time and
of the fills at their opens, nothing later: the replay hands a slice's candles to the engine only
after the venue has filled at their opens, and the snapshot's orders are filled at the next open.

Why not the records alone: :class:`~tradebot.core.domain.StreamSignal` rows are written when a
stream flips (its confidence in between is not recorded), and position events carry a stop level
only in their free text; the engine's public views have both exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tradebot.adapters.venues.simulated import SimulatedExchange
from tradebot.app.backtest.replay import Dispatcher
from tradebot.core.domain import EquitySnapshot, StreamState
from tradebot.core.engine import Engine
from tradebot.core.ml import StreamReading

__all__ = ["ClockObserver", "OpenPosition"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenPosition:
    """One open position at a rebalance-clock close, as the engine held it.

    Attributes
    ----------
    time_ms
        The clock close, ms UTC.
    symbol, position_id
        Which position (the trade's deterministic id).
    opened_ms
        Its first entry fill, ms UTC.
    qty_base, mark, avg_entry
        Quantity (base units), last close and average entry (quote currency), as floats.
    initial_risk, stop
        R per unit and the overlay's current stop (quote currency), ``None`` when absent.
    trailing
        Whether the overlay's trailing stop has started.
    exiting
        Whether the overlay holds the position at multiplier 0 at this close (an exit is decided).
    mae_fraction, mfe_fraction
        Excursions so far from the first entry price (fractions).
    equity, exposure_quote
        Portfolio equity and Σ qty × mark over every position, quote currency.
    streams
        The asset's stream readings by stream timeframe (``"1h"`` → reading).
    """

    time_ms: int
    symbol: str
    position_id: str
    opened_ms: int
    qty_base: float
    mark: float
    avg_entry: float
    initial_risk: float | None
    stop: float | None
    trailing: bool
    exiting: bool
    mae_fraction: float
    mfe_fraction: float
    equity: float
    exposure_quote: float
    streams: dict[str, StreamReading]


class ClockObserver(Dispatcher):
    """A backtest dispatcher that also keeps :attr:`positions`, one :class:`OpenPosition` per open
    position at each rebalance-clock close, in replay order; it drops the engine's records (a
    dataset needs none of them), so memory grows with the rows only."""

    def __init__(self, engine: Engine, exchange: SimulatedExchange) -> None:
        super().__init__(engine, exchange)
        self.positions: list[OpenPosition] = []
        self.n_clock = 0

    def dispatch(self, commands: Sequence[object]) -> None:
        """Read the engine at each equity snapshot, then act on ``commands`` as the backtest does."""
        for cmd in commands:
            if type(cmd) is EquitySnapshot:
                self._observe(cmd)
        super().dispatch(commands)
        self.records.clear()

    def _observe(self, snap: EquitySnapshot) -> None:
        self.n_clock += 1
        held = {s: q for s, q in snap.positions.items() if q > 0}
        if not held:
            return
        engine = self.engine
        equity = float(snap.equity)
        exposure = float(sum(q * snap.marks[s] for s, q in held.items()))
        readings: dict[str, dict[str, StreamReading]] = {}
        for view in engine.book.states():
            readings.setdefault(view.symbol, {})[str(view.timeframe)] = StreamReading(
                view.state is StreamState.IN, view.confidence
            )
        for sym in engine.symbols:  # the configured order: rows of one close come in a fixed order
            qty = held.get(sym)
            trade = engine.ledger.open_trade(sym) if qty is not None else None
            if qty is None or trade is None:
                continue
            manager = engine.overlay.managers[sym]
            risk = trade.initial_risk_per_unit
            self.positions.append(
                OpenPosition(
                    time_ms=snap.time_ms,
                    symbol=sym,
                    position_id=trade.position_id,
                    opened_ms=trade.opened_ms,
                    qty_base=float(qty),
                    mark=float(snap.marks[sym]),
                    avg_entry=float(trade.entry_avg_price),
                    initial_risk=float(risk) if risk else None,
                    stop=manager.stop if manager.is_open else None,
                    trailing=manager.is_open and manager.trailing,
                    exiting=manager.is_open and manager.multiplier == 0.0,
                    mae_fraction=trade.mae_pct / 100,
                    mfe_fraction=trade.mfe_pct / 100,
                    equity=equity,
                    exposure_quote=exposure,
                    streams=readings.get(sym, {}),
                )
            )
