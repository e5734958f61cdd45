"""Buy-and-hold benchmark of a run's assets (STRATEGY.md §7: every report shows it).

Equal weight at the first open: the initial cash is split equally over the assets, each slice buys its
asset at the asset's entry price (the first base candle's open in a backtest) paying the taker fee, and
the quantities are then held to the end and marked at the strategy's own equity-sample times. It is a
benchmark, not a tradable plan: quantities are **not** rounded to the instrument's step size, there is
no minimum notional and no slippage, so the whole initial cash is invested.

Money is ``Decimal`` (quote currency), quantities ``Decimal`` (base units); pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

__all__ = ["buy_and_hold_curve", "buy_and_hold_quantities"]


def _fee_of(taker_fee: Decimal | Mapping[str, Decimal], symbol: str) -> Decimal:
    # One fee for every asset, or one per symbol; a fraction in [0, 1).
    fee = taker_fee if isinstance(taker_fee, Decimal) else taker_fee.get(symbol)
    if not (isinstance(fee, Decimal) and fee.is_finite() and 0 <= fee < 1):
        raise ValueError(f"taker_fee of {symbol} must be a finite Decimal in [0, 1), was {fee!r}")
    return fee


def buy_and_hold_quantities(
    *,
    entry_prices: Mapping[str, Decimal],
    initial_cash: Decimal,
    taker_fee: Decimal | Mapping[str, Decimal],
) -> dict[str, Decimal]:
    """Return the base quantity bought of each asset: ``(cash / n) / (entry × (1 + fee))``.

    Each asset gets the budget ``initial_cash / n``; the buy's notional plus its taker fee
    (``fee × notional``, as the simulated venue charges it) spends the whole budget, so
    ``notional = budget / (1 + fee)``. Quantities are not rounded (see the module docstring).

    Parameters
    ----------
    entry_prices
        ``{symbol: entry price}``, quote currency per base unit, each finite and > 0; at least one.
    initial_cash
        Cash at the start, quote currency, finite and > 0.
    taker_fee
        Fee fraction (``Decimal("0.001")`` = 0.1 %), one for all assets or ``{symbol: fee}``.

    Returns
    -------
    dict of symbol to Decimal
        Quantity in base units, in the order of ``entry_prices``.

    Raises
    ------
    ValueError
        On no assets, a non-positive entry price or cash, or a fee outside [0, 1) (naming the value).
    """
    if not entry_prices:
        raise ValueError("entry_prices must name at least one asset, was empty")
    if not (isinstance(initial_cash, Decimal) and initial_cash.is_finite() and initial_cash > 0):
        raise ValueError(f"initial_cash must be a finite Decimal > 0, was {initial_cash!r}")
    budget = initial_cash / len(entry_prices)
    qty: dict[str, Decimal] = {}
    for sym, price in entry_prices.items():
        if not (isinstance(price, Decimal) and price.is_finite() and price > 0):
            raise ValueError(f"entry_prices[{sym!r}] must be a finite Decimal > 0, was {price!r}")
        qty[sym] = budget / (price * (1 + _fee_of(taker_fee, sym)))
    return qty


def buy_and_hold_curve(
    *,
    entry_prices: Mapping[str, Decimal],
    marks: Sequence[tuple[int, Mapping[str, Decimal]]],
    initial_cash: Decimal,
    taker_fee: Decimal | Mapping[str, Decimal],
    entry_ms: int | None = None,
) -> list[tuple[int, Decimal]]:
    """Return the equity curve of equal-weight buy-and-hold: ``Σ_s qty_s × mark_s(t)`` at each mark time.

    Quantities are those of :func:`buy_and_hold_quantities`. A sample that lacks an asset's mark (it
    had no candle yet) values that asset at its last mark, or at its entry price before its first one.
    Marks of symbols not in ``entry_prices`` are ignored.

    Parameters
    ----------
    entry_prices, initial_cash, taker_fee
        As in :func:`buy_and_hold_quantities`.
    marks
        ``(time_ms, {symbol: mark price})`` samples, ms UTC strictly increasing (e.g. the marks of the
        strategy's equity samples, ``EngineStats.mark_curve``), prices in quote currency.
    entry_ms
        When the buy happened (ms UTC, e.g. the first base candle's open time). When given, the curve
        starts with ``(entry_ms, initial_cash)`` (the cash just before the buy), so that the curve's
        total return runs from the initial cash and includes the entry fee; it must be earlier than the
        first mark. When ``None`` the curve has exactly the times of ``marks``.

    Returns
    -------
    list of (time_ms, equity_quote)
        ``len(marks)`` samples (one more with ``entry_ms``); no cash is left over, so equity is the
        holdings' value.

    Raises
    ------
    ValueError
        As :func:`buy_and_hold_quantities`, on unordered mark times, or ``entry_ms`` not before the
        first mark.
    """
    qty = buy_and_hold_quantities(entry_prices=entry_prices, initial_cash=initial_cash, taker_fee=taker_fee)
    last = dict(entry_prices)
    out: list[tuple[int, Decimal]] = []
    if entry_ms is not None:
        if marks and entry_ms >= marks[0][0]:
            raise ValueError(f"entry_ms must be before the first mark at {marks[0][0]}, was {entry_ms!r}")
        out.append((entry_ms, initial_cash))
    for i, (t, sample) in enumerate(marks):
        if out and t <= out[-1][0]:
            raise ValueError(
                f"marks[{i}] time_ms must be strictly increasing, was {t!r} after {out[-1][0]!r}"
            )
        for sym in qty:
            price = sample.get(sym)
            if price is not None:
                last[sym] = price
        out.append((t, sum((q * last[s] for s, q in qty.items()), start=Decimal(0))))
    return out
