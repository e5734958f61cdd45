"""Position lifecycles (trades) per asset: flat → open → flat (STRATEGY.md §5).

A lifecycle opens when a symbol's quantity goes from 0 to non-zero and closes when it returns to
0; a fill that flips the position (long → short) closes one lifecycle and opens the next with the
remainder, splitting the fee pro rata to quantity. The :class:`~tradebot.core.portfolio.ledger.Ledger`
drives the tracker from ``Ledger.apply``; the engine only feeds bars (:meth:`TradeTracker.on_bar`)
and the initial risk (:meth:`TradeTracker.set_initial_risk`).

MAE / MFE are measured from the first entry price against bar highs / lows and fill prices while
the lifecycle is open, in percent: long ``MFE = (max high / entry − 1) × 100``,
``MAE = (min low / entry − 1) × 100``; mirrored for shorts. The R multiple is
``net_pnl / (initial_risk_per_unit × first entry qty)`` where the *first entry qty* is the quantity
filled by the order intent that opened the lifecycle (all child orders and partial fills of it;
the intent of a client order id ``"<run>-<seq>-<n>"`` is ``"<run>-<seq>"``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tradebot.core.domain import ZERO, Fill, Symbol, TradeRecord, to_decimal
from tradebot.core.portfolio.book import PRICE_QUANTUM, QUANTUM
from tradebot.errors import InvariantViolation


def _intent_of(client_order_id: str) -> str:
    return client_order_id.rsplit("-", 1)[0]


class _Lifecycle:
    # Mutable state of one open lifecycle; floats for the cheap on_bar path.
    __slots__ = (
        "bought", "direction", "entry_notional", "entry_qty", "exit_notional", "exit_qty", "fees",
        "first_intent", "first_price", "first_qty", "high", "low", "max_qty", "opened_ms",
        "position_id", "realized", "risk", "sold", "symbol",
    )  # fmt: skip

    def __init__(self, position_id: str, symbol: Symbol, direction: int, fill: Fill) -> None:
        self.position_id = position_id
        self.symbol = symbol
        self.direction = direction
        self.opened_ms = fill.ts_ms
        self.first_price = fill.price
        self.first_intent = _intent_of(fill.client_order_id)
        self.first_qty = ZERO
        self.high = self.low = float(fill.price)
        self.entry_qty = self.entry_notional = self.exit_qty = self.exit_notional = ZERO
        self.bought = self.sold = self.max_qty = self.realized = self.fees = ZERO
        self.risk: Decimal | None = None

    def add(self, fill: Fill, qty: Decimal, *, entry: bool) -> None:
        if entry:
            self.entry_qty += qty
            self.entry_notional += qty * fill.price
            if _intent_of(fill.client_order_id) == self.first_intent:
                self.first_qty += qty
        else:
            self.exit_qty += qty
            self.exit_notional += qty * fill.price
        if fill.side.sign > 0:
            self.bought += qty
        else:
            self.sold += qty
        price = float(fill.price)
        if price > self.high:
            self.high = price
        if price < self.low:
            self.low = price

    def record(self, closed_ms: int | None) -> TradeRecord:
        first = float(self.first_price)
        d = self.direction
        best, worst = (self.high, self.low) if d > 0 else (self.low, self.high)
        net = self.realized - self.fees
        r_multiple = None
        if self.risk is not None and self.first_qty > 0:
            r_multiple = float(net / (self.risk * self.first_qty))
        favourable = d * (to_decimal(best) - self.first_price)
        return TradeRecord(
            position_id=self.position_id,
            symbol=self.symbol,
            opened_ms=self.opened_ms,
            closed_ms=closed_ms,
            entry_avg_price=_avg(self.entry_notional, self.entry_qty),
            exit_avg_price=_avg(self.exit_notional, self.exit_qty),
            max_qty=self.max_qty,
            bought_qty=self.bought,
            sold_qty=self.sold,
            realized_pnl=self.realized,
            fees=self.fees,
            net_pnl=net,
            initial_risk_per_unit=self.risk,
            r_multiple=r_multiple,
            mae_pct=min(0.0, d * (worst - first) / first * 100),
            mfe_pct=max(0.0, d * (best - first) / first * 100),
            mfe_quote=max(ZERO, favourable) * self.max_qty,
        )


def _avg(notional: Decimal, qty: Decimal) -> Decimal:
    return (notional / qty).quantize(PRICE_QUANTUM) if qty else ZERO


class TradeTracker:
    """Open and closed position lifecycles of every symbol of one run.

    Parameters
    ----------
    run_id
        Prefix of the position ids ``f"{run_id}-{symbol without '/'}-{n}"``, ``n`` = 1, 2, … per
        symbol (e.g. ``"bt1-BTCUSDT-1"``).
    """

    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self._open: dict[str, _Lifecycle] = {}
        self._count: dict[str, int] = {}
        self._pending_risk: dict[str, Decimal] = {}
        self._closed: list[TradeRecord] = []

    @property
    def closed_trades(self) -> tuple[TradeRecord, ...]:
        """Lifecycles closed since construction or :meth:`restore`, in closing order."""
        return tuple(self._closed)

    def open_trade(self, symbol: str) -> TradeRecord | None:
        """Return the open lifecycle of ``symbol`` as a record (``closed_ms`` None), or None when flat."""
        life = self._open.get(symbol)
        return None if life is None else life.record(None)

    def position_id(self, symbol: str) -> str | None:
        """Return the id of the open lifecycle of ``symbol``, or None when flat."""
        life = self._open.get(symbol)
        return None if life is None else life.position_id

    def on_bar(self, symbol: str, high: float, low: float) -> None:
        """Update the open lifecycle's price extremes (for MAE / MFE) with a bar's high and low.

        Cheap by design (two comparisons) so it can run on every base candle; a no-op when flat.
        """
        life = self._open.get(symbol)
        if life is None:
            return
        if high > life.high:
            life.high = high
        if low < life.low:
            life.low = low

    def set_initial_risk(self, symbol: str, risk_per_unit: Decimal) -> None:
        """Set R (entry − initial stop, quote currency per base unit) of ``symbol``'s lifecycle.

        Applies to the open lifecycle, or, when flat, to the next one opened on ``symbol``.

        Raises
        ------
        ValueError
            If ``risk_per_unit`` is not > 0.
        """
        if not isinstance(risk_per_unit, Decimal) or not risk_per_unit > 0:
            raise ValueError(f"risk_per_unit of {symbol} must be a Decimal > 0, was {risk_per_unit!r}")
        life = self._open.get(symbol)
        if life is None:
            self._pending_risk[symbol] = risk_per_unit
        else:
            life.risk = risk_per_unit

    def on_fill(
        self,
        fill: Fill,
        position_before: Decimal,
        position_after: Decimal,
        realized_pnl: Decimal,
        closed_qty: Decimal,
    ) -> tuple[TradeRecord | None, TradeRecord | None]:
        """Account one fill already applied to the asset position (called by the ledger).

        Parameters
        ----------
        fill
            The fill.
        position_before, position_after
            Signed asset quantity in base units around the fill.
        realized_pnl, closed_qty
            What the fill realized (quote currency, before fees) and how much of the existing
            position it closed (base units, >= 0).

        Returns
        -------
        tuple
            ``(opened, closed)`` records: the lifecycle this fill opened and the one it closed
            (both set for a flip), else None.

        Raises
        ------
        InvariantViolation
            If the fill closes quantity of a symbol that has no open lifecycle.
        """
        symbol = fill.symbol
        closed: TradeRecord | None = None
        opened: TradeRecord | None = None
        rest, fee_rest = fill.qty, fill.fee_quote
        if closed_qty > 0:
            life = self._open.get(symbol)
            if life is None:
                raise InvariantViolation(f"fill {fill.trade_id} closes {closed_qty} of flat {symbol}")
            fee = fill.fee_quote
            if closed_qty != fill.qty:
                fee = (fill.fee_quote * closed_qty / fill.qty).quantize(QUANTUM)
            life.add(fill, closed_qty, entry=False)
            life.realized += realized_pnl
            life.fees += fee
            rest, fee_rest = fill.qty - closed_qty, fill.fee_quote - fee
            if position_after == 0 or (position_after > 0) != (position_before > 0):
                closed = life.record(fill.ts_ms)
                self._closed.append(closed)
                del self._open[symbol]
        if rest > 0:
            life = self._open.get(symbol)
            if life is None:
                life = self._start(fill, 1 if position_after > 0 else -1)
                opened_life = life
            else:
                opened_life = None
            life.add(fill, rest, entry=True)
            life.fees += fee_rest
            life.max_qty = max(life.max_qty, abs(position_after))
            if opened_life is not None:
                opened = life.record(None)
        return opened, closed

    def _start(self, fill: Fill, direction: int) -> _Lifecycle:
        symbol = fill.symbol
        n = self._count.get(symbol, 0) + 1
        self._count[symbol] = n
        life = _Lifecycle(f"{self._run_id}-{symbol.replace('/', '')}-{n}", symbol, direction, fill)
        life.risk = self._pending_risk.pop(symbol, None)
        self._open[symbol] = life
        return life

    def snapshot(self) -> dict[str, Any]:
        """Return counters, pending risks and open lifecycles as plain strings (closed trades are
        not included: the engine persists them when they close)."""
        return {
            "count": {s: str(n) for s, n in self._count.items()},
            "pending_risk": {s: str(r) for s, r in self._pending_risk.items()},
            "open": {s: _life_to_dict(life) for s, life in self._open.items()},
        }

    @classmethod
    def restore(cls, run_id: str, data: dict[str, Any]) -> TradeTracker:
        """Inverse of :meth:`snapshot`."""
        tracker = cls(run_id)
        tracker._count = {s: int(n) for s, n in data["count"].items()}
        tracker._pending_risk = {s: Decimal(r) for s, r in data["pending_risk"].items()}
        tracker._open = {s: _life_from_dict(d) for s, d in data["open"].items()}
        return tracker


_DECIMAL_FIELDS = (
    "first_price", "first_qty", "entry_qty", "entry_notional", "exit_qty", "exit_notional", "bought", "sold",
    "max_qty", "realized", "fees",
)  # fmt: skip


def _life_to_dict(life: _Lifecycle) -> dict[str, str]:
    data = {name: str(getattr(life, name)) for name in _DECIMAL_FIELDS}
    data.update(
        position_id=life.position_id,
        symbol=life.symbol,
        direction=str(life.direction),
        opened_ms=str(life.opened_ms),
        first_intent=life.first_intent,
        high=repr(life.high),
        low=repr(life.low),
        risk="" if life.risk is None else str(life.risk),
    )
    return data


def _life_from_dict(data: dict[str, str]) -> _Lifecycle:
    life = _Lifecycle.__new__(_Lifecycle)
    for name in _DECIMAL_FIELDS:
        setattr(life, name, Decimal(data[name]))
    life.position_id = data["position_id"]
    life.symbol = Symbol(data["symbol"])
    life.direction = int(data["direction"])
    life.opened_ms = int(data["opened_ms"])
    life.first_intent = data["first_intent"]
    life.high = float(data["high"])
    life.low = float(data["low"])
    life.risk = Decimal(data["risk"]) if data["risk"] else None
    return life
