"""Per-symbol hot-path state of the engine: mark, time, quantity and the open position's high/low.

With the two helpers that read it for the books: exact marks and the MAE/MFE hand-over.

Pure, like the rest of the core.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from tradebot.core.domain import Symbol, to_decimal
from tradebot.core.management import PositionManager
from tradebot.core.portfolio.ledger import Ledger
from tradebot.core.signals.aggregator import CandleAggregator

_INF = float("inf")


class SymState:
    """One symbol's state on the per-candle path (one dict lookup per candle, then attributes).

    Attributes
    ----------
    symbol
        ccxt symbol, e.g. ``"BTC/USDT"``.
    agg
        The symbol's candle aggregator (base → stream timeframes), owned by the signal book.
    manager
        The symbol's position manager, owned by the overlay.
    managed
        True when the overlay has any rule switched on (bar-by-bar rules may run).
    mark
        Last close, quote currency (0.0 before the first candle).
    time
        Close time of the symbol's last candle, ms UTC.
    qty
        Position in base units (float mirror of the ledger, for the drift check).
    open
        True while a position lifecycle is open.
    hi, lo
        Highest high / lowest low since the trade tracker was last told (±inf when nothing is pending).
    """

    __slots__ = ("agg", "hi", "lo", "managed", "manager", "mark", "open", "qty", "symbol", "time")

    def __init__(self, symbol: str, agg: CandleAggregator, manager: PositionManager, managed: bool) -> None:
        self.symbol = Symbol(symbol)
        self.agg = agg
        self.manager = manager
        self.managed = managed
        self.mark = 0.0
        self.time = 0
        self.qty = 0.0
        self.open = False
        self.hi = -_INF
        self.lo = _INF

    def state(self) -> dict[str, Any]:
        """Return the JSON-able state (±inf extremes as ``None``)."""
        return {
            "mark": self.mark,
            "time": self.time,
            "qty": self.qty,
            "open": self.open,
            "hi": _finite(self.hi),
            "lo": _finite(self.lo),
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Load a :meth:`state`."""
        self.mark, self.time, self.qty, self.open = data["mark"], data["time"], data["qty"], data["open"]
        self.hi = -_INF if data["hi"] is None else data["hi"]
        self.lo = _INF if data["lo"] is None else data["lo"]


def _finite(x: float) -> float | None:
    return x if x not in (_INF, -_INF) else None


def marks_decimal(states: Iterable[SymState]) -> dict[str, Decimal]:
    """Last closes as exact decimals (quote currency), for the symbols that have one."""
    return {st.symbol: to_decimal(st.mark) for st in states if st.mark > 0}


def flush_extremes(st: SymState, ledger: Ledger) -> None:
    """Hand the running high/low of ``st``'s open position to the ledger's trade tracker (MAE/MFE),
    then reset them to ±inf."""
    if st.open and st.hi >= st.lo:
        ledger.on_bar(st.symbol, st.hi, st.lo)
    st.hi = -_INF
    st.lo = _INF
