"""Exact average-cost position arithmetic and a deterministic pro-rata allocator.

A :class:`PositionBook` keeps the *cost basis* ``cost = avg_entry × qty`` (signed like ``qty``)
instead of the average price, so every invariant of the ledger holds exactly in ``Decimal``:
``realized − cost == −(Σ signed qty × price)`` after any sequence of trades, because the cost
removed on a reduction is subtracted from ``cost`` and from ``realized`` alike. The only rounding
is the removed cost of a *partial* reduction (``cost × closed / |qty|``), quantized to
:data:`QUANTUM`; a full close removes the whole cost. Callers run inside :data:`LEDGER_CONTEXT`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow

from tradebot.core.domain import ZERO

#: Quantum of allocated quantities (base units), fee shares and removed cost (quote currency).
QUANTUM = Decimal("1e-18")
#: Quantum of displayed average prices (quote currency); never used in the books' arithmetic.
PRICE_QUANTUM = Decimal("1e-12")
#: Arithmetic context of the ledger: 60 significant digits make sums and products of 18-decimal
#: quantities and 8-decimal prices exact for any realistic magnitude; errors trap.
LEDGER_CONTEXT = Context(
    prec=60, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)


def sign(value: Decimal) -> int:
    """Return -1, 0 or 1 for the sign of ``value``."""
    return (value > 0) - (value < 0)


class PositionBook:
    """Signed position of one asset (or one stream's virtual units) at average cost.

    Attributes
    ----------
    qty
        Signed quantity in base units (> 0 long, < 0 short).
    cost
        Signed cost basis ``avg_entry × qty`` in quote currency (same sign as ``qty``, 0 when flat).
    realized
        Realized PnL in quote currency, before fees: Σ (price − avg_entry) × closed qty (sign-aware).
    fees
        Fees charged in quote currency.
    """

    __slots__ = ("cost", "fees", "qty", "realized")

    def __init__(
        self, qty: Decimal = ZERO, cost: Decimal = ZERO, realized: Decimal = ZERO, fees: Decimal = ZERO
    ) -> None:
        self.qty = qty
        self.cost = cost
        self.realized = realized
        self.fees = fees

    def trade(self, signed_qty: Decimal, price: Decimal) -> tuple[Decimal, Decimal]:
        """Apply a trade of ``signed_qty`` base units (> 0 buy, < 0 sell) at ``price``.

        The part against the current position is closed (realizing ``(price − avg) × closed`` for a
        long, ``(avg − price) × closed`` for a short); the rest opens or extends at ``price``.

        Returns
        -------
        tuple[Decimal, Decimal]
            ``(realized_pnl, closed_qty)`` of this trade: quote currency, and base units >= 0.
        """
        closed = ZERO
        realized = ZERO
        if self.qty and sign(signed_qty) != sign(self.qty):
            held = abs(self.qty)
            closed = min(abs(signed_qty), held)
            removed = self.cost if closed == held else (self.cost * closed / held).quantize(QUANTUM)
            realized = sign(self.qty) * price * closed - removed
            self.qty -= sign(self.qty) * closed
            self.cost -= removed
            self.realized += realized
        opened = signed_qty - sign(signed_qty) * closed
        if opened:
            self.qty += opened
            self.cost += opened * price
        return realized, closed

    def avg_entry(self) -> Decimal:
        """Average entry price in quote currency (``cost / qty``, quantum 1e-12); 0 when flat."""
        if not self.qty:
            return ZERO
        return (self.cost / self.qty).quantize(PRICE_QUANTUM)

    def unrealized(self, mark: Decimal) -> Decimal:
        """``(mark − avg_entry) × qty`` in quote currency, computed exactly as ``mark × qty − cost``."""
        return mark * self.qty - self.cost

    def total(self, mark: Decimal) -> Decimal:
        """Realized + unrealized − fees at ``mark``, quote currency."""
        return self.realized + self.unrealized(mark) - self.fees

    def to_dict(self) -> dict[str, str]:
        """Return the state as strings (for snapshots)."""
        return {
            "qty": str(self.qty),
            "cost": str(self.cost),
            "realized": str(self.realized),
            "fees": str(self.fees),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> PositionBook:
        """Inverse of :meth:`to_dict`."""
        return cls(
            Decimal(data["qty"]), Decimal(data["cost"]), Decimal(data["realized"]), Decimal(data["fees"])
        )


def split(total: Decimal, weights: Sequence[tuple[str, Decimal]]) -> list[tuple[str, Decimal]]:
    """Split ``total`` pro rata to positive ``weights``; the last key gets the rounding remainder.

    Each share but the last is ``total × weight / Σ weights`` rounded toward zero to
    :data:`QUANTUM`, so the shares sum to ``total`` exactly. Keys with weight <= 0 get nothing.
    Returns ``[]`` when no weight is positive.
    """
    positive = [(key, w) for key, w in weights if w > 0]
    whole = sum((w for _, w in positive), ZERO)
    shares: list[tuple[str, Decimal]] = []
    rest = total
    for i, (key, w) in enumerate(positive):
        share = rest if i == len(positive) - 1 else (total * w / whole).quantize(QUANTUM, rounding=ROUND_DOWN)
        rest -= share
        shares.append((key, share))
    return shares


def allocate(total: Decimal, caps: Sequence[tuple[str, Decimal]]) -> list[tuple[str, Decimal]]:
    """Split ``total`` over keys pro rata to their caps, never giving a key more than its cap.

    Deterministic: keys are served in the given order; each gets
    ``min(cap, rest × cap / rest_caps)`` rounded down to :data:`QUANTUM`, and the last key with a
    positive cap gets exactly what is left, so the shares sum to ``total`` exactly.

    Parameters
    ----------
    total
        Amount to split, ``0 <= total <= Σ caps``; all values on the :data:`QUANTUM` grid.
    caps
        ``(key, cap)`` pairs with ``cap >= 0``.

    Returns
    -------
    list[tuple[str, Decimal]]
        ``(key, share)`` for every key with a positive share, in the given order.

    Raises
    ------
    ValueError
        If ``total`` is negative or exceeds Σ caps.
    """
    positive = [(key, cap) for key, cap in caps if cap > 0]
    rest_caps = sum((cap for _, cap in positive), ZERO)
    if total < 0 or total > rest_caps:
        raise ValueError(f"total to allocate must be in [0, {rest_caps}], was {total!r}")
    shares: list[tuple[str, Decimal]] = []
    rest = total
    for i, (key, cap) in enumerate(positive):
        if i == len(positive) - 1:
            share = rest
        else:
            share = min(cap, (rest * cap / rest_caps).quantize(QUANTUM, rounding=ROUND_DOWN))
        rest -= share
        rest_caps -= cap
        if share:
            shares.append((key, share))
    return shares
