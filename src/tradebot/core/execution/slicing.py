"""Slicing of an order quantity into child orders within notional and quantity limits (pure).

Notionals are in quote currency, quantities in base units. The work is done in whole steps, so
every child is on the instrument's step by construction.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from tradebot.core.domain import ZERO, Instrument

__all__ = ["slice_qty"]


def slice_qty(
    qty: Decimal,
    mark: Decimal,
    instrument: Instrument,
    *,
    min_notional: Decimal,
    max_notional: Decimal | None,
) -> tuple[list[Decimal], Decimal]:
    """Split ``qty`` into near-equal child quantities between the notional limits and ``max_qty``.

    Parameters
    ----------
    qty
        Quantity in base units, > 0 and on ``instrument.step_size``.
    mark
        Reference price in quote currency (> 0) at which notionals are measured.
    instrument
        Step size, ``min_qty`` and ``max_qty`` (base units) of the children.
    min_notional
        Smallest child notional, quote currency (>= 0).
    max_notional
        Largest child notional, quote currency, or ``None`` for no slicing.

    Returns
    -------
    tuple[list[Decimal], Decimal]
        The children and the quantity that could not be sliced. With ``n = ceil(qty / largest
        child)`` the children's step counts differ by at most one, so each is on step, none exceeds
        ``max_notional`` or ``instrument.max_qty`` and they sum exactly to ``qty`` (the cut is 0). Only when ``max_notional``
        is below twice the minimum can near-equal children fall below the minimum; then ``n − 1``
        maximal children are returned and the rest is cut (and all of ``qty`` is cut when not even
        one child fits between the limits, e.g. when ``max_qty`` is worth less than the minimum
        notional). A ``qty`` within both maxima is returned as one child unchecked: the caller
        checks the minimum.
    """
    step = instrument.step_size
    total = int(qty / step)
    kmax = _max_steps(mark, step, max_notional)
    if instrument.max_qty is not None:
        kqty = int((instrument.max_qty / step).to_integral_value(rounding=ROUND_FLOOR))
        kmax = kqty if kmax is None else min(kmax, kqty)
    if kmax is None or total <= kmax:
        return [qty], ZERO
    kmin = _min_steps(mark, instrument, min_notional)
    if kmax < kmin:
        return [], qty
    n = -(-total // kmax)
    base, extra = divmod(total, n)
    if base < kmin:
        kept = (n - 1) * kmax
        return [kmax * step] * (n - 1), (total - kept) * step
    return [(base + 1) * step] * extra + [base * step] * (n - extra), ZERO


def _max_steps(mark: Decimal, step: Decimal, limit: Decimal | None) -> int | None:
    # Largest k with k × step × mark <= limit (the loops correct the division's last digit).
    if limit is None:
        return None
    unit = step * mark
    k = int((limit / unit).to_integral_value(rounding=ROUND_FLOOR))
    while k > 0 and k * unit > limit:
        k -= 1
    while (k + 1) * unit <= limit:
        k += 1
    return k


def _min_steps(mark: Decimal, instrument: Instrument, minimum: Decimal) -> int:
    # Smallest k >= 1 with k × step × mark >= minimum and k × step >= min_qty.
    step = instrument.step_size
    unit = step * mark
    k = int((minimum / unit).to_integral_value(rounding=ROUND_CEILING))
    while k > 0 and (k - 1) * unit >= minimum:
        k -= 1
    while k * unit < minimum:
        k += 1
    k_qty = int((instrument.min_qty / step).to_integral_value(rounding=ROUND_CEILING))
    return max(k, k_qty, 1)
